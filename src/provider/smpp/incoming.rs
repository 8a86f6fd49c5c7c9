//! PDUs the SMSC sends us on a bind: delivery receipts and MO messages (`deliver_sm`), each
//! acknowledged in arrival order, a receipt only once the store has it; and the SMSC's own
//! `unbind`.

use std::sync::Arc;

use rusmpp::pdus::DeliverSmResp;
use rusmpp::{CommandId, Pdu};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::config::SmppReceiptIdFormat;
use super::ids;
use super::receipt::{self, Inbound, ReceiptState};
use crate::receipt::{InboundMessage, InboundReceipt, ProviderEvent, ReceiptAck};
use crate::store::PartOutcome;

/// Receipts read but not yet acknowledged on one bind. When it is full the bind stops reading,
/// and the SMSC stops sending once its own window of unacknowledged `deliver_sm` is full.
pub(super) const UNACKED_RECEIPTS: usize = 4096;

/// A `deliver_sm` to acknowledge: its sequence number, and what to wait for first (`None`:
/// nothing to keep, acknowledge at once).
pub(super) type PendingAck = (u32, Option<oneshot::Receiver<()>>);

/// Handles one incoming PDU; every `deliver_sm` is queued for its `deliver_sm_resp`.
pub(super) async fn handle(
    provider: &Arc<str>,
    id_format: SmppReceiptIdFormat,
    client: &rusmppc::Client,
    cmd: rusmpp::Command,
    events_tx: &mpsc::Sender<ProviderEvent>,
    acks: &mpsc::Sender<PendingAck>,
) {
    match cmd.id() {
        CommandId::DeliverSm => {
            let mut stored = None;
            if let Some(Pdu::DeliverSm(pdu)) = cmd.pdu() {
                if let Some(mut ev) = event(provider, id_format, pdu) {
                    match &mut ev {
                        ProviderEvent::Receipt(r) if r.outcome.is_some() => {
                            let (ack, rx) = ReceiptAck::pair();
                            r.ack = ack;
                            stored = Some(rx);
                        }
                        ProviderEvent::Inbound(m) => {
                            let (ack, rx) = ReceiptAck::pair();
                            m.ack = ack;
                            stored = Some(rx);
                        }
                        ProviderEvent::Receipt(_) => {}
                    }
                    let _ = events_tx.send(ev).await;
                }
            }
            let _ = acks.send((cmd.sequence_number(), stored)).await;
        }
        CommandId::Unbind => {
            let _ = client.unbind_resp(cmd.sequence_number()).await;
        }
        other => debug!(provider = %provider, command = ?other, "unexpected PDU from SMSC ignored"),
    }
}

/// What a `deliver_sm` means for the rest of the gateway. A receipt's message id is put in the
/// provider's canonical form ([`ids`]), the form the submit side stored its mapping under.
///
/// MO messages go to the correlator as [`ProviderEvent::Inbound`], which records them and
/// acts on stop words; the bind acknowledges them once they are recorded.
pub(crate) fn event(provider: &Arc<str>, id_format: SmppReceiptIdFormat, pdu: &rusmpp::pdus::DeliverSm) -> Option<ProviderEvent> {
    match receipt::parse_deliver_sm(pdu) {
        Ok(Inbound::Receipt(r)) => Some(ProviderEvent::Receipt(InboundReceipt {
            provider: provider.clone(),
            message_id: ids::from_receipt(id_format, &r.message_id),
            outcome: outcome(&r.state),
            error_code: r.error_code,
            read: false,
            stored: false,
            ack: ReceiptAck::default(),
        })),
        Ok(Inbound::Mo { source, destination, text }) => Some(ProviderEvent::Inbound(InboundMessage {
            provider: provider.clone(),
            channel: "sms".into(),
            from: source,
            to: destination,
            text,
            at: None,
            ack: ReceiptAck::default(),
        })),
        Err(e) => {
            warn!(provider = %provider, error = %e, "deliver_sm not understood; acknowledged and dropped");
            None
        }
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

/// Sends the queued `deliver_sm_resp`s in order, each receipt's once the store has it. One at a
/// time on purpose: firing them from many tasks let them pile onto rusmppc's connection task
/// faster than the SMSC read them, and the link wedged (both sides blocked writing).
pub(super) async fn acknowledge(provider: Arc<str>, client: rusmppc::Client, mut queue: mpsc::Receiver<PendingAck>) {
    while let Some((seq, stored)) = queue.recv().await {
        if let Some(stored) = stored {
            if stored.await.is_err() {
                // The correlator let go without storing it (shutting down): unacknowledged,
                // the SMSC delivers it again, to us or to another instance.
                debug!(provider = %provider, "receipt not stored; left for the SMSC to redeliver");
                continue;
            }
        }
        if let Err(e) = client.deliver_sm_resp(seq, DeliverSmResp::default()).await {
            debug!(provider = %provider, error = %e, "deliver_sm_resp not sent");
        }
    }
}
