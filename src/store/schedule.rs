//! Schedule: jobs parked for later (`send_at`, quiet hours, rate limits, a record whose id is
//! busy elsewhere), held in one scheduled set and leased out when due, so that a job whose
//! claimer dies comes back to someone.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// How soon a due entry whose parking is still held (its `deferred` report not recorded yet,
/// its parker alive) is looked at again: the report is normally recorded within milliseconds.
pub const HELD_RETRY: Duration = Duration::from_secs(1);

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

#[async_trait]
pub trait Schedule: Send + Sync {
    /// Puts jobs in the scheduled set (replacing the entry of the same [`ScheduledJob::entry`],
    /// and its lease). An owner's entry is stored only under the token holding its claim, and
    /// makes the claim `deferred`; `false` where it was fenced off (and nothing was stored).
    /// An owner's parking is held until its `deferred` report is recorded
    /// ([`History::record_events`](super::History::record_events)): see [`Schedule::claim_due`].
    /// `claim_ttl`: how long the claim outlives the entry's due time.
    async fn schedule(&self, jobs: &[ScheduledJob], claim_ttl: Duration) -> Result<Vec<bool>, StoreError>;

    /// Claims up to `limit` jobs due at `now`, each leased for `lease`; a claim that is not
    /// finished by then is due again (its instance died). An owner's entry moves its job's
    /// claim to a new token in the same step; entries of jobs already sent or final are
    /// dropped; entries whose job a live instance is still on wait for their lease to lapse.
    /// A parking still held (its `deferred` report not recorded) while its parker lives is not
    /// resumed but due again [`HELD_RETRY`] after `now`, unleased: that report must never follow
    /// the resumed job's final. A dead parker's hold is void (it never publishes it now).
    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration, claim_ttl: Duration) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Removes claimed entries whose lease still matches (a re-scheduled entry stays).
    async fn finish_scheduled(&self, done: &[(String, u64)]) -> Result<(), StoreError>;

    /// Cancels cascade steps parked but not yet resumed (a `read` won their predecessor's
    /// `until = "read"`), deciding the job's final on each cancelled step's claim: `(store id,
    /// final report JSON)`. `true` where cancelled (the final is then due on the deadline sweep
    /// until recorded, like [`super::Claims::begin_finals`]); `false` where the scheduler has
    /// resumed the step already (the read is late).
    async fn cancel_steps(&self, steps: &[(&str, &str)], confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError>;
}
