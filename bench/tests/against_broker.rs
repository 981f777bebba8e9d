//! Black-box: the `fjord-bench` binary against the release `fjord` broker
//! binary (`target/release/fjord`, or `$FJORD_BIN`). Checks that the counts
//! agree (records sent = acked = consumed) and that the JSON and report
//! files are written; asserts nothing about timing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fjord_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FJORD_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/fjord");
    assert!(
        p.exists(),
        "broker binary {} missing: run `cargo build --release -p fjord` or set FJORD_BIN",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("addr").port()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fjord-bench-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn broker_args(data: &Path, kafka: u16, admin: u16) -> Vec<String> {
    vec![
        "serve".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--kafka-addr".into(),
        format!("127.0.0.1:{kafka}"),
        "--advertised-kafka-addr".into(),
        format!("127.0.0.1:{kafka}"),
        "--admin-addr".into(),
        format!("127.0.0.1:{admin}"),
        "--shards".into(),
        "1".into(),
        "--node-id".into(),
        "1".into(),
    ]
}

struct Broker {
    child: Child,
    kafka: u16,
    dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn health_ok(admin: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

fn start_broker(tag: &str) -> Broker {
    let dir = temp_dir(tag);
    let (kafka, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("broker.log")).expect("log");
    let child = Command::new(fjord_bin())
        .args(broker_args(&dir.join("data"), kafka, admin))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start fjord");
    let mut b = Broker { child, kafka, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health_ok(admin) {
        if let Ok(Some(status)) = b.child.try_wait() {
            let log = std::fs::read_to_string(b.dir.join("broker.log")).unwrap_or_default();
            panic!("fjord exited with {status} before it was healthy:\n{log}");
        }
        assert!(Instant::now() < deadline, "fjord not healthy within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    b
}

/// Runs fjord-bench with `args` plus `--json`, returns the parsed JSON.
fn bench(args: &[&str], json: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fjord-bench"))
        .args(args)
        .arg("--json")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run fjord-bench");
    assert!(
        out.status.success(),
        "fjord-bench {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| metric | value |") || stdout.contains("# fjord-bench compare"),
        "no Markdown table:\n{stdout}"
    );
    let text = std::fs::read_to_string(json).expect("json written");
    serde_json::from_str(&text).expect("valid json")
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn has_result_keys(v: &serde_json::Value) {
    for k in ["records", "records_per_sec", "mb_per_sec"] {
        assert!(v[k].is_number(), "{k} missing");
    }
    for k in ["p50", "p99", "p999", "max"] {
        assert!(v["latency_ms"][k].is_number(), "latency_ms.{k} missing");
    }
}

// Given a fresh broker, when the bench produces, consumes and runs e2e, every record sent is acked and consumed exactly once.
#[test]
fn given_fresh_broker_when_produce_consume_e2e_should_agree_on_counts() {
    let b = start_broker("counts");
    let boot = format!("127.0.0.1:{}", b.kafka);
    let j = |name: &str| b.dir.join(name);

    let p = bench(
        &[
            "produce",
            "--bootstrap",
            &boot,
            "--topic",
            "it-counts",
            "--partitions",
            "3",
            "--records",
            "20000",
            "--producers",
            "2",
            "--acks",
            "1",
        ],
        &j("p.json"),
    );
    has_result_keys(&p);
    assert_eq!(n(&p, "records_sent"), 20_000);
    assert_eq!(n(&p, "records_acked"), 20_000);
    assert_eq!(n(&p, "records_failed"), 0);
    assert_eq!(n(&p, "records"), 20_000);

    let c = bench(
        &[
            "consume",
            "--bootstrap",
            &boot,
            "--topic",
            "it-counts",
            "--partitions",
            "3",
            "--records",
            "20000",
            "--consumers",
            "2",
            "--duration-sec",
            "60",
        ],
        &j("c.json"),
    );
    has_result_keys(&c);
    assert_eq!(n(&c, "records_consumed"), 20_000);

    let e = bench(
        &[
            "e2e",
            "--bootstrap",
            &boot,
            "--topic",
            "it-e2e",
            "--partitions",
            "2",
            "--records",
            "5000",
            "--rate",
            "5000",
            "--acks",
            "all",
            "--compression",
            "gzip",
            "--record-size",
            "50..300",
        ],
        &j("e.json"),
    );
    has_result_keys(&e);
    assert_eq!(n(&e, "records_sent"), 5_000);
    assert_eq!(n(&e, "records_acked"), 5_000);
    assert_eq!(n(&e, "records_consumed"), 5_000);
    assert_eq!(
        e["latency_ms"]["count"].as_u64(),
        Some(5_000),
        "one e2e sample per record"
    );
}

// Given acks=0, when the bench produces, the records it sent are all readable afterwards.
#[test]
fn given_acks_zero_when_produce_should_be_readable() {
    let b = start_broker("acks0");
    let boot = format!("127.0.0.1:{}", b.kafka);
    let p = bench(
        &[
            "produce",
            "--bootstrap",
            &boot,
            "--topic",
            "it-acks0",
            "--records",
            "3000",
            "--acks",
            "0",
            "--compression",
            "snappy",
        ],
        &b.dir.join("p.json"),
    );
    assert_eq!(n(&p, "records_sent"), 3_000);
    let c = bench(
        &[
            "consume",
            "--bootstrap",
            &boot,
            "--topic",
            "it-acks0",
            "--records",
            "3000",
            "--duration-sec",
            "30",
        ],
        &b.dir.join("c.json"),
    );
    assert_eq!(n(&c, "records_consumed"), 3_000);
}

// Given a start command, when compare runs, it starts and stops the broker itself and writes the report folder.
#[test]
fn given_cmd_target_when_compare_should_write_report_folder() {
    let dir = temp_dir("compare");
    let (kafka, admin) = (free_port(), free_port());
    let cmd = format!(
        "{} {}",
        fjord_bin().display(),
        broker_args(Path::new("{dir}"), kafka, admin).join(" ")
    );
    let out = dir.join("report");
    let v = bench(
        &[
            "compare",
            "--target",
            &format!("fjord1=cmd:{cmd}"),
            "--bootstrap",
            &format!("127.0.0.1:{kafka}"),
            "--repeat",
            "2",
            "--kind",
            "produce",
            "--records",
            "5000",
            "--out",
            out.to_str().expect("utf8 path"),
        ],
        &dir.join("compare.json"),
    );
    let runs = v["targets"][0]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(n(r, "records_acked"), 5_000);
        assert!(
            r["broker"]["peak_rss_mib"]
                .as_f64()
                .is_some_and(|m| m > 0.0),
            "broker usage measured for a started target"
        );
    }
    for f in ["report.md", "report.json", "throughput.png", "latency.png"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
