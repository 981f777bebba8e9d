//! The log's reads: whole batches for Fetch from the tail cache or from
//! segment files (io_uring reads through `read_ahead`), and timestamp
//! lookups for ListOffsets (blocking preads, under the state borrow). Same
//! shard as the log.

use super::*;

impl Log {
    /// Whole batches from the one containing `offset`, at most `max_bytes`
    /// (but at least one batch if `min_one`), none with a base offset >=
    /// `end_offset_exclusive`. Recent batches come from the cache, older ones
    /// from one segment file (a read stops at a segment's end), read by
    /// io_uring into memory through the file's read-ahead windows: the
    /// shard never waits on the disk, and batch headers are walked in
    /// memory, not by a pread each.
    ///
    /// The state is borrowed only to plan (no `.await` under it). A tail
    /// truncation or failed write while the file read was in flight
    /// (`rollback_gen` moved) makes the read start over, so no truncated
    /// bytes are returned; a segment deleted meanwhile (retention) is
    /// planned again too, and then answers OffsetOutOfRange.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        end_offset_exclusive: i64,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        let limits = ReadLimits {
            max_bytes,
            end_offset: end_offset_exclusive,
            min_one,
        };
        let mut offset = offset;
        let mut attempts = 0;
        loop {
            let plan = {
                let st = self.state.borrow();
                if st.closed {
                    return Err(StorageError::Closed);
                }
                if offset < st.log_start || offset > st.log_end {
                    return Err(StorageError::OffsetOutOfRange {
                        requested: offset,
                        start: st.log_start,
                        end: st.log_end,
                    });
                }
                if offset == st.log_end || offset >= end_offset_exclusive {
                    return Ok(ReadResult::default());
                }
                if offset >= st.cache_start() {
                    return Ok(read_cache(&st, offset, &limits));
                }
                let si = st.segment_for(offset).expect("offset >= log_start has a segment");
                FilePlan::of(&st, si, offset)?
            };
            let read = read_file(&plan, offset, &limits).await;
            attempts += 1;
            let st = self.state.borrow();
            let changed = st.rollback_gen != plan.rollback_gen;
            match read {
                Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => continue,
                _ if changed && attempts < 3 => continue,
                Err(e) => return Err(e),
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {
                    // Compaction removed every batch from `offset` to this
                    // segment's end: the next batch is in a later segment.
                    let Some(next) = st.segments.iter().find(|s| s.base_offset > plan.base_offset) else {
                        return Err(corrupt(&plan.path, format!("offset {offset} not found before the written end")));
                    };
                    offset = next.base_offset;
                    attempts = 0;
                }
            }
        }
    }

    /// ListOffsets by timestamp: the first record with timestamp >= `ts`, as
    /// (offset, timestamp). Uses the time index to skip to the right batch,
    /// then walks the records of an uncompressed batch to find the exact one.
    ///
    /// Limitation: the broker never decompresses, so for a COMPRESSED batch
    /// (and for a LogAppendTime batch, whose records all carry its max
    /// timestamp) this returns the batch's base offset and max timestamp.
    ///
    /// No `.await` inside (blocking preads), so the borrow is held throughout.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let st = self.state.borrow();
        if st.closed {
            return Err(StorageError::Closed);
        }
        if st.max_ts.is_none_or(|(m, _)| m < ts) {
            return Ok(None);
        }
        let cache_start = st.cache_start();
        let first_seg = st
            .segments
            .iter()
            .position(|s| s.idx.max_ts.is_some_and(|(m, _)| m >= ts));
        if let Some(first_seg) = first_seg {
            for (i, seg) in st.segments.iter().enumerate().skip(first_seg) {
                if seg.base_offset >= cache_start {
                    break;
                }
                let start_pos = if i == first_seg {
                    match seg.idx.time_index.last_below(ts) {
                        Some((_, rel)) => seg.position_floor(seg.base_offset + i64::from(rel)),
                        None => 0,
                    }
                } else {
                    0
                };
                if let Some(found) = find_ts_in_segment(seg, start_pos, cache_start, ts)? {
                    return Ok(Some(found));
                }
            }
        }
        for e in &st.cache {
            for (start, h) in &e.batches {
                if h.max_timestamp < ts {
                    continue;
                }
                let bytes = &e.bytes[*start..*start + h.total_size()];
                if let Some(found) =
                    resolve_in_batch(h, bytes, ts).map_err(|r| corrupt(&self.dir, r))?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (max timestamp, offset). The offset is the
    /// last offset of the batch carrying the maximum (exact when producers
    /// send non-decreasing timestamps; the broker does not decode records on
    /// append to find the exact record).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.state.borrow().max_ts
    }
}

struct ReadLimits {
    max_bytes: usize,
    end_offset: i64,
    min_one: bool,
}

impl ReadLimits {
    /// May a batch of `len` bytes with base `base` follow `taken` bytes?
    fn admits(&self, taken: usize, base: i64, len: usize) -> bool {
        base < self.end_offset
            && (taken.saturating_add(len) <= self.max_bytes || (taken == 0 && self.min_one))
    }
}

fn read_cache(st: &State, offset: i64, limits: &ReadLimits) -> ReadResult {
    let mut out = ReadResult::default();
    let first = st.cache.partition_point(|e| e.end_offset <= offset);
    'entries: for e in st.cache.range(first..) {
        let mut range: Option<(usize, usize)> = None;
        let mut stop = false;
        for (start, h) in &e.batches {
            if h.last_offset() < offset {
                continue;
            }
            let len = h.total_size();
            if !limits.admits(out.bytes, h.base_offset, len) {
                stop = true;
                break;
            }
            out.bytes += len;
            out.first_offset.get_or_insert(h.base_offset);
            out.last_offset = Some(h.last_offset());
            range = Some(range.map_or((*start, start + len), |(s, _)| (s, start + len)));
        }
        if let Some((s, end)) = range {
            out.chunks.push(e.bytes.slice(s..end));
        }
        if stop {
            break 'entries;
        }
    }
    out
}

/// What a file read needs from the log's state, taken under the borrow.
struct FilePlan {
    file: Rc<open_files::SegmentFile>,
    path: PathBuf,
    base_offset: i64,
    /// Position of an indexed batch at or before the wanted offset.
    from: u64,
    /// The segment's written size: every batch below it is whole and final.
    limit: u64,
    rollback_gen: u64,
}

impl FilePlan {
    fn of(st: &State, si: usize, offset: i64) -> Result<FilePlan, StorageError> {
        let seg = &st.segments[si];
        if !seg.reader.exists() {
            return Err(corrupt(&seg.log_path, "segment below the cache has no file"));
        }
        Ok(FilePlan {
            file: seg.reader.clone(),
            path: seg.log_path.clone(),
            base_offset: seg.base_offset,
            from: seg.position_floor(offset),
            limit: seg.written_size,
            rollback_gen: st.rollback_gen,
        })
    }
}

/// Reads through the read-ahead windows: `[at, at + len)`, and keeps up to
/// `want` bytes from `at` (as many as the windows or one file read give)
/// for the next calls.
struct Cursor<'a> {
    plan: &'a FilePlan,
    buf: Bytes,
    buf_start: u64,
}

impl Cursor<'_> {
    async fn bytes(&mut self, at: u64, len: usize, want: usize) -> Result<Bytes, StorageError> {
        let end = at + len as u64;
        if end > self.plan.limit {
            return Err(corrupt(&self.plan.path, format!("{len} bytes at {at} run past the written end {}", self.plan.limit)));
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if at < self.buf_start || end > buf_end {
            self.buf = read_ahead::read(&self.plan.file, at, len, len.max(want), self.plan.limit).await?;
            self.buf_start = at;
        }
        let from = (at - self.buf_start) as usize;
        Ok(self.buf.slice(from..from + len))
    }

    /// `[at, at + len)` is in the bytes already read.
    fn holds(&self, at: u64, len: usize) -> bool {
        at >= self.buf_start && at + len as u64 <= self.buf_start + self.buf.len() as u64
    }

    async fn header(&mut self, at: u64, want: usize) -> Result<BatchHeader, StorageError> {
        let bytes = self.bytes(at, BatchHeader::SIZE, want).await?;
        BatchHeader::parse(&bytes).map_err(|e| corrupt(&self.plan.path, format!("batch header at position {at}: {e}")))
    }
}

/// Whole batches of one segment from the batch containing `offset` (or the
/// first after it: compaction leaves gaps), bounded by the segment's
/// written size, as one piece of memory. None when no batch of this
/// segment ends at or after `offset`.
async fn read_file(plan: &FilePlan, offset: i64, limits: &ReadLimits) -> Result<Option<ReadResult>, StorageError> {
    // Most reads are one file read: the walk from the indexed position to
    // `offset` is about one index interval, then `max_bytes` of batches.
    let want = limits.max_bytes.saturating_add(INDEX_SLACK_BYTES).min(MAX_READ_BYTES);
    let mut cur = Cursor { plan, buf: Bytes::new(), buf_start: 0 };
    let mut pos = plan.from;
    let first = loop {
        if pos >= plan.limit {
            return Ok(None);
        }
        let h = cur.header(pos, want).await?;
        if h.last_offset() >= offset {
            break h;
        }
        pos += h.total_size() as u64;
    };
    let start = pos;
    let first_len = first.total_size();
    if start + first_len as u64 > plan.limit {
        return Err(corrupt(&plan.path, format!("batch at {start} runs past the written end")));
    }
    if !limits.admits(0, first.base_offset, first_len) {
        return Ok(Some(ReadResult::default()));
    }
    let budget_end = start
        .saturating_add(limits.max_bytes as u64)
        .max(start + first_len as u64)
        .min(plan.limit);
    let mut end = start + first_len as u64;
    let mut last = first.last_offset();
    if !cur.holds(start, first_len) {
        // A batch larger than what was read (min_one): read it whole.
        cur.bytes(start, first_len, first_len).await?;
    }
    // Whole batches that the bytes in hand hold, so the answer is one
    // slice; the next fetch continues where this one stops.
    while end + BatchHeader::SIZE as u64 <= budget_end && cur.holds(end, BatchHeader::SIZE) {
        let h = cur.header(end, 0).await?;
        let next = end + h.total_size() as u64;
        if h.base_offset >= limits.end_offset || next > budget_end || !cur.holds(end, h.total_size()) {
            break;
        }
        end = next;
        last = h.last_offset();
    }
    let len = (end - start) as usize;
    let data = cur.bytes(start, len, len).await?;
    read_ahead::read_ahead_from(&plan.file, end, plan.limit);
    Ok(Some(ReadResult {
        chunks: vec![data],
        bytes: len,
        first_offset: Some(first.base_offset),
        last_offset: Some(last),
    }))
}

/// Read beyond `max_bytes` to cover the walk from the indexed position.
const INDEX_SLACK_BYTES: usize = 64 << 10;
/// A single file read is at most this (a fetch's partition budget is bounded anyway).
const MAX_READ_BYTES: usize = 64 << 20;

/// Finds the first record with timestamp >= `ts` in a segment's written
/// batches from `pos`, stopping at batches that are in the cache.
fn find_ts_in_segment(
    seg: &Segment,
    mut pos: u64,
    cache_start: i64,
    ts: i64,
) -> Result<Option<(i64, i64)>, StorageError> {
    let Some(file) = seg.read_handle()? else {
        return Ok(None);
    };
    let path = &seg.log_path;
    while pos < seg.written_size {
        let h = read_header_at(&file, path, pos)?;
        if h.base_offset >= cache_start {
            break;
        }
        let len = h.total_size();
        if h.max_timestamp >= ts {
            let bytes = read_exact(&file, pos, len)?;
            if let Some(found) = resolve_in_batch(&h, &bytes, ts).map_err(|r| corrupt(path, r))? {
                return Ok(Some(found));
            }
        }
        pos += len as u64;
    }
    Ok(None)
}

/// The first record of a batch with timestamp >= `ts` (see the limitation on
/// `offset_for_timestamp` for compressed and LogAppendTime batches).
fn resolve_in_batch(
    h: &BatchHeader,
    batch: &[u8],
    ts: i64,
) -> Result<Option<(i64, i64)>, super::super::BatchError> {
    if h.max_timestamp < ts {
        return Ok(None);
    }
    if h.compression() != 0 || h.timestamp_type_log_append() {
        return Ok(Some((h.base_offset, h.max_timestamp)));
    }
    let walked = walk_records(h, batch, |r| r.timestamp < ts)?;
    Ok(walked.stopped_at.map(|r| (r.offset, r.timestamp)))
}
