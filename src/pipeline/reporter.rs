//! Producing report events: to the sink (the durable point), the job history, and metrics.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use crate::report::Report;
use crate::sink::Sink;
use crate::store::Store;
use crate::telemetry;

pub struct Reporter {
    sink: Arc<dyn Sink>,
    store: Arc<dyn Store>,
    history_ttl: Duration,
}

impl Reporter {
    pub fn new(sink: Arc<dyn Sink>, store: Arc<dyn Store>, history_ttl: Duration) -> Self {
        Self { sink, store, history_ttl }
    }

    /// Resolves once the sink has the reports. A sink that is down is retried, not skipped:
    /// a report that was never published would break the one-final-per-job promise.
    pub async fn emit(&self, reports: &[Report]) {
        if reports.is_empty() {
            return;
        }
        let mut wait = Duration::from_millis(100);
        while let Err(e) = self.sink.publish(reports).await {
            error!(error = %e, reports = reports.len(), "report sink refused reports; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        if let Err(e) = self.store.record_events(reports, self.history_ttl).await {
            warn!(error = %e, "job history not recorded");
        }
        for r in reports {
            metrics::counter!(telemetry::REPORTS_TOTAL, "event" => r.event.as_str()).increment(1);
        }
    }

    pub async fn flush(&self) {
        if let Err(e) = self.sink.flush().await {
            error!(error = %e, "report sink flush failed");
        }
    }
}
