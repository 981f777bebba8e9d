//! The Prometheus text format (version 0.0.4): metric families, each with
//! one HELP and TYPE line and all of its samples together, which is why
//! shards hand over structured families and the admin thread renders once.

use indexmap::IndexMap;
use shards::metrics::{HistogramSnapshot, BUCKET_BOUNDS_SECONDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

struct Family {
    help: &'static str,
    kind: Kind,
    samples: Vec<String>,
}

/// Metric families in the order first added; `Send`, so a shard builds one
/// and the admin thread merges them.
#[derive(Default)]
pub struct Exposition {
    families: IndexMap<&'static str, Family>,
}

pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Vec<String> {
        let f = self.families.entry(name).or_insert(Family { help, kind, samples: Vec::new() });
        assert_eq!(f.kind, kind, "metric {name} registered as two kinds");
        &mut f.samples
    }

    /// A counter; `name` ends in `_total`.
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, value: u64) {
        debug_assert!(name.ends_with("_total"));
        let line = format!("{name}{} {value}", label_set(labels, None));
        self.family(name, help, Kind::Counter).push(line);
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        let line = format!("{name}{} {}", label_set(labels, None), number(value));
        self.family(name, help, Kind::Gauge).push(line);
    }

    /// A latency histogram in seconds; `name` ends in `_seconds`.
    pub fn histogram(&mut self, name: &'static str, help: &'static str, labels: Labels, h: &HistogramSnapshot) {
        let mut lines = Vec::with_capacity(BUCKET_BOUNDS_SECONDS.len() + 3);
        for (bound, count) in BUCKET_BOUNDS_SECONDS.iter().zip(&h.cumulative) {
            lines.push(format!("{name}_bucket{} {count}", label_set(labels, Some(&number(*bound)))));
        }
        lines.push(format!("{name}_bucket{} {}", label_set(labels, Some("+Inf")), h.count));
        lines.push(format!("{name}_sum{} {}", label_set(labels, None), number(h.sum_seconds)));
        lines.push(format!("{name}_count{} {}", label_set(labels, None), h.count));
        self.family(name, help, Kind::Histogram).extend(lines);
    }

    /// Appends another exposition's samples (another shard's) family by family.
    pub fn merge(&mut self, other: Exposition) {
        for (name, f) in other.families {
            self.family(name, f.help, f.kind).extend(f.samples);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} {}\n", f.help, f.kind.as_str()));
            for s in &f.samples {
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }
}

fn label_set(labels: Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves samples of one family from two shards render under a single HELP/TYPE header, with escaped labels.
    #[test]
    fn merged_families_render_once_with_escaped_labels() {
        let mut a = Exposition::default();
        a.counter("x_total", "help x", &[("shard", "0")], 1);
        let mut b = Exposition::default();
        b.gauge("y", "help y", &[("topic", "a\"b")], 2.5);
        b.counter("x_total", "help x", &[("shard", "1")], 3);
        a.merge(b);
        let text = a.render();
        assert_eq!(text.matches("# TYPE x_total counter").count(), 1);
        assert!(text.contains("x_total{shard=\"0\"} 1\nx_total{shard=\"1\"} 3\n"), "{text}");
        assert!(text.contains("y{topic=\"a\\\"b\"} 2.5"), "{text}");
    }
}
