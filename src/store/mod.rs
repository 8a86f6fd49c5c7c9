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
    /// Ours now (under the token asked with): never seen, or the same record taken over from
    /// a dead instance before it submitted.
    New,
    /// A second record carrying an id already seen: a `duplicate`.
    Duplicate,
    /// The same record again while a live instance still holds it short of a durable point:
    /// look again later, silently.
    Busy,
    /// The same record again, whose instance died while submitting it: the provider may have
    /// it, so it is never resent (ends `unknown`, counted). Ours to end, under the token.
    Orphaned,
    /// The same record read again (a crash or a rebalance re-delivered it) after it reached a
    /// durable point: no event at all.
    Replay,
}

/// One id to claim: the fencing token every later step of this job must show, and the record
/// it came in (`topic/partition/offset`; `None` where there is none, as over HTTP in
/// `sendgate dev`), which tells a record read again from a second record with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimReq<'a> {
    pub id: &'a str,
    pub token: &'a str,
    pub src: Option<&'a str>,
}

/// A job id and the fencing token of the claim that handles it: every transition is a
/// compare-and-set on the token, so an instance that lost a job (it stalled past its
/// heartbeat and another took it over) can no longer act on it.
pub type Fenced<'a> = (&'a str, &'a str);

/// A unique fencing token under `owner` (`instance/incarnation`): `instance/incarnation/n`.
pub fn mint_token(owner: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{owner}/{n}")
}

/// A deferred job as the scheduled set holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub id: String,
    /// The token of the claim parking it; for a recheck, the token its record was read with.
    pub token: String,
    /// The record it came in, kept so that the record read again is not taken for a second one.
    pub src: Option<String>,
    pub due: DateTime<Utc>,
    /// The job as contract JSON (`Job::to_json`), re-parsed when it falls due.
    pub payload: String,
    /// Its id claim must be checked again when it comes back (it was parked as `Busy`).
    pub recheck: bool,
}

impl ScheduledJob {
    /// Its member in the scheduled set: an owner's entry is its job id (one per job), a
    /// recheck has one of its own, so that it can never replace the owner's deferral.
    pub fn entry(&self) -> String {
        if self.recheck {
            format!("?{}", self.token)
        } else {
            self.id.clone()
        }
    }
}

/// Why a scheduled entry came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueKind {
    /// An owner's parked job, claimed again under the entry's new token.
    Resumed,
    /// A record parked as `Busy`: its id is claimed again like a new record's.
    Recheck,
    /// A parked job whose claimer died mid-submit: ends `unknown` under the new token.
    Orphaned,
}

/// A due job claimed from the scheduled set; `lease` proves the claim when it is finished.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// Its member in the scheduled set ([`ScheduledJob::entry`]).
    pub entry: String,
    pub payload: String,
    pub lease: u64,
    /// The job's claim token (`None` for a recheck, which claims like a new record).
    pub token: Option<String>,
    pub src: Option<String>,
    pub kind: DueKind,
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

/// A job the deadline sweep hands out: its final to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Overdue {
    pub job_id: String,
    /// The job as accepted (`None` for a final decided in the pipeline, which has `report`).
    pub sent: Option<SentJob>,
    /// The outcome a receipt decided; `None` with `sent`: no receipt came (`unknown`).
    pub outcome: Option<PartOutcome>,
    /// A pipeline final's report, as JSON.
    pub report: Option<String>,
    /// Set when the decision was made by an instance that died: when. It may have published
    /// the final before it died, so the reports topic is read back first.
    pub decided_at: Option<DateTime<Utc>>,
}

/// A receipt that matched no job yet (its job's answer, or its `accepted`, is not recorded),
/// kept in the store so that acknowledging it to the provider cannot lose it.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyReceipt {
    pub provider: String,
    pub message_id: String,
    pub outcome: PartOutcome,
    pub error_code: Option<String>,
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
    /// It would be final, but the job's `accepted` report is not recorded yet: nothing was
    /// changed; try the receipt again shortly.
    Held,
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
    /// `instance/incarnation`: what fencing tokens minted here start with ([`mint_token`]).
    fn owner(&self) -> &str;

    /// Claims job ids, each under its token; one answer per id, in order. Asking again with
    /// the same token gives the same answer (a retried step is not a second record).
    async fn claim_ids(&self, reqs: &[ClaimReq<'_>], ttl: Duration) -> Result<Vec<Claim>, StoreError>;

    /// Marks claimed jobs `submitting`, right before their first PDU is written: if this
    /// instance dies before the provider's answer is recorded, whoever finds the claim knows a
    /// submit may be out. `false` where the token no longer holds the job (fenced off).
    async fn mark_submitting(&self, jobs: &[Fenced<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Records finals decided in the pipeline before they are published: `(job id, token,
    /// report JSON)`. `true` where the token still holds the job, which is now decided: due
    /// on the deadline sweep ([`Store::take_overdue`]) until its final is recorded, so that
    /// its publishing survives this instance. `false`: fenced off, publish nothing.
    async fn begin_finals(&self, finals: &[(&str, &str, &str)], confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError>;

    /// Puts jobs in the scheduled set (replacing the entry of the same [`ScheduledJob::entry`],
    /// and its lease). An owner's entry is stored only under the token holding its claim, and
    /// makes the claim `deferred`; `false` where it was fenced off (and nothing was stored).
    /// `claim_ttl`: how long the claim outlives the entry's due time.
    async fn schedule(&self, jobs: &[ScheduledJob], claim_ttl: Duration) -> Result<Vec<bool>, StoreError>;

    /// Claims up to `limit` jobs due at `now`, each leased for `lease`; a claim that is not
    /// finished by then is due again (its instance died). An owner's entry moves its job's
    /// claim to a new token in the same step; entries of jobs already sent or final are
    /// dropped; entries whose job a live instance is still on wait for their lease to lapse.
    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration, claim_ttl: Duration) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Removes claimed entries whose lease still matches (a re-scheduled entry stays).
    async fn finish_scheduled(&self, done: &[(String, u64)]) -> Result<(), StoreError>;

    /// Records accepted jobs, each under its token: every part's message id maps to its job,
    /// and the job's receipt deadline is set, together. A receipt that would make a job final
    /// waits ([`Settled::Held`]) until its `accepted` report is recorded ([`Store::record_events`]).
    /// `false` where the token no longer holds the job.
    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], ttl: Duration) -> Result<Vec<bool>, StoreError>;

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

    /// Up to `limit` jobs due by `now`: past their receipt deadline (decided `unknown` here),
    /// or decided but never confirmed by an instance that died (the decided final, flagged
    /// [`Overdue::decided_at`]: it may be in the reports topic already). A decision whose
    /// decider is alive stays its own. Each is leased until `lease_until` and comes back then
    /// unless [`Store::finish_sent`] forgets it first.
    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError>;

    /// Checkpoints where the reports sink has written up to, `(partition, offset)` at `now`:
    /// a read-back of a partition for a decision made at some time starts at the last
    /// checkpoint before it.
    async fn checkpoint_offsets(&self, offsets: &[(i32, i64)], now: DateTime<Utc>) -> Result<(), StoreError> {
        let _ = (offsets, now);
        Ok(())
    }

    /// The offset of `partition` checkpointed last at or before `at`, if any.
    async fn offset_before(&self, partition: i32, at: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let _ = (partition, at);
        Ok(None)
    }

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

    /// Keeps early receipts (for [`EARLY_RECEIPT_KEEP`]) before they are acknowledged: the
    /// instance that holds them for a retry may die, and then another picks them up
    /// ([`Store::take_early`]). The memory store keeps nothing: its process is the only one.
    async fn keep_early(&self, receipts: &[EarlyReceipt], now: DateTime<Utc>) -> Result<(), StoreError> {
        let _ = (receipts, now);
        Ok(())
    }

    /// Up to `limit` kept early receipts last tried before `older_than` (their instance gave up
    /// on them or died), each marked tried at `now`.
    async fn take_early(&self, older_than: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Result<Vec<EarlyReceipt>, StoreError> {
        let _ = (older_than, now, limit);
        Ok(Vec::new())
    }

    /// Forgets kept early receipts that have now matched their job: `(provider, message id)`.
    async fn drop_early(&self, receipts: &[(&str, &str)]) -> Result<(), StoreError> {
        let _ = receipts;
        Ok(())
    }
}

/// How long an early receipt is kept for another try before it counts as matching nothing.
pub const EARLY_RECEIPT_KEEP: Duration = Duration::from_secs(120);

/// How a campaign speed is filed: `tenant/campaign`, `*/campaign` for every tenant (neither
/// `/` nor `*` can be in a tenant or campaign name).
pub fn campaign_field(tenant: Option<&str>, campaign: &str) -> String {
    format!("{}/{campaign}", tenant.unwrap_or("*"))
}
