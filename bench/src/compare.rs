//! `fjord-bench compare`: one workload against several targets in turn,
//! repeated, summarised as min/median/max with ratios to the first target,
//! written as a folder: report.md, report.json, throughput.png, latency.png,
//! and one log per started broker.
//!
//! A target is either a running broker (`name=HOST:PORT`) or a command that
//! this module starts before each run and stops after it
//! (`name=cmd:<command>`, listening on the compare's `--bootstrap`; `{dir}` in
//! the command becomes a fresh empty directory per start). Runs on the bench's
//! tokio runtime; the child processes are in their own process group.

use crate::charts::{self, Bar};
use crate::client::Cluster;
use crate::report::{write_json, RunResult};
use crate::run::{run, Kind};
use crate::workload::Workload;
use crate::BenchError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a started broker has to answer ApiVersions.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped broker has to exit after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a target comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    Running,
    Command(String),
}

/// One target of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub bootstrap: String,
    pub kind: TargetKind,
}

/// Parses `name=HOST:PORT` or `name=cmd:<command>`.
pub fn parse_target(spec: &str, default_bootstrap: &str) -> Result<Target, BenchError> {
    let (name, rest) = spec.split_once('=').ok_or_else(|| {
        BenchError::Config(format!(
            "target {spec:?}: expected name=HOST:PORT or name=cmd:<command>"
        ))
    })?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(BenchError::Config(format!(
            "target name {name:?}: use letters, digits, - _ ."
        )));
    }
    let kind_and_addr = match rest.strip_prefix("cmd:") {
        Some(cmd) if !cmd.trim().is_empty() => (
            TargetKind::Command(cmd.to_string()),
            default_bootstrap.to_string(),
        ),
        Some(_) => return Err(BenchError::Config(format!("target {name}: empty command"))),
        None if rest.contains(':') => (TargetKind::Running, rest.trim().to_string()),
        None => {
            return Err(BenchError::Config(format!(
                "target {name}: {rest:?} is not HOST:PORT"
            )))
        }
    };
    Ok(Target {
        name: name.to_string(),
        bootstrap: kind_and_addr.1,
        kind: kind_and_addr.0,
    })
}

/// A broker this module started.
struct Started {
    child: std::process::Child,
    dir: Option<PathBuf>,
}

impl Started {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling the process group we created for the child.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    // SAFETY: as above; the group did not exit in time.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

async fn start(target: &Target, cmd: &str, out: &Path, rep: usize) -> Result<Started, BenchError> {
    use std::os::unix::process::CommandExt;
    let terr = |message: String| BenchError::Target {
        name: target.name.clone(),
        message,
    };
    let dir = cmd.contains("{dir}").then(|| {
        std::env::temp_dir().join(format!(
            "fjord-bench-{}-{}-{}",
            target.name,
            std::process::id(),
            rep
        ))
    });
    if let Some(d) = &dir {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| terr(format!("create {}: {e}", d.display())))?;
    }
    let cmd = dir.as_ref().map_or_else(
        || cmd.to_string(),
        |d| cmd.replace("{dir}", &d.display().to_string()),
    );
    let log_path = out.join(format!("{}-{}.log", target.name, rep));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| terr(format!("log {}: {e}", log_path.display())))?;
    let log2 = log.try_clone().map_err(|e| terr(e.to_string()))?;
    // `exec` so the pid we hold (and measure) is the broker's own.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| terr(format!("start {cmd:?}: {e}")))?;
    let mut started = Started { child, dir };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = started.child.try_wait() {
            return Err(terr(format!(
                "exited with {status} before answering; see {}",
                log_path.display()
            )));
        }
        if Cluster::connect(&target.bootstrap).await.is_ok() {
            return Ok(started);
        }
        if Instant::now() > deadline {
            started.stop();
            return Err(terr(format!(
                "no ApiVersions answer on {} after {START_TIMEOUT:?}",
                target.bootstrap
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// min / median / max of one metric over the repeats.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            };
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            min: v[0],
            median,
            max: v[n - 1],
        }
    }
}

/// Reads one metric from a run.
pub type MetricFn = fn(&RunResult) -> f64;

/// The metrics compared, with how to read them from a run.
pub const METRICS: [(&str, MetricFn); 6] = [
    ("records_per_sec", |r| r.records_per_sec),
    ("mb_per_sec", |r| r.mb_per_sec),
    ("p50_ms", |r| r.latency_ms.p50),
    ("p99_ms", |r| r.latency_ms.p99),
    ("p999_ms", |r| r.latency_ms.p999),
    ("max_ms", |r| r.latency_ms.max),
];

/// One target's summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetSummary {
    pub name: String,
    pub bootstrap: String,
    pub runs: Vec<RunResult>,
    /// metric -> spread over the runs.
    pub metrics: std::collections::BTreeMap<String, Spread>,
    /// metric -> this target's median / the first target's median.
    pub ratio_to_first: std::collections::BTreeMap<String, f64>,
}

/// report.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareReport {
    pub kind: Kind,
    pub workload: Workload,
    pub repeat: usize,
    pub targets: Vec<TargetSummary>,
}

/// Builds the summaries from the runs (per target, in target order).
pub fn summarise(
    kind: Kind,
    workload: &Workload,
    repeat: usize,
    targets: &[Target],
    runs: Vec<Vec<RunResult>>,
) -> CompareReport {
    let mut out: Vec<TargetSummary> = targets
        .iter()
        .zip(runs)
        .map(|(t, runs)| {
            let metrics = METRICS
                .iter()
                .map(|(name, f)| {
                    (
                        name.to_string(),
                        Spread::of(&runs.iter().map(f).collect::<Vec<_>>()),
                    )
                })
                .collect();
            TargetSummary {
                name: t.name.clone(),
                bootstrap: t.bootstrap.clone(),
                runs,
                metrics,
                ratio_to_first: Default::default(),
            }
        })
        .collect();
    if let Some(first) = out.first().map(|t| t.metrics.clone()) {
        for t in &mut out {
            t.ratio_to_first = t
                .metrics
                .iter()
                .map(|(k, s)| {
                    let base = first.get(k).map_or(0.0, |b| b.median);
                    (k.clone(), if base > 0.0 { s.median / base } else { 0.0 })
                })
                .collect();
        }
    }
    CompareReport {
        kind,
        workload: workload.clone(),
        repeat,
        targets: out,
    }
}

/// Runs the comparison and writes the folder.
pub async fn compare(
    kind: Kind,
    workload: &Workload,
    targets: &[Target],
    repeat: usize,
    out: &Path,
) -> Result<CompareReport, BenchError> {
    std::fs::create_dir_all(out).map_err(|source| BenchError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); targets.len()];
    for rep in 0..repeat {
        for (i, t) in targets.iter().enumerate() {
            eprintln!("compare: {} run {}/{}", t.name, rep + 1, repeat);
            let mut w = workload.clone();
            w.topic = format!("{}-{}-{}", workload.topic, t.name, rep);
            let started = match &t.kind {
                TargetKind::Running => None,
                TargetKind::Command(cmd) => Some(start(t, cmd, out, rep).await?),
            };
            let result = run(kind, &t.bootstrap, &w, started.as_ref().map(Started::pid)).await;
            if let Some(s) = started {
                s.stop();
            }
            let result = result.map_err(|e| BenchError::Target {
                name: t.name.clone(),
                message: e.to_string(),
            })?;
            println!("{}", result.to_markdown());
            runs[i].push(result);
        }
    }
    let report = summarise(kind, workload, repeat, targets, runs);
    write_json(&out.join("report.json"), &report)?;
    let bars: Vec<Bar> = report
        .targets
        .iter()
        .map(|t| {
            let s = t.metrics.get("mb_per_sec").copied().unwrap_or(Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            });
            Bar {
                min: s.min,
                median: s.median,
                max: s.max,
            }
        })
        .collect();
    let axis = charts::throughput_bars(&out.join("throughput.png"), &bars)?;
    let curves: Vec<Vec<(f64, f64)>> = report
        .targets
        .iter()
        .map(|t| {
            median_run(&t.runs)
                .map(|r| r.latency_curve_ms.clone())
                .unwrap_or_default()
        })
        .collect();
    let lat_axes = charts::latency_curves(&out.join("latency.png"), &curves)?;
    let md = render_markdown(&report, axis, lat_axes);
    std::fs::write(out.join("report.md"), md).map_err(|source| BenchError::Io {
        path: out.join("report.md").display().to_string(),
        source,
    })?;
    Ok(report)
}

/// The run whose throughput is the median (its latency curve is charted).
fn median_run(runs: &[RunResult]) -> Option<&RunResult> {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|a, b| {
        runs[*a]
            .records_per_sec
            .total_cmp(&runs[*b].records_per_sec)
    });
    idx.get(idx.len() / 2).map(|i| &runs[*i])
}

/// A figure with as many decimals as it needs to be read: 738607, 70.44, 3.437.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// report.md.
pub fn render_markdown(
    r: &CompareReport,
    throughput_axis: (f64, f64),
    lat: charts::LatencyAxes,
) -> String {
    let mut s = String::new();
    let w = &r.workload;
    let _ = writeln!(s, "# fjord-bench compare: {}\n", r.kind.name());
    let _ = writeln!(
        s,
        "Workload: {} partitions, {} B records, {} producer(s), {} consumer(s), acks={}, {:?}, batch {} B, linger {} ms, {}, {} repeats.\n",
        w.partitions,
        w.record_size,
        w.producers,
        w.consumers,
        w.acks,
        w.compression,
        w.batch_bytes,
        w.linger_ms,
        if w.rate > 0.0 { format!("{} rec/s", w.rate) } else { "max speed".into() },
        r.repeat
    );
    let _ = writeln!(s, "## Results (median, [min – max])\n");
    let _ = writeln!(s, "| target | colour | records/s | MiB/s | p50 ms | p99 ms | p99.9 ms | max ms | bench CPU % of a core |\n|---|---|---|---|---|---|---|---|---|");
    for (i, t) in r.targets.iter().enumerate() {
        let cell = |k: &str| {
            t.metrics.get(k).map_or("-".into(), |m| {
                format!("{} [{} – {}]", num(m.median), num(m.min), num(m.max))
            })
        };
        let cpu = Spread::of(
            &t.runs
                .iter()
                .map(|x| x.client.cpu_percent_of_one_core)
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            t.name,
            charts::colour_name(i),
            cell("records_per_sec"),
            cell("mb_per_sec"),
            cell("p50_ms"),
            cell("p99_ms"),
            cell("p999_ms"),
            cell("max_ms"),
            cpu.median
        );
    }
    if let Some(first) = r.targets.first() {
        let _ = writeln!(s, "\n## Ratios to `{}` (median / median)\n", first.name);
        let _ = writeln!(s, "| target | records/s | MiB/s | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|");
        for t in &r.targets {
            let c = |k: &str| {
                t.ratio_to_first
                    .get(k)
                    .map_or("-".into(), |v| format!("{v:.2}x"))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                t.name,
                c("records_per_sec"),
                c("mb_per_sec"),
                c("p50_ms"),
                c("p99_ms"),
                c("p999_ms"),
                c("max_ms")
            );
        }
    }
    let _ = writeln!(s, "\n## Charts\n");
    let _ = writeln!(
        s,
        "Charts carry no text (no fonts in this build); colours are in the table above.\n"
    );
    let _ = writeln!(
        s,
        "![throughput](throughput.png)\n\n`throughput.png`: one bar per target, left to right in table order, height = median MiB/s, black whisker = min to max. y axis from 0 to {:.3} MiB/s, a gridline every {:.3} MiB/s.\n",
        throughput_axis.0, throughput_axis.1
    );
    let _ = writeln!(
        s,
        "![latency](latency.png)\n\n`latency.png`: latency ({}) against percentile of the median-throughput run, one curve per target. x axis on a \"nines\" scale: 0th percentile at the left edge, vertical gridlines at p90, p99, p99.9, p99.99 and the maximum (right edge). y axis logarithmic from 10^{} to 10^{} ms, a gridline per decade.\n",
        r.targets.first().and_then(|t| t.runs.first()).map_or("latency", |x| x.latency_kind.as_str()),
        lat.decade_min,
        lat.decade_max
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves target specs parse in both forms and bad ones are refused.
    #[test]
    fn parses_targets() {
        let t = parse_target("kafka=127.0.0.1:9092", "x:1").expect("running");
        assert_eq!(
            t,
            Target {
                name: "kafka".into(),
                bootstrap: "127.0.0.1:9092".into(),
                kind: TargetKind::Running
            }
        );
        let t = parse_target(
            "fjord1=cmd:fjord serve --data-dir {dir} --shards 1",
            "127.0.0.1:9192",
        )
        .expect("cmd");
        assert_eq!(t.bootstrap, "127.0.0.1:9192");
        assert_eq!(
            t.kind,
            TargetKind::Command("fjord serve --data-dir {dir} --shards 1".into())
        );
        assert!(parse_target("nohost", "x:1").is_err());
        assert!(parse_target("a=cmd:", "x:1").is_err());
        assert!(parse_target("bad name=h:1", "x:1").is_err());
    }

    // Proves min/median/max over repeats, for odd and even counts.
    #[test]
    fn spread() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0
            }
        );
        assert_eq!(
            Spread::of(&[4.0, 1.0, 2.0, 3.0]),
            Spread {
                min: 1.0,
                median: 2.5,
                max: 4.0
            }
        );
        assert_eq!(
            Spread::of(&[]),
            Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0
            }
        );
    }

    // Proves ratios are medians over the first target's medians, and the report renders them.
    #[test]
    fn summary_ratios() {
        let mk = |rps: f64, p99: f64| {
            let mut r = crate::report::tests::sample();
            r.records_per_sec = rps;
            r.latency_ms.p99 = p99;
            r
        };
        let targets = vec![
            parse_target("a=h:1", "").expect("a"),
            parse_target("b=h:2", "").expect("b"),
        ];
        let runs = vec![
            vec![mk(100.0, 2.0), mk(120.0, 4.0), mk(110.0, 3.0)],
            vec![mk(200.0, 1.0), mk(240.0, 2.0), mk(220.0, 1.5)],
        ];
        let rep = summarise(Kind::Produce, &Workload::default(), 3, &targets, runs);
        assert_eq!(rep.targets[0].ratio_to_first["records_per_sec"], 1.0);
        assert!((rep.targets[1].ratio_to_first["records_per_sec"] - 2.0).abs() < 1e-9);
        assert!((rep.targets[1].ratio_to_first["p99_ms"] - 0.5).abs() < 1e-9);
        assert_eq!(
            rep.targets[1].metrics["records_per_sec"],
            Spread {
                min: 200.0,
                median: 220.0,
                max: 240.0
            }
        );
        let md = render_markdown(
            &rep,
            (250.0, 50.0),
            charts::LatencyAxes {
                decade_min: -1,
                decade_max: 1,
            },
        );
        assert!(
            md.contains("| b | orange | 220.00 [200.00 – 240.00]"),
            "{md}"
        );
        assert_eq!(num(738607.4), "738607");
        assert_eq!(num(3.4371), "3.437");
        assert!(md.contains("| b | 2.00x |"), "{md}");
        assert_eq!(
            median_run(&rep.targets[0].runs).map(|r| r.records_per_sec),
            Some(110.0)
        );
    }
}
