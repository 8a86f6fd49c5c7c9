//! The simulator's counters: bumped by sessions and the receipt router, read by tests and the
//! CLI's periodic stats line through [`SimStats`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters since start; `bound_sessions` is the current number of bound connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimStats {
    pub binds: u64,
    pub unbinds: u64,
    /// submit_sm PDUs read, whatever the answer (throttled and ignored ones included).
    pub submit_sm: u64,
    /// Logical messages taken: a message counts once its last part is accepted, even if the
    /// connection was then dropped before the resp. Throttled and ignored parts never count.
    pub messages: u64,
    pub receipts_sent: u64,
    pub enquire_links: u64,
    pub bound_sessions: u64,
    /// submit_sm answered ESME_RTHROTTLED (`throttle_every`, `throttle_above_tps`).
    pub throttled: u64,
    /// Connections closed by `drop_after_submits`.
    pub connections_dropped: u64,
    /// enquire_link left unanswered (`ignore_enquire_link` or a half-dead connection).
    pub enquire_links_ignored: u64,
    /// submit_sm left unanswered and not taken on a half-dead connection.
    pub submits_ignored: u64,
    /// Connections that went half-dead (`half_dead_after_submits`).
    pub half_dead_sessions: u64,
    /// Binds answered ESME_RBINDFAIL (`refuse_binds`).
    pub binds_refused: u64,
    /// Receipts queued on the wire ahead of their submit_sm_resp (`receipt_before_resp_ratio`).
    pub receipts_before_resp: u64,
}

/// One atomic per [`SimStats`] field.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub binds: AtomicU64,
    pub unbinds: AtomicU64,
    pub submit_sm: AtomicU64,
    pub messages: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub enquire_links: AtomicU64,
    pub bound_sessions: AtomicU64,
    pub throttled: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub enquire_links_ignored: AtomicU64,
    pub submits_ignored: AtomicU64,
    pub half_dead_sessions: AtomicU64,
    pub binds_refused: AtomicU64,
    pub receipts_before_resp: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        SimStats {
            binds: get(&self.binds),
            unbinds: get(&self.unbinds),
            submit_sm: get(&self.submit_sm),
            messages: get(&self.messages),
            receipts_sent: get(&self.receipts_sent),
            enquire_links: get(&self.enquire_links),
            bound_sessions: get(&self.bound_sessions),
            throttled: get(&self.throttled),
            connections_dropped: get(&self.connections_dropped),
            enquire_links_ignored: get(&self.enquire_links_ignored),
            submits_ignored: get(&self.submits_ignored),
            half_dead_sessions: get(&self.half_dead_sessions),
            binds_refused: get(&self.binds_refused),
            receipts_before_resp: get(&self.receipts_before_resp),
        }
    }
}
