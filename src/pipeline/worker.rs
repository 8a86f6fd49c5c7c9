//! The decision loop: takes batches from intake, runs the policy chain once per batch, and
//! sends, parks or ends each job.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use super::{Completion, Envelope, Reporter};
use crate::clock::Clock;
use crate::policy::{Candidate, Chain, Verdict};
use crate::report::{EventKind, Reason, Report};
use crate::route::Router;
use crate::store::{ScheduledJob, Store};
use crate::telemetry;

pub struct WorkerCtx {
    pub clock: Arc<dyn Clock>,
    pub chain: Chain,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    pub router: Arc<Router>,
    pub completions: mpsc::Sender<Completion>,
    pub batch_size: usize,
}

/// Runs until intake closes and is empty; spawned sends finish on their own.
pub async fn worker(ctx: WorkerCtx, mut rx: mpsc::Receiver<Envelope>) {
    let mut batch = Vec::with_capacity(ctx.batch_size);
    while rx.recv_many(&mut batch, ctx.batch_size).await > 0 {
        let resumed = batch.iter().filter(|e| e.claimed).count() as u64;
        metrics::counter!(telemetry::JOBS_CONSUMED_TOTAL, "source" => "scheduler").increment(resumed);
        decide(&ctx, std::mem::take(&mut batch)).await;
    }
}

async fn decide(ctx: &WorkerCtx, batch: Vec<Envelope>) {
    let now = ctx.clock.now();
    let verdicts = loop {
        let mut cands: Vec<Candidate> =
            batch.iter().map(|e| Candidate { job: &e.job, claimed: e.claimed, verdict: Verdict::Allow }).collect();
        match ctx.chain.evaluate(&mut cands, now).await {
            Ok(()) => break cands.into_iter().map(|c| c.verdict).collect::<Vec<_>>(),
            Err(e) => {
                // The batch stays in hand: nothing is decided until the store answers.
                warn!(error = %e, jobs = batch.len(), "policy chain cannot reach the store; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };

    let mut reports = Vec::new();
    let mut parked = Vec::new();
    let mut done = Vec::new();
    let mut sends = Vec::new();
    for (env, verdict) in batch.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Allow => match ctx.router.route(&env.job) {
                Ok(provider) => sends.push((env, provider)),
                Err(message) => {
                    reports.push(Report::about(&env.job, EventKind::Rejected, now).with_reason(Reason::InvalidJob).with_error(None, message));
                    done.push(env);
                }
            },
            Verdict::Recheck { until } => {
                parked.push(ScheduledJob { id: env.job.id.clone(), due: until, payload: env.job.to_json().to_string(), recheck: true });
                done.push(env);
            }
            Verdict::Defer { until, reason } => {
                parked.push(ScheduledJob { id: env.job.id.clone(), due: until, payload: env.job.to_json().to_string(), recheck: false });
                let mut r = Report::about(&env.job, EventKind::Deferred, now).with_reason(reason);
                r.retry_at = Some(until);
                reports.push(r);
                done.push(env);
            }
            Verdict::Stop { event, reason, message } => {
                let mut r = Report::about(&env.job, event, now);
                r.reason = reason;
                if let Some(m) = message {
                    r = r.with_error(None, m);
                }
                reports.push(r);
                done.push(env);
            }
        }
    }
    if !sends.is_empty() {
        // One round for the batch: a job marked submitting that is found by another instance
        // after we die is never resent.
        let ids: Vec<&str> = sends.iter().map(|(e, _)| e.job.id.as_str()).collect();
        let mut wait = Duration::from_millis(100);
        while let Err(e) = ctx.store.mark_submitting(&ids).await {
            warn!(error = %e, jobs = ids.len(), "cannot mark jobs submitting; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        for (env, provider) in sends {
            let tx = ctx.completions.clone();
            tokio::spawn(async move {
                let result = provider.send(&env.job).await;
                let _ = tx.send(Completion { env, provider: provider.name().into(), result }).await;
            });
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

/// Stores deferred jobs, retrying until the store takes them: a deferral that only lived in
/// memory would be lost with the process.
pub(super) async fn park(store: &dyn Store, jobs: &[ScheduledJob]) {
    let mut wait = Duration::from_millis(100);
    while let Err(e) = store.schedule(jobs).await {
        warn!(error = %e, jobs = jobs.len(), "cannot store deferred jobs; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
