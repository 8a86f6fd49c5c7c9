//! Receipts: jobs a provider accepted, kept until their final. Each part's message id maps to
//! its job; a receipt settles a part; the deadline sweep ends jobs no receipt came for, and
//! re-emits finals whose decider died before recording them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::provider::price::Charge;
use crate::report::{EventKind, Report};

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
    /// What it cost and which finals refund that; absent for providers without a price table
    /// (and in jobs stored before prices existed). Boxed: most jobs have none, and `SentJob`
    /// travels inside enums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<Box<Charge>>,
    /// The cascade step this job is (its `job_id` is then the step's store id); absent for a
    /// job without a cascade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Box<crate::cascade::StepRef>>,
    /// Not stored: until when, at least, the job's claim is kept (its dedup TTL from the
    /// claim), where the caller knows it. The store then need not extend it to the receipt
    /// deadline (`None`: it does).
    #[serde(skip)]
    pub claim_until: Option<DateTime<Utc>>,
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

/// How long an early receipt is kept for another try before it counts as matching nothing.
pub const EARLY_RECEIPT_KEEP: Duration = Duration::from_secs(120);

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

impl PartOutcome {
    /// The report event of a job this outcome ends.
    pub fn event(self) -> EventKind {
        match self {
            Self::Delivered => EventKind::Delivered,
            Self::Undelivered => EventKind::Undelivered,
            Self::Expired => EventKind::Expired,
            Self::Rejected => EventKind::Rejected,
            Self::Unknown => EventKind::Unknown,
        }
    }
}

impl SentJob {
    /// A report about this job (`event` at `at`), with its provider, first message id and
    /// segments.
    pub fn report(&self, event: EventKind, at: DateTime<Utc>) -> Report {
        let mut r = Report::from_parts(&self.job_id, &self.tenant, &self.channel, &self.to, &self.meta, event, at).with_provider(&self.provider);
        r.provider_message_id = self.message_ids.first().cloned();
        r.segments = Some(self.segments);
        if let Some(c) = &self.charge {
            if event == EventKind::Accepted {
                (r.cost, r.currency) = (Some(c.cost), Some(c.currency.clone()));
            } else if c.refund_on.contains(&event) {
                (r.refund, r.currency) = (Some(c.cost), Some(c.currency.clone()));
            }
        }
        if let Some(s) = &self.step {
            s.stamp(&mut r);
            if let (Some(c), Some(rs)) = (&self.charge, r.step.as_mut().filter(|rs| rs.outcome.is_some())) {
                (rs.cost, rs.currency) = (Some(c.cost), Some(c.currency.clone()));
            }
        }
        r
    }
}

/// One receipt for [`Receipts::settle_parts`]: provider, message id, outcome, and the
/// provider's error code (kept for a final handed to the recorder of `accepted`).
pub type PartReceipt<'a> = (&'a str, &'a str, PartOutcome, Option<&'a str>);

/// What recording a part's receipt did to its job.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The job is now final: report `outcome` (with the receipt's error, if any).
    /// Boxed: a SentJob is large and the other variants carry nothing.
    Final { job: Box<SentJob>, outcome: PartOutcome },
    /// Other parts are still out.
    Pending,
    /// The job is final now, but its `accepted` report is not recorded yet: the final goes
    /// out right after it, from whoever records it ([`super::History::record_events`] hands
    /// it over), so that `accepted` always comes first. Nothing for this receipt's caller to do.
    HandedOff,
    /// No job holds this message id (yet, or any more).
    Unmatched,
}

/// A final decided by a receipt before its job's `accepted` was recorded
/// ([`Settled::HandedOff`]), handed to the recorder of that `accepted` to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct HandedFinal {
    pub job: SentJob,
    pub outcome: PartOutcome,
    pub error_code: Option<String>,
    /// When the receipt decided it.
    pub decided_at: DateTime<Utc>,
}

impl HandedFinal {
    /// Its final report, as the receipt's own caller would have made it.
    pub fn report(&self) -> Report {
        let r = self.job.report(self.outcome.event(), self.decided_at);
        if self.outcome == PartOutcome::Delivered {
            return r;
        }
        let first = self.job.message_ids.first().map(String::as_str).unwrap_or_default();
        r.with_error(self.error_code.clone(), format!("receipt for message {first}"))
    }
}

#[async_trait]
pub trait Receipts: Send + Sync {
    /// Records accepted jobs, each under its token: every part's message id maps to its job,
    /// and the job's receipt deadline is set, together. A receipt that makes a job final
    /// before its `accepted` report is recorded hands the final to whoever records it
    /// ([`Settled::HandedOff`], [`History::record_events`](super::History::record_events)).
    /// `false` where the token no longer holds the job.
    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], ttl: Duration) -> Result<Vec<bool>, StoreError>;

    /// Records one part's receipt; returns whether that made its job final. A final job is
    /// not forgotten until its final is recorded ([`super::History::record_events`]): if that
    /// does not come by `confirm_by` (the instance died before its report was out),
    /// [`Receipts::take_overdue`] hands it out again with the outcome decided here.
    async fn settle_part(&self, provider: &str, message_id: &str, outcome: PartOutcome, confirm_by: DateTime<Utc>) -> Result<Settled, StoreError> {
        let mut s = self.settle_parts(&[(provider, message_id, outcome, None)], confirm_by).await?;
        Ok(s.pop().unwrap_or(Settled::Unmatched))
    }

    /// [`Receipts::settle_part`] for many receipts, in order, in one round trip.
    async fn settle_parts(&self, receipts: &[PartReceipt<'_>], confirm_by: DateTime<Utc>) -> Result<Vec<Settled>, StoreError>;

    /// Up to `limit` jobs due by `now`: past their receipt deadline (decided `unknown` here),
    /// or decided but never confirmed by an instance that died (the decided final, flagged
    /// [`Overdue::decided_at`]: it may be in the reports topic already). A decision whose
    /// decider is alive stays its own, and so does an undecided job whose `accepted` is not
    /// recorded yet while its tracker is alive (an `unknown` decided now could be published
    /// before that `accepted`). A receipt's final handed to a tracker that died before
    /// recording its `accepted` comes out `unknown` (that `accepted` may never have gone out).
    /// Each is leased until `lease_until` and comes back then unless its final is recorded
    /// first.
    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError>;

    /// Jobs still waiting for a receipt, where the store can count them cheaply (shutdown
    /// waits for these in the in-memory mode, where they would otherwise be lost).
    fn awaiting_receipts(&self) -> Option<usize> {
        None
    }

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

    /// Keeps early receipts (for [`EARLY_RECEIPT_KEEP`]) before they are acknowledged: the
    /// instance that holds them for a retry may die, and then another picks them up
    /// ([`Receipts::take_early`]). The memory store keeps nothing: its process is the only one.
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

    /// Keeps, for `ttl`, jobs whose final `delivered` is out, under each of their message ids:
    /// a chat's `read` status comes after its `delivered`, when the job's receipt state is
    /// forgotten, and still needs its job for the non-final `read` report
    /// ([`Receipts::take_for_read`]).
    async fn keep_for_read(&self, jobs: &[SentJob], ttl: Duration) -> Result<(), StoreError>;

    /// The jobs kept for a `read` under these `(provider, message id)`s, in order; each is
    /// handed out once, so a `read` sent again makes no second `read` report.
    async fn take_for_read(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<SentJob>>, StoreError>;
}
