//! The decision loop: takes batches from intake, runs the policy chain once per batch, and
//! sends, parks or ends each job.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use super::dispatch::{Decided, Dispatch};
use super::{Completion, Envelope, Reporter};
use crate::clock::Clock;
use crate::policy::{Candidate, Chain, RateLimit, Verdict};
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
    /// After routing: the provider and the segment count are known only then.
    pub rate_limit: Arc<RateLimit>,
}

/// Runs until intake closes and is empty; spawned sends finish on their own.
pub async fn worker(ctx: WorkerCtx, mut rx: mpsc::Receiver<Envelope>) {
    let dispatch = Arc::new(Dispatch {
        clock: ctx.clock.clone(),
        store: ctx.store.clone(),
        reporter: ctx.reporter.clone(),
        completions: ctx.completions.clone(),
        rate_limit: ctx.rate_limit.clone(),
    });
    let mut batch = Vec::with_capacity(ctx.batch_size);
    while rx.recv_many(&mut batch, ctx.batch_size).await > 0 {
        let resumed = batch.iter().filter(|e| e.claimed).count() as u64;
        metrics::counter!(telemetry::JOBS_CONSUMED_TOTAL, "source" => "scheduler").increment(resumed);
        decide(&ctx, &dispatch, std::mem::take(&mut batch)).await;
    }
}

async fn decide(ctx: &WorkerCtx, dispatch: &Arc<Dispatch>, batch: Vec<Envelope>) {
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

    let mut out = Decided::default();
    let mut routed = Vec::new();
    for (env, verdict) in batch.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Allow => match ctx.router.route(&env.job) {
                Ok(provider) => routed.push((env, provider)),
                Err(message) => {
                    out.reports.push(Report::about(&env.job, EventKind::Rejected, now).with_reason(Reason::InvalidJob).with_error(None, message));
                    out.done.push(env);
                }
            },
            other => out.settle(env, other, now),
        }
    }

    // Rate limits last: a job stopped or deferred above never spends a token.
    dispatch.run(routed, now, out, false).await;
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
