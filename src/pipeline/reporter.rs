//! Producing report events: to the sink (the durable point), the job history, and metrics.

use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::report::Report;
use crate::sink::Sink;
use crate::store::{HandedFinal, Store};
use crate::telemetry;

pub struct Reporter {
    sink: Arc<dyn Sink>,
    store: Arc<dyn Store>,
    history_ttl: Duration,
    /// The sink or the store writes report JSON: encode each report once here for both
    /// (Kafka and Redis each encoded it on their own, a fifth of the daemon's serializing).
    encode: bool,
}

impl Reporter {
    pub fn new(sink: Arc<dyn Sink>, store: Arc<dyn Store>, history_ttl: Duration) -> Self {
        let encode = sink.takes_report_json() || store.takes_report_json();
        Self { sink, store, history_ttl, encode }
    }

    /// Resolves once the sink has the reports (and the finals receipts decided while their
    /// jobs' `accepted` among them was not recorded: handed over by the store, published right
    /// after). A sink that is down is retried, not skipped: a report that was never published
    /// would break the one-final-per-job promise.
    pub async fn emit(&self, reports: &[Report]) {
        let handed = self.emit_once(reports).await;
        if !handed.is_empty() {
            let finals: Vec<Report> = handed.iter().map(|h| h.report()).collect();
            // Recording finals hands nothing over: no third round.
            self.emit_once(&finals).await;
        }
    }

    /// Like [`Reporter::emit`], but the finals handed over by recording `accepted` reports are
    /// returned for the caller to publish with its next reports, rather than in a round of
    /// their own now. They are decided and their `accepted` is out; a caller that dies before
    /// publishing them leaves them to the deadline sweep, as between the two rounds of `emit`.
    pub async fn emit_carrying(&self, reports: &[Report]) -> Vec<Report> {
        self.emit_once(reports).await.iter().map(|h| h.report()).collect()
    }

    async fn emit_once(&self, reports: &[Report]) -> Vec<HandedFinal> {
        if reports.is_empty() {
            return Vec::new();
        }
        let json: Option<Vec<String>> = self.encode.then(|| reports.iter().map(|r| serde_json::to_string(r).expect("reports serialize")).collect());
        crate::retry::until_ok("publish_reports", reports.len(), || async {
            match &json {
                Some(json) => self.sink.publish_json(reports, json).await,
                None => self.sink.publish(reports).await,
            }
        })
        .await;
        // A cascade step's `step` event ends its claim as a final does (and parks the next step
        // when recorded): the same instant.
        if reports.iter().any(Report::ends_claim) {
            crate::failpoint::hit("finals-published");
        }
        if reports.iter().any(|r| r.record.is_some()) {
            crate::failpoint::hit("duplicates-published");
        }
        // Before recording: recording an `accepted` lets its final go out, and the spend
        // should be counted by then.
        reports.iter().for_each(count_money);
        // Not only history: recording a final marks its claim final, and recording `accepted`
        // lets its job's receipts end it. Retried until the store answers (appending a report
        // twice to a history is the worst a lost reply can do).
        let handed = crate::retry::until_ok("record_events", reports.len(), || async {
            match &json {
                Some(json) => self.store.record_events_json(reports, json, self.history_ttl).await,
                None => self.store.record_events(reports, self.history_ttl).await,
            }
        })
        .await;
        let mut by_event = telemetry::Tally::default();
        for r in reports {
            by_event.add(r.event.as_str());
            crate::cascade::count(r);
        }
        for (event, n) in by_event {
            metrics::counter!(telemetry::REPORTS_TOTAL, "event" => event).increment(n);
        }
        handed
    }

    /// Records reports that are already in the sink (found there by a read-back) without
    /// publishing them again: history, and a final's claim marked final.
    pub async fn record(&self, reports: &[Report], json: &[String]) {
        // Finals only (read back from the topic): they hand nothing over.
        crate::retry::until_ok("record_events", reports.len(), || self.store.record_events_json(reports, json, self.history_ttl)).await;
    }

    /// Where the sink has written up to, for the store's offset checkpoints.
    pub fn delivered_offsets(&self) -> Vec<(i32, i64)> {
        self.sink.delivered_offsets()
    }

    pub async fn flush(&self) {
        if let Err(e) = self.sink.flush().await {
            error!(error = %e, "report sink flush failed");
        }
    }
}

/// Spend (an `accepted` with `cost`) and refunds (a final with `refund`), counted once their
/// report is out: a job counts what its reports say, and only then.
fn count_money(r: &Report) {
    let (Some(provider), Some(currency)) = (&r.provider, &r.currency) else { return };
    for (name, amount) in [(telemetry::SPEND_MICRO_UNITS_TOTAL, r.cost), (telemetry::REFUNDS_MICRO_UNITS_TOTAL, r.refund)] {
        if let Some(m) = amount {
            metrics::counter!(name, "provider" => provider.clone(), "currency" => currency.clone()).increment(m.0);
        }
    }
}
