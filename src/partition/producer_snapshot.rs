//! Producer-state snapshot files, so a partition's producer state is rebuilt
//! at open from the newest snapshot plus the batch headers after it, not from
//! the whole log (Kafka's `<offset>.snapshot`).
//!
//! `<partition dir>/<offset as 20 digits>.snapshot` holds the state of every
//! batch below `offset`. Written when an idempotent append finds the log has
//! rolled to a new segment, and at clean close; write to a temporary file,
//! fsync, rename, so a crash leaves the old snapshot or the new one. The
//! newest `SNAPSHOTS_KEPT` are kept. The state is encoded on the owning
//! shard (bounded by `fjord.producer.state.entries.max` entries); the file
//! work runs on the blocking pool (`Writer`), never on the append path.
//!
//! Format (big-endian): magic `FJPS`, version u16 = 1, entry count u32, then
//! per producer: id i64, epoch i16, last write ms i64, batch count u8, and
//! per batch first seq i32, last seq i32, first offset i64, last offset i64;
//! then CRC32C of everything before it (u32).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::producer_state::{BatchMeta, ProducerStates};

const MAGIC: &[u8; 4] = b"FJPS";
const VERSION: u16 = 1;
/// Snapshots kept per partition: an older one serves when a crash cut the
/// log below the newest one's offset.
pub const SNAPSHOTS_KEPT: usize = 2;

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

fn parse_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".snapshot")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Snapshot offsets in `dir`, ascending.
fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(o) = entry?.file_name().to_str().and_then(parse_name) {
            out.push(o);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn encode(states: &ProducerStates) -> Vec<u8> {
    let entries = states.export();
    let mut b = Vec::with_capacity(10 + entries.len() * 64);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (id, epoch, last_write_ms, batches) in &entries {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&last_write_ms.to_be_bytes());
        b.push(batches.len() as u8);
        for m in batches {
            b.extend_from_slice(&m.first_seq.to_be_bytes());
            b.extend_from_slice(&m.last_seq.to_be_bytes());
            b.extend_from_slice(&m.first_offset.to_be_bytes());
            b.extend_from_slice(&m.last_offset.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// Fills `states` from snapshot bytes; None if they are not a valid snapshot.
pub fn decode_into(bytes: &[u8], states: &mut ProducerStates) -> Option<()> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return None;
    }
    let mut c = Cursor(body);
    if &c.take::<4>()? != MAGIC || u16::from_be_bytes(c.take()?) != VERSION {
        return None;
    }
    let count = u32::from_be_bytes(c.take()?);
    for _ in 0..count {
        let id = i64::from_be_bytes(c.take()?);
        let epoch = i16::from_be_bytes(c.take()?);
        let last_write_ms = i64::from_be_bytes(c.take()?);
        let [n] = c.take::<1>()?;
        let mut batches = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            batches.push(BatchMeta {
                first_seq: i32::from_be_bytes(c.take()?),
                last_seq: i32::from_be_bytes(c.take()?),
                first_offset: i64::from_be_bytes(c.take()?),
                last_offset: i64::from_be_bytes(c.take()?),
            });
        }
        states.import(id, epoch, last_write_ms, &batches);
    }
    c.0.is_empty().then_some(())
}

/// Writes the snapshot for `offset` durably and prunes old ones (blocking; tests).
#[cfg(test)]
pub fn write(dir: &Path, offset: i64, states: &ProducerStates) -> io::Result<()> {
    write_encoded(dir, offset, &encode(states), true)
}

/// Writes an encoded snapshot for `offset` and prunes old ones (blocking);
/// with `durable` false the caller syncs the file system afterwards.
fn write_encoded(dir: &Path, offset: i64, bytes: &[u8], durable: bool) -> io::Result<()> {
    let path = snapshot_path(dir, offset);
    let tmp = path.with_extension("snapshot.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_data()?;
        }
    }
    fs::rename(&tmp, &path)?;
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    let all = list(dir)?;
    for old in &all[..all.len().saturating_sub(SNAPSHOTS_KEPT)] {
        let _ = fs::remove_file(snapshot_path(dir, *old));
    }
    Ok(())
}

/// Loads the newest valid snapshot at or below `log_end` into `states` and
/// returns its offset. Snapshots above `log_end` (the log lost its tail in a
/// crash) and unreadable ones are deleted.
pub fn load_newest(dir: &Path, log_end: i64, states: &mut ProducerStates) -> Option<i64> {
    let all = list(dir).ok()?;
    for offset in all.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset <= log_end {
            if let Ok(bytes) = fs::read(&path) {
                let mut loaded = ProducerStates::new(Default::default());
                if decode_into(&bytes, &mut loaded).is_some() {
                    decode_into(&bytes, states);
                    return Some(offset);
                }
            }
        }
        tracing::warn!(path = %path.display(), log_end, "dropping an unusable producer state snapshot");
        let _ = fs::remove_file(&path);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::BatchHeader;

    fn batch(pid: i64, seq: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: 2,
            base_sequence: seq,
            record_count: 2,
        }
    }

    #[test]
    fn snapshot_roundtrip_newest_usable_wins_and_bad_ones_go() {
        // Proves: a written snapshot reloads to the same state; one above the log end or corrupt is skipped and deleted.
        let dir = std::env::temp_dir().join(format!(
            "fjord-psnap-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        fs::create_dir_all(&dir).unwrap();
        let mut s = ProducerStates::new(Default::default());
        for i in 0..7 {
            s.record(&batch(1, i * 2, i64::from(i) * 2), 5);
        }
        s.record(&batch(2, 0, 14), 6);
        write(&dir, 16, &s).unwrap();
        s.record(&batch(2, 2, 16), 7);
        write(&dir, 18, &s).unwrap();
        s.record(&batch(2, 4, 18), 8);
        write(&dir, 20, &s).unwrap();
        assert_eq!(
            list(&dir).unwrap(),
            vec![18, 20],
            "only the newest two are kept"
        );

        let mut r = ProducerStates::new(Default::default());
        assert_eq!(load_newest(&dir, 100, &mut r), Some(20));
        assert_eq!(r.export(), s.export());

        // The log ends at 19 after a crash: the snapshot at 20 is dropped, 18 is used.
        let mut r = ProducerStates::new(Default::default());
        assert_eq!(load_newest(&dir, 19, &mut r), Some(18));
        assert_eq!(r.get(2).map(|(_, b)| b.len()), Some(2));
        assert_eq!(list(&dir).unwrap(), vec![18]);

        let mut bytes = fs::read(snapshot_path(&dir, 18)).unwrap();
        bytes[12] ^= 1;
        fs::write(snapshot_path(&dir, 18), &bytes).unwrap();
        let mut r = ProducerStates::new(Default::default());
        assert_eq!(load_newest(&dir, 100, &mut r), None);
        assert!(r.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}

/// A partition's snapshot writes, on the blocking pool and one at a time.
/// The append path only hands over the encoded state (`submit`); a newer
/// snapshot replaces one still waiting, since only the newest matters (a
/// snapshot only saves recovery a scan; losing one is never wrong).
#[derive(Default)]
pub struct Writer {
    waiting: std::cell::RefCell<Option<(PathBuf, i64, Vec<u8>)>>,
    running: std::cell::Cell<bool>,
    /// Held by the write in progress; `write_now` takes it too.
    one_at_a_time: async_lock::Mutex<()>,
}

impl Writer {
    /// Queues the snapshot for `offset` and returns at once.
    pub fn submit(self: &std::rc::Rc<Self>, dir: &Path, offset: i64, bytes: Vec<u8>) {
        *self.waiting.borrow_mut() = Some((dir.to_path_buf(), offset, bytes));
        if self.running.replace(true) {
            return;
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let Some((dir, offset, bytes)) = me.waiting.borrow_mut().take() else { break };
                let _one = me.one_at_a_time.lock().await;
                let shown = dir.clone();
                let written = glommio::executor()
                    .spawn_blocking(move || write_encoded(&dir, offset, &bytes, true))
                    .await;
                if let Err(e) = written {
                    tracing::warn!(dir = %shown.display(), offset, error = %e, "producer state snapshot failed");
                }
            }
            me.running.set(false);
        })
        .detach();
    }

    /// Writes the snapshot for `offset` now, after any write in progress,
    /// dropping a queued older one (close).
    pub async fn write_now(&self, dir: &Path, offset: i64, bytes: Vec<u8>, durable: bool) -> io::Result<()> {
        self.waiting.borrow_mut().take();
        let _one = self.one_at_a_time.lock().await;
        let dir = dir.to_path_buf();
        glommio::executor().spawn_blocking(move || write_encoded(&dir, offset, &bytes, durable)).await
    }
}
