//! Receipts: jobs a provider accepted, kept until their final. Each part's message id maps to
//! its job; a receipt settles a part; the deadline sweep ends jobs no receipt came for, and
//! re-emits finals whose decider died before recording them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

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

#[async_trait]
pub trait Receipts: Send + Sync {
    /// Records accepted jobs, each under its token: every part's message id maps to its job,
    /// and the job's receipt deadline is set, together. A receipt that would make a job final
    /// waits ([`Settled::Held`]) until its `accepted` report is recorded
    /// ([`History::record_events`](super::History::record_events)).
    /// `false` where the token no longer holds the job.
    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], ttl: Duration) -> Result<Vec<bool>, StoreError>;

    /// Records one part's receipt; returns whether that made its job final. A final job is
    /// not forgotten until [`Receipts::finish_sent`]: if that does not come by `confirm_by`
    /// (the instance died before its report was out), [`Receipts::take_overdue`] hands it out
    /// again with the outcome decided here.
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

    /// [`Receipts::settle_part`] for many receipts, in order, in one round trip.
    async fn settle_parts(
        &self,
        receipts: &[(&str, &str, PartOutcome)],
        confirm_by: DateTime<Utc>,
    ) -> Result<Vec<Settled>, StoreError>;

    /// Up to `limit` jobs due by `now`: past their receipt deadline (decided `unknown` here),
    /// or decided but never confirmed by an instance that died (the decided final, flagged
    /// [`Overdue::decided_at`]: it may be in the reports topic already). A decision whose
    /// decider is alive stays its own, and so does an undecided job whose `accepted` is not
    /// recorded yet while its tracker is alive (an `unknown` decided now could be published
    /// before that `accepted`). Each is leased until `lease_until` and comes back then unless
    /// [`Receipts::finish_sent`] forgets it first.
    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError>;

    /// Forgets jobs whose final report is out (recorded first, which marked their claims
    /// final): their mappings and deadline.
    async fn finish_sent(&self, job_ids: &[String]) -> Result<(), StoreError>;

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
}
