//! The log's reads: whole batches for Fetch from the tail cache or as
//! segment file ranges (for sendfile), and timestamp lookups for
//! ListOffsets. No `.await` while the state is borrowed: header reads are
//! blocking preads. Same shard as the log.

use super::*;

impl Log {
    /// Whole batches from the one containing `offset`, at most `max_bytes`
    /// (but at least one batch if `min_one`), none with a base offset >=
    /// `end_offset_exclusive`. Recent batches come from the cache, older ones
    /// as a file range of one segment (a read stops at a segment's end).
    ///
    /// No `.await` inside: header reads are blocking preads, so the state
    /// borrow may be held throughout.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        end_offset_exclusive: i64,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
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
        let limits = ReadLimits {
            max_bytes,
            end_offset: end_offset_exclusive,
            min_one,
        };
        if offset >= st.cache_start() {
            return Ok(read_cache(&st, offset, &limits));
        }
        let mut si = st
            .segment_for(offset)
            .expect("offset >= log_start has a segment");
        let mut offset = offset;
        loop {
            if let Some(r) = read_segment(&st.segments[si], offset, &limits)? {
                return Ok(r);
            }
            // Compaction removed every batch from `offset` to this segment's
            // end: the next batch is in a later segment.
            si += 1;
            let Some(next) = st.segments.get(si) else {
                return Err(corrupt(&st.segments[si - 1].log_path, format!("offset {offset} not found before the written end")));
            };
            offset = next.base_offset;
            if offset >= st.cache_start() {
                return Ok(read_cache(&st, offset, &limits));
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
            out.chunks.push(Chunk::Memory(e.bytes.slice(s..end)));
        }
        if stop {
            break 'entries;
        }
    }
    out
}

/// A file range of whole batches of one segment, starting with the batch
/// containing `offset` (or the first after it: compaction leaves gaps),
/// bounded by the segment's WRITTEN logical size. None when no batch of
/// this segment ends at or after `offset`.
fn read_segment(
    seg: &Segment,
    offset: i64,
    limits: &ReadLimits,
) -> Result<Option<ReadResult>, StorageError> {
    let Some(file) = seg.read_handle()? else {
        return Err(corrupt(
            &seg.log_path,
            "segment below the cache has no file",
        ));
    };
    let path = &seg.log_path;
    let limit = seg.written_size;
    let mut pos = seg.position_floor(offset);
    // Walk to the batch containing `offset` (at most ~one index interval).
    let first = loop {
        if pos >= limit {
            return Ok(None);
        }
        let h = read_header_at(&file, path, pos)?;
        if h.last_offset() >= offset {
            break h;
        }
        pos += h.total_size() as u64;
    };
    let start = pos;
    let first_len = first.total_size();
    if start + first_len as u64 > limit {
        return Err(corrupt(
            path,
            format!("batch at {start} runs past the written end"),
        ));
    }
    if !limits.admits(0, first.base_offset, first_len) {
        return Ok(Some(ReadResult::default()));
    }
    let budget_end = start
        .saturating_add(limits.max_bytes as u64)
        .max(start + first_len as u64)
        .min(limit);
    let mut end = start + first_len as u64;
    let mut last = first.last_offset();
    // Jump over whole batches using the index, then walk the rest.
    let mut walk_from = end;
    let rel_end = (limits.end_offset - seg.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
    if let Some(k) = seg
        .idx
        .index
        .last_within(budget_end.min(u64::from(u32::MAX)) as u32, rel_end)
    {
        // Start one entry early so at least one batch is walked and `last` is known.
        let k = k.saturating_sub(1);
        let (_, p) = seg.idx.index.get(k);
        if u64::from(p) > end {
            walk_from = u64::from(p);
        }
    }
    let (walk_end, walk_last) =
        walk_forward(&file, path, walk_from, budget_end, limits.end_offset)?;
    match walk_last {
        Some(l) => {
            end = walk_end;
            last = l;
        }
        None if walk_from > end => {
            // Defensive: the jump found nothing to walk; walk from the first batch.
            let (e2, l2) = walk_forward(&file, path, end, budget_end, limits.end_offset)?;
            if let Some(l2) = l2 {
                end = e2;
                last = l2;
            }
        }
        None => {}
    }
    let len = end - start;
    Ok(Some(ReadResult {
        chunks: vec![Chunk::File {
            file,
            segment: seg.reader.clone(),
            position: start,
            len,
        }],
        bytes: len as usize,
        first_offset: Some(first.base_offset),
        last_offset: Some(last),
    }))
}

/// Walks whole batches from `pos` while they end by `budget_end` and start
/// below `end_offset`. Returns (end position, last offset of the last batch).
fn walk_forward(
    file: &File,
    path: &Path,
    mut pos: u64,
    budget_end: u64,
    end_offset: i64,
) -> Result<(u64, Option<i64>), StorageError> {
    let mut last = None;
    while pos + BatchHeader::SIZE as u64 <= budget_end {
        let h = read_header_at(file, path, pos)?;
        let next = pos + h.total_size() as u64;
        if h.base_offset >= end_offset || next > budget_end {
            break;
        }
        pos = next;
        last = Some(h.last_offset());
    }
    Ok((pos, last))
}

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
