//! The in-memory store: `sendgate dev` and unit tests. One process, nothing survives it.
//!
//! The state lives here, one impl per store concern beside it (`claims.rs`, `schedule.rs`,
//! `receipts.rs`, `history.rs`, `opt_outs.rs`, `whatsapp.rs`, `rates.rs`, `pacing.rs`), each the same
//! decisions as its Redis script on plain maps under one lock. It differs from Redis only
//! where one process makes the difference: every owner is alive, so nothing is taken over.
//!
//! TTLs are enforced lazily (on read) plus a sweep on writes, so memory stays bounded by what
//! is live, not by everything ever seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// foldhash instead of SipHash: `sendgate dev` hashes several job ids per job, and SipHash was
/// a visible share of its CPU. Seeded per process, so keys cannot be chosen to collide.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{PartOutcome, SentJob};
use crate::report::Report;

mod claims;
mod history;
mod opt_outs;
mod pacing;
mod rates;
mod receipts;
mod schedule;
#[cfg(test)]
pub(crate) mod tests;
mod whatsapp;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// `local/{incarnation}`: tokens minted for this store start with it.
    owner: String,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self { inner: Mutex::default(), owner: format!("local/{}", rand::random::<u32>()) }
    }
}

/// Where a claimed job stands (the Redis hash's `st`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Claimed,
    Submitting,
    Deferred,
    Finishing,
    Sent,
    Final,
}

/// One job id's claim: the same state machine as the Redis hash, with every owner alive
/// (one process holds them all).
struct ClaimState {
    expires: Instant,
    st: St,
    own: String,
    src: Option<String>,
    /// Second records of this id seen so far: their sources, each with the token that decided
    /// its `duplicate` until that event is recorded (`None` from then on).
    duplicates: Vec<(String, Option<String>)>,
    /// Parked, and the `deferred` report of that is not recorded yet: not resumed meanwhile.
    held: bool,
    /// The first step of a cascade: the job as read, for parking its later steps
    /// (`ClaimReq::plan`).
    plan: Option<String>,
}

#[derive(Default)]
struct Inner {
    claims: FastMap<String, ClaimState>,
    scheduled: FastMap<String, Entry>,
    /// (due, id): the due index of `scheduled`.
    due: BTreeSet<(DateTime<Utc>, String)>,
    next_lease: u64,
    /// provider → message id → job id; nested so that a receipt's lookup allocates nothing.
    messages: FastMap<String, FastMap<String, String>>,
    sent: FastMap<String, Tracked>,
    /// `provider\nmessage id` → the job, kept for a `read` after its `delivered`
    /// (`Receipts::keep_for_read`), and when each entry expires, oldest first.
    reads: FastMap<String, (Instant, SentJob)>,
    read_expiry: std::collections::VecDeque<(Instant, String)>,
    /// (deadline, job id).
    deadlines: BTreeSet<(DateTime<Utc>, String)>,
    history: FastMap<String, (Instant, Vec<Report>)>,
    last_sweep: Option<Instant>,
    /// tenant → channel → recipients, ordered so that a list pages by recipient; nested so
    /// that a lookup on the hot path allocates nothing.
    opt_outs: HashMap<String, HashMap<String, BTreeSet<String>>>,
    whatsapp: whatsapp::WhatsappState,
    /// Rate limit → its TAT, µs since the epoch.
    rate_tats: HashMap<String, u64>,
    /// `campaign_field` → speed set at runtime.
    campaign_rates: HashMap<String, f64>,
    /// Smooth sending: deadlines and pending jobs per campaign.
    pacing: pacing::PacingState,
}

struct Entry {
    due: DateTime<Utc>,
    id: String,
    payload: String,
    src: Option<String>,
    lease: Option<u64>,
    recheck: bool,
}

struct Tracked {
    job: SentJob,
    deadline: DateTime<Utc>,
    delivered_parts: usize,
    /// Decided by a receipt, waiting for its final to be recorded.
    decided: Option<PartOutcome>,
    /// Its `accepted` report is not recorded yet: a receipt that ends it hands its final to
    /// the recorder of `accepted` (`handed`).
    held: bool,
    /// Decided while held: the receipt's error code and when, for the recorder of `accepted`.
    handed: Option<(Option<String>, DateTime<Utc>)>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Drops expired claims and histories at most once a second.
    fn sweep(&mut self) {
        let now = Instant::now();
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = Some(now);
        self.claims.retain(|_, c| c.expires > now);
        self.history.retain(|_, (exp, _)| *exp > now);
    }
}
