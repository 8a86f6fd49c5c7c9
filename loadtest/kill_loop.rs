//! The full kill -9 loop of issue 10 against the real services: two `sendgate run` instances
//! (one Redis prefix, one consumer group, one reports topic), 30,000 jobs at 1,500/s (5%
//! scheduled 3–8 s ahead, 300 second records carrying an id already used), the SMPP simulator
//! in this process throttling every 50th submit, and 20 SIGKILLs of alternating instances,
//! each restarted at once. Prints the audit table (tests/support/audit.rs) and exits 0 only
//! when every requirement held. `loadtest/run_kill_loop.sh` builds and starts everything:
//!
//! ```text
//! loadtest/run_kill_loop.sh                       # the issue's run
//! loadtest/run_kill_loop.sh --jobs 4000 --rate 250 --kills 6 --kill-every 2500ms
//! ```
//!
//! The CI-sized version is tests/crash.rs; both run tests/support/kill_loop.rs.

#[path = "../tests/support/kill_loop.rs"]
mod kill_loop;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "kill_loop", about = "The kill -9 loop of issue 10 against Tansu, Redis and the SMPP simulator")]
struct Args {
    #[arg(long, default_value_t = 30_000)]
    jobs: usize,
    /// Jobs produced per second.
    #[arg(long, default_value_t = 1_500.0)]
    rate: f64,
    /// Every Nth job is scheduled 3-8 s ahead (0: none).
    #[arg(long, default_value_t = 20)]
    scheduled_every: usize,
    /// Second records carrying an id already used.
    #[arg(long, default_value_t = 300)]
    duplicates: usize,
    #[arg(long, default_value_t = 20)]
    kills: usize,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    kill_every: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    first_kill_after: Duration,
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    #[arg(long, default_value_t = 2)]
    binds: usize,
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// The simulator throttles every Nth submit_sm.
    #[arg(long, default_value_t = 50)]
    throttle_every: u64,
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    receipt_delay: Duration,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    receipt_timeout: Duration,
    /// Give up waiting for finals this long after the last job and kill.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    final_wait: Duration,
    /// ... or once no report came for this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    stall: Duration,
    /// Keep reading this long after every job is final, for late events.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// The daemon binary (default: target/release/sendgate next to this example).
    #[arg(long)]
    sendgate: Option<PathBuf>,
    /// Configs, daemon logs and the report (default: loadtest/out/kill-loop-<time>).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let bin = a.sendgate.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        exe.parent().and_then(Path::parent).expect("target dir").join("sendgate")
    });
    if !bin.exists() {
        eprintln!("{} does not exist: cargo build --release --bin sendgate", bin.display());
        return ExitCode::from(2);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let out_dir = a.out_dir.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/out").join(format!("kill-loop-{stamp}")));
    let p = kill_loop::Params {
        jobs: a.jobs,
        rate: a.rate,
        scheduled_every: a.scheduled_every,
        duplicates: a.duplicates,
        kills: a.kills,
        kill_every: a.kill_every,
        first_kill_after: a.first_kill_after,
        partitions: a.partitions,
        binds: a.binds,
        window: a.window,
        throttle_every: a.throttle_every,
        receipt_delay: a.receipt_delay,
        receipt_timeout: a.receipt_timeout,
        final_wait: a.final_wait,
        stall: a.stall,
        settle: a.settle,
        ..kill_loop::Params::full(bin, out_dir.clone())
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let out = rt.block_on(kill_loop::run(p));
    let report = out.report();
    println!("{report}");
    let _ = std::fs::write(out_dir.join("report.txt"), &report);
    eprintln!("[kill_loop] report, configs and daemon logs in {}", out_dir.display());
    if out.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
