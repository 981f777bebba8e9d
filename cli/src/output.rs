//! What the commands print: aligned tables and titled sections (rpk's
//! layout) for people, JSON for programs. Output errors (a closed pipe)
//! become [`Error::Output`] instead of a panic.

use std::io::{BufWriter, Stdout, Write};

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Buffered stdout.
pub struct Out {
    pub format: Format,
    w: BufWriter<Stdout>,
}

impl Out {
    pub fn new(format: Format) -> Out {
        Out { format, w: BufWriter::new(std::io::stdout()) }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    pub fn text(&mut self, s: &str) -> Result<()> {
        self.w.write_all(s.as_bytes()).map_err(Error::Output)
    }

    pub fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(Error::Output)
    }

    /// One JSON document and a newline.
    pub fn json(&mut self, v: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.w, v).map_err(|e| Error::Output(e.into()))?;
        self.text("\n")
    }

    pub fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(Error::Output)
    }
}

/// Columns padded to the widest cell, two spaces apart, header row first.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "a row has one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut s = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<w$}  "));
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }
}

/// A titled block: `NAME\n====\n` then the body and a blank line.
pub fn section(title: &str, body: &str) -> String {
    format!("{title}\n{}\n{body}\n", "=".repeat(title.len()))
}

/// Two-column key/value lines, keys padded.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{}\n", format!("{k:<w$}  {v}").trim_end())).collect()
}

/// `[1, 2, 3]` as rpk prints node lists.
pub fn id_list(ids: &[i32]) -> String {
    let items: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// Record bytes as a JSON string (invalid UTF-8 replaced), or null.
pub fn bytes_json(b: &Option<Bytes>) -> Value {
    match b {
        Some(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align() {
        // Every column starts at the same position on every line.
        let mut t = Table::new(&["NAME", "PARTITIONS"]);
        t.row(vec!["a-long-name".into(), "3".into()]);
        t.row(vec!["b".into(), "10".into()]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "NAME         PARTITIONS");
        assert_eq!(lines[1], "a-long-name  3");
        assert_eq!(lines[2], "b            10");
    }
}
