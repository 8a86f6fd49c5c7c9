//! The counters behind [`SimStats`], and the same numbers as metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::faults::Refusal;
use super::statuses::Status;
use crate::telemetry;

/// What a simulator did so far; `sendgate provider-sim` prints it as a JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimStats {
    /// Send requests taken (answered 2xx), slow ones included.
    pub taken: u64,
    /// Send requests refused, by kind.
    pub throttled: u64,
    pub pair_limited: u64,
    pub server_errors: u64,
    pub overloaded: u64,
    pub bad_token: u64,
    pub invalid: u64,
    pub blocked: u64,
    pub unknown_recipient: u64,
    /// Taken, answered only after `slow_answer`.
    pub slow: u64,
    /// Statuses the webhook receiver took (answered 2xx), by status.
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    /// Genuine webhook POSTs answered 2xx, and POSTs sent again after a non-2xx answer or none.
    pub webhook_posts: u64,
    pub webhook_retries: u64,
    /// Statuses given up on after `push_retries`.
    pub statuses_dropped: u64,
    /// Forged webhook POSTs the receiver refused, and those it took (a receiver bug).
    pub forged_refused: u64,
    pub forged_taken: u64,
    /// Messages whose statuses are not all pushed yet.
    pub live: u64,
}

#[derive(Default)]
pub struct Counters {
    taken: AtomicU64,
    refused: [AtomicU64; 9],
    slow: AtomicU64,
    statuses: [AtomicU64; 4],
    webhook_posts: AtomicU64,
    webhook_retries: AtomicU64,
    statuses_dropped: AtomicU64,
    forged_refused: AtomicU64,
    forged_taken: AtomicU64,
}

fn refusal_index(r: Refusal) -> usize {
    match r {
        Refusal::Throttled => 0,
        Refusal::PairLimit => 1,
        Refusal::ServerError => 2,
        Refusal::Overloaded => 3,
        Refusal::BadToken => 4,
        Refusal::Invalid => 5,
        Refusal::UnknownPath => 6,
        Refusal::Blocked => 7,
        Refusal::UnknownRecipient => 8,
    }
}

impl Counters {
    pub fn taken(&self, mode: &'static str, slow: bool) {
        self.taken.fetch_add(1, Relaxed);
        if slow {
            self.slow.fetch_add(1, Relaxed);
        }
        metrics::counter!(telemetry::PROVIDER_SIM_REQUESTS_TOTAL, "mode" => mode, "answer" => if slow { "taken_slowly" } else { "taken" }).increment(1);
    }

    pub fn refused(&self, mode: &'static str, r: Refusal) {
        self.refused[refusal_index(r)].fetch_add(1, Relaxed);
        metrics::counter!(telemetry::PROVIDER_SIM_REQUESTS_TOTAL, "mode" => mode, "answer" => r.label()).increment(1);
    }

    /// One genuine POST the receiver took, with how many statuses of each kind.
    pub fn pushed(&self, mode: &'static str, by_status: [u64; 4]) {
        self.webhook_posts.fetch_add(1, Relaxed);
        for (s, n) in Status::ALL.into_iter().zip(by_status) {
            if n > 0 {
                self.statuses[s as usize].fetch_add(n, Relaxed);
                metrics::counter!(telemetry::PROVIDER_SIM_STATUSES_TOTAL, "mode" => mode, "status" => s.label()).increment(n);
            }
        }
    }

    pub fn retried(&self) {
        self.webhook_retries.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, n: u64) {
        self.statuses_dropped.fetch_add(n, Relaxed);
    }

    pub fn forged(&self, refused: bool) {
        let c = if refused { &self.forged_refused } else { &self.forged_taken };
        c.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, live: usize) -> SimStats {
        let r = |i: usize| self.refused[i].load(Relaxed);
        let s = |st: Status| self.statuses[st as usize].load(Relaxed);
        SimStats {
            taken: self.taken.load(Relaxed),
            throttled: r(0),
            pair_limited: r(1),
            server_errors: r(2),
            overloaded: r(3),
            bad_token: r(4),
            invalid: r(5) + r(6),
            blocked: r(7),
            unknown_recipient: r(8),
            slow: self.slow.load(Relaxed),
            sent: s(Status::Sent),
            delivered: s(Status::Delivered),
            read: s(Status::Read),
            failed: s(Status::Failed),
            webhook_posts: self.webhook_posts.load(Relaxed),
            webhook_retries: self.webhook_retries.load(Relaxed),
            statuses_dropped: self.statuses_dropped.load(Relaxed),
            forged_refused: self.forged_refused.load(Relaxed),
            forged_taken: self.forged_taken.load(Relaxed),
            live: live as u64,
        }
    }
}
