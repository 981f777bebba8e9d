//! A scan of the log for transactions: every transactional batch header,
//! and for control batches the marker type (COMMIT or ABORT) read from the
//! control record's key. Used at open to rebuild a partition's ongoing and
//! aborted transactions (`partition::txn`).
//!
//! Same shard and rules as `log.rs`: `!Send`, blocking preads meant for open,
//! the state `RefCell` is never borrowed across an `.await`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::Log;
use crate::storage::batch::BatchHeader;
use crate::storage::StorageError;

/// Bytes read per pread while scanning.
const TXN_SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Bytes after a control batch's header that hold its record's key (a
/// record length, attributes, two deltas, a key length: at most 20 bytes of
/// varints, then the 4-byte key).
const CONTROL_PEEK_BYTES: usize = 32;

/// The control type of a marker: Kafka's ControlRecordType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
    /// Any other control record (leader change, snapshot): not a transaction marker.
    Other,
}

impl Log {
    /// Calls `visit` for every transactional batch written to the segment
    /// files, oldest first, with the marker type of control batches.
    pub fn scan_transactional(&self, mut visit: impl FnMut(&BatchHeader, Option<ControlType>)) -> Result<(), StorageError> {
        let st = self.state.borrow();
        for seg in &st.segments {
            let Some(file) = seg.read_handle()? else { continue };
            scan_file(&file, &seg.log_path, seg.written_size, &mut visit)?;
        }
        Ok(())
    }
}

fn scan_file(
    file: &File,
    path: &Path,
    limit: u64,
    visit: &mut impl FnMut(&BatchHeader, Option<ControlType>),
) -> Result<(), StorageError> {
    let mut buf = vec![0u8; TXN_SCAN_CHUNK_BYTES];
    let mut buf_pos = 0u64;
    let mut filled = 0usize;
    let mut pos = 0u64;
    while pos < limit {
        let header_end = pos + BatchHeader::SIZE as u64;
        if header_end > limit {
            return Err(corrupt(path, pos, "a header runs past the written end"));
        }
        let want_end = (pos + (BatchHeader::SIZE + CONTROL_PEEK_BYTES) as u64).min(limit);
        if pos < buf_pos || want_end > buf_pos + filled as u64 {
            let want = (limit - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..want], pos)?;
            buf_pos = pos;
            filled = want;
        }
        let at = (pos - buf_pos) as usize;
        let h = BatchHeader::parse(&buf[at..at + BatchHeader::SIZE]).map_err(|e| corrupt(path, pos, &e.to_string()))?;
        if h.batch_length < (BatchHeader::SIZE - super::LOG_OVERHEAD) as i32 {
            return Err(corrupt(path, pos, "batch length below a header"));
        }
        if h.is_transactional() && h.producer_id >= 0 {
            let control = if h.is_control() {
                let body_end = (at + h.total_size()).min(at + BatchHeader::SIZE + CONTROL_PEEK_BYTES).min(filled);
                Some(control_type(&buf[at + BatchHeader::SIZE..body_end]))
            } else {
                None
            };
            visit(&h, control);
        }
        pos += h.total_size() as u64;
    }
    Ok(())
}

/// Reads a zigzag varint; None if the bytes run out.
fn varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// The control type in the first record of an (uncompressed) control batch.
pub fn control_type(records: &[u8]) -> ControlType {
    let mut at = 0usize;
    let parsed = (|| {
        varint(records, &mut at)?; // record length
        at += 1; // attributes
        varint(records, &mut at)?; // timestamp delta
        varint(records, &mut at)?; // offset delta
        let key_len = varint(records, &mut at)?;
        if key_len < 4 {
            return None;
        }
        let key = records.get(at..at + 4)?;
        Some(i16::from_be_bytes([key[2], key[3]]))
    })();
    match parsed {
        Some(0) => ControlType::Abort,
        Some(1) => ControlType::Commit,
        _ => ControlType::Other,
    }
}

fn corrupt(path: &Path, pos: u64, why: &str) -> StorageError {
    StorageError::Corrupt { file: path.to_path_buf(), reason: format!("batch header at position {pos}: {why}") }
}
