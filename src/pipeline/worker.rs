//! The decision loop: takes batches from intake, runs the policy chain once per batch, and
//! sends, parks or ends each job.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::dispatch::{Decided, Dispatch};
use super::{Completion, Envelope, Reporter};
use crate::cascade::Cascades;
use crate::clock::Clock;
use crate::job::Job;
use crate::policy::pace::{Pace, PaceNote};
use crate::policy::{Candidate, Chain, RateLimit, Verdict};
use crate::report::{EventKind, Reason, Report};
use crate::route::Router;
use crate::store::Store;
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
    /// Smooth sending: campaigns paced to a `finish_by` (applied through `rate_limit`).
    pub pace: Arc<Pace>,
    /// How long a claim is kept (`pipeline.dedup_ttl`): a parked job's claim outlives its
    /// due time by this much.
    pub claim_ttl: Duration,
    /// Configured cascades: a job with one becomes the job of its current step before the chain.
    pub cascades: Arc<Cascades>,
    /// Message ids taken by a provider whose mappings are not stored yet (shared with the
    /// completer, which stores them, and the correlator, whose receipts wait for them).
    pub untracked: Arc<super::Untracked>,
}

/// Runs until intake closes and is empty; spawned sends finish on their own.
pub async fn worker(ctx: WorkerCtx, mut rx: mpsc::Receiver<Envelope>) {
    let dispatch = Arc::new(Dispatch {
        clock: ctx.clock.clone(),
        store: ctx.store.clone(),
        reporter: ctx.reporter.clone(),
        completions: ctx.completions.clone(),
        rate_limit: ctx.rate_limit.clone(),
        pace: ctx.pace.clone(),
        claim_ttl: ctx.claim_ttl,
        gate: super::SubmitGate::spawn(ctx.store.clone()),
        untracked: ctx.untracked.clone(),
    });
    let mut batch = Vec::with_capacity(ctx.batch_size);
    while rx.recv_many(&mut batch, ctx.batch_size).await > 0 {
        let resumed = batch.iter().filter(|e| e.claimed).count() as u64;
        metrics::counter!(telemetry::JOBS_CONSUMED_TOTAL, "source" => "scheduler").increment(resumed);
        decide(&ctx, &dispatch, std::mem::take(&mut batch)).await;
    }
}

async fn decide(ctx: &WorkerCtx, dispatch: &Arc<Dispatch>, mut batch: Vec<Envelope>) {
    let now = ctx.clock.now();
    // A record's claim token is minted once, here: a chain step tried again shows the same
    // token, so the store knows the claim for ours instead of a second record's.
    for env in batch.iter_mut().filter(|e| e.token.is_empty()) {
        env.token = crate::store::mint_token(ctx.store.owner());
    }
    // A cascade's job goes through the chain as its current step's job (that step's channel,
    // recipient, sender...), so that every policy applies to what is sent now. One that
    // cannot be applied (an unknown name) ends `rejected`, after its claim like any final.
    let mut unresolved = Vec::new();
    for (i, env) in batch.iter_mut().enumerate() {
        if let Err(u) = ctx.cascades.resolve(&mut env.job, now) {
            unresolved.push((i, u));
        }
    }
    let verdicts = {
        let mut cands: Vec<Candidate> = batch
            .iter()
            .map(|e| Candidate {
                job: &e.job,
                token: e.token.as_str().into(),
                src: e.src.as_deref(),
                claimed: e.claimed,
                verdict: if e.orphaned { orphaned() } else { Verdict::Allow },
            })
            .collect();
        ctx.chain.evaluate(&mut cands, now).await;
        cands.into_iter().map(|c| c.verdict).collect::<Vec<_>>()
    };

    let mut out = Decided::default();
    let mut routed = Vec::new();
    // A record let through was claimed by this chain pass (not before `now`, though a step
    // retried under the same token may have claimed it a little earlier: the margin).
    let claim_until = now + chrono::Duration::from_std(ctx.claim_ttl).unwrap_or(chrono::Duration::hours(1)) - chrono::Duration::minutes(10);
    let mut unresolved = unresolved.into_iter().peekable();
    for (i, (mut env, verdict)) in batch.into_iter().zip(verdicts).enumerate() {
        if !env.claimed && matches!(verdict, Verdict::Allow) {
            env.claim_until = Some(claim_until);
        }
        // Claimed by the chain (a final needs the claim), then rejected: the step it was for
        // is named in the report, so the final lands on that step's claim.
        if let Some((_, u)) = unresolved.next_if(|(j, _)| *j == i) {
            if matches!(verdict, Verdict::Allow | Verdict::Defer { .. }) {
                let mut r = Report::about(&env.job, EventKind::Rejected, now).with_reason(Reason::InvalidJob).with_error(None, u.message);
                u.at.stamp(&mut r);
                out.end(env, r);
                continue;
            }
        }
        match verdict {
            Verdict::Allow => match ctx.router.route(&env.job) {
                Ok(provider) => routed.push((env, provider)),
                Err(message) => {
                    let r = Report::about(&env.job, EventKind::Rejected, now).with_reason(Reason::InvalidJob).with_error(None, message);
                    out.pace.extend(PaceNote::of(&env.job, false));
                    out.end(env, r);
                }
            },
            other => {
                out.pace.extend(pace_note(&env.job, &other));
                out.settle(env, other, now);
            }
        }
    }

    // Rate limits last: a job stopped or deferred above never spends a token.
    dispatch.run(routed, now, out, false).await;
}

/// What a chain verdict means for the job's campaign's pending count: parked, it is still
/// pending; ended, it is not. A duplicate, a replay or a recheck is another record of a job
/// handled elsewhere: nothing.
fn pace_note(job: &Job, verdict: &Verdict) -> Option<PaceNote> {
    match verdict {
        Verdict::Defer { .. } => PaceNote::of(job, true),
        Verdict::Stop { event, .. } if event.is_final() => PaceNote::of(job, false),
        _ => None,
    }
}

/// A parked job whose claimer died mid-submit: the provider may have it, so it ends `unknown`.
fn orphaned() -> Verdict {
    metrics::counter!(telemetry::SUBMITS_AMBIGUOUS_TOTAL, "cause" => "instance_died").increment(1);
    Verdict::Stop {
        event: EventKind::Unknown,
        reason: None,
        message: Some("the instance submitting this job died before recording the provider's answer; not resent".into()),
    }
}
