//! The store: everything that several instances must share, behind one trait.
//!
//! Every method takes or returns a batch where the hot path calls it, so that an implementation
//! over the network (Redis) costs one round trip per batch, not one per job.

pub mod gcra;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod whatsapp;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::Report;

pub use gcra::{RateGrant, RateLease};
pub use memory::MemoryStore;
pub use redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached; the caller keeps the work and tries again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data did not decode: a bug or a foreign writer, never retried.
    #[error("corrupt store entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// What claiming a job id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours now: never seen, or taken over from a dead instance before it submitted.
    New,
    /// Seen before and handled (or being handled by a live instance): a `duplicate`.
    Duplicate,
    /// Claimed by an instance that may still be alive and has not reached a durable point:
    /// look again once its heartbeat would have lapsed.
    Busy,
    /// Claimed by an instance that died while submitting it: the provider may have it, so it
    /// is never resent (ends `unknown`, counted).
    Orphaned,
}

/// A deferred job as the scheduled set holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub id: String,
    pub due: DateTime<Utc>,
    /// The job as contract JSON (`Job::to_json`), re-parsed when it falls due.
    pub payload: String,
    /// Its id claim must be checked again when it comes back (it was parked as `Busy`).
    pub recheck: bool,
}

/// A due job claimed from the scheduled set; `lease` proves the claim when it is finished.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: String,
    pub payload: String,
    pub lease: u64,
    pub recheck: bool,
}

/// A job a provider accepted, as the store keeps it until its final receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentJob {
    pub job_id: String,
    pub tenant: String,
    pub channel: String,
    pub to: String,
    pub meta: BTreeMap<String, String>,
    pub provider: String,
    /// One per submitted part, in part order.
    pub message_ids: Vec<String>,
    pub segments: u32,
}

/// What a receipt said about one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartOutcome {
    Delivered,
    Undelivered,
    Expired,
    Rejected,
    Unknown,
}

impl PartOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Delivered, Self::Undelivered, Self::Expired, Self::Rejected, Self::Unknown].into_iter().find(|o| o.as_str() == s)
    }
}

/// What recording a part's receipt did to its job.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The job is now final: report `outcome` (with the receipt's error, if any).
    Final { job: SentJob, outcome: PartOutcome },
    /// Other parts are still out.
    Pending,
    /// No job holds this message id (yet, or any more).
    Unmatched,
}

/// One opt-out list entry: `(tenant, channel, recipient)`. Each tenant has one list per channel.
pub type OptOutEntry<'a> = (&'a str, &'a str, &'a str);

/// One page of an opt-out list, in recipient (byte) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptOutPage {
    pub recipients: Vec<String>,
    /// Pass back as `after` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl OptOutPage {
    /// A page from up to `limit + 1` recipients read in order: the extra one only says that
    /// another page follows, which then starts after this page's last recipient.
    pub fn from_overfetch(mut recipients: Vec<String>, limit: usize) -> Self {
        let next_cursor = if recipients.len() > limit {
            recipients.truncate(limit);
            recipients.last().cloned()
        } else {
            None
        };
        Self { recipients, next_cursor }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Claims job ids for this instance; one answer per id, in order.
    async fn claim_ids(&self, ids: &[&str], ttl: Duration) -> Result<Vec<Claim>, StoreError>;

    /// Marks claimed jobs as about to be handed to a provider: if this instance dies before
    /// the provider's answer is recorded, whoever finds the claim knows a submit may be out.
    async fn mark_submitting(&self, ids: &[&str]) -> Result<(), StoreError>;

    /// Puts jobs in the scheduled set (replacing an entry of the same id, and its lease).
    async fn schedule(&self, jobs: &[ScheduledJob]) -> Result<(), StoreError>;

    /// Claims up to `limit` jobs due at `now`, each leased for `lease`; a claim that is not
    /// finished by then is due again (its instance died).
    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Removes claimed jobs whose lease still matches (a re-scheduled entry stays).
    async fn finish_scheduled(&self, done: &[(String, u64)]) -> Result<(), StoreError>;

    /// Records accepted jobs: every part's message id maps to its job, and the job's receipt
    /// deadline is set, together.
    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>)], ttl: Duration) -> Result<(), StoreError>;

    /// Records one part's receipt; returns whether that made its job final. A final job is
    /// not forgotten until [`Store::finish_sent`]: if that does not come by `confirm_by` (the
    /// instance died before its report was out), [`Store::take_overdue`] hands it out again
    /// with the outcome decided here.
    async fn settle_part(
        &self,
        provider: &str,
        message_id: &str,
        outcome: PartOutcome,
        confirm_by: DateTime<Utc>,
    ) -> Result<Settled, StoreError> {
        let mut s = self.settle_parts(&[(provider, message_id, outcome)], confirm_by).await?;
        Ok(s.pop().unwrap_or(Settled::Unmatched))
    }

    /// [`Store::settle_part`] for many receipts, in order, in one round trip.
    async fn settle_parts(
        &self,
        receipts: &[(&str, &str, PartOutcome)],
        confirm_by: DateTime<Utc>,
    ) -> Result<Vec<Settled>, StoreError>;

    /// Up to `limit` jobs due by `now`: past their receipt deadline (outcome `None`: end them
    /// `unknown`), or decided but never confirmed (the decided outcome). Each is leased until
    /// `lease_until` and comes back then unless [`Store::finish_sent`] forgets it first.
    async fn take_overdue(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<(SentJob, Option<PartOutcome>)>, StoreError>;

    /// Forgets jobs whose final report is out: mappings, deadline, and marks them final.
    async fn finish_sent(&self, job_ids: &[String]) -> Result<(), StoreError>;

    /// Appends report events to their jobs' histories (and marks jobs with a final one done).
    async fn record_events(&self, reports: &[Report], ttl: Duration) -> Result<(), StoreError>;

    /// Whether this store keeps histories as report JSON, so that [`Store::record_events_json`]
    /// saves it encoding each report again.
    fn takes_report_json(&self) -> bool {
        false
    }

    /// [`Store::record_events`] with each report already encoded (`json[i]` is
    /// `serde_json::to_string(&reports[i])`): the reporter encodes a report once for the sink
    /// and the history.
    async fn record_events_json(&self, reports: &[Report], json: &[String], ttl: Duration) -> Result<(), StoreError> {
        let _ = json;
        self.record_events(reports, ttl).await
    }

    /// A job's events so far, oldest first.
    async fn events(&self, job_id: &str) -> Result<Vec<Report>, StoreError>;

    /// Whether each recipient is on its tenant's opt-out list for its channel, in order; one
    /// round trip for the batch (the opt-out policy calls this on the hot path).
    async fn opted_out(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Puts recipients on opt-out lists; `true` where one was not on it before.
    async fn add_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Takes recipients off opt-out lists; `true` where one was on it.
    async fn remove_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Up to `limit` recipients of one list that sort after `after` (from the start without it).
    async fn list_opt_outs(&self, tenant: &str, channel: &str, after: Option<&str>, limit: usize) -> Result<OptOutPage, StoreError>;

    /// Cheap liveness probe for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Jobs still waiting for a receipt, where the store can count them cheaply (shutdown
    /// waits for these in the in-memory mode, where they would otherwise be lost).
    fn awaiting_receipts(&self) -> Option<usize> {
        None
    }

    /// WhatsApp messaging limits for a batch of jobs, in order, in one atomic step (one script
    /// in Redis, so instances sharing a portfolio never exceed its tier together). For each
    /// attempt: a recipient inside a customer-service window with that number is not counted;
    /// one already counted in the window is counted again at `now` (free); a new one is
    /// counted while the portfolio is under its tier, else the attempt is `TierCap` until a
    /// counted recipient leaves the window; then the pair limit; only an allowed attempt
    /// changes anything.
    async fn whatsapp_admit(
        &self,
        portfolios: &[whatsapp::Portfolio<'_>],
        attempts: &[whatsapp::Attempt<'_>],
        now: DateTime<Utc>,
    ) -> Result<whatsapp::Admission, StoreError>;

    /// Records that recipients wrote to phone numbers: `(number, recipient, at)`; each opens a
    /// customer-service window of [`whatsapp::SERVICE_WINDOW`] from `at` (a later contact
    /// extends it, an earlier one arriving late changes nothing).
    async fn record_inbound_contacts(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), StoreError>;

    /// A portfolio's window at `now`, read only (the admin API).
    async fn whatsapp_usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Result<whatsapp::Usage, StoreError>;

    /// Leases rate-limit tokens, one answer per request, in one round trip (GCRA: see
    /// [`gcra`]). Slot offsets in the answers count from the store's now: `now` for the memory
    /// store; Redis uses its own `TIME`, so that instances whose clocks differ still share one
    /// timeline.
    async fn rate_lease(&self, reqs: &[RateLease], now: DateTime<Utc>) -> Result<Vec<RateGrant>, StoreError>;

    /// Sets (`Some`) or clears (`None`) a campaign's speed in segments per second; `tenant`
    /// `None` sets it for that campaign name of every tenant (a tenant's own setting wins).
    async fn set_campaign_rate(&self, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), StoreError>;

    /// The speeds set for `(tenant, campaign)` pairs, one answer per pair: the tenant's own,
    /// else the every-tenant one, else `None`.
    async fn campaign_rates(&self, campaigns: &[(&str, &str)]) -> Result<Vec<Option<f64>>, StoreError>;
}

/// How a campaign speed is filed: `tenant/campaign`, `*/campaign` for every tenant (neither
/// `/` nor `*` can be in a tenant or campaign name).
pub fn campaign_field(tenant: Option<&str>, campaign: &str) -> String {
    format!("{}/{campaign}", tenant.unwrap_or("*"))
}
