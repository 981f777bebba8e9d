//! Measurement: the process clock, latency histograms and their summaries,
//! live counters for the progress line, this process's CPU (getrusage) and a
//! local broker's CPU and peak RSS (/proc/PID/stat, /proc/PID/status).
//!
//! Histograms are owned by the task that records into them and merged at the
//! end; the only shared pieces are atomic counters and one interval histogram
//! behind a mutex that collectors lock once per response (not per record).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Highest latency a histogram tracks (µs); larger values are clamped.
pub const LATENCY_US_MAX: u64 = 600_000_000;
const SIGFIG: u8 = 3;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the process clock's epoch (monotonic). Producer and
/// consumer run in one process, so this is the e2e clock.
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Converts an `Instant` to the process clock.
pub fn instant_us(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_micros() as u64
}

/// A latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. LATENCY_US_MAX with 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Records a latency, clamping to the tracked range.
pub fn record_us(h: &mut Histogram<u64>, value_us: u64) {
    let v = value_us.clamp(1, LATENCY_US_MAX);
    // In range by the clamp; record only fails out of range.
    let _ = h.record(v);
}

/// Percentile summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencySummary {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us_to_ms(h.value_at_quantile(0.50)),
            p90: us_to_ms(h.value_at_quantile(0.90)),
            p99: us_to_ms(h.value_at_quantile(0.99)),
            p999: us_to_ms(h.value_at_quantile(0.999)),
            p9999: us_to_ms(h.value_at_quantile(0.9999)),
            max: us_to_ms(h.max()),
        }
    }
}

/// Percentiles at which latency curves are sampled (for charts and JSON).
pub const CURVE_PERCENTILES: [f64; 11] = [
    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// (percentile, ms) points of a latency curve.
pub fn latency_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|p| {
            let v = if *p >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(p / 100.0)
            };
            (*p, us_to_ms(v))
        })
        .collect()
}

/// Counters shared by all tasks of a run, read by the progress line.
pub struct Live {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub failed: AtomicU64,
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Latency since the last progress line (ack latency, or e2e in e2e runs).
    pub interval: Mutex<Histogram<u64>>,
}

impl Live {
    pub fn new() -> Live {
        Live {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            interval: Mutex::new(new_histogram()),
        }
    }

    /// Merges one response's latencies into the interval histogram.
    pub fn add_interval(&self, h: &Histogram<u64>) {
        if let Ok(mut g) = self.interval.lock() {
            let _ = g.add(h);
        }
    }

    fn take_interval_p99_ms(&self) -> Option<f64> {
        let mut g = self.interval.lock().ok()?;
        if g.is_empty() {
            return None;
        }
        let p99 = us_to_ms(g.value_at_quantile(0.99));
        g.reset();
        Some(p99)
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

/// Prints one progress line per second to stderr until `stop` resolves.
pub async fn progress_loop(
    live: std::sync::Arc<Live>,
    label: &'static str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_acked, mut last_bytes, mut last_consumed, mut last_cbytes) =
        (0u64, 0u64, 0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let acked = live.acked.load(Ordering::Relaxed);
        let bytes = live.acked_bytes.load(Ordering::Relaxed);
        let consumed = live.consumed.load(Ordering::Relaxed);
        let cbytes = live.consumed_bytes.load(Ordering::Relaxed);
        let p99 = live
            .take_interval_p99_ms()
            .map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"));
        let mut line = format!("[{:>4}s] {label}", start.elapsed().as_secs());
        if acked > 0 || live.sent.load(Ordering::Relaxed) > 0 {
            line += &format!(
                " produced {:>9} rec/s {:>8.2} MiB/s",
                acked - last_acked,
                (bytes - last_bytes) as f64 / MIB
            );
        }
        if consumed > 0 {
            line += &format!(
                " consumed {:>9} rec/s {:>8.2} MiB/s",
                consumed - last_consumed,
                (cbytes - last_cbytes) as f64 / MIB
            );
        }
        line += &format!(" p99 {p99}");
        let failed = live.failed.load(Ordering::Relaxed);
        if failed > 0 {
            line += &format!(" failed {failed}");
        }
        eprintln!("{line}");
        (last_acked, last_bytes, last_consumed, last_cbytes) = (acked, bytes, consumed, cbytes);
    }
}

/// Bytes in a MiB: every "MB" figure of this tool is MiB (2^20 bytes).
pub const MIB: f64 = 1024.0 * 1024.0;

/// CPU time used by this process so far (user + system), from getrusage.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Errors reading /proc for a broker process.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("read /proc/{pid}/{file}: {source}")]
    Read {
        pid: u32,
        file: &'static str,
        source: std::io::Error,
    },
    #[error("unexpected format in /proc/{pid}/{file}")]
    Format { pid: u32, file: &'static str },
}

/// CPU time (utime + stime) of a process, from /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> Result<Duration, ProcError> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|source| ProcError::Read {
            pid,
            file: "stat",
            source,
        })?;
    parse_proc_stat_cpu(&text, clock_ticks_per_sec()).ok_or(ProcError::Format { pid, file: "stat" })
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime is field 14 and stime field 15 of /proc/PID/stat; the command name
/// (field 2) is in parentheses and may contain spaces, so count after ')'.
pub fn parse_proc_stat_cpu(text: &str, ticks_per_sec: u64) -> Option<Duration> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ')' the first field is field 3 (state); utime = field 14 -> index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(
        Duration::from_secs(ticks / ticks_per_sec)
            + Duration::from_nanos((ticks % ticks_per_sec) * 1_000_000_000 / ticks_per_sec),
    )
}

/// Peak resident set size (VmHWM) in KiB, from /proc/PID/status.
pub fn proc_peak_rss_kib(pid: u32) -> Result<u64, ProcError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|source| {
        ProcError::Read {
            pid,
            file: "status",
            source,
        }
    })?;
    parse_vm_hwm_kib(&text).ok_or(ProcError::Format {
        pid,
        file: "status",
    })
}

pub fn parse_vm_hwm_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Broker resource use over a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BrokerUsage {
    pub pid: u32,
    pub cpu_sec: f64,
    /// Broker CPU seconds per GiB of payload moved (produced + consumed).
    pub cpu_sec_per_gib: f64,
    pub peak_rss_mib: f64,
}

/// Samples a broker's CPU at the start of a run.
pub struct BrokerProbe {
    pid: u32,
    cpu_start: Duration,
}

impl BrokerProbe {
    pub fn start(pid: u32) -> Result<BrokerProbe, ProcError> {
        Ok(BrokerProbe {
            pid,
            cpu_start: proc_cpu(pid)?,
        })
    }

    pub fn finish(&self, bytes_moved: u64) -> Result<BrokerUsage, ProcError> {
        let cpu = proc_cpu(self.pid)?
            .saturating_sub(self.cpu_start)
            .as_secs_f64();
        let gib = bytes_moved as f64 / (1024.0 * MIB);
        Ok(BrokerUsage {
            pid: self.pid,
            cpu_sec: cpu,
            cpu_sec_per_gib: if gib > 0.0 { cpu / gib } else { 0.0 },
            peak_rss_mib: proc_peak_rss_kib(self.pid)? as f64 / 1024.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves percentiles come out of the histogram in milliseconds at the right ranks.
    #[test]
    fn summary_percentiles_in_ms() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            record_us(&mut h, v * 10); // 10 µs .. 100 ms
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 10_000);
        assert!((s.p50 - 50.0).abs() / 50.0 < 0.002, "p50 {}", s.p50);
        assert!((s.p99 - 99.0).abs() / 99.0 < 0.002, "p99 {}", s.p99);
        assert!((s.p999 - 99.9).abs() / 99.9 < 0.002, "p999 {}", s.p999);
        assert!((s.max - 100.0).abs() / 100.0 < 0.002, "max {}", s.max);
        assert!(
            s.p50 <= s.p90
                && s.p90 <= s.p99
                && s.p99 <= s.p999
                && s.p999 <= s.p9999
                && s.p9999 <= s.max
        );
    }

    // Proves an empty histogram summarises to zeros rather than panicking.
    #[test]
    fn empty_summary_is_zero() {
        let s = LatencySummary::from_histogram(&new_histogram());
        assert_eq!(s, LatencySummary::default());
        assert!(latency_curve(&new_histogram()).is_empty());
    }

    // Proves out-of-range values are clamped, not dropped.
    #[test]
    fn record_clamps() {
        let mut h = new_histogram();
        record_us(&mut h, 0);
        record_us(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= LATENCY_US_MAX);
    }

    // Proves the latency curve is monotonic and ends at the max.
    #[test]
    fn curve_is_monotonic() {
        let mut h = new_histogram();
        for v in [5u64, 50, 500, 5_000, 50_000] {
            for _ in 0..100 {
                record_us(&mut h, v);
            }
        }
        let c = latency_curve(&h);
        assert_eq!(c.len(), CURVE_PERCENTILES.len());
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!((c.last().expect("points").1 - 50.0).abs() < 0.1);
    }

    // Proves /proc/PID/stat parsing survives a command name with spaces and parentheses.
    #[test]
    fn parses_proc_stat() {
        let line = "1234 (fjord (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 100 1000 10";
        assert_eq!(parse_proc_stat_cpu(line, 100), Some(Duration::from_secs(4)));
        assert_eq!(parse_proc_stat_cpu("garbage", 100), None);
    }

    // Proves VmHWM is read in KiB from /proc/PID/status text.
    #[test]
    fn parses_vm_hwm() {
        let text = "Name:\tfjord\nVmPeak:\t  2000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_vm_hwm_kib(text), Some(51_200));
        assert_eq!(parse_vm_hwm_kib("Name: x\n"), None);
    }

    // Proves this process's own CPU and /proc reading work on this machine.
    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(proc_cpu(pid).is_ok());
        assert!(proc_peak_rss_kib(pid).expect("status") > 0);
        assert!(self_cpu() > Duration::ZERO);
    }
}
