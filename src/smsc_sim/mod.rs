//! The SMPP server behind `sendgate smsc-sim`: binds, submit_sm answers, reassembly and
//! decoding of concatenated messages, and delivery receipts after a delay.
//!
//! ## Layout
//! - [`config`]: [`SimConfig`], the CLI flags.
//! - `codec`: framing that turns an undecodable PDU into a generic_nack, not a dropped link.
//! - `session`: one connection's reader, answering PDUs.
//! - `writer`: one connection's writer task, batching responses and receipts onto the socket.
//! - decoding text and joining concatenated parts: [`crate::sms`], shared with the gateway.
//! - `receipts`: outcome mix, receipt text and `deliver_sm`, the due-time queue.
//! - `message_id`: the ids handed out, and how receipts spell them.
//! - `faults`: simulator-wide fault decisions (throttling, dropped and half-dead links).
//! - `stats`: the counters behind [`SimStats`].

mod codec;
pub mod config;
#[cfg(test)]
mod fault_tests;
mod faults;
mod message_id;
mod receipts;
mod session;
mod stats;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusmpp::pdus::DeliverSm;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, Npi, Ton};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use crate::sms::decode::decode_text;
pub use config::SimConfig;
pub use message_id::ReceiptIdFormat;
pub use receipts::ReceiptOrder;
pub use stats::SimStats;

use crate::sms::reassembly::Reassembler;
use faults::Faults;
use receipts::{lock, Outcome, OutcomeMix, PendingReceipt, ReceiptQueue};
use session::{BindKind, Route};
use stats::Counters;
use writer::Outbound;

/// Incomplete concatenated messages held before the oldest is dropped.
const REASSEMBLY_CAPACITY: usize = 100_000;
/// A receipt with no bound receiver is retried this often, this many times (about a minute),
/// so a gateway that reconnects still gets receipts for what it sent before.
const ORPHAN_RETRY: Duration = Duration::from_secs(1);
const ORPHAN_ATTEMPTS: u8 = 60;
/// How long `shutdown` waits for sessions to finish writing before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Fix the flag or config value; nothing was started.
    #[error("smsc_sim.outcome_mix: {0}")]
    OutcomeMix(String),
    /// Fix the flag or config value; nothing was started.
    #[error("smsc_sim.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("smsc_sim.listen: cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("smsc_sim.log: cannot open {}: {source}", path.display())]
    Log { path: PathBuf, source: std::io::Error },
}

/// One logical (reassembled) message as the simulator understood it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimMessage {
    /// The ids handed out for each part, in part order.
    pub message_ids: Vec<String>,
    pub source: String,
    pub destination: String,
    pub text: String,
    pub parts: u8,
    pub data_coding: u8,
    /// When its last part arrived: what a test measures a sending rate by.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

enum LogCmd {
    Line(String),
    Flush(oneshot::Sender<()>),
}

/// State every session, the receipt router and the handle share.
struct Shared {
    cfg: SimConfig,
    mix: OutcomeMix,
    /// Whether anyone (record or log) needs message text; when not, parts keep no bytes.
    keep_text: bool,
    counters: Counters,
    faults: Faults,
    next_message_id: AtomicU64,
    next_session_id: AtomicU64,
    reassembler: Mutex<Reassembler<Outcome>>,
    recorded: Mutex<Vec<SimMessage>>,
    log: Option<mpsc::UnboundedSender<LogCmd>>,
    receipts: ReceiptQueue,
    /// Bound sessions by id, for receipt routing.
    sessions: Mutex<HashMap<u64, Route>>,
    /// Flips to true once; every task watches it. Held here, not in the handle, so dropping
    /// every handle does not stop a running simulator.
    shutdown: watch::Sender<bool>,
}

/// Starts simulators; see [`SmscSim::start`].
pub struct SmscSim;

impl SmscSim {
    /// Validates `cfg`, listens, and serves in background tasks until [`SimHandle::shutdown`].
    pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        let mix: OutcomeMix = cfg.outcome_mix.parse().map_err(SimError::OutcomeMix)?;
        let ratio = cfg.receipt_before_resp_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            let reason = format!("must be between 0 and 1, got {ratio}");
            return Err(SimError::Invalid { key: "receipt_before_resp_ratio", reason });
        }
        let log_file = match &cfg.log {
            Some(path) => {
                Some(tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.map_err(|source| SimError::Log { path: path.clone(), source })?)
            }
            None => None,
        };
        let listener = TcpListener::bind(cfg.listen).await.map_err(|source| SimError::Listen { addr: cfg.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Listen { addr: cfg.listen, source })?;
        let log = log_file.map(|file| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(log_loop(file, rx));
            tx
        });
        let shared = Arc::new(Shared {
            keep_text: cfg.record_messages || log.is_some(),
            faults: Faults::new(&cfg),
            cfg,
            mix,
            counters: Counters::default(),
            // A random base keeps ids from two simulators in one test run from colliding; at
            // 0x1000_0000 or above, every id is at least 9 decimal digits, which is what tells
            // a decimal receipt id from a hex one (`receipt_id_format = "mixed"`).
            next_message_id: AtomicU64::new(0x1000_0000 + u64::from(rand::random::<u32>() >> 1)),
            next_session_id: AtomicU64::new(1),
            reassembler: Mutex::new(Reassembler::new(REASSEMBLY_CAPACITY)),
            recorded: Mutex::new(Vec::new()),
            log,
            receipts: ReceiptQueue::default(),
            sessions: Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
        });
        let tasks = vec![tokio::spawn(accept_loop(listener, shared.clone())), tokio::spawn(receipt_loop(shared.clone()))];
        tracing::info!(%local_addr, "smsc-sim listening");
        let inner = HandleInner { shared, local_addr, tasks: tokio::sync::Mutex::new(tasks) };
        Ok(SimHandle { inner: Arc::new(inner) })
    }
}

/// A running simulator. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Emptied by the first `shutdown`; later calls wait on the lock, then find nothing to do.
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl SimHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn stats(&self) -> SimStats {
        self.inner.shared.counters.snapshot()
    }

    /// Reassembled messages in the order their last part arrived; empty unless
    /// `record_messages`.
    pub fn messages(&self) -> Vec<SimMessage> {
        lock(&self.inner.shared.recorded).clone()
    }

    /// Sends a mobile-originated message (`deliver_sm`, esm_class 0, UCS-2, no receipt) from
    /// `from` to `to` on one bound receiver or transceiver session; `false` if none is bound
    /// or its queue is full. For tests of the gateway's MO handling (STOP replies).
    pub fn send_mo(&self, from: &str, to: &str, text: &str) -> bool {
        let ucs2: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let (Ok(source), Ok(destination), Ok(body)) =
            (COctetString::from_string(from.to_owned()), COctetString::from_string(to.to_owned()), OctetString::from_vec(ucs2))
        else {
            return false;
        };
        let pdu = DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr_npi(Npi::Isdn)
            .source_addr(source)
            .destination_addr(destination)
            .data_coding(DataCoding::from(0x08u8))
            .short_message(body)
            .build();
        let sessions = lock(&self.inner.shared.sessions);
        sessions.values().find(|s| s.kind.can_receive()).is_some_and(|s| s.tx.try_send(Outbound::Mo(Box::new(pdu))).is_ok())
    }

    /// Stops accepting, closes every session, and flushes the log. Idempotent.
    pub async fn shutdown(&self) {
        let shared = &self.inner.shared;
        shared.shutdown.send_replace(true);
        let mut tasks = self.inner.tasks.lock().await;
        for task in tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(log) = &shared.log {
            let (ack, done) = oneshot::channel();
            if log.send(LogCmd::Flush(ack)).is_ok() {
                let _ = done.await;
            }
        }
    }
}

/// Resolves once shutdown is requested. A helper so the watch guard never lives across an
/// await in the callers' `select!`.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            // Reap finished sessions so the set does not grow with every connection ever made.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    sessions.spawn(session::run(stream, shared.clone(), shared.shutdown.subscribe()));
                }
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    tracing::warn!(%err, "smsc-sim accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while sessions.join_next().await.is_some() {} });
    if drained.await.is_err() {
        sessions.abort_all();
    }
}

/// Sends due receipts on a fixed tick: bounded work per tick, no timer per message.
async fn receipt_loop(shared: Arc<Shared>) {
    let period = (shared.cfg.receipt_delay / 5).clamp(Duration::from_millis(1), Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tick.tick() => {
                let now = Instant::now();
                shared.route_receipts(shared.receipts.take_due(now), now);
            }
        }
    }
}

impl Shared {
    /// Hands receipts to the sessions that should get them; returns how many went out. Those
    /// with no room or no receiver go back to the queue.
    fn route_receipts(&self, due: Vec<PendingReceipt>, now: Instant) -> u64 {
        if due.is_empty() {
            return 0;
        }
        let mut sent = [0u64; 4];
        let (mut busy, mut orphans) = (Vec::new(), Vec::new());
        {
            let sessions = lock(&self.sessions);
            for r in due {
                let Some(route) = pick_route(&sessions, &r) else {
                    orphans.push(r);
                    continue;
                };
                let outcome = r.outcome;
                match route.tx.try_send(Outbound::Receipt(r)) {
                    Ok(()) => sent[outcome as usize] += 1,
                    Err(mpsc::error::TrySendError::Full(Outbound::Receipt(r))) => busy.push(r),
                    Err(mpsc::error::TrySendError::Closed(Outbound::Receipt(r))) => orphans.push(r),
                    Err(_) => {}
                }
            }
        }
        self.receipts.retry_now(busy);
        for r in orphans {
            if r.attempts < ORPHAN_ATTEMPTS {
                self.receipts.retry_later(r, now, ORPHAN_RETRY);
            } else {
                tracing::debug!(system_id = %r.system_id, "smsc-sim dropped a receipt: no receiver bound for a minute");
            }
        }
        for (outcome, n) in Outcome::ALL.into_iter().zip(sent) {
            if n > 0 {
                self.counters.receipts_sent.fetch_add(n, Relaxed);
                metrics::counter!(crate::telemetry::SIM_RECEIPTS_TOTAL, "outcome" => outcome.label()).increment(n);
            }
        }
        sent.iter().sum()
    }
}

/// The submitting session if it is a transceiver, else any receiver/transceiver bound with
/// the same system_id.
fn pick_route<'a>(sessions: &'a HashMap<u64, Route>, r: &PendingReceipt) -> Option<&'a Route> {
    if let Some(own) = sessions.get(&r.session_id).filter(|s| s.kind == BindKind::Transceiver) {
        return Some(own);
    }
    sessions.values().find(|s| s.kind.can_receive() && s.system_id == r.system_id)
}

/// Writes JSONL, flushing whenever the queue runs dry so the file is current without a
/// syscall per line.
async fn log_loop(file: tokio::fs::File, mut rx: mpsc::UnboundedReceiver<LogCmd>) {
    let mut out = tokio::io::BufWriter::new(file);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut result = Ok(());
        while let Some(cmd) = next.take() {
            match cmd {
                LogCmd::Line(line) => {
                    result = result.and(out.write_all(line.as_bytes()).await);
                    result = result.and(out.write_all(b"\n").await);
                }
                LogCmd::Flush(ack) => {
                    result = result.and(out.flush().await);
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(err) = result.and(out.flush().await) {
            tracing::warn!(%err, "smsc-sim could not write its message log");
        }
    }
}

/// `sendgate smsc-sim`: prints the listen address, then a stats JSON line every 10 s and on
/// exit (SIGINT/SIGTERM).
pub async fn run_cli(cfg: SimConfig) -> anyhow::Result<()> {
    let sim = SmscSim::start(cfg).await?;
    // Scripts read the (possibly ephemeral) port from the first stdout line.
    println!("{}", sim.local_addr());
    let period = Duration::from_secs(10);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let terminate = terminate_signal();
    tokio::pin!(terminate);
    loop {
        tokio::select! {
            _ = every.tick() => println!("{}", serde_json::to_string(&sim.stats())?),
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut terminate => break,
        }
    }
    sim.shutdown().await;
    println!("{}", serde_json::to_string(&sim.stats())?);
    Ok(())
}

#[cfg(unix)]
async fn terminate_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate_signal() {
    std::future::pending().await
}
