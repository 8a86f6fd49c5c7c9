//! History: every report event of a job, oldest first (`GET /v1/jobs/{id}/events`). Recording
//! a job's `accepted` lets its receipts (and the deadline sweep) end it; recording a parked
//! job's `deferred` lets the scheduler resume it; recording its final marks its claim final.

use std::time::Duration;

use async_trait::async_trait;

use super::{HandedFinal, StoreError};
use crate::report::Report;

#[async_trait]
pub trait History: Send + Sync {
    /// Appends report events to their jobs' histories; marks jobs with a final one done (and
    /// forgets their receipt state: mappings, deadline, the SentJob); lifts the hold on the
    /// receipts of jobs with an `accepted` one. Returns the finals receipts decided while that
    /// `accepted` was not recorded ([`super::Settled::HandedOff`]): the caller publishes them
    /// now, after it. A call run again after a lost reply returns them again.
    async fn record_events(&self, reports: &[Report], ttl: Duration) -> Result<Vec<HandedFinal>, StoreError>;

    /// Whether this store keeps histories as report JSON, so that
    /// [`History::record_events_json`] saves it encoding each report again.
    fn takes_report_json(&self) -> bool {
        false
    }

    /// [`History::record_events`] with each report already encoded (`json[i]` is
    /// `serde_json::to_string(&reports[i])`): the reporter encodes a report once for the sink
    /// and the history.
    async fn record_events_json(&self, reports: &[Report], json: &[String], ttl: Duration) -> Result<Vec<HandedFinal>, StoreError> {
        let _ = json;
        self.record_events(reports, ttl).await
    }

    /// A job's events so far, oldest first.
    async fn events(&self, job_id: &str) -> Result<Vec<Report>, StoreError>;
}
