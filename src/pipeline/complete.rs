//! What happens after a provider answers: mapping and `accepted`, a retry, or a final event.
//!
//! Answers are collected in batches so that mappings and deferrals cost one store call per
//! batch and reports one sink publish per batch.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::warn;

use super::worker::park;
use super::{BatchTasks, Envelope, Reporter};
use crate::clock::Clock;
use crate::provider::{Accepted, SendError};
use crate::report::{EventKind, Reason, Report};
use crate::route::Router;
use crate::store::{ScheduledJob, SentJob, Store};

/// A provider's answer for one job.
pub struct Completion {
    pub env: Envelope,
    pub provider: String,
    pub result: Result<Accepted, SendError>,
}

pub struct CompleterCtx {
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    pub router: Arc<Router>,
    /// Wait before a transient failure is tried again.
    pub retry_backoff: Duration,
    /// Kept as long as the mapping may be needed (receipt timeout plus slack).
    pub mapping_slack: Duration,
}

/// Batches settled at once: each waits mostly on Redis and the broker, so overlapping a few
/// keeps both busy; the bound keeps the jobs held here bounded too.
const BATCHES_IN_FLIGHT: usize = 8;

/// Runs until every sender (the worker and its spawned sends) is gone, then waits for the
/// batches still settling.
pub async fn completer(ctx: CompleterCtx, mut rx: mpsc::Receiver<Completion>) {
    let ctx = Arc::new(ctx);
    let mut tasks = BatchTasks::new(BATCHES_IN_FLIGHT, "completer");
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        tasks.spawn(settle(ctx.clone(), std::mem::take(&mut batch))).await;
    }
    tasks.drain().await;
}

async fn settle(ctx: Arc<CompleterCtx>, batch: Vec<Completion>) {
    let now = ctx.clock.now();
    let mut sent: Vec<(SentJob, DateTime<Utc>)> = Vec::new();
    let mut parked = Vec::new();
    let mut reports = Vec::with_capacity(batch.len());
    let mut done = Vec::with_capacity(batch.len());
    for Completion { env, provider, result } in batch {
        let job = &env.job;
        match result {
            Ok(acc) => {
                let timeout = ctx
                    .router
                    .providers()
                    .iter()
                    .find(|p| p.name() == provider)
                    .map(|p| p.receipt_timeout())
                    .unwrap_or(Duration::from_secs(48 * 3600));
                let deadline = now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::days(2));
                let mut r = Report::about(job, EventKind::Accepted, now).with_provider(&provider);
                r.provider_message_id = acc.message_ids.first().cloned();
                r.segments = Some(acc.segments);
                reports.push(r);
                sent.push((
                    SentJob {
                        job_id: job.id.clone(),
                        tenant: job.tenant.clone(),
                        channel: job.channel.as_str().to_owned(),
                        to: job.to.clone(),
                        meta: job.meta.clone(),
                        provider,
                        message_ids: acc.message_ids,
                        segments: acc.segments,
                    },
                    deadline,
                ));
            }
            Err(e) if e.is_retryable() => {
                let wait = match &e {
                    SendError::Throttled { retry_after } => *retry_after,
                    _ => ctx.retry_backoff,
                };
                let retry_at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(5));
                if job.expires_at.is_some_and(|x| x <= retry_at) {
                    reports.push(Report::about(job, EventKind::Failed, now).with_provider(&provider).with_error(None, e.to_string()));
                } else {
                    parked.push(ScheduledJob { id: job.id.clone(), due: retry_at, payload: job.to_json().to_string(), recheck: false });
                    let mut r = Report::about(job, EventKind::Deferred, now).with_provider(&provider).with_reason(Reason::ProviderUnavailable);
                    r.retry_at = Some(retry_at);
                    r.error = Some(crate::report::ReportError { code: None, message: e.to_string() });
                    reports.push(r);
                }
            }
            Err(SendError::Rejected { code, message }) => reports.push(
                Report::about(job, EventKind::Rejected, now)
                    .with_provider(&provider)
                    .with_reason(Reason::ProviderRejected)
                    .with_error(Some(code), message),
            ),
            Err(SendError::Failed { code, message }) => reports.push(
                Report::about(job, EventKind::Failed, now).with_provider(&provider).with_error(Some(code), message),
            ),
            Err(e) => {
                let cause = e.ambiguous_cause().unwrap_or("response_timeout");
                metrics::counter!(crate::telemetry::SUBMITS_AMBIGUOUS_TOTAL, "cause" => cause).increment(1);
                warn!(provider = %provider, error = %e, "submit outcome unknown; not resending");
                reports.push(Report::about(job, EventKind::Unknown, now).with_provider(&provider).with_error(None, e.to_string()));
            }
        }
        done.push(env);
    }
    if !sent.is_empty() {
        let mut wait = Duration::from_millis(100);
        while let Err(e) = ctx.store.track_sent(&sent, ctx.mapping_slack).await {
            // The provider has these messages: losing the mapping would orphan their receipts.
            warn!(error = %e, jobs = sent.len(), "cannot store message mappings; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
    if !parked.is_empty() {
        park(ctx.store.as_ref(), &parked).await;
    }
    ctx.reporter.emit(&reports).await;
    for env in done {
        env.ack.done();
    }
}
