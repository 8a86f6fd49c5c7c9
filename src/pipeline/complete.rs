//! What happens after a provider answers: mapping and `accepted`, a retry, or a final event.
//!
//! Answers are collected in batches so that mappings and deferrals cost one store call per
//! batch and reports one sink publish per batch.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::warn;

use super::dispatch::{begin_finals, park};
use super::{BatchTasks, Envelope, Reporter};
use crate::clock::Clock;
use crate::provider::{Accepted, SendError};
use crate::report::{EventKind, Reason, Report};
use crate::route::Router;
use crate::store::{ScheduledJob, SentJob, Store};
use crate::telemetry;

/// A provider's answer for one job.
pub struct Completion {
    pub env: Envelope,
    pub provider: String,
    pub result: Result<Accepted, SendError>,
    /// The provider's in-flight slot (an SMPP window permit), freed once the answer is
    /// recorded: a crash leaves at most the slots' jobs ambiguous.
    pub slot: Option<super::gate::Slot>,
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
    /// A parked job's claim outlives its due time by this much.
    pub claim_ttl: Duration,
    /// Each provider's price table: what an accepted job cost.
    pub prices: crate::provider::price::Prices,
    /// Told when the mappings of message ids the dispatch noted are stored.
    pub untracked: Arc<super::Untracked>,
}

/// Batch tails publishing at once: each waits mostly on the broker (and then Redis), so
/// overlapping a few keeps both busy; the bound keeps the jobs held here bounded too.
const BATCHES_IN_FLIGHT: usize = 8;

/// Finals of handed-over jobs wait at most this long for the next batch to ride with before
/// they are published on their own.
const CARRY_WAIT: Duration = Duration::from_millis(5);

/// Runs until every sender (the worker and its spawned sends) is gone, then waits for the
/// batches still settling.
///
/// A receipt that beats its job's `accepted` into the store leaves the final to whoever
/// records that `accepted` (see [`Reporter::emit_carrying`]): here, a batch. Those finals ride
/// with the next batch's reports (one publish and one store call for both) instead of a publish
/// round of their own per batch: at load a sixth of all jobs come this way, and their own
/// rounds were a third of the broker's produce requests and the store's report calls.
pub async fn completer(ctx: CompleterCtx, mut rx: mpsc::Receiver<Completion>) {
    let ctx = Arc::new(ctx);
    let mut tasks = BatchTasks::new(BATCHES_IN_FLIGHT, "completer");
    let (carry_tx, mut carry_rx) = mpsc::unbounded_channel::<Report>();
    let mut batch = Vec::with_capacity(512);
    let mut carry = Vec::new();
    // Armed when a handed-over final waits and no batch came to take it.
    let mut carry_due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, 512) => {
                if n == 0 {
                    break;
                }
                while let Ok(r) = carry_rx.try_recv() {
                    carry.push(r);
                }
                carry_due = None;
                // The batch's store steps here, one batch at a time: whatever answers come in
                // meanwhile make the next batch, so the store and the broker get fewer, larger
                // calls (concurrent batches each took the few answers there were). Only the
                // publishing tail overlaps.
                let tail = record(&ctx, std::mem::take(&mut batch), std::mem::take(&mut carry)).await;
                tasks.spawn(publish(ctx.clone(), tail, carry_tx.clone())).await;
            }
            Some(r) = carry_rx.recv(), if carry_due.is_none() => {
                carry.push(r);
                carry_due = Some(tokio::time::Instant::now() + CARRY_WAIT);
            }
            () = async { tokio::time::sleep_until(carry_due.expect("armed")).await }, if carry_due.is_some() => {
                while let Ok(r) = carry_rx.try_recv() {
                    carry.push(r);
                }
                carry_due = None;
                tasks.spawn(publish(ctx.clone(), Tail { reports: std::mem::take(&mut carry), done: Vec::new() }, carry_tx.clone())).await;
            }
        }
    }
    tasks.drain().await;
    // What the last batches handed back: recording finals hands nothing over, so one round.
    drop(carry_tx);
    while let Some(r) = carry_rx.recv().await {
        carry.push(r);
    }
    if !carry.is_empty() {
        ctx.reporter.emit(&carry).await;
    }
}

/// What is left of a batch once its store steps are done: reports to publish (and record),
/// then the jobs to acknowledge.
struct Tail {
    reports: Vec<Report>,
    done: Vec<Envelope>,
}

/// One batch of answers, its store steps: accepted jobs are tracked (under their claim), and
/// their `accepted` reports join the batch's other reports; retries are parked; finals are
/// checked against the claim before they are published.
async fn record(ctx: &CompleterCtx, batch: Vec<Completion>, carried: Vec<Report>) -> Tail {
    let now = ctx.clock.now();
    let mut sent: Vec<(SentJob, DateTime<Utc>, String)> = Vec::new();
    let mut accepted = Vec::new();
    let mut parked = Vec::new();
    let mut deferred = Vec::new();
    let mut finals: Vec<(Report, String)> = Vec::new();
    let mut done = Vec::with_capacity(batch.len());
    let mut slots = Vec::with_capacity(batch.len());
    for Completion { env, provider, result, slot } in batch {
        slots.extend(slot);
        let job = &env.job;
        // Finals below are pushed here with their claim token.
        let mut reports = Vec::with_capacity(1);
        match result {
            Ok(acc) => {
                let timeout =
                    ctx.router.providers().iter().find(|p| p.name() == provider).map(|p| p.receipt_timeout()).unwrap_or(Duration::from_secs(48 * 3600));
                let mut deadline = now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::days(2));
                // A cascade step waits for its result no longer than its decision time: the
                // deadline sweep then ends the step `unknown`, and the next step goes.
                let decide_by =
                    job.step.as_ref().and_then(|s| s.at.decision_ms).filter(|_| job.step.as_ref().is_some_and(|s| s.at.until != crate::job::Until::Accepted));
                if let Some(ms) = decide_by {
                    deadline = deadline.min(now + chrono::Duration::milliseconds(ms as i64));
                }
                let sent_job = SentJob {
                    job_id: job.id.clone(),
                    tenant: job.tenant.clone(),
                    channel: job.channel.as_str().to_owned(),
                    to: job.to.clone(),
                    meta: job.meta.clone(),
                    charge: ctx.prices.charge(&provider, job, acc.segments).map(Box::new),
                    provider,
                    message_ids: acc.message_ids,
                    segments: acc.segments,
                    claim_until: env.claim_until,
                    step: job.step.as_ref().map(|s| {
                        // `until = "accepted"`: the provider took it, so this step is the
                        // cascade's last; its receipt's outcome is the job's final.
                        let mut at = s.at.clone();
                        at.last |= at.until == crate::job::Until::Accepted;
                        at.decide_by = Some(deadline);
                        Box::new(at)
                    }),
                };
                // Built from what the store keeps, as every later report of the job is.
                accepted.push(sent_job.report(EventKind::Accepted, now));
                sent.push((sent_job, deadline, env.token.clone()));
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
                    parked.push(ScheduledJob {
                        id: job.id.clone(),
                        token: env.token.clone(),
                        src: env.src.clone(),
                        due: retry_at,
                        payload: job.to_json().to_string(),
                        recheck: false,
                    });
                    // The provider asking us to slow down is a speed limit, not an outage.
                    let reason = if matches!(e, SendError::Throttled { .. }) { Reason::RateLimited } else { Reason::ProviderUnavailable };
                    let mut r = Report::about(job, EventKind::Deferred, now).with_provider(&provider).with_reason(reason);
                    r.retry_at = Some(retry_at);
                    r.error = Some(crate::report::ReportError { code: None, message: e.to_string() });
                    deferred.push(r);
                }
            }
            Err(SendError::Rejected { code, message }) => reports.push(
                Report::about(job, EventKind::Rejected, now).with_provider(&provider).with_reason(Reason::ProviderRejected).with_error(Some(code), message),
            ),
            Err(SendError::Failed { code, message }) => {
                reports.push(Report::about(job, EventKind::Failed, now).with_provider(&provider).with_error(Some(code), message))
            }
            // Nothing was sent, and the job is another instance's now: it handles it.
            Err(SendError::Fenced) => {}
            Err(e) => {
                let cause = e.ambiguous_cause().unwrap_or("response_timeout");
                metrics::counter!(crate::telemetry::SUBMITS_AMBIGUOUS_TOTAL, "cause" => cause).increment(1);
                warn!(provider = %provider, error = %e, "submit outcome unknown; not resending");
                reports.push(Report::about(job, EventKind::Unknown, now).with_provider(&provider).with_error(None, e.to_string()));
            }
        }
        finals.extend(reports.into_iter().map(|r| (r, env.token.clone())));
        done.push(env);
    }
    let mut reports = Vec::with_capacity(done.len());
    if !sent.is_empty() {
        // The provider has these messages: the mapping must be stored, or their receipts are
        // orphaned. A job whose claim another token holds now is left to that instance.
        let tracked = crate::retry::until_ok("track_sent", sent.len(), || ctx.store.track_sent(&sent, ctx.mapping_slack)).await;
        ctx.untracked.tracked(sent.iter().map(|(job, _, _)| (job.provider.as_str(), job.message_ids.as_slice())));
        let lost = tracked.iter().filter(|t| !**t).count();
        if lost > 0 {
            metrics::counter!(telemetry::JOBS_FENCED_TOTAL, "step" => "track").increment(lost as u64);
            warn!(jobs = lost, "accepted jobs not tracked: another instance holds them now");
        }
        reports.extend(accepted.into_iter().zip(tracked).filter_map(|(r, ok)| ok.then_some(r)));
    }
    // Recorded: the provider may take more messages in these slots now.
    drop(slots);
    if !parked.is_empty() {
        let stored = park(ctx.store.as_ref(), &parked, ctx.claim_ttl).await;
        reports.extend(deferred.into_iter().zip(stored).filter_map(|(r, ok)| ok.then_some(r)));
    }
    reports.extend(begin_finals(ctx.store.as_ref(), finals).await);
    // Finals handed over by earlier batches: their `accepted` is published and recorded.
    reports.extend(carried);
    Tail { reports, done }
}

/// A batch's tail: its reports published, then recorded, then its jobs acknowledged.
async fn publish(ctx: Arc<CompleterCtx>, Tail { reports, done }: Tail, carry: mpsc::UnboundedSender<Report>) {
    // `accepted` is recorded (lifting the hold on its job's final) only after it is published:
    // a receipt that raced ahead leaves its final to this recording, and it goes with a later
    // batch. If the process dies first, the deadline sweep publishes it (take_overdue.lua).
    for r in ctx.reporter.emit_carrying(&reports).await {
        // Only this function's loop drops the receiver, after every batch is done.
        let _ = carry.send(r);
    }
    for env in done {
        env.ack.done();
    }
}
