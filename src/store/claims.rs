//! Claims: who may act on a job id. The first record of an id claims it under a fencing token,
//! and every later transition of that job is a compare-and-set on the token, so an instance
//! that lost a job (stalled past its heartbeat, taken over) can no longer act on it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What claiming a job id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours now (under the token asked with): never seen, or the same record taken over from
    /// a dead instance before it submitted.
    New,
    /// A second record carrying an id already seen: a `duplicate`, decided now under the
    /// token asked with (its event is published, then recorded: [`Claims::duplicate_done`]
    /// or `record_events`).
    Duplicate,
    /// A second record whose `duplicate` an instance decided at `decided_at` and died before
    /// recording it: the event may be in the reports topic. Ours now; read the topic back
    /// before publishing (`policy::dedup::duplicate_published`).
    DuplicateUnsure { decided_at: DateTime<Utc> },
    /// A second record whose `duplicate` a live instance decided and has not recorded yet:
    /// look again shortly (never parked: the scheduled set holds one entry per job id, the
    /// job's own).
    DuplicateBusy,
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
    /// For the first step of a cascade: the job as read (contract JSON), kept with the claim so
    /// that recording a step's end can park the next step (`History::record_events`).
    pub plan: Option<&'a str>,
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

#[async_trait]
pub trait Claims: Send + Sync {
    /// `instance/incarnation`: what fencing tokens minted here start with ([`mint_token`]).
    fn owner(&self) -> &str;

    /// Cheap liveness probe for `/readyz`: whether this instance can take jobs, which starts
    /// with claiming them.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Claims job ids, each under its token; one answer per id, in order. Asking again with
    /// the same token gives the same answer (a retried step is not a second record).
    async fn claim_ids(&self, reqs: &[ClaimReq<'_>], ttl: Duration) -> Result<Vec<Claim>, StoreError>;

    /// Marks claimed jobs `submitting`, right before their first PDU is written: if this
    /// instance dies before the provider's answer is recorded, whoever finds the claim knows a
    /// submit may be out. `false` where the token no longer holds the job (fenced off).
    async fn mark_submitting(&self, jobs: &[Fenced<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Records finals decided in the pipeline before they are published: `(job id, token,
    /// report JSON)`. `true` where the token still holds the job, which is now decided: due
    /// on the deadline sweep ([`Receipts::take_overdue`](super::Receipts::take_overdue)) until
    /// its final is recorded, so that its publishing survives this instance. `false`: fenced
    /// off, publish nothing.
    async fn begin_finals(&self, finals: &[(&str, &str, &str)], confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError>;

    /// Records that the `duplicate` answering record `src` of job `id` is in the reports topic
    /// (found there by a read-back): the record read again is nothing from now on. Publishing
    /// one records it through `record_events`.
    async fn duplicate_done(&self, id: &str, src: &str) -> Result<(), StoreError>;
}
