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
    pub from: String,
    pub to: String,
    pub text: String,
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
