//! Report sinks: where report events go once produced.

pub mod jsonl;
pub mod kafka;
pub mod ledger;

use async_trait::async_trait;

use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("report sink unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Resolves once the reports are durable in the sink (written, or confirmed by a broker).
    async fn publish(&self, reports: &[Report]) -> Result<(), SinkError>;
    /// Whether this sink writes report JSON, so that [`Sink::publish_json`] saves it encoding
    /// each report again.
    fn takes_report_json(&self) -> bool {
        false
    }
    /// [`Sink::publish`] with each report already encoded (`json[i]` is
    /// `serde_json::to_string(&reports[i])`): the reporter encodes a report once for the sink
    /// and the history.
    async fn publish_json(&self, reports: &[Report], json: &[String]) -> Result<(), SinkError> {
        let _ = json;
        self.publish(reports).await
    }
    /// Writes out anything buffered.
    async fn flush(&self) -> Result<(), SinkError>;
    /// Where this sink has written up to: `(partition, highest offset confirmed)` (Kafka);
    /// empty for sinks that have no such thing.
    fn delivered_offsets(&self) -> Vec<(i32, i64)> {
        Vec::new()
    }
}
