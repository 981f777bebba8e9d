//! The log's writer: one task per log at a time that turns appended batches
//! into aligned O_DIRECT writes, seals rolled segments, creates segment
//! files and fdatasyncs for durability waiters (group commit); and the
//! rollback of unwritten data when a write fails. See `log.rs` for the data
//! path and invariants. Same shard as the log.

use super::*;

/// What the writer does next.
enum Action {
    Idle,
    Seal(i64),
    Create(i64),
    /// Open again the O_DIRECT handle of an existing unsealed segment that
    /// the shard's file budget closed.
    Reopen(i64),
    Write(WriteJob),
    Sync(i64, Vec<WriteHandle>),
}

struct WriteJob {
    segment_base: i64,
    dma: WriteHandle,
    /// Aligned file position the buffer starts at.
    position: u64,
    /// Last partial block already written; rewritten in front of the new data.
    prefix: Vec<u8>,
    pieces: Vec<Bytes>,
    new_bytes: u64,
    end_offset: i64,
}

impl Log {
    /// Starts the writer task unless it runs already.
    pub(super) fn kick(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.writer_running {
                return;
            }
            let has_work = st.pending_bytes > 0
                || (st.durable_wanted > st.durable_end && st.written_end > st.durable_end);
            if !has_work {
                return;
            }
            st.writer_running = true;
        }
        match self.me.upgrade() {
            Some(me) => {
                // The JoinHandle is not needed: the task reports through `progress`.
                drop(glommio::spawn_local(async move { me.writer_loop().await }).detach());
            }
            None => self.state.borrow_mut().writer_running = false,
        }
    }

    async fn writer_loop(self: Rc<Self>) {
        loop {
            match self.next_action() {
                Action::Idle => {
                    self.progress.notify_all();
                    return;
                }
                Action::Seal(base) => self.seal(base).await,
                Action::Create(base) => self.create_file(base).await,
                Action::Reopen(base) => self.reopen_file(base).await,
                Action::Write(job) => self.write(job).await,
                Action::Sync(target, files) => self.sync(target, files).await,
            }
            self.progress.notify_all();
            // Let appenders and readers run between I/Os on a busy shard.
            glommio::executor().yield_if_needed().await;
        }
    }

    fn next_action(&self) -> Action {
        let mut st = self.state.borrow_mut();
        if st.durable_wanted > st.durable_end && st.written_end > st.durable_end {
            // Every file with written data takes part in the sync.
            if let Some(closed) = st.segments.iter().find(|s| !s.sealed && s.written_size > 0 && s.dma.is_none()) {
                return Action::Reopen(closed.base_offset);
            }
            let files = st
                .segments
                .iter()
                .filter(|s| !s.sealed && s.written_size > 0)
                .filter_map(|s| s.dma.clone())
                .collect();
            return Action::Sync(st.written_end, files);
        }
        let Some(first) = st.first_pending() else {
            st.writer_running = false;
            return Action::Idle;
        };
        let target = st.cache[first].segment_base;
        if let Some(old) = st
            .segments
            .iter()
            .find(|s| !s.sealed && s.base_offset < target)
        {
            if old.dma.is_none() && old.reader.exists() {
                return Action::Reopen(old.base_offset);
            }
            return Action::Seal(old.base_offset);
        }
        let si = st
            .segment_index(target)
            .expect("cache entries point at live segments");
        let seg = &st.segments[si];
        let Some(dma) = seg.dma.clone() else {
            if seg.reader.exists() {
                return Action::Reopen(target);
            }
            return Action::Create(target);
        };
        self.files_referenced.set(true);
        let align = dma.alignment();
        let position = align_down(seg.written_size, align);
        let prefix = seg.tail_block.clone();
        debug_assert_eq!(position + prefix.len() as u64, seg.written_size);
        let mut pieces = Vec::new();
        let mut new_bytes = 0u64;
        let mut end_offset = st.written_end;
        for e in st.cache.range(first..) {
            let fits = new_bytes + e.bytes.len() as u64 <= WRITE_BYTES_MAX as u64;
            if e.segment_base != target || (!pieces.is_empty() && !fits) {
                break;
            }
            new_bytes += e.bytes.len() as u64;
            end_offset = e.end_offset;
            pieces.push(e.bytes.clone());
        }
        Action::Write(WriteJob {
            segment_base: target,
            dma,
            position,
            prefix,
            pieces,
            new_bytes,
            end_offset,
        })
    }

    async fn write(&self, job: WriteJob) {
        let align = job.dma.alignment();
        let data_len = job.prefix.len() as u64 + job.new_bytes;
        let buf_len = align_up(data_len, align) as usize;
        let mut buf = job.dma.alloc_dma_buffer(buf_len);
        let dst = buf.as_bytes_mut();
        let mut at = job.prefix.len();
        dst[..at].copy_from_slice(&job.prefix);
        for p in &job.pieces {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        dst[at..].fill(0);
        let new_written = job.position + data_len;
        let tail_from = (align_down(new_written, align) - job.position) as usize;
        let tail_block = dst[tail_from..at].to_vec();
        #[cfg(test)]
        if self.fail_next_write.take() {
            self.fail_pending(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected ENOSPC",
            ));
            return;
        }
        let started = std::time::Instant::now();
        let res = job.dma.write_at(buf, job.position).await;
        // A disk (or filesystem journal) stall shows here, not as a shard stall.
        if started.elapsed() >= SLOW_WRITE {
            tracing::warn!(dir = %self.dir.display(), ms = started.elapsed().as_millis() as u64, bytes = buf_len, "slow segment write");
        }
        let err = match res {
            Ok(n) if n == buf_len => None,
            Ok(n) => Some(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short O_DIRECT write: {n} of {buf_len} bytes"),
            )),
            Err(e) => Some(e.into()),
        };
        if let Some(e) = err {
            self.fail_pending(e);
            return;
        }
        let mut st = self.state.borrow_mut();
        let si = st
            .segment_index(job.segment_base)
            .expect("written segment exists");
        let seg = &mut st.segments[si];
        seg.written_size = new_written;
        seg.tail_block = tail_block;
        st.written_end = job.end_offset;
        st.pending_bytes -= job.new_bytes as usize;
        st.writes += 1;
        self.evict(&mut st);
        st.check_invariants();
    }

    /// fsyncs the directory if a segment file was created since the last
    /// time, on glommio's blocking pool: on the shard thread a directory
    /// fsync (a journal commit) stalled every partition of the shard for up
    /// to a second at each roll.
    async fn sync_dir_entries(&self) -> io::Result<()> {
        self.write_epochs_if_dirty().await?;
        if !self.state.borrow().dir_entry_pending {
            return Ok(());
        }
        let dir = self.dir.clone();
        glommio::executor().spawn_blocking(move || File::open(&dir)?.sync_all()).await?;
        self.state.borrow_mut().dir_entry_pending = false;
        Ok(())
    }

    async fn sync(&self, target: i64, files: Vec<WriteHandle>) {
        let mut result = self.sync_dir_entries().await;
        for f in &files {
            if result.is_err() {
                break;
            }
            let started = std::time::Instant::now();
            result = f.fdatasync().await.map_err(io::Error::from);
            crate::metrics::with_shard(|m| m.fsync.record(started.elapsed()));
        }
        if let Err(e) = result {
            let mut st = self.state.borrow_mut();
            tracing::error!(dir = %self.dir.display(), error = %e, "fdatasync failed");
            st.sync_error_gen += 1;
            st.last_error = Some((e.kind(), e.to_string()));
            // Waiters fail now; later ones ask again.
            st.durable_wanted = st.durable_end;
            return;
        }
        let mut st = self.state.borrow_mut();
        st.durable_end = st.durable_end.max(target);
        st.syncs += 1;
        st.check_invariants();
    }

    /// Creates the file of a segment that so far exists only in memory.
    async fn create_file(&self, base: i64) {
        let path = super::super::segment::segment_path(&self.dir, base, "log");
        match open_files::open_write(&path, true).await {
            Ok(dma) => {
                let mut st = self.state.borrow_mut();
                // The new directory entry is made durable before any offset in
                // this file counts as durable (`sync_dir_entries`).
                st.dir_entry_pending = true;
                let si = st.segment_index(base).expect("segment to create exists");
                st.segments[si].dma = Some(dma);
                st.segments[si].reader.set_exists();
                drop(st);
                self.track_write_handle();
            }
            Err(e) => self.fail_pending(e),
        }
    }

    /// Opens again the O_DIRECT handle the file budget closed. On failure
    /// (EMFILE, say) unwritten data rolls back and durability waiters fail,
    /// as for a failed write or sync.
    async fn reopen_file(&self, base: i64) {
        let path = super::super::segment::segment_path(&self.dir, base, "log");
        match open_files::open_write(&path, false).await {
            Ok(dma) => {
                let mut st = self.state.borrow_mut();
                let si = st.segment_index(base).expect("segment to reopen exists");
                st.segments[si].dma = Some(dma);
                drop(st);
                self.track_write_handle();
            }
            Err(e) => {
                {
                    let mut st = self.state.borrow_mut();
                    tracing::error!(dir = %self.dir.display(), error = %e, "reopening a segment for writing failed");
                    st.sync_error_gen += 1;
                    st.durable_wanted = st.durable_end;
                }
                self.fail_pending(e);
            }
        }
    }

    /// Finishes a segment left behind by a roll: fdatasync, truncate the zero
    /// padding, write the index files, close the O_DIRECT fd.
    async fn seal(&self, base: i64) {
        let (dma, written) = {
            let st = self.state.borrow();
            let si = st.segment_index(base).expect("segment to seal exists");
            (st.segments[si].dma.clone(), st.segments[si].written_size)
        };
        let result = match &dma {
            Some(dma) => finish_file(dma, written, true).await,
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => self.sync_dir_entries().await,
            e => e,
        };
        let result = match result {
            Ok(()) if dma.is_some() => {
                let files = {
                    let mut st = self.state.borrow_mut();
                    let si = st.segment_index(base).expect("segment to seal exists");
                    st.segments[si].index_files()
                };
                // Two file writes and fsyncs on glommio's blocking pool: done on
                // the shard thread they stalled every partition of the shard at
                // each roll (the acks=1 p99.9 spikes).
                glommio::executor()
                    .spawn_blocking(move || files.iter().try_for_each(|(path, bytes)| super::super::index::write_file_durably(path, bytes)))
                    .await
            }
            other => other,
        };
        let result = result.and_then(|()| {
            let mut st = self.state.borrow_mut();
            let si = st.segment_index(base).expect("segment to seal exists");
            let seg = &mut st.segments[si];
            seg.dma = None;
            seg.sealed = true;
            let end = seg.next_offset;
            st.durable_end = st.durable_end.max(end);
            st.check_invariants();
            Ok(())
        });
        if let Err(e) = result {
            self.fail_pending(e);
            return;
        }
        if let Some(dma) = dma {
            if let Err(e) = open_files::close_write(dma).await {
                tracing::warn!(dir = %self.dir.display(), error = %e, "closing sealed segment");
            }
        }
    }

    /// A write failed: drop everything unwritten, undo its index entries and
    /// offsets, and fail its waiters. The next append reuses the offsets.
    fn fail_pending(&self, e: io::Error) {
        let mut st = self.state.borrow_mut();
        tracing::error!(dir = %self.dir.display(), error = %e, "log write failed; rolling back");
        st.rollback_gen += 1;
        st.last_error = Some((e.kind(), e.to_string()));
        let Some(first) = st.first_pending() else {
            return;
        };
        let (seg_base, mark, max_before) = {
            let e = &st.cache[first];
            (e.segment_base, e.mark, e.log_max_ts_before)
        };
        let dropped: usize = st.cache.range(first..).map(|e| e.bytes.len()).sum();
        st.cache.truncate(first);
        st.cache_bytes.sub(dropped);
        st.pending_bytes = 0;
        let si = st.segment_index(seg_base).expect("pending segment exists");
        for later in st.segments.drain(si + 1..) {
            assert!(
                later.dma.is_none() && later.written_size == 0,
                "later segments hold no data"
            );
        }
        st.segments[si].restore(&mark);
        st.log_end = st.written_end;
        st.max_ts = max_before;
        st.durable_wanted = st.durable_wanted.min(st.log_end);
        st.check_invariants();
    }
}

/// Cuts the zero padding of the last DMA write and, when `sync`, makes the
/// new size durable (else the caller syncs the file system later).
pub(super) async fn finish_file(dma: &glommio::io::DmaFile, logical_size: u64, sync: bool) -> io::Result<()> {
    dma.truncate(logical_size).await?;
    if sync {
        dma.fdatasync().await?;
    }
    Ok(())
}
