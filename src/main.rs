//! The `sendgate` command line: dev | run | check-config | smsc-sim | provider-sim, and its exit codes
//! (0 clean shutdown, 2 configuration error, 1 anything else fatal).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sendgate::app::{App, Mode};
use sendgate::config::{self, Config, ConfigErrors};

/// mimalloc instead of glibc malloc: profiling `sendgate run` under load found about 40% of its
/// CPU in glibc's allocator (`_int_malloc`, `unlink_chunk`, `malloc_consolidate`) with
/// buffers passed between tokio and librdkafka threads; mimalloc's per-thread free lists avoid
/// that and return freed pages to the OS, which keeps RSS near the in-flight working set.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sendgate", version, about = "A high-throughput send gateway: jobs in, messages out, one final report per job")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded default: HTTP ingest, in-memory state, a built-in SMPP simulator.
    Dev {
        /// API listen address (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Metrics listen address (default 127.0.0.1:9464).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// A config file instead of the embedded config/dev.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The daemon as deployed, from a config file.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validates a config file; exit 2 naming every key at fault.
    CheckConfig { path: PathBuf },
    /// A standalone SMPP server (SMSC simulator) for development, tests and load tests.
    SmscSim(sendgate::smsc_sim::SimConfig),
    /// A standalone HTTP provider simulator (WhatsApp Cloud API) that pushes signed status
    /// webhooks, for development, tests and load tests.
    ProviderSim {
        #[arg(value_enum)]
        mode: sendgate::provider_sim::SimMode,
        #[command(flatten)]
        cfg: sendgate::provider_sim::ProviderSimConfig,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        match cli.command {
            Command::CheckConfig { path } => match config::load_file(&path) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(&e),
            },
            Command::Dev { listen, metrics_listen, config: path } => {
                let cfg = match path.as_deref().map(config::load_file).unwrap_or_else(|| config::parse(config::DEV_TOML)) {
                    Ok(mut c) => {
                        if let Some(l) = listen {
                            c.server.listen = l;
                        }
                        if let Some(m) = metrics_listen {
                            c.server.metrics_listen = m;
                        }
                        c
                    }
                    Err(e) => return config_error(&e),
                };
                serve(cfg, Mode::Dev).await
            }
            Command::Run { config: path } => match config::load_file(&path) {
                Ok(cfg) => serve(cfg, Mode::Run).await,
                Err(e) => config_error(&e),
            },
            Command::SmscSim(sim) => match sendgate::smsc_sim::run_cli(sim).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            },
            Command::ProviderSim { mode, cfg } => match sendgate::provider_sim::run_cli(mode, cfg).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(
                        if e.downcast_ref::<sendgate::provider_sim::SimError>().is_some_and(|e| matches!(e, sendgate::provider_sim::SimError::Invalid(_))) {
                            2
                        } else {
                            1
                        },
                    )
                }
            },
        }
    })
}

fn config_error(e: &ConfigErrors) -> ExitCode {
    eprintln!("configuration error:\n{e}");
    ExitCode::from(2)
}

async fn serve(cfg: Config, mode: Mode) -> ExitCode {
    let reports_to = match (&cfg.kafka, &cfg.reports.file, cfg.reports.stdout) {
        (Some(k), _, _) => format!("kafka topic {} at {}", k.reports_topic, k.brokers),
        (None, file, stdout) => match (file, stdout) {
            (Some(f), true) => format!("stdout and {}", f.display()),
            (Some(f), false) => f.display().to_string(),
            (None, _) => "stdout (JSON lines)".into(),
        },
    };
    let app = match App::start(cfg, mode).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(if format!("{e:#}").contains("providers.") { 2 } else { 1 });
        }
    };
    eprintln!("sendgate is up");
    eprintln!("  send jobs:    curl -X POST http://{}/v1/jobs -H 'content-type: application/json' -d @job.json", app.api_addr);
    eprintln!("  job events:   curl http://{}/v1/jobs/JOB_ID", app.api_addr);
    eprintln!("  reports go to {reports_to}");
    eprintln!("  metrics:      http://{}/metrics", app.metrics_addr);
    if let Some(sim) = &app.sim {
        eprintln!("  SMSC simulator: smpp://{}", sim.local_addr());
    }
    for (provider, sim) in &app.provider_sims {
        let statuses = if sim.pushes_statuses() { format!(" (statuses to /v1/webhooks/{provider})") } else { String::new() };
        eprintln!("  {} simulator for {provider}: {}{statuses}", sim.mode(), sim.base_url());
    }
    wait_for_signal().await;
    // A second signal while draining exits at once.
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    let left = app.shutdown().await;
    if left.in_flight > 0 || left.awaiting_receipts > 0 {
        eprintln!("exited with {} jobs in flight and {} awaiting receipts", left.in_flight, left.awaiting_receipts);
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
