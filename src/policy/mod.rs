//! The policy chain: decides, for a batch of jobs, whether each may go now, later, or never.
//!
//! Each policy sees the whole batch and only the jobs no earlier policy stopped, so a policy
//! backed by the store makes one round trip per batch. Time is passed in, never read here.

mod dedup;
mod expiry;
mod opt_out;
pub mod pace;
pub mod quiet_hours;
pub mod rate_limit;
mod schedule;
pub mod senders;
pub mod whatsapp_tier;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::job::Job;
use crate::report::{EventKind, Reason};
use crate::store::StoreError;

pub use dedup::{unpublished_duplicates, Dedup};
pub use expiry::Expiry;
pub use opt_out::OptOut;
pub use quiet_hours::QuietHours;
pub use rate_limit::RateLimit;
pub use schedule::Schedule;
pub use senders::{SenderRegistry, Senders};
pub use whatsapp_tier::WhatsappTier;

/// A policy's answer for one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    /// Not now: park the job until `until`.
    Defer {
        until: DateTime<Utc>,
        reason: Reason,
    },
    /// Never: the job ends with this event (final, or `duplicate`).
    Stop {
        event: EventKind,
        reason: Option<Reason>,
        message: Option<String>,
    },
    /// Another instance may still hold this job's claim: park it silently (no report) and
    /// check the claim again at `until`.
    Recheck {
        until: DateTime<Utc>,
    },
    /// Nothing to do and nothing to say: the same record read again after it reached a
    /// durable point. The job is done here without any event.
    Drop,
}

/// One job under decision.
#[derive(Debug)]
pub struct Candidate<'a> {
    pub job: &'a Job,
    /// The fencing token its claim is made (or was made) under.
    pub token: std::borrow::Cow<'a, str>,
    /// The record it came in (`topic/partition/offset`), if any.
    pub src: Option<&'a str>,
    /// Its id is already claimed under `token` (it came back from the scheduled set): dedup
    /// skips it.
    pub claimed: bool,
    pub verdict: Verdict,
}

impl<'a> Candidate<'a> {
    /// A job read for the first time, under a fresh token of its own (tests, benches).
    pub fn new(job: &'a Job) -> Self {
        Self { job, token: crate::store::mint_token("local/0").into(), src: None, claimed: false, verdict: Verdict::Allow }
    }

    pub fn is_open(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

#[async_trait]
pub trait Policy: Send + Sync {
    /// The `policy` label of `sendgate_policy_verdicts_total`.
    fn name(&self) -> &'static str;

    /// Sets a verdict on the open candidates it stops or defers; leaves the rest `Allow`.
    async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// The policies in order. Dedup goes first: every final event for an id must come after that
/// id's claim, or a second copy of an expired job would get a second final.
pub struct Chain {
    policies: Vec<Box<dyn Policy>>,
}

impl Chain {
    pub fn new(policies: Vec<Box<dyn Policy>>) -> Self {
        Self { policies }
    }

    /// The daemon's chain for `cfg` (rate limits come after routing, in the pipeline's
    /// dispatch). `busy_recheck`: when to look again at an id another live instance holds.
    /// `ledger`: reads the reports topic back for a dead instance's `duplicate` (Kafka only).
    pub fn from_config(
        cfg: &crate::config::Config,
        store: std::sync::Arc<dyn crate::store::Store>,
        ledger: Option<std::sync::Arc<crate::sink::ledger::Ledger>>,
        busy_recheck: std::time::Duration,
    ) -> Self {
        Self::new(vec![
            Box::new(Dedup::new(store.clone(), ledger, cfg.pipeline.dedup_ttl, busy_recheck)),
            Box::new(Expiry),
            // Before `opt_out`: a job that may not go out with its sender at all is rejected,
            // whoever it is to.
            Box::new(Senders::new(SenderRegistry::from_config(cfg))),
            // Before `schedule`: a job to an opted-out recipient ends now instead of waiting to
            // be suppressed; a deferred job goes through the whole chain again when it is due,
            // so a STOP that arrives meanwhile still stops it.
            Box::new(OptOut::new(store.clone())),
            Box::new(Schedule),
            // After `schedule`: a job scheduled for later is judged when the scheduler hands it
            // back, through the whole chain again.
            Box::new(QuietHours::from_config(cfg)),
            Box::new(WhatsappTier::new(store, &cfg.whatsapp).with_default_from(WhatsappTier::default_from_of(&cfg.providers))),
        ])
    }

    /// Runs every policy over the batch. A policy whose store call fails is tried again by
    /// itself until the store answers — never by running the policies before it again, whose
    /// store calls (a claim above all) may already have happened. A policy sets verdicts only
    /// once its store call answered, so a failed try leaves the batch as it was.
    pub async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) {
        for p in &self.policies {
            let open_before: Vec<bool> = batch.iter().map(Candidate::is_open).collect();
            if !open_before.contains(&true) {
                break;
            }
            let mut attempts = crate::retry::Attempts::new(p.name(), batch.len());
            loop {
                let tried = match crate::failpoint::hit_store(p.name()) {
                    Ok(()) => p.evaluate(batch, now).await,
                    Err(e) => Err(e),
                };
                match tried {
                    Ok(()) => break,
                    Err(e) => attempts.failed(&e).await,
                }
            }
            if p.name() == "dedup" {
                crate::failpoint::hit("claimed");
            }
            let mut verdicts = crate::telemetry::Tally::default();
            for (c, was_open) in batch.iter().zip(open_before) {
                if !was_open {
                    continue;
                }
                verdicts.add(match c.verdict {
                    Verdict::Allow => "allow",
                    Verdict::Defer { .. } | Verdict::Recheck { .. } => "defer",
                    Verdict::Stop { .. } | Verdict::Drop => "stop",
                });
            }
            for (verdict, n) in verdicts {
                metrics::counter!(crate::telemetry::POLICY_VERDICTS_TOTAL, "policy" => p.name(), "verdict" => verdict).increment(n);
            }
        }
    }
}
