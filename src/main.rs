//! The `lb` command line: `lb --conf FILE` runs, `lb check --conf FILE` validates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

// mimalloc: per-thread free lists with no locks, and freed pages go back to the
// system; measured 7% fewer instructions per HTTP/2 request than glibc's malloc
// (benches/RESULTS.md), and each exchange allocates a few small blocks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults favour speed over memory given back: its first arena
/// is committed at once, so freed pages are only reset and stay in RSS, and they
/// are purged a second later, and only when the thread allocates again; an idle
/// lb kept a burst's memory (RSS per connection 3x HAProxy's in
/// `benches/memory.sh`). Commit on demand, purge after 10 ms (`buffer.rs`
/// forces a collect once a burst's buffers are freed). It runs as an ELF
/// constructor: before the first Rust allocation reserves that arena.
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

extern "C" fn tune_allocator() {
    // Positions in mimalloc's `mi_option_t` (the same in v2 and v3); the Rust
    // bindings name neither.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: option setters only store a value; no thread runs yet.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 10);
    }
}

#[derive(Parser)]
#[command(name = "lb", version, about = "A high-performance L4/L7 load balancer")]
struct Cli {
    /// Conf file to run.
    #[arg(long, short = 'f', global = true)]
    conf: Option<String>,
    /// More log output (default info; -v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Check the conf and exit, as `haproxy -c -f FILE` does (`lb check`).
    #[arg(short = 'c')]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the conf file and exit: 0 when valid, 1 with `FILE:LINE: message` otherwise.
    Check {
        /// The conf file (else --conf/-f).
        file: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        // rustls warns about every client that, say, sends an IP address as SNI
        // (wrk and many scripts do): one line per handshake, a log any client
        // can flood. -v shows them, with lb's own line per failed handshake.
        0 => "info,rustls=error",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let (check, file) = match cli.command {
        Some(Command::Check { file }) => (true, file),
        None => (cli.check, None),
    };
    let Some(path) = file.or(cli.conf) else {
        eprintln!("lb: missing --conf FILE (see lb --help)");
        return ExitCode::from(2);
    };
    match check {
        true => match lb::conf::load(&path) {
            Ok(conf) => {
                for w in &conf.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{path}: configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        false => match lb::run(&path) {
            Ok(()) => ExitCode::SUCCESS,
            // Already `FILE:LINE: message`, one per line.
            Err(lb::runtime::RunError::Conf(errs)) => {
                eprintln!("{errs}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("lb: {e}");
                ExitCode::from(1)
            }
        },
    }
}
