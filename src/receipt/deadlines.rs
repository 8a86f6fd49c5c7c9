//! The deadline sweep: ends jobs whose receipt did not come in time with a final `unknown`,
//! and publishes the finals whose decider died before it confirmed them — after reading the
//! reports topic back, so that a final the broker already took is recorded, not sent twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::correlate::FINAL_CONFIRM_GRACE;
use super::{InboundReceipt, ProviderEvent};
use crate::clock::Clock;
use crate::pipeline::Reporter;
use crate::report::{EventKind, Report};
use crate::sink::ledger::Ledger;
use crate::store::{Overdue, Store};

pub struct Sweep {
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    /// Reads the reports topic back (Kafka); `None` where there is no topic to read (dev).
    pub ledger: Option<Arc<Ledger>>,
    pub every: Duration,
    /// How long a cascade step ended by its decision time is kept for a late receipt: the
    /// longest receipt timeout of any provider.
    pub late_window: Duration,
    /// Where early receipts kept in the store go back in (the correlator), once the instance
    /// that held them gave up on them or died.
    pub receipts: mpsc::Sender<ProviderEvent>,
}

/// An early receipt is taken back from the store once it was last tried this long ago: its
/// holder's own retries (10 s) are over, or its holder is gone.
const EARLY_TAKEN_AFTER: chrono::Duration = chrono::Duration::seconds(15);

impl Sweep {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let now = self.clock.now();
            match self.store.take_overdue(now, 1000, now + FINAL_CONFIRM_GRACE).await {
                Ok(jobs) if !jobs.is_empty() => self.publish(jobs, now).await,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot read receipt deadlines"),
            }
            match self.store.take_early(now - EARLY_TAKEN_AFTER, now, 1000).await {
                Ok(early) => {
                    for e in early {
                        let r = InboundReceipt {
                            provider: e.provider.into(),
                            message_id: e.message_id,
                            outcome: Some(e.outcome),
                            error_code: e.error_code,
                            read: false,
                            stored: true,
                            ack: Default::default(),
                        };
                        if self.receipts.send(ProviderEvent::Receipt(r)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot read early receipts"),
            }
        }
    }

    async fn publish(&self, jobs: Vec<Overdue>, now: DateTime<Utc>) {
        let (unsure, sure): (Vec<Overdue>, Vec<Overdue>) = jobs.into_iter().partition(|j| j.decided_at.is_some());
        let mut reports: Vec<Report> = sure.iter().filter_map(|j| report_of(j, now)).collect();
        reports.extend(self.not_yet_published(unsure, now).await);
        self.reporter.emit(&reports).await;
        // Cascade steps ended by their decision time may still get their receipt: kept like
        // a delivered chat job for its `read`, so that the correlator can record it as late.
        let silent: Vec<crate::store::SentJob> =
            sure.into_iter().filter_map(|j| j.sent.filter(|s| j.outcome.is_none() && s.step.as_ref().is_some_and(|st| !st.last))).collect();
        if !silent.is_empty() {
            crate::retry::until_ok("keep_for_read", silent.len(), || self.store.keep_for_read(&silent, self.late_window)).await;
        }
    }

    /// Of finals decided by instances that died, those the reports topic does not hold yet.
    /// Those it holds are recorded (history, claim final) and confirmed, not published again.
    /// A partition that cannot be read back now leaves its jobs to come back after their lease.
    async fn not_yet_published(&self, unsure: Vec<Overdue>, now: DateTime<Utc>) -> Vec<Report> {
        let Some(ledger) = &self.ledger else {
            // No topic to read back (dev): its decider was this process, which is gone.
            return unsure.iter().filter_map(|j| report_of(j, now)).collect();
        };
        let mut by_partition: BTreeMap<i32, Vec<Overdue>> = BTreeMap::new();
        for j in unsure {
            // A cascade step's reports go under its job's id (its store id names the step).
            by_partition.entry(ledger.partition_for(crate::cascade::split_store_id(&j.job_id).0).await).or_default().push(j);
        }
        let mut publish = Vec::new();
        for (partition, jobs) in by_partition {
            let earliest = jobs.iter().filter_map(|j| j.decided_at).min().unwrap_or(now) - crate::sink::ledger::CHECKPOINT_SLACK;
            let from = match self.store.offset_before(partition, earliest).await {
                Ok(o) => o,
                Err(e) => {
                    warn!(partition, error = %e, "cannot read the offset checkpoint; reading back later");
                    continue;
                }
            };
            let ids: HashSet<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
            let found = match ledger.finals_in(partition, from, ids).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %e, jobs = jobs.len(), "cannot read the reports topic back; these finals wait");
                    continue;
                }
            };
            let mut recorded = (Vec::new(), Vec::new());
            for j in jobs {
                match found.get(&j.job_id).and_then(|json| Some((serde_json::from_str::<Report>(json).ok()?, json.clone()))) {
                    Some((r, json)) => {
                        recorded.0.push(r);
                        recorded.1.push(json);
                    }
                    None => publish.extend(report_of(&j, now)),
                }
            }
            info!(partition, from = ?from, in_topic = recorded.0.len(), "read back finals of a dead instance");
            if !recorded.0.is_empty() {
                // Recording a final forgets its job's receipt state too.
                self.reporter.record(&recorded.0, &recorded.1).await;
            }
        }
        publish
    }
}

/// The final an overdue job gets: its decided one, else `unknown`.
fn report_of(j: &Overdue, now: DateTime<Utc>) -> Option<Report> {
    if let Some(json) = &j.report {
        return serde_json::from_str(json).map_err(|e| warn!(job_id = %j.job_id, error = %e, "unreadable decided final")).ok();
    }
    let sent = j.sent.as_ref()?;
    Some(match j.outcome {
        // Decided by a receipt on an instance that did not live to publish it.
        Some(o) if o != crate::store::PartOutcome::Unknown => sent.report(o.event(), now),
        // A cascade step's deadline is its decision time where that is shorter.
        _ if sent.step.as_ref().is_some_and(|s| !s.last && s.decision_ms.is_some()) => {
            sent.report(EventKind::Unknown, now).with_error(None, "no result within the step's decision time")
        }
        _ => sent.report(EventKind::Unknown, now).with_error(None, "no receipt within the provider's receipt timeout"),
    })
}
