//! One SMPP bind: connect, bind, serve incoming PDUs, notice a dead link, reconnect with
//! backoff. The slot senders pick is here too, with the bind's pause.

use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use rusmpp::pdus::BindTransceiver;
use rusmpp::types::COctetString;
use rusmppc::{ConnectionBuilder, Event};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::incoming;
use super::rate::Rate;
use crate::config::SmppConfig;
use crate::receipt::ProviderEvent;
use crate::telemetry;

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
    /// Cancelled by a sender that concluded the link is dead (a submit_sm went unanswered);
    /// the bind loop then closes it and binds again.
    pub(super) dead: CancellationToken,
}

impl BindSlot {
    pub(super) fn new(index: usize, window: usize, bind_tps: u32) -> Self {
        Self {
            index,
            link: RwLock::new(None),
            window: Arc::new(Semaphore::new(window)),
            paused_until: Mutex::new(None),
            rate: Rate::per_second(bind_tps),
        }
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
        let _ = client.close().await;
    }
}

fn backoff(attempt: u32, cfg: &SmppConfig) -> Duration {
    let base = cfg.reconnect_min.saturating_mul(1u32 << attempt.min(16)).min(cfg.reconnect_max);
    // Full jitter keeps many gateways from reconnecting to a recovering SMSC in lockstep.
    let jitter = rand::rng().random_range(0.5..1.0);
    base.mul_f64(jitter)
}

pub(super) async fn run(
    slot: Arc<BindSlot>,
    provider: Arc<str>,
    cfg: SmppConfig,
    address: String,
    events_tx: mpsc::Sender<ProviderEvent>,
    bound: Arc<watch::Sender<usize>>,
    stop: CancellationToken,
) {
    let mut attempt = 0u32;
    while !stop.is_cancelled() {
        match connect(&cfg, &address).await {
            Ok((client, mut events)) => {
                attempt = 0;
                info!(provider = %provider, bind = slot.index, %address, "SMPP bound");
                let dead = CancellationToken::new();
                slot.set(Some(Link { client: client.clone(), dead: dead.clone() }));
                bound.send_modify(|n| *n += 1);
                metrics::gauge!(telemetry::SMPP_BINDS_BOUND, "provider" => provider.to_string()).increment(1.0);
                loop {
                    let event = tokio::select! {
                        e = events.next() => e,
                        _ = dead.cancelled() => {
                            warn!(provider = %provider, bind = slot.index, "SMPP link declared dead (a submit_sm went unanswered); closing it to bind again");
                            let _ = tokio::time::timeout(Duration::from_secs(1), client.close()).await;
                            break;
                        }
                        _ = stop.cancelled() => {
                            // Keep serving receipts until unbind closes the stream.
                            events.next().await
                        }
                    };
                    let Some(event) = event else { break };
                    match event {
                        Event::Incoming(cmd) => incoming::handle(&provider, &client, cmd, &events_tx).await,
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
                slot.set(None);
                bound.send_modify(|n| *n = n.saturating_sub(1));
                metrics::gauge!(telemetry::SMPP_BINDS_BOUND, "provider" => provider.to_string()).decrement(1.0);
                if !stop.is_cancelled() {
                    warn!(provider = %provider, bind = slot.index, "SMPP link closed; reconnecting");
                }
            }
            Err(e) => {
                let wait = backoff(attempt, &cfg);
                attempt += 1;
                warn!(provider = %provider, bind = slot.index, error = %e, retry_in = ?wait, "SMPP bind failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }
}

async fn connect(
    cfg: &SmppConfig,
    address: &str,
) -> anyhow::Result<(rusmppc::Client, impl futures::Stream<Item = Event> + Unpin + 'static)> {
    let stream = tokio::time::timeout(cfg.response_timeout, tokio::net::TcpStream::connect(address)).await??;
    stream.set_nodelay(true)?;
    let (client, events) = ConnectionBuilder::new()
        .enquire_link_interval(cfg.enquire_link_interval)
        .enquire_link_response_timeout(cfg.response_timeout)
        .response_timeout(cfg.response_timeout)
        // Many SMSCs speak 3.4; the bind's version field is informational for them.
        .disable_interface_version_check()
        .connected(stream);
    client
        .bind_transceiver(
            BindTransceiver::builder()
                .system_id(COctetString::from_str(&cfg.system_id)?)
                .password(COctetString::from_str(&cfg.password)?)
                .system_type(COctetString::from_str(&cfg.system_type)?)
                .build(),
        )
        .await?;
    Ok((client, events))
}
