//! Scenario files (`bench/scenarios/*.toml`): a named workload and its kind,
//! so standard benchmarks are run the same way every time:
//!
//! ```toml
//! name = "classic-1-producer"
//! description = "..."
//! kind = "produce"          # produce | consume | e2e
//! [workload]                # any Workload field; the rest keep CLI defaults
//! record_size = 100
//! ```
//! Pure parsing; no I/O beyond reading the file.

use crate::run::Kind;
use crate::workload::Workload;
use crate::BenchError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One scenario file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: Kind,
    #[serde(default)]
    pub workload: Workload,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, BenchError> {
        let s: Scenario = toml::from_str(text).map_err(|e| BenchError::Config(e.to_string()))?;
        s.workload
            .validate()
            .map_err(|e| BenchError::Config(format!("scenario {}: {e}", s.name)))?;
        Ok(s)
    }

    pub fn load(path: &Path) -> Result<Scenario, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text).map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every scenario file shipped in bench/scenarios parses and validates.
    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!s.name.is_empty());
                n += 1;
            }
        }
        assert!(n >= 7, "expected the standard scenarios, found {n}");
    }

    // Proves unknown keys are rejected instead of silently ignored.
    #[test]
    fn unknown_keys_rejected() {
        assert!(
            Scenario::parse("name = \"x\"\nkind = \"produce\"\n[workload]\nrecordsize = 1\n")
                .is_err()
        );
        assert!(Scenario::parse("name = \"x\"\nkind = \"flood\"\n").is_err());
        let s = Scenario::parse("name = \"x\"\nkind = \"e2e\"\n").expect("minimal");
        assert_eq!(s.kind, Kind::E2e);
    }
}
