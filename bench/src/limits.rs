//! `fjord-bench limits`: this machine's ceilings, measured in the same run
//! as the broker figures so those can be read as fractions of them.
//!
//! - Sequential O_DIRECT write bandwidth into a file under `--dir`: once with
//!   a single fdatasync at the end, once with fdatasync after every chunk.
//! - Sequential O_DIRECT read bandwidth of that file in 2 MiB reads (Fjord's
//!   read-ahead unit): the denominator of a cold consume. The page cache
//!   holds none of it (written with O_DIRECT, read with O_DIRECT).
//! - Loopback TCP bandwidth: one thread writes, another reads, over 127.0.0.1.
//!
//! Runs on plain OS threads (no runtime); the test file is removed after.

use crate::stats::MIB;
use crate::BenchError;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// O_DIRECT needs buffers and sizes aligned to the logical block size;
/// 4096 covers every device we meet.
pub const DIRECT_ALIGN: usize = 4096;

/// Parameters of the limits run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsPlan {
    pub dir: PathBuf,
    pub disk_mib: usize,
    pub chunk_kib: usize,
    pub fdatasync_mib: usize,
    pub loopback_mib: usize,
}

/// What `limits` writes to JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub disk_direct_mb_per_sec: f64,
    /// Sequential O_DIRECT read (0 in reports from before it was measured).
    #[serde(default)]
    pub disk_direct_read_mb_per_sec: f64,
    pub disk_direct_fdatasync_mb_per_sec: f64,
    /// p50 of one chunk write plus its fdatasync, ms.
    pub fdatasync_chunk_p50_ms: f64,
    pub loopback_mb_per_sec: f64,
    pub disk_mib: usize,
    pub fdatasync_mib: usize,
    pub chunk_kib: usize,
    pub loopback_mib: usize,
    pub dir: String,
}

impl Limits {
    pub fn to_markdown(&self) -> String {
        format!(
            "| limit | MiB/s |\n|---|---|\n| O_DIRECT sequential write ({} MiB, {} KiB chunks, one fdatasync) | {:.1} |\n| O_DIRECT sequential read (the same file, {} KiB reads) | {:.1} |\n| O_DIRECT write + fdatasync per chunk ({} MiB; chunk+sync p50 {:.3} ms) | {:.1} |\n| loopback TCP ({} MiB) | {:.1} |\n",
            self.disk_mib,
            self.chunk_kib,
            self.disk_direct_mb_per_sec,
            READ_CHUNK_BYTES / 1024,
            self.disk_direct_read_mb_per_sec,
            self.fdatasync_mib,
            self.fdatasync_chunk_p50_ms,
            self.disk_direct_fdatasync_mb_per_sec,
            self.loopback_mib,
            self.loopback_mb_per_sec
        )
    }
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        assert!(
            len > 0 && len.is_multiple_of(DIRECT_ALIGN),
            "O_DIRECT buffer size must be a positive multiple of {DIRECT_ALIGN}"
        );
        let layout =
            std::alloc::Layout::from_size_align(len, DIRECT_ALIGN).expect("aligned layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation of {len} bytes failed");
        AlignedBuf { ptr, layout }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and uniquely owned.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn fdatasync(f: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: the fd is open for the lifetime of `f`.
    if unsafe { libc::fdatasync(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads of the O_DIRECT read measurement: Fjord's read-ahead unit.
const READ_CHUNK_BYTES: usize = 2 << 20;

/// Reads the file at `path` sequentially with O_DIRECT; returns MiB/s.
fn direct_read(path: &Path) -> Result<f64, BenchError> {
    let mut buf = AlignedBuf::new(READ_CHUNK_BYTES);
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(io_err(path))?;
    let start = Instant::now();
    let mut total = 0usize;
    loop {
        let n = f.read(buf.as_mut_slice()).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(total as f64 / MIB / secs)
}

/// Writes `total_mib` sequentially with O_DIRECT; returns (MiB/s, per-chunk ms samples).
/// The file stays when `keep` (else it is removed).
fn direct_write(
    path: &Path,
    total_mib: usize,
    chunk_kib: usize,
    sync_each: bool,
    keep: bool,
) -> Result<(f64, Vec<f64>), BenchError> {
    let chunk = chunk_kib * 1024;
    let mut buf = AlignedBuf::new(chunk);
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(io_err(path))?;
    let chunks = (total_mib * 1024 * 1024).div_ceil(chunk);
    let mut samples = Vec::with_capacity(if sync_each { chunks } else { 0 });
    let start = Instant::now();
    for _ in 0..chunks {
        let t = Instant::now();
        f.write_all(buf.as_slice()).map_err(io_err(path))?;
        if sync_each {
            fdatasync(&f).map_err(io_err(path))?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    if !sync_each {
        fdatasync(&f).map_err(io_err(path))?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    if !keep {
        let _ = std::fs::remove_file(path);
    }
    Ok(((chunks * chunk) as f64 / MIB / secs, samples))
}

/// Loopback TCP: a writer thread blasts `total_mib` to a reader thread.
pub fn loopback(total_mib: usize) -> Result<f64, BenchError> {
    let lerr = |source| BenchError::Io {
        path: "127.0.0.1 loopback".into(),
        source,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(lerr)?;
    let addr = listener.local_addr().map_err(lerr)?;
    let total = total_mib * 1024 * 1024;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got += n;
        }
    });
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).map_err(lerr)?;
    let buf = vec![0x42u8; 256 * 1024];
    let mut sent = 0;
    while sent < total {
        let n = (total - sent).min(buf.len());
        s.write_all(&buf[..n]).map_err(lerr)?;
        sent += n;
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| BenchError::Task("loopback reader panicked".into()))?
        .map_err(lerr)?;
    let secs = start.elapsed().as_secs_f64();
    if got != total {
        return Err(BenchError::Task(format!(
            "loopback: sent {total} bytes, received {got}"
        )));
    }
    Ok(got as f64 / MIB / secs)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs all three measurements.
pub fn measure(plan: &LimitsPlan) -> Result<Limits, BenchError> {
    if plan.chunk_kib == 0 || !(plan.chunk_kib * 1024).is_multiple_of(DIRECT_ALIGN) {
        return Err(BenchError::Config(format!(
            "chunk-kib must be a positive multiple of {}",
            DIRECT_ALIGN / 1024
        )));
    }
    std::fs::create_dir_all(&plan.dir).map_err(io_err(&plan.dir))?;
    let path = plan
        .dir
        .join(format!(".fjord-bench-limits-{}", std::process::id()));
    eprintln!(
        "limits: O_DIRECT write of {} MiB in {}",
        plan.disk_mib,
        plan.dir.display()
    );
    let (direct, _) = direct_write(&path, plan.disk_mib, plan.chunk_kib, false, true)?;
    eprintln!("limits: O_DIRECT read of the same {} MiB", plan.disk_mib);
    let read = direct_read(&path);
    let _ = std::fs::remove_file(&path);
    let read = read?;
    eprintln!(
        "limits: O_DIRECT write + fdatasync per {} KiB chunk, {} MiB",
        plan.chunk_kib, plan.fdatasync_mib
    );
    let (synced, mut samples) = direct_write(&path, plan.fdatasync_mib, plan.chunk_kib, true, false)?;
    eprintln!("limits: loopback TCP, {} MiB", plan.loopback_mib);
    let lo = loopback(plan.loopback_mib)?;
    Ok(Limits {
        disk_direct_mb_per_sec: direct,
        disk_direct_read_mb_per_sec: read,
        disk_direct_fdatasync_mb_per_sec: synced,
        fdatasync_chunk_p50_ms: median(&mut samples),
        loopback_mb_per_sec: lo,
        disk_mib: plan.disk_mib,
        fdatasync_mib: plan.fdatasync_mib,
        chunk_kib: plan.chunk_kib,
        loopback_mib: plan.loopback_mib,
        dir: plan.dir.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the three ceilings are measured and positive on a small run (no timing asserted).
    #[test]
    fn small_limits_run() {
        let dir =
            std::env::temp_dir().join(format!("fjord-bench-limits-test-{}", std::process::id()));
        // Some filesystems (tmpfs) refuse O_DIRECT; then fall back to the target dir.
        let dir = if std::fs::create_dir_all(&dir).is_ok()
            && direct_write(&dir.join("probe"), 1, 64, false, false).is_ok()
        {
            dir
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/limits-test")
        };
        let plan = LimitsPlan {
            dir: dir.clone(),
            disk_mib: 4,
            chunk_kib: 64,
            fdatasync_mib: 1,
            loopback_mib: 16,
        };
        let l = measure(&plan).expect("limits");
        assert!(l.disk_direct_mb_per_sec > 0.0);
        assert!(l.disk_direct_read_mb_per_sec > 0.0);
        assert!(l.disk_direct_fdatasync_mb_per_sec > 0.0);
        assert!(l.loopback_mb_per_sec > 0.0);
        let v = serde_json::to_value(&l).expect("json");
        for k in [
            "disk_direct_mb_per_sec",
            "disk_direct_read_mb_per_sec",
            "disk_direct_fdatasync_mb_per_sec",
            "loopback_mb_per_sec",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
