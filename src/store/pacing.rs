//! Pacing: what smooth sending shares across instances. Per campaign (`tenant/campaign`): the
//! `finish_by` set through the admin API, the one its first job proposed, and the jobs pending
//! (read, not yet handed to a provider nor ended), in the order they were first seen.
//!
//! Pending is a set of job ids, not a counter: adding a job twice (a retried call, a job read
//! again after a crash, a deferred job coming back) or removing it twice changes nothing, so
//! the count cannot drift by replays. Every pass of a job through the pipeline adds it again
//! (while it is live) or removes it (when it goes or ends), so a job the set lost comes back
//! the next time it passes (see `policy::pace`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// How a campaign is filed in the pacing keys: `tenant/campaign` (neither may hold a `/`).
pub fn pace_field(tenant: &str, campaign: &str) -> String {
    format!("{tenant}/{campaign}")
}

/// The rate limit that carries a campaign's pace (`rate:{this}` holds its GCRA TAT).
pub fn pace_limit(tenant: &str, campaign: &str) -> String {
    format!("pace:{tenant}/{campaign}")
}

/// One campaign's part of a [`Pacing::pace`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaceCall<'a> {
    pub tenant: &'a str,
    pub campaign: &'a str,
    /// This instance's config gives the campaign a `finish_by`: its jobs are tracked whatever
    /// the store holds.
    pub configured: bool,
    /// A job's `finish_by`: kept as the campaign's job-proposed deadline if it has none yet.
    pub offer: Option<DateTime<Utc>>,
    /// Jobs pending now (tracked from now on unless they already are; only in a campaign with
    /// a `finish_by` from config, the admin API or a job).
    pub add: Vec<&'a str>,
    /// Jobs that left pacing: handed to a provider, or ended.
    pub remove: Vec<&'a str>,
    /// Jobs whose place in the queue is wanted, after the adds and removes.
    pub rank: Vec<&'a str>,
}

/// One campaign after a [`Pacing::pace`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaceState {
    /// Set through the admin API.
    pub admin_finish_by: Option<DateTime<Utc>>,
    /// Proposed by the first job that carried one.
    pub job_finish_by: Option<DateTime<Utc>>,
    /// Jobs pending.
    pub pending: u64,
    /// For each of [`PaceCall::rank`]: how many pending jobs are ahead of it (`None`: not pending).
    pub ranks: Vec<Option<u64>>,
    /// How far ahead of the store's now its pace's slots are booked ([`pace_limit`]'s TAT):
    /// jobs let go wait in them, so the pending ones can only start after.
    pub booked_ahead: Duration,
}

#[async_trait]
pub trait Pacing: Send + Sync {
    /// For each campaign, in order: keeps an offered `finish_by`, adds and removes pending
    /// jobs, and answers the campaign's state, in one round trip. `keep`: how long a campaign's
    /// pending set outlives its last change (a safety net: nothing should be left in it).
    async fn pace(&self, calls: &[PaceCall<'_>], now: DateTime<Utc>, keep: Duration) -> Result<Vec<PaceState>, StoreError>;

    /// Sets (`Some`) or clears (`None`) a campaign's `finish_by` through the admin API; it
    /// wins over config and over the one its jobs proposed. Clearing also forgets the
    /// job-proposed one, so that the next job carrying one sets it afresh.
    async fn set_finish_by(&self, tenant: &str, campaign: &str, finish_by: Option<DateTime<Utc>>) -> Result<(), StoreError>;
}
