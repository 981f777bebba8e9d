//! The leader-epoch cache of one partition log: for every leader epoch that
//! wrote to the log, the first offset written in it. Kafka keeps the same in
//! `leader-epoch-checkpoint`; it is what OffsetForLeaderEpoch answers from,
//! and what a follower truncates by after a leader change (KIP-101, KIP-279).
//!
//! Pure data and rules here, no I/O: the file format (Kafka's: a version
//! line `0`, a count line, then `epoch start_offset` lines) is encoded and
//! parsed by `encode`/`parse`; the log writes it durably (small-file helper)
//! whenever `assign` or a truncation changes it.
//!
//! Invariants, checked in release builds: epochs strictly increase, and so
//! do start offsets.

/// `UNDEFINED_EPOCH` / `UNDEFINED_EPOCH_OFFSET` of Kafka's protocol.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;
/// Kafka's file name, inside the partition's directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Entries kept; older ones are dropped from the front (a log would need
/// this many leader changes since its start offset to reach it).
pub const ENTRIES_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochFileError {
    /// The file is not Kafka's format (version 0, a count, that many lines).
    Malformed(String),
    /// Epochs or offsets do not increase.
    NotIncreasing(String),
}

impl std::fmt::Display for EpochFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpochFileError::Malformed(m) => write!(f, "malformed {CHECKPOINT_FILE}: {m}"),
            EpochFileError::NotIncreasing(m) => write!(f, "{CHECKPOINT_FILE} does not increase: {m}"),
        }
    }
}

impl std::error::Error for EpochFileError {}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    fn check(&self) {
        for w in self.entries.windows(2) {
            assert!(w[0].epoch < w[1].epoch, "leader epochs must increase: {:?}", w);
            assert!(w[0].start_offset < w[1].start_offset, "epoch start offsets must increase: {:?}", w);
        }
    }

    /// Records that `epoch` starts writing at `start_offset` (the base offset
    /// of its first batch). Returns whether the cache changed (then the
    /// checkpoint must be written). An epoch already known, or older than the
    /// latest, changes nothing: a leader only moves forward, and a follower
    /// truncates (`truncate_from_end`) before it appends a lower epoch's data.
    /// An entry whose start is at or past `start_offset` belonged to data that
    /// was truncated and rewritten; it goes.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(epoch >= 0 && start_offset >= 0, "epoch {epoch} at offset {start_offset}");
        if let Some(last) = self.latest() {
            if epoch <= last.epoch {
                return false;
            }
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        if self.entries.len() > ENTRIES_MAX {
            let excess = self.entries.len() - ENTRIES_MAX;
            self.entries.drain(..excess);
        }
        self.check();
        true
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and
    /// the offset where it ended (the start of the next higher epoch, or
    /// `log_end_offset` when `requested` is the latest). Undefined when
    /// `requested` is undefined or above every epoch known; an epoch below
    /// the first known answers `requested` itself with the first start.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest().is_some_and(|l| l.epoch == requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// The log was truncated to `end_offset` (everything at and after it is
    /// gone): epochs that started there or later go. Returns whether it changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// The log start moved to `start_offset` (retention, DeleteRecords):
    /// epochs that ended before it go, and the one it falls in now starts
    /// there. Returns whether it changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let keep_from = self.entries.iter().rposition(|e| e.start_offset <= start_offset);
        let Some(i) = keep_from else { return false };
        let changed = i > 0 || self.entries[i].start_offset != start_offset;
        self.entries.drain(..i);
        self.entries[0].start_offset = start_offset;
        self.check();
        changed
    }

    /// Kafka's checkpoint text.
    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    pub fn parse(text: &str) -> Result<LeaderEpochCache, EpochFileError> {
        let bad = |m: &str| EpochFileError::Malformed(m.to_string());
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some("0") {
            return Err(bad("the first line must be version 0"));
        }
        let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("the second line must be the entry count"))?;
        if count > ENTRIES_MAX {
            return Err(bad(&format!("{count} entries, more than {ENTRIES_MAX}")));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let line = lines.next().ok_or_else(|| bad(&format!("{count} entries announced, {i} present")))?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad(&format!("line {}: epoch", i + 3)))?;
            let start_offset: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad(&format!("line {}: offset", i + 3)))?;
            if epoch < 0 || start_offset < 0 || parts.next().is_some() {
                return Err(bad(&format!("line {}: {line:?}", i + 3)));
            }
            entries.push(EpochEntry { epoch, start_offset });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(bad("lines after the announced entries"));
        }
        if let Some(w) = entries.windows(2).find(|w| w[0].epoch >= w[1].epoch || w[0].start_offset >= w[1].start_offset) {
            return Err(EpochFileError::NotIncreasing(format!("{:?} then {:?}", w[0], w[1])));
        }
        Ok(LeaderEpochCache { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for (e, o) in entries {
            assert!(c.assign(*e, *o));
        }
        c
    }

    /// New epochs are recorded once, older or equal ones are ignored, and a
    /// re-assignment after truncation replaces what was cut.
    #[test]
    fn assign_only_moves_forward() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(!c.assign(2, 15), "same epoch again");
        assert!(!c.assign(1, 20), "an older epoch");
        assert!(c.assign(5, 10), "a new epoch at a start taken by a truncated one");
        assert_eq!(c.entries(), &[EpochEntry { epoch: 0, start_offset: 0 }, EpochEntry { epoch: 5, start_offset: 10 }]);
    }

    /// endOffsetFor answers as Kafka's LeaderEpochFileCache does.
    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.end_offset_for(4, 40), (4, 40), "latest epoch: the log end");
        assert_eq!(c.end_offset_for(3, 40), (3, 25), "an epoch: where the next began");
        assert_eq!(c.end_offset_for(2, 40), (1, 10), "an epoch never used: the floor epoch and the next start");
        assert_eq!(c.end_offset_for(0, 40), (0, 0), "below the first: itself and the first start");
        assert_eq!(c.end_offset_for(9, 40), (UNDEFINED_EPOCH, UNDEFINED_OFFSET), "above every epoch");
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, 40), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
    }

    /// Truncating the end drops epochs that started there or later; moving
    /// the start drops epochs wholly before it and clips the one it falls in.
    #[test]
    fn truncation_at_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_end(25));
        assert_eq!(c.latest(), Some(EpochEntry { epoch: 3, start_offset: 10 }));
        assert!(!c.truncate_from_end(30));
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 3, start_offset: 12 }, EpochEntry { epoch: 4, start_offset: 25 }]);
        assert!(!c.truncate_from_start(12));
        assert!(!c.truncate_from_start(5), "a start before every epoch changes nothing");
    }

    /// The checkpoint round-trips in Kafka's format; damaged files are refused.
    #[test]
    fn checkpoint_format() {
        let c = cache(&[(0, 0), (7, 1234)]);
        assert_eq!(c.encode(), "0\n2\n0 0\n7 1234\n");
        assert_eq!(LeaderEpochCache::parse(&c.encode()), Ok(c));
        assert_eq!(LeaderEpochCache::parse("0\n0\n"), Ok(LeaderEpochCache::default()));
        for bad in ["", "1\n0\n", "0\n2\n0 0\n", "0\n1\n0\n", "0\n1\nx 1\n", "0\n1\n0 0 0\n", "0\n2\n3 0\n2 5\n", "0\n1\n0 0\n9 9\n", "0\n1\n-1 0\n"] {
            assert!(LeaderEpochCache::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
