//! One SMPP bind: connect, bind, serve incoming PDUs, notice a dead link, reconnect with
//! backoff. The slot senders pick is here too, with the bind's pause.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter};
use rusmpp::types::COctetString;
use rusmpp::{CommandId, CommandStatus};
use rusmppc::{ConnectionBuilder, Event};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::coalesce::{coalesce, Repoll};
use super::config::SmppConfig;
use super::health::Health;
use super::incoming;
use super::inflight::InFlight;
use super::killswitch::KillSwitch;
use super::rate::Rate;
use super::status;
use super::tls;
use crate::receipt::ProviderEvent;

pub(super) struct BindSlot {
    pub(super) index: usize,
    /// The live connection while bound; `None` between connections.
    link: RwLock<Option<Link>>,
    /// In-flight `submit_sm` on this bind: rusmppc has no window of its own.
    pub(super) window: Arc<Semaphore>,
    /// No submit is written on this bind before this instant (ESME_RTHROTTLED, ESME_RMSGQFUL).
    /// Kept across reconnects: an SMSC throttles the account, not the TCP connection.
    paused_until: Mutex<Option<Instant>>,
    /// `bind_tps`.
    pub(super) rate: Rate,
}

/// One bound connection as senders see it.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) client: rusmppc::Client,
    /// Set by a sender that concluded the link is dead (a submit_sm went unanswered, or
    /// rusmppc would not take one); the bind loop then closes it and binds again.
    pub(super) dead: Dead,
    /// Submits written on this link, awaiting their responses.
    pub(super) inflight: Arc<InFlight>,
}

/// A link's "declared dead" mark. Every submit looks at it two or three times: an atomic,
/// because `CancellationToken::is_cancelled` locks a mutex that every sender on the bind
/// shares (0.6 µs per job in a profile of the load test, the line bouncing between cores).
#[derive(Clone, Default)]
pub(super) struct Dead {
    flag: Arc<AtomicBool>,
    /// What the bind loop waits on.
    token: CancellationToken,
}

impl Dead {
    pub(super) fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.token.cancel();
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    async fn cancelled(&self) {
        self.token.cancelled().await
    }
}

impl BindSlot {
    pub(super) fn new(index: usize, window: usize, bind_tps: u32) -> Self {
        Self { index, link: RwLock::new(None), window: Arc::new(Semaphore::new(window)), paused_until: Mutex::new(None), rate: Rate::per_second(bind_tps) }
    }

    /// The bound connection, unless there is none or it was declared dead.
    pub(super) fn link(&self) -> Option<Link> {
        self.link.read().unwrap_or_else(|e| e.into_inner()).clone().filter(|l| !l.dead.is_cancelled())
    }

    fn set(&self, l: Option<Link>) {
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = l;
    }

    /// Pauses the bind for `by` from now, or keeps a longer pause already on; returns how much
    /// later the pause now ends than before (what the pause metric adds up).
    pub(super) fn pause(&self, by: Duration) -> Duration {
        let mut until = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let old_end = until.filter(|u| *u > now).unwrap_or(now);
        let new_end = now + by;
        if new_end > old_end {
            *until = Some(new_end);
            new_end - old_end
        } else {
            Duration::ZERO
        }
    }

    /// When the pause on this bind ends, if one is on.
    pub(super) fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|u| *u > Instant::now())
    }

    /// Waits for in-flight submits to answer (bounded by the caller's drain), then unbinds.
    pub(super) async fn unbind(&self) {
        let Some(Link { client, .. }) = self.link() else { return };
        // Taking every permit means no submit is in flight on this bind any more.
        let permits = self.window.available_permits() as u32;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.window.acquire_many(permits.max(1))).await;
        self.set(None);
        match tokio::time::timeout(Duration::from_secs(5), client.unbind()).await {
            Ok(Ok(())) => info!(bind = self.index, "SMPP unbind acknowledged"),
            Ok(Err(e)) => warn!(bind = self.index, error = %e, "SMPP unbind failed"),
            Err(_) => warn!(bind = self.index, "SMPP unbind timed out"),
        }
        // Bounded: rusmppc 0.4's connection task can sit idle with requests queued (see the
        // enquire_link note in config), and a close that never returns would hang shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
    }
}

fn backoff(attempt: u32, cfg: &SmppConfig) -> Duration {
    jittered(cfg.reconnect_min.saturating_mul(1u32 << attempt.min(16)).min(cfg.reconnect_max))
}

/// Full jitter keeps many gateways from reconnecting to a recovering SMSC in lockstep.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// What a bind is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Role {
    pub(super) fn can_submit(self) -> bool {
        self != Self::Receiver
    }

    fn label(self) -> &'static str {
        match self {
            Self::Transceiver => "transceiver",
            Self::Transmitter => "transmitter",
            Self::Receiver => "receiver",
        }
    }
}

/// What every bind of one provider shares.
pub(super) struct BindCtx {
    pub(super) provider: Arc<str>,
    pub(super) cfg: SmppConfig,
    pub(super) address: String,
    /// Binds that can submit, currently bound; senders wait on it when it is zero.
    pub(super) bound: watch::Sender<usize>,
    pub(super) health: Health,
    pub(super) stop: CancellationToken,
}

/// Why a connect-and-bind failed.
#[derive(Debug, thiserror::Error)]
enum BindError {
    /// The SMSC answered the bind with this status and will again (see `status::bind_refused`).
    #[error("SMSC refused the bind: {0:?}")]
    Refused(CommandStatus),
    #[error("{0}")]
    Other(String),
}

impl From<rusmppc::error::Error> for BindError {
    fn from(e: rusmppc::error::Error) -> Self {
        match e {
            rusmppc::error::Error::UnexpectedResponse { response } if status::bind_refused(response.status()) => Self::Refused(response.status()),
            other => Self::Other(other.to_string()),
        }
    }
}

/// Keeps one bind up until `stop`: connects, serves the link until it closes or is declared
/// dead, and connects again after a backoff.
///
/// `events_tx` is the task's own: the correlator runs until every bind task has ended and
/// dropped it, so it must not live in anything the provider keeps.
pub(super) async fn run(ctx: Arc<BindCtx>, slot: Arc<BindSlot>, role: Role, events_tx: mpsc::Sender<ProviderEvent>) {
    let BindCtx { provider, cfg, address, stop, .. } = &*ctx;
    let mut attempt = 0u32;
    while !stop.is_cancelled() {
        let wait = match connect(cfg, address, role).await {
            Ok((client, events, switch)) => {
                info!(provider = %provider, bind = slot.index, role = role.label(), %address, "SMPP bound");
                let since = Instant::now();
                serve(&ctx, &slot, role, client, events, switch, &events_tx).await;
                if stop.is_cancelled() {
                    break;
                }
                // A link that dies right after binding backs off like a failed connect, so an
                // SMSC that takes binds and then drops them is not hammered.
                if since.elapsed() > cfg.reconnect_max {
                    attempt = 0;
                }
                let wait = backoff(attempt, cfg);
                attempt = attempt.saturating_add(1);
                warn!(provider = %provider, bind = slot.index, role = role.label(), retry_in = ?wait, "SMPP link closed; reconnecting");
                wait
            }
            Err(BindError::Refused(status)) => {
                // The same answer would come back at once: try again only every reconnect_max.
                ctx.health.refused(format!("bind answered {status:?} (0x{:08X})", u32::from(status)), cfg.reconnect_max);
                jittered(cfg.reconnect_max)
            }
            Err(BindError::Other(e)) => {
                let wait = backoff(attempt, cfg);
                attempt = attempt.saturating_add(1);
                warn!(provider = %provider, bind = slot.index, role = role.label(), error = %e, retry_in = ?wait, "SMPP bind failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Serves one bound link until it closes, is declared dead, or is unbound at shutdown.
async fn serve(
    ctx: &BindCtx,
    slot: &BindSlot,
    role: Role,
    client: rusmppc::Client,
    mut events: impl futures::Stream<Item = Event> + Unpin,
    switch: KillSwitch,
    events_tx: &mpsc::Sender<ProviderEvent>,
) {
    let (provider, stop) = (&ctx.provider, &ctx.stop);
    let dead = Dead::default();
    let inflight = Arc::new(InFlight::default());
    slot.set(Some(Link { client: client.clone(), dead: dead.clone(), inflight: inflight.clone() }));
    ctx.health.bound();
    if role.can_submit() {
        ctx.bound.send_modify(|n| *n += 1);
    }
    let (acks, ack_queue) = mpsc::channel(incoming::UNACKED_RECEIPTS);
    let acker = tokio::spawn(incoming::acknowledge(provider.clone(), client.clone(), ack_queue));
    let mut cut = false;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = dead.cancelled(), if !cut => {
                warn!(provider = %provider, bind = slot.index, "SMPP link declared dead by a sender (a submit_sm unanswered or not taken); cutting it to bind again");
                // Not `close()`: that would first write the submits still queued in rusmppc.
                // The connection ends on the cut; what it had read is still served below.
                switch.kill();
                cut = true;
                continue;
            }
            _ = stop.cancelled() => {
                // Keep serving receipts until unbind closes the stream, within reason: a
                // connection that never ends must not hold shutdown.
                tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap_or(None)
            }
        };
        // rusmppc ends the stream when its connection task ends: the peer closed, an I/O
        // error, or no enquire_link_resp within response_timeout (a half-dead link).
        let Some(event) = event else { break };
        match event {
            // Submits go out without rusmppc waiting for their answers (see `inflight`).
            Event::Incoming(cmd) if matches!(cmd.id(), CommandId::SubmitSmResp | CommandId::GenericNack) => inflight.answer(cmd),
            Event::Incoming(cmd) => incoming::handle(provider, ctx.cfg.receipt_id_format, &client, cmd, events_tx, &acks).await,
            Event::Error(e) => {
                if stop.is_cancelled() {
                    debug!(provider = %provider, bind = slot.index, error = %e, "SMPP link closing");
                } else {
                    warn!(provider = %provider, bind = slot.index, error = %e, "SMPP link error");
                }
                // A closed client's stream may keep reporting its closure: leave
                // instead of spinning on it.
                if client.is_closed() {
                    break;
                }
            }
        }
    }
    // The link is gone: receipts still waiting for the store can no longer be acknowledged on
    // it, and the SMSC redelivers them on the next bind.
    acker.abort();
    slot.set(None);
    // Submits written on this link and still unanswered now learn they never will be.
    inflight.close();
    if role.can_submit() {
        ctx.bound.send_modify(|n| *n = n.saturating_sub(1));
    }
    ctx.health.unbound();
}

async fn connect(
    cfg: &SmppConfig,
    address: &str,
    role: Role,
) -> Result<(rusmppc::Client, impl futures::Stream<Item = Event> + Unpin + 'static, KillSwitch), BindError> {
    let other = |e: &dyn std::fmt::Display| BindError::Other(e.to_string());
    let stream = tokio::time::timeout(cfg.response_timeout, tokio::net::TcpStream::connect(address)).await.map_err(|e| other(&e))?.map_err(|e| other(&e))?;
    stream.set_nodelay(true).map_err(|e| other(&e))?;
    let stream = tls::wrap(cfg, stream).await.map_err(BindError::Other)?;
    let switch = KillSwitch::default();
    let stream = coalesce(switch.wrap(stream));
    let activity = stream.activity();
    let (client, events, connection) = ConnectionBuilder::new()
        .enquire_link_interval(cfg.enquire_link_interval)
        .enquire_link_response_timeout(cfg.response_timeout)
        .response_timeout(cfg.response_timeout)
        // Many SMSCs speak 3.4; the bind's version field is informational for them.
        .disable_interface_version_check()
        .no_spawn()
        .connected(stream);
    tokio::spawn(Repoll::new(connection, activity));
    let system_id = COctetString::from_str(&cfg.system_id).map_err(|e| other(&e))?;
    let password = COctetString::from_str(&cfg.password).map_err(|e| other(&e))?;
    let system_type = COctetString::from_str(&cfg.system_type).map_err(|e| other(&e))?;
    match role {
        Role::Transceiver => {
            let bind = BindTransceiver::builder().system_id(system_id).password(password).system_type(system_type);
            client.bind_transceiver(bind.build()).await.map(drop)?
        }
        Role::Transmitter => {
            let bind = BindTransmitter::builder().system_id(system_id).password(password).system_type(system_type);
            client.bind_transmitter(bind.build()).await.map(drop)?
        }
        Role::Receiver => {
            let bind = BindReceiver::builder().system_id(system_id).password(password).system_type(system_type);
            client.bind_receiver(bind.build()).await.map(drop)?
        }
    }
    Ok((client, events, switch))
}
