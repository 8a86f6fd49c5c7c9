//! The store: everything that several instances must share, behind one contract split by
//! concern, with two implementations that keep the same promises.
//!
//! - [`claims`]: who may act on a job id (fencing tokens), and the store's liveness probe.
//! - [`schedule`]: jobs parked for later, leased out when due.
//! - [`receipts`]: accepted jobs until their final, the receipt-deadline sweep.
//! - [`history`]: each job's report events.
//! - [`opt_outs`]: per-tenant, per-channel opt-out lists.
//! - [`whatsapp`]: WhatsApp tier windows, service windows and the pair limit.
//! - [`rates`]: rate-limit leases ([`gcra`]) and campaign speeds.
//! - [`pacing`]: smooth sending: campaign deadlines and pending jobs.
//!
//! [`Store`] is all of them together; callers hold an `Arc<dyn Store>`. [`redis`] is the
//! shared store (key names in [`keys`], one Lua script per multi-step update in `scripts/`);
//! [`memory`] is `sendgate dev` and unit tests. One conformance suite holds both to the same
//! cases (`tests/redis_store/conformance.rs`).
//!
//! Every method takes or returns a batch where the hot path calls it, so that an implementation
//! over the network (Redis) costs one round trip per batch, not one per job.

pub mod claims;
pub mod gcra;
pub mod history;
pub mod keys;
pub mod memory;
pub mod opt_outs;
pub mod pacing;
pub mod rates;
pub mod receipts;
pub mod redis;
pub mod schedule;
pub mod whatsapp;

pub use claims::{mint_token, Claim, ClaimReq, Claims, Fenced};
pub use gcra::{RateGrant, RateLease};
pub use history::History;
pub use memory::MemoryStore;
pub use opt_outs::{OptOutEntry, OptOutPage, OptOuts};
pub use pacing::{pace_field, pace_limit, PaceCall, PaceState, Pacing};
pub use rates::{campaign_field, Rates};
pub use receipts::{EarlyReceipt, HandedFinal, Overdue, PartOutcome, PartReceipt, Receipts, SentJob, Settled, EARLY_RECEIPT_KEEP};
pub use redis::RedisStore;
pub use schedule::{ClaimedJob, DueKind, Schedule, ScheduledJob, HELD_RETRY};
pub use whatsapp::Whatsapp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached; the caller keeps the work and tries again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data did not decode: a bug or a foreign writer, never retried.
    #[error("corrupt store entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The whole store contract. Implement the concern traits; this follows. Method calls through
/// `dyn Store` reach every concern's methods without importing its trait (a concrete store
/// needs the concern's trait in scope).
pub trait Store: Claims + Schedule + Receipts + History + OptOuts + Whatsapp + Rates + Pacing + Send + Sync + 'static {}

impl<T> Store for T where T: Claims + Schedule + Receipts + History + OptOuts + Whatsapp + Rates + Pacing + Send + Sync + 'static {}
