//! The HTTP provider simulator behind `sendgate provider-sim <mode>`: a provider's send API
//! that takes messages and answers as the provider does, pushes signed status webhooks back
//! after a delay with a configurable outcome mix, and injects the provider's faults.
//!
//! `sendgate dev` runs one per provider whose `base_url` is `embedded-sim` (`app.rs`), pushing
//! statuses to dev's own `/v1/webhooks/{provider}`. Production code never uses this module.
//!
//! ## Layout
//! - [`config`]: [`ProviderSimConfig`], the flags and `[dev.provider_sim]` keys, for every mode.
//! - [`Mode`]: what differs between providers; one file per mode: `whatsapp` (the Cloud API),
//!   `telegram` (the Bot API, no statuses), `http` (a generic JSON provider shaped as the
//!   shipped `config/examples/http-infobip-viber.toml`). Another mode is one more file implementing
//!   [`Mode`] and one more [`SimMode`] variant.
//! - `faults`: which request is refused or answered late, which webhook POST is forged.
//! - `statuses`: how messages end, their statuses in order, the bounded due-time queue.
//! - `webhook_push`: pushing statuses with bounded concurrency and bounded retries.
//! - `stats`: the counters behind [`SimStats`] and the metrics.

pub mod config;
mod faults;
mod http;
mod stats;
mod statuses;
mod telegram;
#[cfg(test)]
mod tests;
mod webhook_push;
mod whatsapp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use config::ProviderSimConfig;
pub use faults::Refusal;
pub use stats::SimStats;

use faults::{Faults, Verdict};
use stats::Counters;
use statuses::{EndMix, Pending, Status, StatusQueue};
use webhook_push::Target;

/// A send request body larger than this is not a message.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long `shutdown` waits for connections to finish their requests before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The providers the simulator can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimMode {
    /// Meta's WhatsApp Cloud API (`POST /{version}/{phone_number_id}/messages`, signed
    /// `X-Hub-Signature-256` status webhooks).
    Whatsapp,
    /// Telegram's Bot API (`POST /bot<token>/sendMessage`); no statuses (Telegram has none).
    Telegram,
    /// A generic JSON provider as `config/examples/http-infobip-viber.toml` expects it
    /// (`POST /viber/2/messages`, `{"results": [...]}` status batches, the shared token in
    /// `webhook_url`'s query). Standalone only: an `http` provider has no `embedded-sim`.
    Http,
}

impl SimMode {
    /// The mode a provider kind names ([`crate::provider::KindConfig::wants_provider_sim`]).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "whatsapp" => Some(Self::Whatsapp),
            "telegram" => Some(Self::Telegram),
            _ => None,
        }
    }

    fn api(self) -> Box<dyn Mode> {
        match self {
            Self::Whatsapp => Box::new(whatsapp::CloudApi),
            Self::Telegram => Box::new(telegram::BotApi),
            Self::Http => Box::new(http::JsonApi),
        }
    }

    /// A token in the shape this mode's provider wants, around the random `secret` (`sendgate
    /// dev` makes one up per run).
    pub fn made_up_token(self, secret: &str) -> String {
        self.api().made_up_token(secret)
    }
}

/// A send request as the mode understood it.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// Who sends (Cloud API: the phone number id in the path).
    pub sender: String,
    /// Who it goes to, as the provider writes recipients in statuses (Cloud API: digits).
    pub recipient: String,
    /// Who it goes to, as the request wrote it.
    pub input: String,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Self { status, body: Bytes::from(body.to_string()) }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        Response::builder().status(self.status).header(CONTENT_TYPE, "application/json").body(Full::new(self.body)).expect("static response parts")
    }
}

/// What one provider's API looks like: its send requests, its answers and refusals, its
/// status webhooks. The machinery around it (serving, faults, the status queue, pushing) is
/// the same for every mode.
pub trait Mode: Send + Sync + 'static {
    /// The name in `sendgate provider-sim <mode>` and the metrics' `mode` label.
    fn name(&self) -> &'static str;

    /// Whether the provider reports statuses at all; `false`: nothing is queued or pushed,
    /// whatever `webhook_url` says.
    fn pushes_statuses(&self) -> bool {
        true
    }

    /// Where a forged webhook POST goes, given `webhook_url`: the same URL when the body's
    /// signature is the proof; another when the proof is in the URL (a shared token).
    fn forged_url(&self, url: &str) -> String {
        url.to_owned()
    }

    /// A token in the shape the provider issues, around `secret`.
    fn made_up_token(&self, secret: &str) -> String {
        secret.to_owned()
    }

    /// A request as a send, or the refusal it gets (a wrong path, a wrong `token`, a body that
    /// is not a message). `token`: the one requests must carry, if any.
    fn parse_send(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8], token: Option<&str>) -> Result<SendRequest, Refusal>;

    /// The id the `seq`th message taken gets.
    fn message_id(&self, seq: u64, send: &SendRequest) -> String;

    /// The answer to a send that was taken as `id`.
    fn accepted(&self, send: &SendRequest, id: &str) -> Answer;

    /// The answer to a send refused for `why`, as the provider words it.
    fn refusal(&self, why: Refusal) -> Answer;

    /// One webhook POST's body: these statuses, all of messages from `sender`.
    fn webhook_body(&self, sender: &str, statuses: &[(&Pending, Status)], failed_code: i64) -> Bytes;

    /// The header that authenticates a webhook body, signed with `secret`.
    fn signature(&self, secret: &[u8], body: &[u8]) -> (&'static str, String);
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Fix the flag or config value; nothing was started.
    #[error("{0}")]
    Invalid(String),
    #[error("provider_sim.listen: cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// One send request the simulator understood, kept when `record_messages` is on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimMessage {
    /// The id it was taken as; empty when refused.
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub body: serde_json::Value,
    /// `taken`, `taken_slowly`, or the refusal (`throttled`, `pair_limit`, ...).
    pub answer: &'static str,
    /// When it came.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What the server, the push loop and the handle share.
struct Shared {
    cfg: ProviderSimConfig,
    mode: Box<dyn Mode>,
    mix: EndMix,
    faults: Faults,
    counters: Counters,
    queue: StatusQueue,
    /// Whether statuses are pushed at all (a `webhook_url` is set).
    pushes: bool,
    next_seq: AtomicU64,
    recorded: Mutex<Vec<SimMessage>>,
    /// Flips to true once; every task watches it.
    shutdown: watch::Sender<bool>,
}

/// Starts simulators; see [`ProviderSim::start`].
pub struct ProviderSim;

impl ProviderSim {
    /// Validates `cfg`, listens, and serves in background tasks until [`ProviderSimHandle::shutdown`].
    pub async fn start(mode: SimMode, cfg: ProviderSimConfig) -> Result<ProviderSimHandle, SimError> {
        cfg.check().map_err(SimError::Invalid)?;
        let mix: EndMix = cfg.outcome_mix.parse().map_err(|e| SimError::Invalid(format!("provider_sim.outcome_mix: {e}")))?;
        let api = mode.api();
        let target = match cfg.webhook_url.as_ref().filter(|_| api.pushes_statuses()) {
            Some(url) => Some(Arc::new(Target::new(url, cfg.push_concurrency).map_err(|e| SimError::Invalid(format!("provider_sim.webhook_url: {e}")))?)),
            None => None,
        };
        let listener = listen(cfg.listen).map_err(|source| SimError::Listen { addr: cfg.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Listen { addr: cfg.listen, source })?;
        let shared = Arc::new(Shared {
            mode: api,
            mix,
            faults: Faults::new(&cfg),
            counters: Counters::default(),
            queue: StatusQueue::new(cfg.status_delay, cfg.queue_capacity),
            pushes: target.is_some(),
            // A random base keeps ids from two simulators in one test run apart.
            next_seq: AtomicU64::new(u64::from(rand::random::<u32>()) << 16),
            recorded: Mutex::new(Vec::new()),
            shutdown: watch::Sender::new(false),
            cfg,
        });
        let mut tasks = vec![tokio::spawn(accept_loop(listener, shared.clone()))];
        if let Some(target) = target {
            tasks.push(tokio::spawn(webhook_push::push_loop(shared.clone(), target)));
        }
        tracing::info!(mode = shared.mode.name(), %local_addr, "provider-sim listening");
        Ok(ProviderSimHandle { inner: Arc::new(HandleInner { shared, local_addr, tasks: tokio::sync::Mutex::new(tasks) }) })
    }
}

/// A running simulator. Cheap to clone.
#[derive(Clone)]
pub struct ProviderSimHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Emptied by the first `shutdown`.
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl ProviderSimHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// What a provider's `base_url` is to reach this simulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.local_addr)
    }

    pub fn mode(&self) -> &'static str {
        self.inner.shared.mode.name()
    }

    /// Whether it pushes statuses (Telegram's simulator has none to push).
    pub fn pushes_statuses(&self) -> bool {
        self.inner.shared.pushes
    }

    pub fn stats(&self) -> SimStats {
        self.inner.shared.counters.snapshot(self.inner.shared.queue.live())
    }

    /// Send requests it understood (taken or refused), in the order they came; empty unless
    /// `record_messages`.
    pub fn messages(&self) -> Vec<SimMessage> {
        self.inner.shared.recorded.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops serving and pushing. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shared.shutdown.send_replace(true);
        let mut tasks = self.inner.tasks.lock().await;
        for task in tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Connections a gateway may open at once before the kernel drops the excess (tokio's default
/// backlog is 1,024): a gateway with hundreds of requests in flight per phone number opens
/// that many connections in a burst, and a dropped handshake leaves its request hanging until
/// the gateway's timeout (seen in the load test as jobs ending `unknown`).
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves once shutdown is requested.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, std::convert::Infallible>(shared.answer(req).await.into_response()) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    });
                }
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    tracing::warn!(%err, "provider-sim accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, async { while conns.join_next().await.is_some() {} }).await.is_err() {
        conns.abort_all();
    }
}

impl Shared {
    /// One send request: refused by the mode or a fault, or taken (its statuses queued) and
    /// answered, late when a slow answer is due.
    async fn answer(&self, req: Request<Incoming>) -> Answer {
        let (parts, body) = req.into_parts();
        let name = self.mode.name();
        let refuse = |why: Refusal| {
            self.counters.refused(name, why);
            self.mode.refusal(why)
        };
        let Ok(body) = Limited::new(body, MAX_REQUEST_BYTES).collect().await.map(|b| b.to_bytes()) else {
            return refuse(Refusal::Invalid);
        };
        let send = match self.mode.parse_send(&parts.method, parts.uri.path(), &parts.headers, &body, self.cfg.token.as_deref()) {
            Ok(s) => s,
            Err(why) => return refuse(why),
        };
        let late = match self.faults.verdict() {
            Verdict::Refuse(why) => {
                self.record(&send, &body, String::new(), why.label());
                return refuse(why);
            }
            Verdict::TakeSlowly(d) => Some(d),
            Verdict::Take => None,
        };
        let id = self.mode.message_id(self.next_seq.fetch_add(1, Relaxed), &send);
        if self.pushes {
            let pending = Pending { id: id.clone(), sender: send.sender.clone(), recipient: send.recipient.clone(), end: self.mix.pick(), step: 0 };
            if !self.queue.admit(pending) {
                self.record(&send, &body, String::new(), Refusal::Overloaded.label());
                return refuse(Refusal::Overloaded);
            }
        }
        self.record(&send, &body, id.clone(), if late.is_some() { "taken_slowly" } else { "taken" });
        self.counters.taken(name, late.is_some());
        if let Some(d) = late {
            // Taken already (its statuses are on their way): only the answer is late.
            tokio::time::sleep(d).await;
        }
        self.mode.accepted(&send, &id)
    }

    fn record(&self, send: &SendRequest, body: &[u8], id: String, answer: &'static str) {
        if self.cfg.record_messages {
            let body = serde_json::from_slice(body).unwrap_or_default();
            let m = SimMessage { id, sender: send.sender.clone(), recipient: send.recipient.clone(), body, answer, at: chrono::Utc::now() };
            self.recorded.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        }
    }
}

/// `sendgate provider-sim <mode>`: prints the listen address, then a stats JSON line every
/// 10 s and on exit (SIGINT/SIGTERM).
pub async fn run_cli(mode: SimMode, cfg: ProviderSimConfig) -> anyhow::Result<()> {
    // Before the address is printed: a script that stops the simulator as soon as it read the
    // address must meet the handler (exit 0, stats printed), not SIGTERM's default (killed).
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let sim = ProviderSim::start(mode, cfg).await?;
    // Scripts read the (possibly ephemeral) port from the first stdout line.
    println!("{}", sim.local_addr());
    let period = Duration::from_secs(10);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = every.tick() => println!("{}", serde_json::to_string(&sim.stats())?),
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    sim.shutdown().await;
    println!("{}", serde_json::to_string(&sim.stats())?);
    Ok(())
}
