//! The provider-neutral request metrics, once around every provider:
//! `sendgate_provider_request_duration_seconds{provider}` and
//! `sendgate_provider_requests_total{provider,outcome}`, `outcome` from
//! [`SendError::outcome_label`](super::SendError::outcome_label) (or `accepted`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::webhook::Webhook;
use super::{Accepted, OnWire, Provider, ProviderStatus, SendError};
use crate::job::Job;
use crate::telemetry;

/// Every `outcome` a send can end with; their series are looked up once, at start.
const OUTCOMES: [&str; 7] = ["accepted", "throttled", "retry", "rejected", "timeout", "failed", "fenced"];

/// A provider with its sends timed and counted.
pub struct Metered {
    inner: Arc<dyn Provider>,
    /// Looked up once: `metrics::counter!` with labels finds its series in the registry on
    /// every call, which showed in profiles at tens of thousands of submits a second.
    duration: metrics::Histogram,
    requests: [metrics::Counter; OUTCOMES.len()],
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Provider>) -> Arc<dyn Provider> {
        let provider = inner.name().to_owned();
        Arc::new(Self {
            duration: metrics::histogram!(telemetry::PROVIDER_REQUEST_DURATION_SECONDS, "provider" => provider.clone()),
            requests: OUTCOMES.map(|o| metrics::counter!(telemetry::PROVIDER_REQUESTS_TOTAL, "provider" => provider.clone(), "outcome" => o)),
            inner,
        })
    }

    fn count(&self, outcome: &str) {
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) => self.requests[i].increment(1),
            // An outcome added to SendError but not here: still counted, just not cached.
            None => {
                metrics::counter!(telemetry::PROVIDER_REQUESTS_TOTAL, "provider" => self.inner.name().to_owned(), "outcome" => outcome.to_owned()).increment(1)
            }
        }
    }
}

#[async_trait]
impl Provider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn channels(&self) -> &[String] {
        self.inner.channels()
    }

    fn weight(&self) -> u32 {
        self.inner.weight()
    }

    fn receipt_timeout(&self) -> Duration {
        self.inner.receipt_timeout()
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn status(&self) -> ProviderStatus {
        self.inner.status()
    }

    async fn send(&self, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
        let started = Instant::now();
        let result = self.inner.send(job, wire).await;
        self.duration.record(started.elapsed().as_secs_f64());
        self.count(match &result {
            Ok(_) => "accepted",
            Err(e) => e.outcome_label(),
        });
        result
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }

    fn segments(&self, job: &Job) -> u32 {
        self.inner.segments(job)
    }

    fn sender<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        self.inner.sender(job)
    }

    fn sender_rate(&self) -> Option<f64> {
        self.inner.sender_rate()
    }

    fn webhook(&self) -> Option<&dyn Webhook> {
        self.inner.webhook()
    }

    fn read_window(&self) -> Option<Duration> {
        self.inner.read_window()
    }
}

#[cfg(test)]
mod tests {
    use super::OUTCOMES;
    use crate::provider::SendError;

    #[test]
    fn every_send_error_outcome_has_a_cached_series() {
        let errors = [
            SendError::Throttled { retry_after: std::time::Duration::ZERO },
            SendError::Transient { code: String::new(), message: String::new() },
            SendError::Unavailable(String::new()),
            SendError::Rejected { code: String::new(), message: String::new() },
            SendError::Ambiguous { after: std::time::Duration::ZERO, cause: "response_timeout" },
            SendError::Failed { code: String::new(), message: String::new() },
            SendError::Fenced,
        ];
        for e in errors {
            assert!(OUTCOMES.contains(&e.outcome_label()), "{e:?}");
        }
    }
}
