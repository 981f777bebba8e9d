//! The `fjord` command line. `fjord` alone is `fjord serve` with defaults;
//! `fjord topic|group|cluster|offsets ...` are admin commands (crate `fjord-cli`).

use std::process::ExitCode;

use fjord::config::{Config, SETTINGS};

/// Huge allocations get address space instead of aborting the broker (see `fjord::alloc_guard`).
#[global_allocator]
static GLOBAL: fjord::alloc_guard::NoReserveHuge = fjord::alloc_guard::NoReserveHuge;

fn usage() -> String {
    let mut s = String::from(
        "fjord: a Kafka-compatible streaming broker\n\nUSAGE:\n  fjord [serve] [--setting value ...]\n  fjord --help | --version\n\nCOMMANDS:\n  fjord [serve]\n      Run the broker with the settings below.\n",
    );
    s.push_str(fjord_cli::COMMANDS_HELP);
    s.push_str("\nSETTINGS (flag --name, env FJORD_NAME, or in the --config TOML file):\n");
    for (name, help) in SETTINGS {
        s.push_str(&format!("  --{:<34} {}\n", name.replace('_', "-"), help));
    }
    s
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // Admin commands are a client: no broker logging, allocator set-up or panic hook.
    if fjord_cli::is_command(&args) {
        return fjord_cli::run(args);
    }
    fjord::alloc_guard::keep_large_buffers_in_the_heap();
    init_logging();
    abort_on_panic();
    match args.first().map(String::as_str) {
        Some("--help") | Some("-h") | Some("help") => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Some("--version") | Some("-V") => {
            println!("fjord {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("serve") => {
            args.remove(0);
            if matches!(args.first().map(String::as_str), Some("--help") | Some("-h")) {
                print!("{}", usage());
                return ExitCode::SUCCESS;
            }
        }
        Some(a) if !a.starts_with("--") => {
            eprintln!("fjord: unknown command '{a}'\n\n{}", usage());
            return ExitCode::from(2);
        }
        _ => {}
    }
    let config = match Config::from_args_and_env(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fjord: {e}");
            return ExitCode::from(2);
        }
    };
    match fjord::server::serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr; openraft's own chatter only from warnings up unless
/// FJORD_LOG is debug or trace. Colours only on a terminal.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let level = log_level();
    let openraft_level = if level >= tracing::Level::DEBUG { level } else { tracing::Level::WARN };
    let targets = Targets::new().with_default(level).with_target("openraft", openraft_level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(fmt).with(targets).init();
}

/// A panic on any thread (a shard, the controller) ends the process instead
/// of leaving a broker with a dead shard that still accepts connections for
/// it. Everything acknowledged is on disk and recovery runs at the next start.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("fjord: a thread panicked; aborting so that a supervisor restarts the broker");
        std::process::abort();
    }));
}

/// `FJORD_LOG=debug|info|warn|error` (default info).
fn log_level() -> tracing::Level {
    match std::env::var("FJORD_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    }
}
