//! `fjord topic|group|cluster|offsets`: admin commands in the spirit of rpk,
//! speaking the Kafka protocol to any broker (Fjord or Apache Kafka), and the
//! small blocking Kafka client they are built on ([`client`], [`ops`],
//! [`records`]), which the broker's admin HTTP can reuse.
//!
//! Runs on the calling thread (plus one stdin reader thread for `topic
//! produce`); touches nothing of the broker.

pub mod client;
pub mod error;
pub mod ops;
pub mod records;

mod cluster;
mod consume;
mod group;
mod output;
mod produce;
mod topic;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use client::{Client, ClientConfig, Connection};
pub use error::{Error, Result};
use output::{Format, Out};

/// The lines `fjord --help` shows for these commands.
pub const COMMANDS_HELP: &str = concat!(
    "  fjord topic create|list|describe|delete|alter-config|add-partitions|produce|consume\n",
    "  fjord group list|describe|seek|delete\n",
    "  fjord cluster info|health|unregister\n",
    "  fjord offsets TOPIC\n",
    "      Admin commands over the Kafka protocol (any Kafka broker). Common flags:\n",
    "      --brokers host:port[,host:port] (env FJORD_BROKERS), --format text|json,\n",
    "      --timeout 10s. `fjord <command> --help` for each.\n",
);

/// The first words that [`run`] handles.
pub const COMMANDS: &[&str] = &["topic", "group", "cluster", "offsets"];
/// The flags every command takes, which may also come before the command word.
const GLOBAL_FLAGS: &[&str] = &["--brokers", "--format", "--timeout"];

/// Whether `args` (without the program name) are one of these commands:
/// the first word after any global flags (`--brokers X topic list`) is one of [`COMMANDS`].
pub fn is_command(args: &[String]) -> bool {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if GLOBAL_FLAGS.contains(&a.as_str()) {
            i += 2;
        } else if GLOBAL_FLAGS.iter().any(|f| a.strip_prefix(f).is_some_and(|rest| rest.starts_with('='))) {
            i += 1;
        } else {
            return COMMANDS.contains(&a.as_str());
        }
    }
    false
}

#[derive(Parser, Debug)]
#[command(name = "fjord", about = "Fjord admin commands over the Kafka protocol", disable_version_flag = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Brokers to bootstrap from, comma separated.
    #[arg(
        long,
        global = true,
        env = "FJORD_BROKERS",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,...]"
    )]
    brokers: String,
    /// Output: aligned tables, or JSON (one document; one line per record for consume).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Timeout of each network operation and of retries (e.g. 10s, 500ms).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list, describe, delete, configure, produce to and consume from topics.
    #[command(subcommand)]
    Topic(topic::TopicCmd),
    /// List, describe, seek (reset offsets of) and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCmd),
    /// Cluster id, controller, brokers, and health.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Earliest and latest offsets of each partition of a topic.
    Offsets(cluster::OffsetsArgs),
}

/// What a command reports back besides its output.
pub(crate) enum Outcome {
    Ok,
    /// Some items failed (already reported on stderr), or the cluster is unhealthy.
    Failed,
}

/// Runs `fjord <args>` where `args[0]` is one of [`COMMANDS`]. Help and usage
/// errors are printed by the argument parser; every other error is one line
/// on stderr and a non-zero exit code.
pub fn run(args: Vec<String>) -> ExitCode {
    let cli = match Cli::try_parse_from(std::iter::once("fjord".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let mut out = Out::new(cli.global.format);
    let result = dispatch(&cli, &mut out);
    let flushed = out.flush();
    match flushed.and(result) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        // A reader that went away (`| head`) is not an error worth a message.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord: {e}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: &Cli, out: &mut Out) -> Result<Outcome> {
    let config = ClientConfig::new(&cli.global.brokers, cli.global.timeout);
    let mut client = Client::connect(config)?;
    match &cli.command {
        Command::Topic(c) => topic::run(c, &mut client, out),
        Command::Group(c) => group::run(c, &mut client, out),
        Command::Cluster(c) => cluster::run(c, &mut client, out),
        Command::Offsets(a) => cluster::offsets(a, &mut client, out),
    }
}

/// `10s`, `500ms`, `2m`, or plain seconds (`10`, `1.5`).
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("'{s}' is not a duration (e.g. 10s, 500ms)"))?;
    let secs = v * scale;
    if !(secs > 0.0 && secs < 86_400.0 * 365.0) {
        return Err(format!("'{s}' must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `key=value`.
pub(crate) fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not key=value")),
    }
}

/// A position in a partition: `start`, `end`, an offset, or `@timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Start,
    End,
    Offset(i64),
    Timestamp(i64),
}

pub(crate) fn parse_position(s: &str) -> std::result::Result<Position, String> {
    match s {
        "start" | "oldest" | "beginning" | "earliest" => Ok(Position::Start),
        "end" | "newest" | "latest" => Ok(Position::End),
        _ => {
            if let Some(ts) = s.strip_prefix('@') {
                return ts.parse().map(Position::Timestamp).map_err(|_| format!("'{s}': @ takes a timestamp in ms"));
            }
            match s.parse::<i64>() {
                Ok(o) if o >= 0 => Ok(Position::Offset(o)),
                _ => Err(format!("'{s}' is not start, end, an offset or @timestamp_ms")),
            }
        }
    }
}

/// The offset `pos` names in each of `partitions` of `topic`. An offset past
/// either end is clamped to it; a timestamp after the last record gives the end.
pub(crate) fn resolve_position(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    pos: Position,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    use ops::OffsetSpec;
    let topics = [topic.to_string()];
    ops::retrying(client, &topics, |c| {
        let latest = ops::list_offsets(c, topic, partitions, OffsetSpec::Latest)?;
        match pos {
            Position::End => Ok(latest),
            Position::Start => ops::list_offsets(c, topic, partitions, OffsetSpec::Earliest),
            Position::Offset(o) => {
                let earliest = ops::list_offsets(c, topic, partitions, OffsetSpec::Earliest)?;
                Ok(latest.iter().map(|(&p, &end)| (p, o.clamp(earliest.get(&p).copied().unwrap_or(0), end))).collect())
            }
            Position::Timestamp(ms) => {
                let at = ops::list_offsets(c, topic, partitions, OffsetSpec::Timestamp(ms))?;
                Ok(latest
                    .iter()
                    .map(|(&p, &end)| (p, at.get(&p).copied().filter(|&o| o >= 0).unwrap_or(end)))
                    .collect())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised_after_global_flags() {
        // `fjord --brokers X topic list` is a command, `fjord --data-dir d` is the broker.
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(is_command(&v("topic list")));
        assert!(is_command(&v("--brokers a:1 --format=json group list")));
        assert!(!is_command(&v("--data-dir d")));
        assert!(!is_command(&v("serve --brokers a:1")));
        assert!(!is_command(&v("")));
    }

    #[test]
    fn durations_parse() {
        // --timeout takes seconds, ms and minutes, and refuses zero and words.
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn positions_parse() {
        // --offset / --to accept the words rpk and Kafka's tools use.
        assert_eq!(parse_position("start").unwrap(), Position::Start);
        assert_eq!(parse_position("end").unwrap(), Position::End);
        assert_eq!(parse_position("42").unwrap(), Position::Offset(42));
        assert_eq!(parse_position("@1700000000000").unwrap(), Position::Timestamp(1_700_000_000_000));
        assert!(parse_position("-3").is_err());
        assert!(parse_position("@x").is_err());
    }

    #[test]
    fn argument_definitions_are_consistent() {
        // clap's own check of the command tree (no clashing flags).
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
