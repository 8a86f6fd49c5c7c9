//! Receipts: what providers say happened after they took a message, turned into final reports.

pub mod correlate;
pub mod opt_out;

use std::sync::Arc;

use crate::store::PartOutcome;

/// A receipt as any provider reports it, before correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundReceipt {
    pub provider: Arc<str>,
    pub message_id: String,
    /// `None` for an intermediate state (enroute, accepted): nothing to report yet.
    pub outcome: Option<PartOutcome>,
    pub error_code: Option<String>,
}

/// An inbound message from a recipient (SMPP MO, chat webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub provider: Arc<str>,
    pub from: String,
    pub to: String,
    pub text: String,
}

/// What providers push towards the correlator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    Receipt(InboundReceipt),
    Inbound(InboundMessage),
}
