//! Receipts: what providers say happened after they took a message, turned into final reports.

pub mod correlate;
pub mod deadlines;
pub mod inbound;
pub mod opt_out;

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::store::PartOutcome;

/// A receipt as any provider reports it, before correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundReceipt {
    pub provider: Arc<str>,
    pub message_id: String,
    /// `None` for an intermediate state (enroute, accepted): nothing to report yet.
    pub outcome: Option<PartOutcome>,
    pub error_code: Option<String>,
    /// A chat channel's "read": `outcome` is `Delivered` (a read message was delivered, even
    /// when its `delivered` status is skipped or late), and the job's final is followed by a
    /// non-final `read` report.
    pub read: bool,
    /// Kept in the store as an early receipt ([`crate::store::Store::keep_early`]): to be
    /// forgotten there once it matches.
    pub stored: bool,
    /// Told once the store has what this receipt says; the provider acknowledges it to the
    /// SMSC only then, so a crash before that makes the SMSC deliver it again.
    pub ack: ReceiptAck,
}

/// The correlator's word back to the provider that a receipt is safe. Dropped unsaid (the
/// process is stopping), the receipt goes unacknowledged and the SMSC redelivers it.
#[derive(Clone, Default)]
pub struct ReceiptAck(Option<Arc<Mutex<Option<oneshot::Sender<()>>>>>);

impl ReceiptAck {
    /// An ack and what the provider waits on.
    pub fn pair() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(Arc::new(Mutex::new(Some(tx))))), rx)
    }

    pub fn done(&self) {
        if let Some(cell) = &self.0 {
            if let Some(tx) = cell.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(());
            }
        }
    }
}

impl std::fmt::Debug for ReceiptAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ReceiptAck" } else { "ReceiptAck(none)" })
    }
}

/// An ack says nothing about the receipt itself.
impl PartialEq for ReceiptAck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for ReceiptAck {}

/// An inbound message from a recipient (SMPP MO, chat webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub provider: Arc<str>,
    /// The channel it came on (`sms` for SMPP MO): the opt-out list a STOP goes on, and for
    /// `whatsapp` the customer-service window it opens.
    pub channel: String,
    /// The sender (E.164 for phone channels).
    pub from: String,
    /// What it was sent to: our number or short code; WhatsApp's phone number id.
    pub to: String,
    pub text: String,
    /// When the sender sent it, where the provider says; else when it arrived.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Told once the message is recorded ([`inbound::InboundOut`]); as with receipts, the
    /// SMSC gets its `deliver_sm_resp` only then.
    pub ack: ReceiptAck,
}

/// What providers push towards the correlator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    Receipt(InboundReceipt),
    Inbound(InboundMessage),
}
