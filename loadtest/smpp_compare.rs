//! sendgate's SMPP path against a bare rusmppc client, side by side, against one simulator.
//!
//! ```sh
//! loadtest/run_smpp_compare.sh                        # 50,000 messages, 4 binds, window 64
//! loadtest/run_smpp_compare.sh --messages 100000 --binds 2 --window 256
//! ```
//!
//! Both runs talk to the same `sendgate smsc-sim` process (started here on a free port, receipts
//! after `--receipt-delay`), with the same binds and window:
//! 1. **bare**: rusmppc clients that only submit one-segment `submit_sm` (and acknowledge the
//!    receipts the simulator sends, as any client must); the rate is `submit_sm_resp`s per second.
//! 2. **sendgate**: `sendgate dev` in this process with that simulator as its provider, the same
//!    number of one-segment jobs posted as NDJSON; the rate is jobs per second from the first
//!    POST to the last final (`delivered`) report, i.e. ingest, policies, submit, receipt,
//!    correlation and the report all included.
//!
//! It does this once per `--response-latency` (default `0s,10ms`, a fresh simulator each): at
//! 0 the runs are CPU-bound (both sides and the simulator share this machine's cores), at
//! 10 ms window-bound as against an SMSC across a network. It prints both rates and their
//! ratio for each (the target is sendgate ≥ 80% of bare) and the CPU per message of each side,
//! and exits 1 if a job did not get exactly one final.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use rusmpp::pdus::{BindTransceiver, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{Npi, RegisteredDelivery, Ton};
use rusmpp::{CommandId, Pdu};
use rusmppc::{ConnectionBuilder, Event};
use sendgate::app::{App, Mode};
use sendgate::config::{self, ProviderConfig};

/// As in `src/main.rs`: sendgate runs on mimalloc, so its path is measured on it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Messages per run (each run sends this many one-segment messages).
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    #[arg(long, default_value_t = 4)]
    binds: usize,
    /// In-flight submit_sm per bind.
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value = "20ms")]
    receipt_delay: String,
    /// The simulator's delay before each submit_sm_resp (`--response-latency`), one pair of
    /// runs for each: 0 makes them CPU-bound on one machine; a real SMSC answers in
    /// milliseconds, which makes them window-bound as in production.
    #[arg(long, value_delimiter = ',', default_value = "0s,10ms")]
    response_latency: Vec<String>,
    /// The sendgate binary whose `smsc-sim` serves both runs.
    #[arg(long, default_value = "target/release/sendgate")]
    bin: String,
    /// Skip the bare run (for profiling sendgate's side alone); no ratio is printed.
    #[arg(long)]
    sendgate_only: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

struct Sim(Child);

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may hold spaces: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
    })
}

/// CPU used by this process and by the simulator during one run, in µs per message.
struct CpuMeter {
    sim: String,
    at: (f64, f64),
}

impl CpuMeter {
    fn start(sim: &Sim) -> Self {
        let sim = sim.0.id().to_string();
        let at = (cpu_seconds("self"), cpu_seconds(&sim));
        Self { sim, at }
    }

    fn per_message(&self, messages: usize) -> (f64, f64) {
        let n = messages as f64 / 1e6;
        ((cpu_seconds("self") - self.at.0) / n, (cpu_seconds(&self.sim) - self.at.1) / n)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sim(bin: &str, addr: SocketAddr, receipt_delay: &str, response_latency: &str) -> Result<Sim, String> {
    let child = Command::new(bin)
        .args(["smsc-sim", "--listen", &addr.to_string(), "--receipt-delay", receipt_delay, "--response-latency", response_latency])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{bin} smsc-sim: {e} (cargo build --release --bin sendgate)"))?;
    let sim = Sim(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("the simulator did not listen on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(sim)
}

fn submit_sm(i: usize) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr(COctetString::from_str("bench").expect("literal"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_string(format!("4477{i:08}")).expect("digits"))
        .registered_delivery(RegisteredDelivery::from(0x01u8))
        .short_message(OctetString::from_vec(format!("bench message {i}").into_bytes()).expect("short"))
        .build()
}

/// One bare bind: bind_transceiver, then `count` submits with at most `window` in flight,
/// acknowledging every deliver_sm on the way.
async fn bare_bind(addr: SocketAddr, window: usize, first: usize, count: usize, done: Arc<AtomicU64>) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (client, mut events) = ConnectionBuilder::new()
        .enquire_link_interval(Duration::from_millis(200))
        .response_timeout(Duration::from_secs(10))
        .disable_interface_version_check()
        .connected(stream);
    client
        .bind_transceiver(
            BindTransceiver::builder()
                .system_id(COctetString::from_str("bench").expect("literal"))
                .password(COctetString::from_str("").expect("literal"))
                .build(),
        )
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let acker = client.clone();
    let receipts = tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if let Event::Incoming(cmd) = ev {
                if cmd.id() == CommandId::DeliverSm && matches!(cmd.pdu(), Some(Pdu::DeliverSm(_))) {
                    let _ = acker.deliver_sm_resp(cmd.sequence_number(), DeliverSmResp::default()).await;
                }
            }
        }
    });
    let sender = client.clone();
    let results: Vec<Result<(), String>> = futures::stream::iter(first..first + count)
        .map(|i| {
            let (c, done) = (sender.clone(), done.clone());
            async move {
                c.submit_sm(submit_sm(i)).await.map_err(|e| format!("submit_sm: {e}"))?;
                done.fetch_add(1, Relaxed);
                Ok(())
            }
        })
        .buffer_unordered(window)
        .collect()
        .await;
    let _ = client.unbind().await;
    let _ = client.close().await;
    receipts.abort();
    results.into_iter().collect()
}

async fn bare(a: &Args, addr: SocketAddr) -> Result<f64, String> {
    let done = Arc::new(AtomicU64::new(0));
    let per = a.messages.div_ceil(a.binds);
    let t = Instant::now();
    let tasks: Vec<_> = (0..a.binds)
        .map(|b| {
            let count = per.min(a.messages.saturating_sub(b * per));
            tokio::spawn(bare_bind(addr, a.window, b * per, count, done.clone()))
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(done.load(Relaxed) as f64 / secs)
}

/// Sum of a counter over its series in Prometheus text, only series whose labels contain `with`.
fn metric(text: &str, name: &str, with: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name) && l.contains(with)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: String) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/x-ndjson")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn sendgate_run(a: &Args, sim: SocketAddr, out: &std::path::Path) -> Result<f64, String> {
    let mut cfg = config::parse(config::DEV_TOML).map_err(|e| e.to_string())?;
    cfg.server.listen = "127.0.0.1:0".parse().expect("literal");
    cfg.server.metrics_listen = "127.0.0.1:0".parse().expect("literal");
    cfg.reports.stdout = false;
    cfg.reports.file = Some(out.join("reports.jsonl"));
    cfg.pipeline.max_in_flight = (a.binds * a.window * 4).max(5000);
    // The SMPP path only: dev's WhatsApp and Telegram providers (and their simulators) would
    // share the CPU.
    cfg.providers.retain(|_, p| matches!(p, ProviderConfig::Smpp(_)));
    for p in cfg.providers.values_mut() {
        let ProviderConfig::Smpp(s) = p else { unreachable!("only smpp sections are left") };
        s.address = sim.to_string();
        s.binds = a.binds;
        s.window = a.window;
    }
    let app = App::start(cfg, Mode::Dev).await.map_err(|e| format!("sendgate dev: {e:#}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.providers_ready() {
        if Instant::now() > deadline {
            return Err("sendgate never bound to the simulator".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (api, metrics) = (app.api_addr, app.metrics_addr);
    let scrape =
        || async move { http(metrics, "GET", "/metrics", String::new()).await.map(|(_, t)| metric(&t, "sendgate_reports_total", "event=\"delivered\"")) };
    let before = scrape().await?;
    let t = Instant::now();
    let jobs: Vec<String> =
        (0..a.messages).map(|i| format!(r#"{{"id":"cmp-{i}","tenant":"bench","channel":"sms","to":"+4478{i:08}","text":"bench message {i}"}}"#)).collect();
    let poster = tokio::spawn(async move {
        for chunk in jobs.chunks(1000) {
            let (status, body) = http(api, "POST", "/v1/jobs", chunk.join("\n")).await?;
            if status != 202 {
                return Err(format!("POST /v1/jobs: {status} {body}"));
            }
        }
        Ok::<_, String>(())
    });
    let target = a.messages as f64;
    let finished = loop {
        let n = scrape().await? - before;
        if n >= target {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {n} of {target} jobs delivered after 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    poster.await.map_err(|e| e.to_string())??;
    app.shutdown().await;
    // Exactly one final per job, from the report file.
    let text = std::fs::read_to_string(out.join("reports.jsonl")).map_err(|e| e.to_string())?;
    let finals = text.lines().filter(|l| l.contains("\"final\":true")).count();
    if finals != a.messages {
        return Err(format!("{finals} final reports for {} jobs", a.messages));
    }
    Ok(target / finished.as_secs_f64())
}

/// One simulator, then the bare run and the sendgate run against it.
async fn pair(a: &Args, latency: &str, out: &std::path::Path) -> Result<(f64, f64), String> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let sim = start_sim(&a.bin, addr, &a.receipt_delay, latency)?;
    eprintln!("[smpp_compare] simulator on {addr}; {} messages, {} binds, window {}, response latency {latency}", a.messages, a.binds, a.window);
    let cpu = CpuMeter::start(&sim);
    let bare_rate = if a.sendgate_only { f64::NAN } else { bare(a, addr).await? };
    let (client, sim_us) = cpu.per_message(a.messages);
    eprintln!("[smpp_compare] bare rusmppc: {bare_rate:.0} submits/s; CPU per message: client {client:.1} us, simulator {sim_us:.1} us");
    let cpu = CpuMeter::start(&sim);
    let _ = std::fs::create_dir_all(out);
    let sg_rate = sendgate_run(a, addr, out).await?;
    let (client, sim_us) = cpu.per_message(a.messages);
    eprintln!("[smpp_compare] sendgate: {sg_rate:.0} jobs/s (job in -> final report out); CPU per job: sendgate {client:.1} us, simulator {sim_us:.1} us");
    Ok((bare_rate, sg_rate))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let out = std::env::temp_dir().join(format!("sendgate-smpp-compare-{}", std::process::id()));
    let result = rt.block_on(async {
        let mut rows = Vec::new();
        for (i, latency) in a.response_latency.iter().enumerate() {
            rows.push((latency.clone(), pair(&a, latency, &out.join(format!("run-{i}"))).await?));
        }
        Ok::<_, String>(rows)
    });
    let _ = std::fs::remove_dir_all(&out);
    match result {
        Ok(rows) => {
            println!("{:<18} {:>14} {:>14} {:>8}", "SMSC resp latency", "bare msg/s", "sendgate jobs/s", "ratio");
            for (latency, (bare_rate, sg_rate)) in rows {
                let ratio = sg_rate / bare_rate;
                let verdict = if ratio >= 0.8 { "MET" } else { "MISSED" };
                println!("{latency:<18} {bare_rate:>14.0} {sg_rate:>14.0} {:>7.1}%  (target >= 80%: {verdict})", ratio * 100.0);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("[smpp_compare] {e}");
            ExitCode::FAILURE
        }
    }
}
