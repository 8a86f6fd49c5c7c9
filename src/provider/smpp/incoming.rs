//! PDUs the SMSC sends us on a bind: delivery receipts and MO messages (`deliver_sm`), always
//! acknowledged, and the SMSC's own `unbind`.

use std::sync::Arc;

use rusmpp::pdus::DeliverSmResp;
use rusmpp::{CommandId, Pdu};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ids;
use super::receipt::{self, Inbound, ReceiptState};
use crate::config::SmppReceiptIdFormat;
use crate::receipt::{InboundMessage, InboundReceipt, ProviderEvent};
use crate::store::PartOutcome;

/// Handles one incoming PDU; every `deliver_sm` gets its `deliver_sm_resp`, whatever it held.
pub(super) async fn handle(
    provider: &Arc<str>,
    id_format: SmppReceiptIdFormat,
    client: &rusmppc::Client,
    cmd: rusmpp::Command,
    events_tx: &mpsc::Sender<ProviderEvent>,
) {
    match cmd.id() {
        CommandId::DeliverSm => {
            if let Some(Pdu::DeliverSm(pdu)) = cmd.pdu() {
                if let Some(ev) = event(provider, id_format, pdu) {
                    // Hand it on before acknowledging, so the SMSC resends it if we die in between.
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

/// What a `deliver_sm` means for the rest of the gateway. A receipt's message id is put in the
/// provider's canonical form ([`ids`]), the form the submit side stored its mapping under.
///
/// MO messages go to the correlator as [`ProviderEvent::Inbound`]; what it does with them
/// (today: count and log; later: opt-out keywords into the store) is its business, not the
/// bind's. The bind's part, the acknowledgement, is done either way.
pub(super) fn event(provider: &Arc<str>, id_format: SmppReceiptIdFormat, pdu: &rusmpp::pdus::DeliverSm) -> Option<ProviderEvent> {
    match receipt::parse_deliver_sm(pdu) {
        Ok(Inbound::Receipt(r)) => Some(ProviderEvent::Receipt(InboundReceipt {
            provider: provider.clone(),
            message_id: ids::from_receipt(id_format, &r.message_id),
            outcome: outcome(&r.state),
            error_code: r.error_code,
        })),
        Ok(Inbound::Mo { source, destination, text }) => {
            Some(ProviderEvent::Inbound(InboundMessage { provider: provider.clone(), from: source, to: destination, text }))
        }
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
