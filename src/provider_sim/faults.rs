//! Fault decisions shared by every connection: which send request is refused and how, which
//! is answered late, and which webhook POST gets a forged twin. Counted simulator-wide, so a
//! test can say "the 3rd request" without caring which connection of a gateway sent it. What a
//! fault looks like on the wire is each mode's business ([`super::Mode::refusal`]).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::config::ProviderSimConfig;

/// What the simulator does with one send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Take the message and answer at once.
    Take,
    /// Take it, and answer after this long.
    TakeSlowly(Duration),
    /// Refuse it; nothing is taken.
    Refuse(Refusal),
}

/// The refusals a provider answers with, in each mode's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sender's throughput is exceeded (Cloud API 130429): slow down, same message again.
    Throttled,
    /// Too many messages to this recipient lately (Cloud API 131056).
    PairLimit,
    /// The provider failed (HTTP 5xx): try again later.
    ServerError,
    /// The recipient blocked the sender (Telegram 403 "bot was blocked by the user"; Cloud
    /// API 131050, the user stopped marketing messages): final for that message.
    Blocked,
    /// No such recipient (Telegram 400 "chat not found"; Cloud API 131026, undeliverable).
    UnknownRecipient,
    /// The simulator's own queue is full (Cloud API 131016, service unavailable).
    Overloaded,
    /// The access token is wrong (Cloud API 190).
    BadToken,
    /// The request is not one the provider takes (Cloud API 100, invalid parameter).
    Invalid,
    /// No such endpoint.
    UnknownPath,
}

impl Refusal {
    /// The `answer` label of `sendgate_provider_sim_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::PairLimit => "pair_limit",
            Self::ServerError => "server_error",
            Self::Blocked => "blocked",
            Self::UnknownRecipient => "unknown_recipient",
            Self::Overloaded => "overloaded",
            Self::BadToken => "bad_token",
            Self::Invalid => "invalid",
            Self::UnknownPath => "unknown_path",
        }
    }
}

#[derive(Debug)]
pub struct Faults {
    throttle_every: Option<NonZeroU64>,
    pair_limit_every: Option<NonZeroU64>,
    server_error_every: Option<NonZeroU64>,
    blocked_every: Option<NonZeroU64>,
    unknown_recipient_every: Option<NonZeroU64>,
    slow_every: Option<NonZeroU64>,
    slow_answer: Duration,
    forge_every: Option<NonZeroU64>,
    /// Send requests that reached the fault check: the clock every `*_every` runs on, so
    /// retries count too.
    requests: AtomicU64,
    /// Genuine webhook POSTs started: the clock `forge_every` runs on.
    pushes: AtomicU64,
}

impl Faults {
    pub fn new(cfg: &ProviderSimConfig) -> Self {
        Self {
            throttle_every: cfg.throttle_every,
            pair_limit_every: cfg.pair_limit_every,
            server_error_every: cfg.server_error_every,
            blocked_every: cfg.blocked_every,
            unknown_recipient_every: cfg.unknown_recipient_every,
            slow_every: cfg.slow_every,
            slow_answer: cfg.slow_answer,
            forge_every: cfg.forge_every,
            requests: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
        }
    }

    /// The verdict on the next send request; the first fault whose turn it is wins.
    pub fn verdict(&self) -> Verdict {
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        let due = |every: Option<NonZeroU64>| every.is_some_and(|e| n.is_multiple_of(e.get()));
        if due(self.throttle_every) {
            Verdict::Refuse(Refusal::Throttled)
        } else if due(self.pair_limit_every) {
            Verdict::Refuse(Refusal::PairLimit)
        } else if due(self.server_error_every) {
            Verdict::Refuse(Refusal::ServerError)
        } else if due(self.blocked_every) {
            Verdict::Refuse(Refusal::Blocked)
        } else if due(self.unknown_recipient_every) {
            Verdict::Refuse(Refusal::UnknownRecipient)
        } else if due(self.slow_every) {
            Verdict::TakeSlowly(self.slow_answer)
        } else {
            Verdict::Take
        }
    }

    /// Called once per genuine webhook POST (not per retry); whether a forged one follows it.
    pub fn forge_after_push(&self) -> bool {
        self.forge_every.is_some_and(|e| (self.pushes.fetch_add(1, Relaxed) + 1).is_multiple_of(e.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_request_and_the_first_fault_due_wins() {
        let n = |v: u64| NonZeroU64::new(v);
        let cfg = ProviderSimConfig {
            throttle_every: n(4),
            pair_limit_every: n(2),
            server_error_every: n(3),
            slow_every: n(5),
            slow_answer: Duration::from_secs(2),
            forge_every: n(2),
            ..Default::default()
        };
        let f = Faults::new(&cfg);
        let got: Vec<Verdict> = (0..6).map(|_| f.verdict()).collect();
        use Refusal::*;
        assert_eq!(
            got,
            [
                Verdict::Take,
                Verdict::Refuse(PairLimit),
                Verdict::Refuse(ServerError),
                Verdict::Refuse(Throttled),
                Verdict::TakeSlowly(Duration::from_secs(2)),
                Verdict::Refuse(PairLimit),
            ]
        );
        assert_eq!((0..4).map(|_| f.forge_after_push()).collect::<Vec<_>>(), [false, true, false, true]);
        let none = Faults::new(&ProviderSimConfig::default());
        assert!((0..100).all(|_| none.verdict() == Verdict::Take && !none.forge_after_push()));
    }
}
