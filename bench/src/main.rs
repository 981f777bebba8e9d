//! `fjord-bench` command line: parses flags, builds the tokio runtime, runs
//! one subcommand, prints the Markdown table on stdout and writes `--json`.

use clap::{Parser, Subcommand};
use fjord_bench::compare::{compare, parse_target};
use fjord_bench::limits::{measure, LimitsPlan};
use fjord_bench::report::write_json;
use fjord_bench::run::{run, Kind};
use fjord_bench::scenario::Scenario;
use fjord_bench::workload::Workload;
use fjord_bench::BenchError;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fjord-bench",
    version,
    about = "Kafka load generator and benchmark runner (speaks the Kafka protocol to any broker)"
)]
struct Cli {
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Target {
    /// Broker bootstrap address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Pid of a local broker: report its CPU s/GiB and peak RSS.
    #[arg(long)]
    broker_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Producers only: publish-to-ack latency and throughput.
    Produce {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        workload: Workload,
    },
    /// Consumers only (explicit partition assignment): throughput and fetch round trip.
    Consume {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        workload: Workload,
    },
    /// Producers and consumers together: publish-to-consume latency.
    E2e {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        workload: Workload,
    },
    /// Run a scenario file (bench/scenarios/*.toml).
    Run {
        #[arg(long)]
        scenario: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Override the scenario's measured duration (seconds).
        #[arg(long = "duration-sec")]
        duration_sec: Option<f64>,
        /// Override the scenario's warm-up (seconds).
        #[arg(long = "warmup-sec")]
        warmup_sec: Option<f64>,
        /// Override the scenario's topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// This machine's ceilings: O_DIRECT disk writes (with/without fdatasync) and loopback TCP.
    Limits {
        /// Directory to write the test file in (use the broker's data disk).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// MiB written for the plain O_DIRECT figure.
        #[arg(long, default_value_t = 512)]
        disk_mib: usize,
        /// MiB written for the fdatasync-per-chunk figure.
        #[arg(long, default_value_t = 64)]
        fdatasync_mib: usize,
        /// Write size in KiB (a multiple of 4).
        #[arg(long, default_value_t = 1024)]
        chunk_kib: usize,
        /// MiB sent over loopback TCP.
        #[arg(long, default_value_t = 4096)]
        loopback_mib: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run one workload against several targets, repeated; write a report folder.
    Compare {
        /// name=HOST:PORT (running) or name=cmd:<command> (started per run, listening on --bootstrap; {dir} = fresh dir).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Where started targets listen.
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Workload kind when no --scenario is given.
        #[arg(long, value_enum, default_value = "produce")]
        kind: Kind,
        /// Take kind and workload from a scenario file instead of flags.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Report folder.
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        workload: Workload,
    },
}

fn main() {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fjord-bench: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = rt.block_on(dispatch(cli.cmd)) {
        eprintln!("fjord-bench: {e}");
        std::process::exit(1);
    }
}

async fn one_run(kind: Kind, target: &Target, workload: &Workload) -> Result<(), BenchError> {
    let result = run(kind, &target.bootstrap, workload, target.broker_pid).await?;
    println!("{}", result.to_markdown());
    if let Some(path) = &target.json {
        write_json(path, &result)?;
    }
    if result.records_failed > 0 {
        eprintln!(
            "fjord-bench: {} records failed: {:?}",
            result.records_failed, result.produce_errors
        );
    }
    Ok(())
}

async fn dispatch(cmd: Cmd) -> Result<(), BenchError> {
    match cmd {
        Cmd::Produce { target, workload } => one_run(Kind::Produce, &target, &workload).await,
        Cmd::Consume { target, workload } => one_run(Kind::Consume, &target, &workload).await,
        Cmd::E2e { target, workload } => one_run(Kind::E2e, &target, &workload).await,
        Cmd::Run {
            scenario,
            target,
            duration_sec,
            warmup_sec,
            topic,
        } => {
            let mut s = Scenario::load(&scenario)?;
            eprintln!("scenario {}: {}", s.name, s.description);
            if let Some(d) = duration_sec {
                s.workload.duration_sec = d;
            }
            if let Some(d) = warmup_sec {
                s.workload.warmup_sec = d;
            }
            if let Some(t) = topic {
                s.workload.topic = t;
            }
            one_run(s.kind, &target, &s.workload).await
        }
        Cmd::Limits {
            dir,
            disk_mib,
            fdatasync_mib,
            chunk_kib,
            loopback_mib,
            json,
        } => {
            let plan = LimitsPlan {
                dir,
                disk_mib,
                chunk_kib,
                fdatasync_mib,
                loopback_mib,
            };
            let limits = tokio::task::spawn_blocking(move || measure(&plan))
                .await
                .map_err(|e| BenchError::Task(e.to_string()))??;
            println!("{}", limits.to_markdown());
            if let Some(path) = json {
                write_json(&path, &limits)?;
            }
            Ok(())
        }
        Cmd::Compare {
            targets,
            bootstrap,
            repeat,
            kind,
            scenario,
            out,
            json,
            workload,
        } => {
            let targets = targets
                .iter()
                .map(|t| parse_target(t, &bootstrap))
                .collect::<Result<Vec<_>, _>>()?;
            let (kind, workload) = match scenario {
                Some(path) => {
                    let s = Scenario::load(&path)?;
                    (s.kind, s.workload)
                }
                None => (kind, workload),
            };
            let report = compare(kind, &workload, &targets, repeat.max(1), &out).await?;
            println!(
                "{}",
                std::fs::read_to_string(out.join("report.md")).unwrap_or_default()
            );
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            Ok(())
        }
    }
}
