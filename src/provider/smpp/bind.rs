//! One SMPP bind: connect, bind_transceiver, serve incoming PDUs, reconnect with backoff.

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use rusmpp::pdus::{BindTransceiver, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::{CommandId, Pdu};
use rusmppc::{ConnectionBuilder, Event};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::receipt::{self, Inbound, ReceiptState};
use super::status;
use crate::config::SmppConfig;
use crate::provider::SendError;
use crate::receipt::{InboundMessage, InboundReceipt, ProviderEvent};
use crate::store::PartOutcome;
use crate::telemetry;

pub(super) struct BindSlot {
    index: usize,
    /// The live client while bound; `None` between connections.
    client: RwLock<Option<rusmppc::Client>>,
    /// In-flight `submit_sm` on this bind: rusmppc has no window of its own.
    pub(super) window: Semaphore,
}

impl BindSlot {
    pub(super) fn new(index: usize, window: usize) -> Self {
        Self { index, client: RwLock::new(None), window: Semaphore::new(window) }
    }

    pub(super) fn client(&self) -> Option<rusmppc::Client> {
        self.client.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, c: Option<rusmppc::Client>) {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// Waits for in-flight submits to answer (bounded by the caller's drain), then unbinds.
    pub(super) async fn unbind(&self) {
        let Some(client) = self.client() else { return };
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

/// What a failed `submit_sm` means for the job.
pub(super) fn classify_error(e: rusmppc::error::Error, timeout: Duration) -> SendError {
    use rusmppc::error::Error as E;
    match e {
        E::UnexpectedResponse { response } => status::classify(response.status()),
        E::ResponseTimeout { .. } => SendError::Ambiguous(timeout),
        // The connection went away before the PDU was written or answered. If it was never
        // written this is a plain retry; if it was, we cannot know: rusmppc does not say which,
        // so treat a closed connection as ambiguous only when the write may have happened.
        E::ConnectionClosed | E::ConnectionClosedByPeer | E::Io(_) => SendError::Ambiguous(timeout),
        other => SendError::Transient { code: "connection".into(), message: other.to_string() },
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
                slot.set(Some(client.clone()));
                bound.send_modify(|n| *n += 1);
                metrics::gauge!(telemetry::SMPP_BINDS_BOUND, "provider" => provider.to_string()).increment(1.0);
                loop {
                    let event = tokio::select! {
                        e = events.next() => e,
                        _ = stop.cancelled() => {
                            // Keep serving receipts until unbind closes the stream.
                            events.next().await
                        }
                    };
                    let Some(event) = event else { break };
                    match event {
                        Event::Incoming(cmd) => handle_incoming(&provider, &client, cmd, &events_tx).await,
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

async fn handle_incoming(
    provider: &Arc<str>,
    client: &rusmppc::Client,
    cmd: rusmpp::Command,
    events_tx: &mpsc::Sender<ProviderEvent>,
) {
    match cmd.id() {
        CommandId::DeliverSm => {
            if let Some(Pdu::DeliverSm(pdu)) = cmd.pdu() {
                let event = match receipt::parse_deliver_sm(pdu) {
                    Ok(Inbound::Receipt(r)) => Some(ProviderEvent::Receipt(InboundReceipt {
                        provider: provider.clone(),
                        message_id: r.message_id,
                        outcome: outcome(&r.state),
                        error_code: r.error_code,
                    })),
                    Ok(Inbound::Mo { source, destination, text }) => Some(ProviderEvent::Inbound(InboundMessage {
                        provider: provider.clone(),
                        from: source,
                        to: destination,
                        text,
                    })),
                    Err(e) => {
                        warn!(provider = %provider, error = %e, "deliver_sm not understood; acknowledged and dropped");
                        None
                    }
                };
                // Hand it on before acknowledging, so the SMSC resends it if we die in between.
                if let Some(ev) = event {
                    let _ = events_tx.send(ev).await;
                }
            }
            // Awaited inline on purpose: sending these from spawned tasks let them pile onto
            // rusmppc's single connection task faster than the SMSC read them, and the link
            // wedged (both sides blocked writing). Inline, receipts pace themselves.
            if let Err(e) = client.deliver_sm_resp(cmd.sequence_number(), DeliverSmResp::default()).await {
                debug!(provider = %provider, error = %e, "deliver_sm_resp not sent");
            }
        }
        CommandId::Unbind => {
            let _ = client.unbind_resp(cmd.sequence_number()).await;
        }
        other => debug!(provider = %provider, command = ?other, "unexpected PDU from SMSC ignored"),
    }
}

fn outcome(state: &ReceiptState) -> Option<PartOutcome> {
    match state {
        ReceiptState::Delivered => Some(PartOutcome::Delivered),
        ReceiptState::Undelivered => Some(PartOutcome::Undelivered),
        ReceiptState::Expired => Some(PartOutcome::Expired),
        ReceiptState::Rejected => Some(PartOutcome::Rejected),
        ReceiptState::Unknown => Some(PartOutcome::Unknown),
        ReceiptState::Accepted => None,
    }
}
