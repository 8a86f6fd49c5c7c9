//! Report sinks: where report events go once produced.

pub mod jsonl;
pub mod kafka;

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
    /// Writes out anything buffered.
    async fn flush(&self) -> Result<(), SinkError>;
}
