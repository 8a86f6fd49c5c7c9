//! One store contract, two stores: every case here runs against `MemoryStore` (what
//! `sendgate dev` runs on) and against a `RedisStore` on its own key prefix, through
//! `Arc<dyn Store>` only, so that the embedded mode keeps the promises the shared one keeps.
//! `cargo test --test redis_store conformance::` runs both; `conformance::memory::` or
//! `conformance::redis::` one side.
//!
//! Left out on purpose, because one process cannot differ from one Redis there without being
//! wrong (the memory store is one process: every owner is alive, nothing outlives it). These
//! are Redis-only, in `tests/redis_store.rs` and `tests/redis_faults.rs`:
//! - dead owners: a claim taken over (`New` for a dead owner's claim, `Orphaned` for one that
//!   died mid-submit), a due job resumed or orphaned from a dead claimer, a decided final
//!   handed to another instance with `decided_at` (the reports topic is read back first);
//! - heartbeats, restarts under the same instance id, shutdown releasing the alive key;
//! - script reload after a flush, foreign data reported `Corrupt`, a lost reply replayed;
//! - key TTLs as Redis reports them (`PTTL`), keys left behind, one round trip per batch;
//! - read-back checkpoints (`checkpoint_offsets` / `offset_before`: the memory store keeps
//!   none, as nothing it decided can outlive it) and `awaiting_receipts` (only the memory store
//!   can count it cheaply);
//! - rate leases on the store's own clock (Redis `TIME`): here only from a fresh limit, where
//!   both count from their own now; two instances racing one limit or one WhatsApp portfolio.

use sendgate::store::whatsapp::{Attempt, Decision, Portfolio};
use sendgate::store::{MemoryStore, OptOutPage, Overdue, PaceCall, PaceState};

use super::*;

/// Each case as two tests, `conformance::memory::<case>` and `conformance::redis::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(std::sync::Arc::new(super::MemoryStore::new())).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let s = crate::Space::new().await;
                    super::$case(s.instance("a", std::time::Duration::from_secs(30)).await).await;
                    s.cleanup().await;
                }
            )*
        }
    };
}

conformance! {
    empty_batches_are_answered_empty,
    claims_the_first_record_is_new_and_a_second_record_a_duplicate,
    claims_a_token_that_does_not_hold_the_job_is_fenced_at_every_step,
    claims_the_same_record_after_a_durable_point_is_a_replay,
    claims_an_id_tracked_or_ended_without_a_claim_is_still_seen,
    claims_lapse_with_their_ttl_but_a_tracked_job_keeps_its_claim_past_its_deadline,
    schedule_due_entries_come_back_in_due_order_under_a_lease,
    schedule_a_recheck_never_replaces_the_owners_entry,
    schedule_a_resumed_job_moves_its_claim_to_the_new_token,
    schedule_a_parking_is_not_resumed_before_its_deferred_is_recorded,
    cascade_a_steps_end_parks_the_next_step_once_under_its_own_claim,
    cascade_a_read_cancels_the_next_step_only_before_it_is_resumed,
    receipts_parts_count_down_and_the_first_failure_decides,
    receipts_a_final_before_accepted_is_handed_to_its_recorder,
    receipts_the_deadline_sweep_decides_unknown_once,
    receipts_the_deadline_sweep_waits_until_accepted_is_recorded,
    receipts_a_job_kept_for_a_read_is_handed_out_once_and_only_in_time,
    history_events_come_back_in_order_and_round_trip,
    opt_outs_are_sets_per_tenant_and_channel_and_page_in_order,
    whatsapp_a_tier_counts_unique_recipients_in_its_window,
    whatsapp_the_pair_limit_holds_but_not_against_the_same_job,
    whatsapp_a_service_window_is_open_for_24_hours_after_the_last_contact,
    rates_a_lease_takes_slots_up_to_its_horizon,
    rates_a_tolerance_catches_up_slots_missed_a_moment_ago,
    rates_campaign_speeds_are_per_tenant_then_for_every_tenant,
    pacing_pending_is_a_set_in_first_seen_order,
    pacing_only_campaigns_with_a_finish_by_are_tracked,
    pacing_the_first_offered_finish_by_sticks_and_the_admins_is_apart,
}

/// Claims `(id, record)` pairs, each under a fresh token of this store's owner (so Redis sees
/// the claimer alive, as the memory store always does); the answers and the tokens.
async fn claim(st: &dyn Store, reqs: &[(&str, Option<&str>)]) -> (Vec<Claim>, Vec<String>) {
    let tokens: Vec<String> = reqs.iter().map(|_| mint_token(st.owner())).collect();
    let r: Vec<ClaimReq> = reqs.iter().zip(&tokens).map(|((id, src), token)| ClaimReq { id, token, src: *src, plan: None }).collect();
    (st.claim_ids(&r, TTL).await.unwrap(), tokens)
}

/// The same ids asked again under the tokens given.
async fn claim_as(st: &dyn Store, reqs: &[(&str, &str, Option<&str>)]) -> Vec<Claim> {
    let r: Vec<ClaimReq> = reqs.iter().map(|(id, token, src)| ClaimReq { id, token, src: *src, plan: None }).collect();
    st.claim_ids(&r, TTL).await.unwrap()
}

fn park(id: &str, token: &str, due: DateTime<Utc>) -> ScheduledJob {
    ScheduledJob { id: id.into(), token: token.into(), src: Some(format!("jobs/0/{id}")), due, payload: format!(r#"{{"id":"{id}"}}"#), recheck: false }
}

/// Records the `deferred` report of each parking (what the pipeline does after parking a job),
/// which lets the scheduler resume it.
async fn deferred(st: &dyn Store, ids: &[&str]) {
    let reports: Vec<Report> = ids.iter().map(|id| report(id, EventKind::Deferred)).collect();
    st.record_events(&reports, TTL).await.unwrap();
}

/// What publishing a job's final does to the store: recording it forgets the job's receipt state.
async fn finish(st: &dyn Store, ids: &[&str]) {
    let finals: Vec<Report> = ids.iter().map(|id| report(id, EventKind::Delivered)).collect();
    st.record_events(&finals, TTL).await.unwrap();
}

fn final_json(id: &str, event: EventKind) -> String {
    serde_json::to_string(&report(id, event)).unwrap()
}

/// What the pipeline does before receipts can end a job: claims it, marks it submitting,
/// tracks it as sent and records its `accepted` (unless `accepted` is false).
async fn send(st: &dyn Store, jobs: &[(SentJob, DateTime<Utc>)], accepted: bool) {
    let ids: Vec<&str> = jobs.iter().map(|(j, _)| j.job_id.as_str()).collect();
    let (claims, tokens) = claim(st, &ids.iter().map(|id| (*id, None)).collect::<Vec<_>>()).await;
    assert!(claims.iter().all(|c| *c == Claim::New), "{claims:?}");
    let fenced: Vec<(&str, &str)> = ids.iter().zip(&tokens).map(|(id, t)| (*id, t.as_str())).collect();
    assert!(st.mark_submitting(&fenced).await.unwrap().iter().all(|m| *m));
    let with: Vec<(SentJob, DateTime<Utc>, String)> = jobs.iter().cloned().zip(tokens).map(|((j, d), t)| (j, d, t)).collect();
    assert!(st.track_sent(&with, TTL).await.unwrap().iter().all(|t| *t));
    if accepted {
        let reports: Vec<Report> = ids.iter().map(|id| report(id, EventKind::Accepted)).collect();
        st.record_events(&reports, TTL).await.unwrap();
    }
}

fn is_final(s: &Settled, outcome: PartOutcome) -> bool {
    matches!(s, Settled::Final { outcome: o, .. } if *o == outcome)
}

async fn empty_batches_are_answered_empty(st: Arc<dyn Store>) {
    assert!(st.claim_ids(&[], TTL).await.unwrap().is_empty());
    assert!(st.mark_submitting(&[]).await.unwrap().is_empty());
    assert!(st.begin_finals(&[], t(0)).await.unwrap().is_empty());
    assert!(st.schedule(&[], TTL).await.unwrap().is_empty());
    assert!(st.claim_due(t(0), 0, LEASE, TTL).await.unwrap().is_empty());
    st.finish_scheduled(&[]).await.unwrap();
    assert!(st.track_sent(&[], TTL).await.unwrap().is_empty());
    assert!(st.settle_parts(&[], t(0)).await.unwrap().is_empty());
    assert!(st.take_overdue(t(0), 0, t(0)).await.unwrap().is_empty());
    st.record_events(&[], TTL).await.unwrap();
    assert!(st.opted_out(&[]).await.unwrap().is_empty());
    assert!(st.add_opt_outs(&[]).await.unwrap().is_empty());
    assert!(st.rate_lease(&[], Utc::now()).await.unwrap().is_empty());
    assert!(st.campaign_rates(&[]).await.unwrap().is_empty());
    assert!(st.pace(&[], Utc::now(), TTL).await.unwrap().is_empty());
    st.ping().await.unwrap();
}

async fn claims_the_first_record_is_new_and_a_second_record_a_duplicate(st: Arc<dyn Store>) {
    let st = st.as_ref();
    // First come, even within one batch.
    let (got, tokens) = claim(st, &[("x", Some("jobs/0/1")), ("y", None), ("x", Some("jobs/0/2"))]).await;
    assert_eq!(got, [Claim::New, Claim::New, Claim::Duplicate]);
    // Over HTTP there is no record to tell a re-read by: a seen id is a duplicate.
    assert_eq!(claim(st, &[("y", None), ("z", Some("jobs/0/3"))]).await.0, [Claim::Duplicate, Claim::New]);
    assert_eq!(claim(st, &[("x", Some("jobs/1/1"))]).await.0, [Claim::Duplicate], "a second record, from anywhere");
    // A second record read again while its `duplicate` is decided and not recorded, its
    // decider alive: asked about again shortly (the decider publishes it).
    assert_eq!(claim(st, &[("x", Some("jobs/1/1")), ("x", Some("jobs/0/2"))]).await.0, [Claim::DuplicateBusy, Claim::DuplicateBusy]);
    // Once its event is recorded (published, or found in the topic by a read-back), a second
    // record read again (a crash before its offset was committed) is nothing.
    let mut dup = report("x", EventKind::Duplicate);
    dup.record = Some("jobs/1/1".into());
    st.record_events(&[dup], TTL).await.unwrap();
    st.duplicate_done("x", "jobs/0/2").await.unwrap();
    assert_eq!(claim(st, &[("x", Some("jobs/1/1")), ("x", Some("jobs/0/2"))]).await.0, [Claim::Replay, Claim::Replay]);
    // The same token asked again (a chain step retried after a store error): still New.
    assert_eq!(claim_as(st, &[("x", &tokens[0], Some("jobs/0/1")), ("y", &tokens[1], None)]).await, [Claim::New, Claim::New]);
    // The same record read again while its claimer (alive) is short of a durable point: wait.
    assert_eq!(claim(st, &[("x", Some("jobs/0/1"))]).await.0, [Claim::Busy]);
    assert_eq!(st.mark_submitting(&[("x", &tokens[0])]).await.unwrap(), [true]);
    assert_eq!(claim(st, &[("x", Some("jobs/0/1"))]).await.0, [Claim::Busy], "submitting, by a live claimer");
}

async fn claims_a_token_that_does_not_hold_the_job_is_fenced_at_every_step(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (_, tokens) = claim(st, &[("a", Some("jobs/0/a"))]).await;
    let (mine, other) = (tokens[0].as_str(), mint_token(st.owner()));
    let deadline = t(100);
    assert_eq!(st.mark_submitting(&[("a", &other), ("nope", mine)]).await.unwrap(), [false, false]);
    assert_eq!(st.schedule(&[park("a", &other, t(10))], TTL).await.unwrap(), [false]);
    assert_eq!(st.track_sent(&[(sent("a", &["1"]), deadline, other.clone())], TTL).await.unwrap(), [false]);
    assert_eq!(st.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Unmatched, "nothing was tracked");
    assert_eq!(st.begin_finals(&[("a", &other, &final_json("a", EventKind::Rejected))], t(30)).await.unwrap(), [false]);
    // Under its own token every step goes, once.
    assert_eq!(st.mark_submitting(&[("a", mine)]).await.unwrap(), [true]);
    assert_eq!(st.mark_submitting(&[("a", mine)]).await.unwrap(), [true], "asked again: still so");
    assert_eq!(st.begin_finals(&[("a", mine, &final_json("a", EventKind::Failed))], t(30)).await.unwrap(), [true]);
    assert_eq!(st.begin_finals(&[("a", mine, &final_json("a", EventKind::Failed))], t(30)).await.unwrap(), [false], "decided once");
    // Decided: nothing else moves it, not even its own token.
    assert_eq!(st.mark_submitting(&[("a", mine)]).await.unwrap(), [false]);
    assert_eq!(st.track_sent(&[(sent("a", &["1"]), deadline, mine.to_owned())], TTL).await.unwrap(), [false]);
    assert_eq!(st.schedule(&[park("a", mine, t(10))], TTL).await.unwrap(), [false]);
}

async fn claims_the_same_record_after_a_durable_point_is_a_replay(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let recs = [("parked", Some("jobs/0/parked")), ("sent", Some("jobs/0/sent")), ("ended", Some("jobs/0/ended"))];
    let (_, tok) = claim(st, &recs).await;
    // Parked (deferred): the same record again is nothing, whoever reads it.
    assert_eq!(st.schedule(&[park("parked", &tok[0], t(10))], TTL).await.unwrap(), [true]);
    assert_eq!(claim(st, &recs[..1]).await.0, [Claim::Replay]);
    assert_eq!(claim_as(st, &[("parked", &tok[0], Some("jobs/0/parked"))]).await, [Claim::Replay], "its own token too");
    // Accepted by a provider.
    assert_eq!(st.mark_submitting(&[("sent", &tok[1])]).await.unwrap(), [true]);
    assert_eq!(st.track_sent(&[(sent("sent", &["s1"]), t(100), tok[1].clone())], TTL).await.unwrap(), [true]);
    assert_eq!(claim(st, &recs[1..2]).await.0, [Claim::Replay]);
    // A final decided in the pipeline, then recorded.
    assert_eq!(st.begin_finals(&[("ended", &tok[2], &final_json("ended", EventKind::Rejected))], t(30)).await.unwrap(), [true]);
    assert_eq!(claim(st, &recs[2..]).await.0, [Claim::Replay]);
    st.record_events(&[report("ended", EventKind::Rejected)], TTL).await.unwrap();
    assert_eq!(claim(st, &recs[2..]).await.0, [Claim::Replay]);
    // A second record of any of them is still a duplicate.
    let second = [("parked", Some("jobs/5/1")), ("sent", Some("jobs/5/2")), ("ended", Some("jobs/5/3"))];
    assert_eq!(claim(st, &second).await.0, [Claim::Duplicate; 3]);
    assert_eq!(claim(st, &[("ended", None)]).await.0, [Claim::Duplicate]);
}

async fn claims_an_id_tracked_or_ended_without_a_claim_is_still_seen(st: Arc<dyn Store>) {
    let st = st.as_ref();
    // Its claim lapsed (or was never stored): a provider's answer is still recorded, and the
    // id stays seen, so a second record is a duplicate rather than a second send.
    let token = mint_token(st.owner());
    assert_eq!(st.track_sent(&[(sent("lapsed", &["l1"]), t(100), token)], TTL).await.unwrap(), [true]);
    assert_eq!(claim(st, &[("lapsed", Some("jobs/7/1")), ("lapsed", None)]).await.0, [Claim::Duplicate, Claim::Duplicate]);
    // A final recorded for an id with no claim marks it too.
    st.record_events(&[report("gone", EventKind::Unknown)], TTL).await.unwrap();
    assert_eq!(claim(st, &[("gone", Some("jobs/7/2")), ("gone", None)]).await.0, [Claim::Duplicate, Claim::Duplicate]);
}

async fn claims_lapse_with_their_ttl_but_a_tracked_job_keeps_its_claim_past_its_deadline(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let short = Duration::from_millis(300);
    let tokens: Vec<String> = (0..2).map(|_| mint_token(st.owner())).collect();
    let reqs = [ClaimReq { id: "idle", token: &tokens[0], src: None, plan: None }, ClaimReq { id: "out", token: &tokens[1], src: None, plan: None }];
    assert_eq!(st.claim_ids(&reqs, short).await.unwrap(), [Claim::New, Claim::New]);
    assert_eq!(st.mark_submitting(&[("out", &tokens[1])]).await.unwrap(), [true]);
    // The receipt may take until its deadline; the id stays claimed at least that long.
    let deadline = Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(st.track_sent(&[(sent("out", &["o1"]), deadline, tokens[1].clone())], short).await.unwrap(), [true]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(claim(st, &[("idle", None), ("out", None)]).await.0, [Claim::New, Claim::Duplicate]);
}

async fn schedule_due_entries_come_back_in_due_order_under_a_lease(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (_, tok) = claim(st, &[("late", Some("jobs/0/late")), ("early", Some("jobs/0/early")), ("busy", Some("jobs/0/busy"))]).await;
    // The same record of `busy` read again while its claimer is on it: parked to look again.
    let (got, again) = claim(st, &[("busy", Some("jobs/0/busy"))]).await;
    assert_eq!(got, [Claim::Busy]);
    let recheck = ScheduledJob { recheck: true, ..park("busy", &again[0], t(15)) };
    let stored = st.schedule(&[park("late", &tok[0], t(20)), park("early", &tok[1], t(10)), recheck.clone()], TTL).await.unwrap();
    assert_eq!(stored, [true, true, true]);
    deferred(st, &["late", "early"]).await;
    assert!(st.claim_due(t(9), 10, LEASE, TTL).await.unwrap().is_empty(), "none due");
    let first = st.claim_due(t(30), 2, LEASE, TTL).await.unwrap();
    assert_eq!(
        first.iter().map(|c| (c.entry.as_str(), c.kind)).collect::<Vec<_>>(),
        [("early", DueKind::Resumed), (recheck.entry().as_str(), DueKind::Recheck)]
    );
    assert_eq!((first[0].payload.as_str(), first[0].src.as_deref()), (r#"{"id":"early"}"#, Some("jobs/0/early")));
    assert!(first[0].token.as_deref().is_some_and(|t| t != tok[1]), "resumed under a new token");
    assert_eq!((first[1].token.as_deref(), first[1].src.as_deref()), (None, Some("jobs/0/busy")), "a recheck claims like a new record");
    let second = st.claim_due(t(30), 10, LEASE, TTL).await.unwrap();
    assert_eq!(second.iter().map(|c| c.entry.as_str()).collect::<Vec<_>>(), ["late"], "the limit left it for the next call");
    // Leased until t(60): nobody gets them meanwhile.
    assert!(st.claim_due(t(59), 10, LEASE, TTL).await.unwrap().is_empty());
    let done: Vec<(String, u64)> = first.iter().chain(&second).map(|c| (c.entry.clone(), c.lease)).collect();
    st.finish_scheduled(&done).await.unwrap();
    assert!(st.claim_due(t(1000), 10, LEASE, TTL).await.unwrap().is_empty(), "finished entries are gone");
}

async fn schedule_a_recheck_never_replaces_the_owners_entry(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (_, owner) = claim(st, &[("theirs", Some("jobs/0/theirs"))]).await;
    let (got, reader) = claim(st, &[("theirs", Some("jobs/0/theirs"))]).await;
    assert_eq!(got, [Claim::Busy]);
    let recheck = ScheduledJob { recheck: true, ..park("theirs", &reader[0], t(2)) };
    assert_eq!(st.schedule(&[recheck], TTL).await.unwrap(), [true]);
    // The recheck changed nothing of the claim: its owner still acts on it, then parks it.
    assert_eq!(st.mark_submitting(&[("theirs", &owner[0])]).await.unwrap(), [true]);
    assert_eq!(st.schedule(&[park("theirs", &owner[0], t(5))], TTL).await.unwrap(), [true]);
    deferred(st, &["theirs"]).await;
    let due = st.claim_due(t(10), 10, LEASE, TTL).await.unwrap();
    assert_eq!(due.iter().map(|c| c.kind).collect::<Vec<_>>(), [DueKind::Recheck, DueKind::Resumed], "due order, each entry its own");
    assert_eq!(due[1].entry, "theirs");
}

async fn schedule_a_resumed_job_moves_its_claim_to_the_new_token(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (_, tok) = claim(st, &[("j", Some("jobs/0/j"))]).await;
    assert_eq!(st.schedule(&[park("j", &tok[0], t(10))], TTL).await.unwrap(), [true]);
    // The same parking again (a call run again after its reply was lost): the same answer.
    assert_eq!(st.schedule(&[park("j", &tok[0], t(10))], TTL).await.unwrap(), [true], "parked already under this token");
    deferred(st, &["j"]).await;
    let c = st.claim_due(t(10), 10, LEASE, TTL).await.unwrap();
    assert_eq!((c.len(), c[0].kind), (1, DueKind::Resumed));
    let resumed = c[0].token.clone().unwrap();
    // The parker's token is fenced off; the new one acts.
    assert_eq!(st.mark_submitting(&[("j", &tok[0])]).await.unwrap(), [false]);
    assert_eq!(st.schedule(&[park("j", &tok[0], t(20))], TTL).await.unwrap(), [false]);
    assert_eq!(claim_as(st, &[("j", &resumed, Some("jobs/0/j"))]).await, [Claim::New], "the new token holds the claim");
    // Its lease lapses while its (live) claimer is on it: leased again, not run twice.
    assert!(st.claim_due(t(41), 10, LEASE, TTL).await.unwrap().is_empty());
    // The claimer parks it again (a retry): the new entry runs when due, and the stale lease
    // cannot remove it.
    assert_eq!(st.schedule(&[park("j", &resumed, t(50))], TTL).await.unwrap(), [true]);
    deferred(st, &["j"]).await;
    st.finish_scheduled(&[("j".into(), c[0].lease)]).await.unwrap();
    let again = st.claim_due(t(50), 10, LEASE, TTL).await.unwrap();
    assert_eq!(again.len(), 1);
    let last = again[0].token.clone().unwrap();
    assert_ne!(last, resumed);
    // Sent under the newest token: when its lease lapses the entry is dropped, not run.
    assert_eq!(st.mark_submitting(&[("j", &last)]).await.unwrap(), [true]);
    assert_eq!(st.track_sent(&[(sent("j", &["j1"]), t(1000), last)], TTL).await.unwrap(), [true]);
    assert!(st.claim_due(t(100), 10, LEASE, TTL).await.unwrap().is_empty());
    assert!(st.claim_due(t(500), 10, LEASE, TTL).await.unwrap().is_empty());
}

async fn schedule_a_parking_is_not_resumed_before_its_deferred_is_recorded(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (_, tok) = claim(st, &[("held", Some("jobs/0/held")), ("out", Some("jobs/0/out"))]).await;
    assert_eq!(st.schedule(&[park("held", &tok[0], t(10)), park("out", &tok[1], t(10))], TTL).await.unwrap(), [true, true]);
    deferred(st, &["out"]).await;
    // Its parker (alive) is still publishing its `deferred`: not resumed, not leased.
    let due = st.claim_due(t(10), 10, LEASE, TTL).await.unwrap();
    assert_eq!(due.iter().map(|c| (c.entry.as_str(), c.kind)).collect::<Vec<_>>(), [("out", DueKind::Resumed)]);
    let retry = t(10) + chrono::Duration::from_std(HELD_RETRY).unwrap();
    assert!(st.claim_due(retry - chrono::Duration::milliseconds(1), 10, LEASE, TTL).await.unwrap().is_empty(), "looked at again after HELD_RETRY");
    assert!(st.claim_due(retry, 10, LEASE, TTL).await.unwrap().is_empty(), "still held");
    assert_eq!(claim(st, &[("held", Some("jobs/0/held"))]).await.0, [Claim::Replay], "parked: a durable point");
    deferred(st, &["held"]).await;
    let due = st.claim_due(retry + chrono::Duration::from_std(HELD_RETRY).unwrap(), 10, LEASE, TTL).await.unwrap();
    assert_eq!(due.iter().map(|c| (c.entry.as_str(), c.kind)).collect::<Vec<_>>(), [("held", DueKind::Resumed)]);
    // Parked again by its new claim: held again until that `deferred` is recorded.
    let resumed = due[0].token.clone().unwrap();
    assert_eq!(st.schedule(&[park("held", &resumed, t(100))], TTL).await.unwrap(), [true]);
    assert!(st.claim_due(t(100), 10, LEASE, TTL).await.unwrap().is_empty());
    deferred(st, &["held"]).await;
    assert_eq!(st.claim_due(t(200), 10, LEASE, TTL).await.unwrap().len(), 1);
}

async fn receipts_parts_count_down_and_the_first_failure_decides(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let three = sent("three", &["31", "32", "33"]);
    send(st, &[(three.clone(), t(100)), (sent("two", &["21", "22"]), t(100)), (sent("one", &["11"]), t(100))], true).await;
    // Out of order: only the last delivered part decides.
    assert_eq!(st.settle_part("p", "33", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
    assert_eq!(st.settle_part("p", "31", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
    assert_eq!(
        st.settle_part("p", "32", PartOutcome::Delivered, t(30)).await.unwrap(),
        Settled::Final { job: Box::new(three), outcome: PartOutcome::Delivered }
    );
    // The first part that fails decides; the others then change nothing. One call, in order.
    let batch = [
        ("p", "21", PartOutcome::Undelivered, Some("0x0b")),
        ("p", "22", PartOutcome::Delivered, None),
        ("p", "11", PartOutcome::Expired, None),
        ("p", "nope", PartOutcome::Delivered, None),
        ("other", "11", PartOutcome::Delivered, None),
    ];
    let got = st.settle_parts(&batch, t(30)).await.unwrap();
    assert!(is_final(&got[0], PartOutcome::Undelivered), "{got:?}");
    assert_eq!(got[1], Settled::Pending);
    assert!(is_final(&got[2], PartOutcome::Expired), "{got:?}");
    assert_eq!(&got[3..], [Settled::Unmatched, Settled::Unmatched], "an unknown id; a known id of another provider");
    // A part's receipt counts once.
    assert_eq!(st.settle_part("p", "11", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Unmatched);
    // Decided, not yet confirmed, and its decider (this store's owner) alive: not handed out.
    assert!(st.take_overdue(t(31), 10, t(61)).await.unwrap().is_empty());
    finish(st, &["three", "two", "one"]).await;
    assert!(st.take_overdue(t(1000), 10, t(1030)).await.unwrap().is_empty());
    // Finished jobs stay seen.
    assert_eq!(claim(st, &[("three", None), ("one", None)]).await.0, [Claim::Duplicate, Claim::Duplicate]);
}

async fn receipts_a_final_before_accepted_is_handed_to_its_recorder(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (held, failed) = (sent("held", &["h1", "h2"]), sent("failed", &["f1"]));
    send(st, &[(held.clone(), t(100)), (failed.clone(), t(100)), (sent("plain", &["p1"]), t(100))], false).await;
    // A part that does not end the job counts as ever.
    assert_eq!(st.settle_part("p", "h1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
    // One that ends it decides it, but its caller publishes nothing: `accepted` is not out.
    let got = st.settle_parts(&[("p", "h2", PartOutcome::Delivered, None), ("p", "f1", PartOutcome::Undelivered, Some("0x0b"))], t(30)).await.unwrap();
    assert_eq!(got, [Settled::HandedOff, Settled::HandedOff]);
    // Decided once: the same receipts again match nothing.
    assert_eq!(st.settle_part("p", "h2", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Unmatched);
    // Its decider (this owner) lives: the sweep leaves it to the recorder of `accepted`.
    assert!(st.take_overdue(t(31), 10, t(61)).await.unwrap().is_empty());
    // Recording `accepted` hands the finals over, with the receipt's error code, in order.
    let accepted = [report("held", EventKind::Accepted), report("failed", EventKind::Accepted), report("plain", EventKind::Accepted)];
    let handed = st.record_events(&accepted, TTL).await.unwrap();
    let got: Vec<(&str, PartOutcome, Option<&str>)> = handed.iter().map(|h| (h.job.job_id.as_str(), h.outcome, h.error_code.as_deref())).collect();
    assert_eq!(got, [("held", PartOutcome::Delivered, None), ("failed", PartOutcome::Undelivered, Some("0x0b"))]);
    assert_eq!((&handed[0].job, &handed[1].job), (&held, &failed));
    // Run again after a lost reply (twice: retries can lose replies in a row), the recording
    // hands the same finals over again, until they are recorded.
    for _ in 0..2 {
        let again = st.record_events(&accepted, TTL).await.unwrap();
        assert_eq!(again.iter().map(|h| h.job.job_id.as_str()).collect::<Vec<_>>(), ["held", "failed"], "recorded again");
    }
    let finals: Vec<Report> = handed.iter().map(|h| h.report()).collect();
    assert_eq!(finals[1].event, EventKind::Undelivered);
    assert_eq!(finals[1].error.as_ref().and_then(|e| e.code.as_deref()), Some("0x0b"));
    // Once the finals are recorded, nothing is handed over again; the plain job's receipt
    // (after its `accepted`) ends it as ever.
    st.record_events(&finals, TTL).await.unwrap();
    assert!(st.record_events(&accepted[..2], TTL).await.unwrap().is_empty());
    assert!(is_final(&st.settle_part("p", "p1", PartOutcome::Delivered, t(30)).await.unwrap(), PartOutcome::Delivered));
    // Every final decided by a live owner (this one): nothing for the sweep.
    assert!(st.take_overdue(t(1000), 10, t(1030)).await.unwrap().is_empty());
}

async fn receipts_the_deadline_sweep_decides_unknown_once(st: Arc<dyn Store>) {
    let st = st.as_ref();
    send(st, &[(sent("j", &["1", "2"]), t(100)), (sent("k", &["3"]), t(200))], true).await;
    assert!(st.take_overdue(t(99), 10, t(130)).await.unwrap().is_empty(), "not due");
    assert!(st.take_overdue(t(150), 0, t(180)).await.unwrap().is_empty(), "limit 0");
    let due = st.take_overdue(t(150), 10, t(180)).await.unwrap();
    assert_eq!(due, [Overdue { job_id: "j".into(), sent: Some(sent("j", &["1", "2"])), outcome: None, report: None, decided_at: None }]);
    // Decided `unknown` by that: receipts arriving while it is published make no second final.
    assert_eq!(st.settle_part("p", "1", PartOutcome::Delivered, t(160)).await.unwrap(), Settled::Pending);
    assert_eq!(st.settle_part("p", "2", PartOutcome::Delivered, t(160)).await.unwrap(), Settled::Pending);
    // Its lease lapses while its decider (alive) publishes: not handed out again; k falls due.
    assert!(st.take_overdue(t(180), 10, t(210)).await.unwrap().is_empty());
    let due = st.take_overdue(t(210), 10, t(240)).await.unwrap();
    assert_eq!(due.iter().map(|o| (o.job_id.as_str(), o.outcome)).collect::<Vec<_>>(), [("k", None)]);
    // A final decided in the pipeline is not the sweep's while its decider lives either.
    let (_, tok) = claim(st, &[("piped", None)]).await;
    assert_eq!(st.begin_finals(&[("piped", &tok[0], &final_json("piped", EventKind::Expired))], t(220)).await.unwrap(), [true]);
    assert!(st.take_overdue(t(300), 10, t(330)).await.unwrap().is_empty());
    // Finished: forgotten, and a receipt coming later is unmatched.
    finish(st, &["j", "k", "piped"]).await;
    assert_eq!(st.settle_part("p", "3", PartOutcome::Delivered, t(400)).await.unwrap(), Settled::Unmatched);
    assert!(st.take_overdue(t(5000), 10, t(5030)).await.unwrap().is_empty());
}

async fn receipts_the_deadline_sweep_waits_until_accepted_is_recorded(st: Arc<dyn Store>) {
    let st = st.as_ref();
    send(st, &[(sent("held", &["1"]), t(100))], false).await;
    send(st, &[(sent("out", &["2"]), t(100))], true).await;
    // Its tracker (alive) is still publishing its `accepted`: not decided, leased again.
    let due = st.take_overdue(t(150), 10, t(180)).await.unwrap();
    assert_eq!(due.iter().map(|o| (o.job_id.as_str(), o.outcome)).collect::<Vec<_>>(), [("out", None)]);
    assert!(st.take_overdue(t(179), 10, t(209)).await.unwrap().is_empty(), "leased");
    assert!(st.take_overdue(t(180), 10, t(210)).await.unwrap().is_empty(), "still held");
    st.record_events(&[report("held", EventKind::Accepted)], TTL).await.unwrap();
    let due = st.take_overdue(t(210), 10, t(240)).await.unwrap();
    assert_eq!(due.iter().map(|o| (o.job_id.as_str(), o.outcome)).collect::<Vec<_>>(), [("held", None)], "decided `unknown` now");
    assert_eq!(st.settle_part("p", "1", PartOutcome::Delivered, t(250)).await.unwrap(), Settled::Pending, "decided already");
}

async fn receipts_a_job_kept_for_a_read_is_handed_out_once_and_only_in_time(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let (a, b) = (sent("read-a", &["wamid.a"]), sent("read-b", &["wamid.b1", "wamid.b2"]));
    st.keep_for_read(&[a.clone(), b.clone()], Duration::from_secs(60)).await.unwrap();
    st.keep_for_read(&[sent("read-c", &["wamid.c"])], Duration::from_millis(50)).await.unwrap();
    let keys = [("p", "wamid.a"), ("p", "wamid.b2"), ("other", "wamid.a"), ("p", "nope")];
    assert_eq!(st.take_for_read(&keys).await.unwrap(), [Some(a), Some(b), None, None], "by provider and any message id");
    assert_eq!(st.take_for_read(&[("p", "wamid.a")]).await.unwrap(), [None], "a read again makes no second read");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(st.take_for_read(&[("p", "wamid.c")]).await.unwrap(), [None], "kept no longer than its ttl");
    assert!(st.take_for_read(&[]).await.unwrap().is_empty());
    st.keep_for_read(&[], Duration::from_secs(1)).await.unwrap();
}

async fn history_events_come_back_in_order_and_round_trip(st: Arc<dyn Store>) {
    let st = st.as_ref();
    assert!(st.events("j").await.unwrap().is_empty());
    let first = [report("j", EventKind::Accepted), report("other", EventKind::Accepted)];
    st.record_events(&first, TTL).await.unwrap();
    let later = [report("j", EventKind::Delivered), report("j", EventKind::Read)];
    let json: Vec<String> = later.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    // Both ways in write the same history, whichever the store prefers.
    st.record_events_json(&later, &json, TTL).await.unwrap();
    let got = st.events("j").await.unwrap();
    assert_eq!(got, [first[0].clone(), later[0].clone(), later[1].clone()], "in order, exactly as recorded");
    assert_eq!(st.events("other").await.unwrap(), [first[1].clone()]);
    st.record_events(&[report("short", EventKind::Accepted)], Duration::from_millis(100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(st.events("short").await.unwrap().is_empty(), "expired with its TTL");
}

async fn opt_outs_are_sets_per_tenant_and_channel_and_page_in_order(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let added = st.add_opt_outs(&[("acme", "sms", "+2"), ("acme", "sms", "+1"), ("acme", "sms", "+2"), ("beta", "sms", "+1")]).await.unwrap();
    assert_eq!(added, [true, true, false, true], "a set: the second add changes nothing");
    let asked = [("acme", "sms", "+1"), ("beta", "sms", "+2"), ("acme", "whatsapp", "+1"), ("acme", "sms", "+2"), ("nobody", "sms", "+1")];
    assert_eq!(st.opted_out(&asked).await.unwrap(), [true, false, false, true, false]);
    // Pages in recipient byte order, of exactly `limit`, the cursor the last one seen.
    st.add_opt_outs(&[("acme", "sms", "+3"), ("acme", "sms", "+10")]).await.unwrap();
    let p1 = st.list_opt_outs("acme", "sms", None, 2).await.unwrap();
    assert_eq!((p1.recipients.as_slice(), p1.next_cursor.as_deref()), (&["+1".to_string(), "+10".to_string()][..], Some("+10")));
    // A change between pages neither repeats nor skips what is still there.
    st.remove_opt_outs(&[("acme", "sms", "+1")]).await.unwrap();
    let p2 = st.list_opt_outs("acme", "sms", p1.next_cursor.as_deref(), 2).await.unwrap();
    assert_eq!((p2.recipients.as_slice(), p2.next_cursor.as_deref()), (&["+2".to_string(), "+3".to_string()][..], None));
    assert_eq!(st.list_opt_outs("acme", "sms", None, 0).await.unwrap(), OptOutPage::default());
    assert_eq!(st.list_opt_outs("nobody", "sms", None, 10).await.unwrap(), OptOutPage::default());
    assert_eq!(st.remove_opt_outs(&[("acme", "sms", "+2"), ("acme", "sms", "+9")]).await.unwrap(), [true, false]);
    assert_eq!(st.opted_out(&asked).await.unwrap(), [false, false, false, false, false]);
}

const NUMBER: &str = "106540352242922";
const OTHER_NUMBER: &str = "106540352242923";
const DAY: chrono::Duration = chrono::Duration::hours(24);

fn portfolio(tier: Option<u64>) -> Portfolio<'static> {
    Portfolio { name: "acme", tier, window: Duration::from_secs(24 * 3600), pair_interval: Duration::from_secs(6) }
}

/// One attempt per `(number, recipient, job id)`, in one call; the decisions and the count.
async fn admit(st: &dyn Store, tier: Option<u64>, attempts: &[(&str, &str, &str)], now: DateTime<Utc>) -> (Vec<Decision>, u64) {
    let a: Vec<Attempt> = attempts.iter().map(|(number, recipient, job_id)| Attempt { portfolio: 0, number, recipient, job_id }).collect();
    let got = st.whatsapp_admit(&[portfolio(tier)], &a, now).await.unwrap();
    (got.decisions, got.used[0])
}

async fn whatsapp_a_tier_counts_unique_recipients_in_its_window(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let tier = Some(2);
    let (d, used) = admit(st, tier, &[(NUMBER, "+1", "a"), (NUMBER, "+2", "b")], t(0)).await;
    assert_eq!((d.as_slice(), used), (&[Decision::Allow, Decision::Allow][..], 2));
    // +2 again, later, from another number (so the pair limit is not what is tested): free,
    // and counted at its new time.
    assert_eq!(admit(st, tier, &[(OTHER_NUMBER, "+2", "b2")], t(10)).await, (vec![Decision::Allow], 2));
    // At the cap, the k-th new recipient of a batch waits for the k-th least recently counted.
    let (d, used) = admit(st, tier, &[(NUMBER, "+3", "c"), (NUMBER, "+4", "d"), (NUMBER, "+5", "e")], t(20)).await;
    let waits = [Decision::TierCap { until: t(0) + DAY }, Decision::TierCap { until: t(10) + DAY }, Decision::TierCap { until: t(10) + DAY }];
    assert_eq!((d.as_slice(), used), (&waits[..], 2));
    // A recipient who wrote to that number in the last 24 h goes at the cap, uncounted.
    st.record_inbound_contacts(&[(NUMBER, "+6", t(25)), (NUMBER, "+6", t(5))]).await.unwrap();
    assert_eq!(admit(st, tier, &[(NUMBER, "+6", "f"), (OTHER_NUMBER, "+6", "g")], t(30)).await.0, [Decision::Allow, Decision::TierCap { until: t(0) + DAY }]);
    let usage = st.whatsapp_usage("acme", Duration::from_secs(86_400), t(30)).await.unwrap();
    assert_eq!((usage.used, usage.oldest), (2, Some(t(0))));
    // A window after +1 was counted it has left: one new recipient goes.
    assert_eq!(admit(st, tier, &[(NUMBER, "+3", "c"), (NUMBER, "+4", "d")], t(0) + DAY).await.0, [Decision::Allow, Decision::TierCap { until: t(10) + DAY }]);
    assert_eq!(st.whatsapp_usage("acme", Duration::from_secs(86_400), t(0) + DAY).await.unwrap().oldest, Some(t(10)));
}

async fn whatsapp_the_pair_limit_holds_but_not_against_the_same_job(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let sec = |n: i64| t(0) + chrono::Duration::seconds(n);
    assert_eq!(admit(st, None, &[(NUMBER, "+1", "a")], sec(0)).await, (vec![Decision::Allow], 0), "unlimited: nothing counted");
    assert_eq!(admit(st, None, &[(NUMBER, "+1", "b")], sec(1)).await.0, [Decision::PairLimit { until: sec(6) }]);
    assert_eq!(admit(st, None, &[(OTHER_NUMBER, "+1", "b")], sec(1)).await.0, [Decision::Allow], "another number");
    // The same job again (it came back): not held back by itself, and its send time moves.
    assert_eq!(admit(st, None, &[(NUMBER, "+1", "a")], sec(2)).await.0, [Decision::Allow]);
    assert_eq!(admit(st, None, &[(NUMBER, "+1", "b")], sec(7)).await.0, [Decision::PairLimit { until: sec(8) }]);
    assert_eq!(admit(st, None, &[(NUMBER, "+1", "b")], sec(8)).await.0, [Decision::Allow]);
    assert_eq!(st.whatsapp_usage("acme", Duration::from_secs(86_400), sec(8)).await.unwrap().used, 0);
}

async fn whatsapp_a_service_window_is_open_for_24_hours_after_the_last_contact(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let h = |n: i64| t(0) + chrono::Duration::hours(n);
    assert_eq!(st.service_windows_open(&[], h(0)).await.unwrap(), Vec::<bool>::new());
    // Per (number, recipient); an older contact arriving late does not move the window back.
    st.record_inbound_contacts(&[(NUMBER, "+1", h(0)), (NUMBER, "+1", h(-5)), (OTHER_NUMBER, "+2", h(2))]).await.unwrap();
    let pairs = [(NUMBER, "+1"), (OTHER_NUMBER, "+1"), (NUMBER, "+2"), (OTHER_NUMBER, "+2")];
    assert_eq!(st.service_windows_open(&pairs, h(1)).await.unwrap(), [true, false, false, true]);
    assert_eq!(st.service_windows_open(&pairs, h(24) - chrono::Duration::milliseconds(1)).await.unwrap(), [true, false, false, true]);
    assert_eq!(st.service_windows_open(&pairs, h(24)).await.unwrap(), [false, false, false, true]);
    assert_eq!(st.service_windows_open(&pairs, h(26)).await.unwrap(), [false; 4]);
}

fn lease(limit: &str, interval_us: u64, want: u32) -> RateLease {
    RateLease { limit: limit.into(), interval_us, want, horizon_us: 100_000, tolerance_us: 0 }
}

async fn rates_a_lease_takes_slots_up_to_its_horizon(st: Arc<dyn Store>) {
    let st = st.as_ref();
    // Fresh limits count from the store's now. 2/s: one token now, the next 500 ms later,
    // past the 100 ms horizon; 1000/s: all three, the same limit again in the batch continues.
    let g = st.rate_lease(&[lease("slow", 500_000, 5), lease("fast", 1_000, 3), lease("fast", 1_000, 2)], Utc::now()).await.unwrap();
    assert_eq!((g[0].granted, g[0].first_us, g[0].next_free_us), (1, 0, 500_000));
    assert_eq!((g[1].granted, g[1].first_us, g[1].next_free_us), (3, 0, 3_000));
    assert_eq!((g[2].granted, g[2].first_us, g[2].next_free_us), (2, 3_000, 5_000));
    assert_eq!(g[2].first_at_us, g[1].first_at_us + 3_000, "one timeline");
    // Booked past the horizon: nothing now, and how far ahead it is booked.
    let g = st.rate_lease(&[lease("slow", 500_000, 5)], Utc::now()).await.unwrap();
    assert_eq!(g[0].granted, 0);
    assert!(g[0].next_free_us > 100_000 && g[0].next_free_us <= 500_000, "{g:?}");
}

async fn rates_a_tolerance_catches_up_slots_missed_a_moment_ago(st: Arc<dyn Store>) {
    let st = st.as_ref();
    // 10/s with a 500 ms tolerance (a pace's): one token, then 350 ms unused.
    let paced = |want| RateLease { tolerance_us: 500_000, horizon_us: 2_000_000, ..lease("pace:acme/bf", 100_000, want) };
    let g = st.rate_lease(&[paced(1)], Utc::now()).await.unwrap();
    assert_eq!((g[0].granted, g[0].first_us), (1, 0), "a fresh timeline starts at now: no burst");
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The slots missed since 100 ms are still there, already due.
    let g = st.rate_lease(&[paced(3)], Utc::now()).await.unwrap();
    assert_eq!(g[0].granted, 3);
    assert!((-300_000..=-200_000).contains(&g[0].first_us), "{g:?}");
    // Idle for more than twice the tolerance: from now again.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let g = st.rate_lease(&[paced(1)], Utc::now()).await.unwrap();
    assert_eq!((g[0].granted, g[0].first_us), (1, 0), "{g:?}");
}

async fn rates_campaign_speeds_are_per_tenant_then_for_every_tenant(st: Arc<dyn Store>) {
    let st = st.as_ref();
    st.set_campaign_rate(None, "bf", Some(4.0)).await.unwrap();
    st.set_campaign_rate(Some("acme"), "bf", Some(2.5)).await.unwrap();
    assert_eq!(st.campaign_rates(&[("acme", "bf"), ("other", "bf"), ("acme", "x")]).await.unwrap(), [Some(2.5), Some(4.0), None]);
    st.set_campaign_rate(Some("acme"), "bf", None).await.unwrap();
    assert_eq!(st.campaign_rates(&[("acme", "bf")]).await.unwrap(), [Some(4.0)], "cleared: the every-tenant speed again");
    st.set_campaign_rate(None, "bf", None).await.unwrap();
    assert_eq!(st.campaign_rates(&[("acme", "bf")]).await.unwrap(), [None]);
}

/// A cascade's step 0 claimed with its plan; recording its `step` event ends its claim and
/// parks step 1 (store id `cj #1`, the plan as payload) in the same call, once however often
/// it is recorded; step 1 comes back as a resumed job of its own, and its final ends its claim.
async fn cascade_a_steps_end_parks_the_next_step_once_under_its_own_claim(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let plan = r#"{"id":"cj","tenant":"t","channel":"sms","to":"+4915112345678","text":"x","cascade":[{"channel":"sms"},{"channel":"sms"}]}"#;
    let token = mint_token(st.owner());
    let req = ClaimReq { id: "cj", token: &token, src: Some("jobs/0/cj"), plan: Some(plan) };
    assert_eq!(st.claim_ids(&[req], TTL).await.unwrap(), [Claim::New]);
    let step = |index: u32, event: EventKind, at: DateTime<Utc>| step_report("cj", index, sendgate::job::Until::Delivered, event, at);
    let ended = step(0, EventKind::Undelivered, t(5));
    assert_eq!((ended.event, ended.is_final, ended.store_id().as_ref()), (EventKind::Step, false, "cj"));
    st.record_events(std::slice::from_ref(&ended), TTL).await.unwrap();
    // Recorded again (a lost reply, a read-back): nothing parked twice.
    st.record_events(std::slice::from_ref(&ended), TTL).await.unwrap();
    // Step 0's claim is ended: the record read again is nothing, a second record a duplicate.
    assert_eq!(claim_as(st, &[("cj", "other/1/1", Some("jobs/0/cj"))]).await, [Claim::Replay]);
    assert!(st.claim_due(t(4), 10, LEASE, TTL).await.unwrap().is_empty(), "due when its predecessor ended");
    let due = st.claim_due(t(5), 10, LEASE, TTL).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!((due[0].entry.as_str(), due[0].payload.as_str(), due[0].kind), ("cj #1", plan, DueKind::Resumed));
    let tok = due[0].token.clone().unwrap();
    st.record_events(std::slice::from_ref(&ended), TTL).await.unwrap();
    assert!(st.claim_due(t(100), 10, LEASE, TTL).await.unwrap().is_empty(), "leased, and not parked again");
    // Step 1 runs under its own claim: its pipeline final is begun and recorded on it.
    let last = step(1, EventKind::Rejected, t(6));
    assert!(last.is_final);
    let json = serde_json::to_string(&last).unwrap();
    assert_eq!(st.begin_finals(&[("cj #1", &tok, &json)], t(36)).await.unwrap(), [true]);
    st.record_events(&[last], TTL).await.unwrap();
    st.finish_scheduled(&[("cj #1".into(), due[0].lease)]).await.unwrap();
    assert!(st.claim_due(t(200), 10, LEASE, TTL).await.unwrap().is_empty());
    let events: Vec<(EventKind, Option<u32>)> = st.events("cj").await.unwrap().iter().map(|r| (r.event, r.step.as_ref().map(|s| s.index))).collect();
    assert_eq!(events[0], (EventKind::Step, Some(0)));
    assert_eq!(events.last(), Some(&(EventKind::Rejected, Some(1))));
}

/// A report of step `index` (of two) of job `id`, as the pipeline makes it.
fn step_report(id: &str, index: u32, until: sendgate::job::Until, event: EventKind, at: DateTime<Utc>) -> Report {
    let mut r = report(id, event);
    r.at = at;
    let s = sendgate::cascade::StepRef {
        job_id: id.into(),
        index,
        cascade: "inline".into(),
        until,
        last: index == 1,
        job_expires_at: None,
        decision_ms: Some(60_000),
        decide_by: Some(at + chrono::Duration::seconds(60)),
    };
    r.job_id = sendgate::cascade::store_id(id, index);
    s.stamp(&mut r);
    r
}

/// Claims `id` as a cascade's first step (with its plan) and records its delivered step
/// waiting for a read: its next step is parked for when the decision time ends (t(65)).
async fn delivered_waiting_for_read(st: &dyn Store, id: &str) {
    let plan = format!(r#"{{"id":"{id}","tenant":"t","channel":"sms","to":"+4915112345678","text":"x"}}"#);
    let token = mint_token(st.owner());
    assert_eq!(st.claim_ids(&[ClaimReq { id, token: &token, src: None, plan: Some(&plan) }], TTL).await.unwrap(), [Claim::New]);
    let ended = step_report(id, 0, sendgate::job::Until::Read, EventKind::Delivered, t(5));
    assert_eq!((ended.event, ended.retry_at), (EventKind::Step, Some(t(65))));
    st.record_events(&[ended], TTL).await.unwrap();
}

/// A `read` in time cancels the parked next step and decides the job's final on that step's
/// claim, once; after the scheduler resumed the step it cancels nothing (the read is late).
async fn cascade_a_read_cancels_the_next_step_only_before_it_is_resumed(st: Arc<dyn Store>) {
    let st = st.as_ref();
    delivered_waiting_for_read(st, "rw").await;
    assert!(st.claim_due(t(64), 10, LEASE, TTL).await.unwrap().is_empty(), "waits for the read until the decision time ends");
    let fin = sendgate::cascade::read_won(step_report("rw", 0, sendgate::job::Until::Read, EventKind::Delivered, t(6)));
    assert_eq!((fin.event, fin.is_final, fin.store_id().as_ref()), (EventKind::Delivered, true, "rw #1"));
    let json = serde_json::to_string(&fin).unwrap();
    assert_eq!(st.cancel_steps(&[("rw #1", &json)], t(36)).await.unwrap(), [true]);
    assert_eq!(st.cancel_steps(&[("rw #1", &json)], t(36)).await.unwrap(), [false], "decided already");
    st.record_events(&[fin], TTL).await.unwrap();
    assert!(st.claim_due(t(100), 10, LEASE, TTL).await.unwrap().is_empty(), "the next step never goes");

    delivered_waiting_for_read(st, "rl").await;
    let due = st.claim_due(t(65), 10, LEASE, TTL).await.unwrap();
    assert_eq!(due.iter().map(|c| c.entry.as_str()).collect::<Vec<_>>(), ["rl #1"]);
    let fin = sendgate::cascade::read_won(step_report("rl", 0, sendgate::job::Until::Read, EventKind::Delivered, t(66)));
    assert_eq!(st.cancel_steps(&[("rl #1", &serde_json::to_string(&fin).unwrap())], t(96)).await.unwrap(), [false], "resumed already: late");
}

/// One campaign's pacing call (`acme/<campaign>`).
fn pace_call<'a>(campaign: &'a str, configured: bool, add: &[&'a str], remove: &[&'a str], rank: &[&'a str]) -> PaceCall<'a> {
    PaceCall { tenant: "acme", campaign, configured, offer: None, add: add.to_vec(), remove: remove.to_vec(), rank: rank.to_vec() }
}

async fn pace_one(st: &dyn Store, call: PaceCall<'_>, now: DateTime<Utc>) -> PaceState {
    st.pace(&[call], now, TTL).await.unwrap().pop().unwrap()
}

async fn pacing_pending_is_a_set_in_first_seen_order(st: Arc<dyn Store>) {
    let st = st.as_ref();
    // a and b first seen at 0 s, c at 1 s; adding again (a retried call, a job read again)
    // neither counts twice nor moves a job back in the queue.
    pace_one(st, pace_call("bf", true, &["b", "a"], &[], &[]), t(0)).await;
    let s = pace_one(st, pace_call("bf", true, &["c", "a", "b"], &[], &["a", "b", "c", "zz"]), t(1)).await;
    assert_eq!((s.pending, s.ranks), (3, vec![Some(0), Some(1), Some(2), None]));
    // Removed (sent, ended) once or twice: gone once.
    let s = pace_one(st, pace_call("bf", true, &[], &["a", "a", "zz"], &["b", "c", "a"]), t(2)).await;
    assert_eq!((s.pending, s.ranks), (2, vec![Some(0), Some(1), None]));
    // A job that comes back pending after leaving goes to the back.
    let s = pace_one(st, pace_call("bf", true, &["a"], &["b"], &["a", "c"]), t(3)).await;
    assert_eq!((s.pending, s.ranks), (2, vec![Some(1), Some(0)]));
    // Campaigns are apart, tenants too.
    let other = PaceCall { tenant: "beta", ..pace_call("bf", true, &[], &[], &[]) };
    let both = st.pace(&[pace_call("promo", true, &["a"], &[], &[]), other], t(3), TTL).await.unwrap();
    assert_eq!((both[0].pending, both[1].pending), (1, 0));
}

async fn pacing_only_campaigns_with_a_finish_by_are_tracked(st: Arc<dyn Store>) {
    let st = st.as_ref();
    // Neither configured nor set by the admin or a job: nothing kept, nothing to rank.
    let s = pace_one(st, pace_call("plain", false, &["a"], &[], &["a"]), t(0)).await;
    assert_eq!((s.pending, s.ranks, s.admin_finish_by, s.job_finish_by), (0, vec![None], None, None));
    // A job offering a finish_by makes its campaign paced in the same call.
    let offer = PaceCall { offer: Some(t(600)), ..pace_call("plain", false, &["a"], &[], &["a"]) };
    let s = pace_one(st, offer, t(0)).await;
    assert_eq!((s.pending, s.ranks, s.job_finish_by), (1, vec![Some(0)], Some(t(600))));
    // So does an admin's, for campaigns no job offered one for.
    st.set_finish_by("acme", "admin", Some(t(900))).await.unwrap();
    let s = pace_one(st, pace_call("admin", false, &["x"], &[], &[]), t(0)).await;
    assert_eq!((s.pending, s.admin_finish_by), (1, Some(t(900))));
}

async fn pacing_the_first_offered_finish_by_sticks_and_the_admins_is_apart(st: Arc<dyn Store>) {
    let st = st.as_ref();
    let offer = |at| PaceCall { offer: Some(at), ..pace_call("bf", false, &[], &[], &[]) };
    assert_eq!(pace_one(st, offer(t(600)), t(0)).await.job_finish_by, Some(t(600)));
    assert_eq!(pace_one(st, offer(t(900)), t(1)).await.job_finish_by, Some(t(600)), "a later job's does not move it");
    st.set_finish_by("acme", "bf", Some(t(1200))).await.unwrap();
    let s = pace_one(st, offer(t(900)), t(2)).await;
    assert_eq!((s.admin_finish_by, s.job_finish_by), (Some(t(1200)), Some(t(600))));
    // Cleared by the admin: both gone, so the next job's offer sets it afresh.
    st.set_finish_by("acme", "bf", None).await.unwrap();
    let s = pace_one(st, offer(t(900)), t(3)).await;
    assert_eq!((s.admin_finish_by, s.job_finish_by), (None, Some(t(900))));
}
