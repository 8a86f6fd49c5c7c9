//! The stores against a real Redis (`SENDGATE_TEST_REDIS_URL`), each test on a random key prefix
//! of its own. `conformance` holds `MemoryStore` and `RedisStore` to the one store contract,
//! case by case; the tests here are what only Redis does: instances sharing it, owners that
//! die (takeovers, orphans, decisions handed on), heartbeats and restarts, script reload and
//! corrupt data, key TTLs and leftovers, round trips per batch, leases on Redis's clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::MultiplexedConnection;
use sendgate::config::RedisConfig;
use sendgate::report::{EventKind, Report};
use sendgate::store::{
    mint_token, Claim, ClaimReq, Claims, DueKind, History, OptOuts, PartOutcome, RateLease, Rates, Receipts, RedisStore, Schedule, ScheduledJob, SentJob,
    Settled, Store, StoreError, Whatsapp, HELD_RETRY,
};

const TTL: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(30);

fn url() -> String {
    std::env::var("SENDGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| panic!("SENDGATE_TEST_REDIS_URL is not set: start services with scripts/services start; eval \"$(scripts/services env)\""))
}

/// One test's corner of the shared Redis; its keys are deleted when it is dropped.
struct Space {
    prefix: String,
    raw: MultiplexedConnection,
}

impl Space {
    async fn new() -> Self {
        let client = redis::Client::open(url()).expect("SENDGATE_TEST_REDIS_URL is not a redis url");
        // `cleanup` runs KEYS over the whole shared Redis: far past the default 500 ms reply
        // timeout on a busy machine.
        let slow = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
        let raw = client.get_multiplexed_async_connection_with_config(&slow).await.expect("test redis unreachable");
        Self { prefix: format!("sgtest:{:016x}:", rand::random::<u64>()), raw }
    }

    async fn instance(&self, id: &str, heartbeat_ttl: Duration) -> Arc<RedisStore> {
        let cfg = RedisConfig { url: url(), prefix: self.prefix.clone(), instance_id: Some(id.into()), heartbeat_ttl };
        RedisStore::connect(&cfg).await.expect("connect")
    }

    async fn two(&self) -> (Arc<RedisStore>, Arc<RedisStore>) {
        (self.instance("a", Duration::from_secs(30)).await, self.instance("b", Duration::from_secs(30)).await)
    }

    async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query_async(&mut self.raw.clone()).await.expect("raw redis command")
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    async fn job_state(&self, id: &str) -> Option<String> {
        self.cmd(&["HGET", &self.key(&format!("job:{id}")), "st"]).await
    }

    async fn pttl(&self, rest: &str) -> i64 {
        self.cmd(&["PTTL", &self.key(rest)]).await
    }

    async fn cleanup(self) {
        let keys: Vec<String> = self.cmd(&["KEYS", &format!("{}*", self.prefix)]).await;
        for k in keys {
            let _: i64 = self.cmd(&["DEL", &k]).await;
        }
    }
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn sent(id: &str, parts: &[&str]) -> SentJob {
    SentJob {
        job_id: id.into(),
        tenant: "t".into(),
        channel: "sms".into(),
        to: "+4915112345678".into(),
        meta: BTreeMap::from([("k".into(), "v".into())]),
        provider: "p".into(),
        message_ids: parts.iter().map(|s| s.to_string()).collect(),
        segments: parts.len() as u32,
        // Carried through the store's JSON untouched: every settle and sweep below checks it.
        charge: Some(Box::new(sendgate::provider::price::Charge {
            cost: sendgate::provider::price::Micros(33_300 * parts.len() as u64),
            currency: "EUR".into(),
            refund_on: vec![sendgate::report::EventKind::Undelivered],
        })),
        claim_until: None,
        step: None,
    }
}

/// Claims, tracks as sent and records `accepted` for each job (what the pipeline does before
/// receipts can end a job), under fresh tokens.
async fn track(st: &RedisStore, jobs: &[(SentJob, DateTime<Utc>)]) {
    let ids: Vec<&str> = jobs.iter().map(|(j, _)| j.job_id.as_str()).collect();
    let (_, tokens) = claim_from(st, &ids.iter().map(|id| (*id, None)).collect::<Vec<_>>()).await;
    let with: Vec<(SentJob, DateTime<Utc>, String)> = jobs.iter().cloned().zip(tokens).map(|((j, d), t)| (j, d, t)).collect();
    assert!(st.track_sent(&with, TTL).await.unwrap().iter().all(|t| *t));
    let accepted: Vec<Report> = ids.iter().map(|id| report(id, EventKind::Accepted)).collect();
    st.record_events(&accepted, TTL).await.unwrap();
}

/// `(job id, decided outcome, maybe published already)` of an overdue job.
fn shape(o: &sendgate::store::Overdue) -> (String, Option<PartOutcome>, bool) {
    (o.job_id.clone(), o.outcome, o.decided_at.is_some())
}

fn report(id: &str, event: EventKind) -> Report {
    Report::from_parts(id, "t", "sms", "+4915112345678", &BTreeMap::new(), event, Utc::now())
}

/// Claims `ids` as records read for the first time over HTTP: each its own token, no source.
async fn claim(st: &RedisStore, ids: &[&str]) -> Vec<Claim> {
    claim_from(st, &ids.iter().map(|id| (*id, None)).collect::<Vec<_>>()).await.0
}

/// Claims `(id, record)` pairs, each under a fresh token; returns the answers and the tokens.
async fn claim_from(st: &RedisStore, reqs: &[(&str, Option<&str>)]) -> (Vec<Claim>, Vec<String>) {
    let tokens: Vec<String> = reqs.iter().map(|_| mint_token(st.owner())).collect();
    let r: Vec<ClaimReq> = reqs.iter().zip(&tokens).map(|((id, src), token)| ClaimReq { id, token, src: *src, plan: None }).collect();
    (st.claim_ids(&r, TTL).await.unwrap(), tokens)
}

#[tokio::test]
async fn a_claim_is_a_hash_with_the_claim_ttl_and_a_stray_mark_leaves_no_key() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    let (_, tokens) = claim_from(&a, &[("x", Some("t/0/1"))]).await;
    let pttl = s.pttl("job:x").await;
    assert!(pttl > 50_000 && pttl <= 60_000, "claim TTL, got {pttl}");
    assert_eq!(a.mark_submitting(&[("x", &tokens[0]), ("nope", &tokens[0])]).await.unwrap(), [true, false]);
    assert_eq!(s.job_state("x").await.as_deref(), Some("submitting"));
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("job:nope")]).await, 0);
    s.cleanup().await;
}

/// A second record's `duplicate` decided by an instance that died before recording it may be
/// in the reports topic: whoever reads the record again takes the decision over, unsure, with
/// the first decision's time (where the read-back starts), and records it once it knows.
#[tokio::test]
async fn a_dead_deciders_duplicate_is_taken_over_unsure_with_its_decision_time() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    claim_from(&a, &[("x", Some("jobs/0/1"))]).await;
    let before = Utc::now() - chrono::Duration::milliseconds(1);
    assert_eq!(claim_from(&a, &[("x", Some("jobs/1/1"))]).await.0, [Claim::Duplicate]);
    let after = Utc::now();
    a.shutdown().await;
    let (got, tb) = claim_from(&b, &[("x", Some("jobs/1/1"))]).await;
    let Claim::DuplicateUnsure { decided_at } = got[0] else { panic!("a dead decider's duplicate: {got:?}") };
    assert!(before <= decided_at && decided_at <= after, "the first decision's time: {decided_at} not in {before}..{after}");
    // Asked again under the taker's token (a retried chain step): the same answer.
    let again = b.claim_ids(&[ClaimReq { id: "x", token: &tb[0], src: Some("jobs/1/1"), plan: None }], TTL).await.unwrap();
    assert_eq!(again, [Claim::DuplicateUnsure { decided_at }]);
    // Another reader meanwhile: the taker lives, so it waits.
    assert_eq!(claim_from(&b, &[("x", Some("jobs/1/1"))]).await.0, [Claim::DuplicateBusy]);
    // Found in the topic by the taker's read-back: recorded, and the record is nothing now.
    b.duplicate_done("x", "jobs/1/1").await.unwrap();
    assert_eq!(claim_from(&b, &[("x", Some("jobs/1/1"))]).await.0, [Claim::Replay]);
    // A record whose decision is gone (the hash expired): no hash is made without a TTL.
    b.duplicate_done("gone", "jobs/1/9").await.unwrap();
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("job:gone")]).await, 0);
    s.cleanup().await;
}

#[tokio::test]
async fn the_same_record_read_again_is_busy_while_its_owner_lives_and_a_replay_once_durable() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, ta) = claim_from(&a, &[("x", Some("jobs/0/7")), ("y", Some("jobs/0/8"))]).await;
    // b re-reads the same records after a rebalance while a is still on them.
    assert_eq!(claim_from(&b, &[("x", Some("jobs/0/7")), ("y", Some("jobs/0/8"))]).await.0, [Claim::Busy, Claim::Busy]);
    // A second record with the same id is a duplicate at once, whoever holds the first; that
    // second record read again while b (alive) has not recorded its event: asked again later.
    assert_eq!(claim_from(&b, &[("x", Some("jobs/3/1"))]).await.0, [Claim::Duplicate]);
    assert_eq!(claim_from(&a, &[("x", Some("jobs/3/1"))]).await.0, [Claim::DuplicateBusy]);
    // a parks x (durable): the same record again is nothing at all.
    let parked = ScheduledJob { id: "x".into(), token: ta[0].clone(), src: Some("jobs/0/7".into()), due: t(10), payload: "{}".into(), recheck: false };
    assert_eq!(a.schedule(&[parked], TTL).await.unwrap(), [true]);
    assert_eq!(claim_from(&b, &[("x", Some("jobs/0/7"))]).await.0, [Claim::Replay]);
    // a stops: y (claimed, nothing sent) is taken over by whoever reads its record again.
    a.shutdown().await;
    let (got, tb) = claim_from(&b, &[("y", Some("jobs/0/8"))]).await;
    assert_eq!(got, [Claim::New], "taken over");
    // ...and the old owner's token no longer acts on it.
    assert_eq!(a.mark_submitting(&[("y", &ta[1])]).await.unwrap(), [false]);
    assert_eq!(b.mark_submitting(&[("y", &tb[0])]).await.unwrap(), [true]);
    s.cleanup().await;
}

#[tokio::test]
async fn a_dropped_instance_stops_beating_and_its_claims_move_when_the_heartbeat_lapses() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(1)).await;
    let b = s.instance("b", Duration::from_secs(30)).await;
    let rec = [("x", Some("jobs/1/1"))];
    assert_eq!(claim_from(&a, &rec).await.0, [Claim::New]);
    // Longer than the TTL: only the running heartbeat can have kept it alive.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(claim_from(&b, &rec).await.0, [Claim::Busy], "alive while beating");
    drop(a);
    assert_eq!(claim_from(&b, &rec).await.0, [Claim::Busy], "alive until the TTL lapses");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(claim_from(&b, &rec).await.0, [Claim::New], "heartbeat stopped with the store");
    s.cleanup().await;
}

#[tokio::test]
async fn a_claim_whose_owner_died_while_submitting_is_orphaned_once() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let c = s.instance("c", Duration::from_secs(30)).await;
    let recs = [("x", Some("jobs/0/1")), ("y", Some("jobs/0/2"))];
    let (_, ta) = claim_from(&a, &recs).await;
    assert_eq!(a.mark_submitting(&[("x", &ta[0])]).await.unwrap(), [true]);
    a.shutdown().await;
    let (got, tb) = claim_from(&b, &recs).await;
    assert_eq!(got, [Claim::Orphaned, Claim::New]);
    // Asked again under b's token (a retried step): still orphaned, not a send.
    let again = b.claim_ids(&[ClaimReq { id: "x", token: &tb[0], src: Some("jobs/0/1"), plan: None }], TTL).await.unwrap();
    assert_eq!(again, [Claim::Orphaned]);
    // b now holds it (alive): nobody else reports it too.
    assert_eq!(claim_from(&c, &recs[..1]).await.0, [Claim::Busy]);
    let unknown = serde_json::to_string(&report("x", EventKind::Unknown)).unwrap();
    let confirm_by = Utc::now() + chrono::Duration::seconds(30);
    assert_eq!(c.begin_finals(&[("x", &mint_token(c.owner()), &unknown)], confirm_by).await.unwrap(), [false], "c does not hold it");
    assert_eq!(b.begin_finals(&[("x", &tb[0], &unknown)], confirm_by).await.unwrap(), [true]);
    assert_eq!(s.job_state("x").await.as_deref(), Some("finishing"));
    assert_eq!(b.begin_finals(&[("x", &tb[0], &unknown)], confirm_by).await.unwrap(), [false], "decided once");
    b.record_events(&[report("x", EventKind::Unknown)], TTL).await.unwrap();
    assert_eq!(s.job_state("x").await.as_deref(), Some("final"));
    assert_eq!(claim_from(&c, &recs[..1]).await.0, [Claim::Replay]);
    assert_eq!(claim(&c, &["x"]).await, [Claim::Duplicate]);
    s.cleanup().await;
}

#[tokio::test]
async fn a_restart_under_the_same_instance_id_orphans_the_old_incarnation_at_once() {
    let s = Space::new().await;
    let old = s.instance("host", Duration::from_secs(30)).await;
    let other = s.instance("other", Duration::from_secs(30)).await;
    let recs = [("x", Some("jobs/0/1")), ("y", Some("jobs/0/2"))];
    let (_, t_old) = claim_from(&old, &recs).await;
    old.mark_submitting(&[("y", &t_old[1])]).await.unwrap();
    let new = s.instance("host", Duration::from_secs(30)).await;
    assert_ne!(old.owner(), new.owner());
    assert_eq!(claim_from(&new, &recs).await.0, [Claim::New, Claim::Orphaned]);
    // The old process shutting down late must not declare the new one dead.
    old.shutdown().await;
    assert_eq!(claim_from(&other, &recs).await.0, [Claim::Busy, Claim::Busy]);
    s.cleanup().await;
}

fn parked(id: &str, token: &str, due: DateTime<Utc>) -> ScheduledJob {
    ScheduledJob { id: id.into(), token: token.into(), src: Some(format!("jobs/0/{id}")), due, payload: format!(r#"{{"id":"{id}"}}"#), recheck: false }
}

#[tokio::test]
async fn a_due_job_moves_its_claim_to_the_claimer_and_a_lapsed_lease_fences_the_first() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, ta) = claim_from(&a, &[("j", Some("jobs/0/j"))]).await;
    assert_eq!(a.schedule(&[parked("j", &ta[0], t(10))], TTL).await.unwrap(), [true]);
    assert_eq!(s.job_state("j").await.as_deref(), Some("deferred"));
    a.record_events(&[report("j", EventKind::Deferred)], TTL).await.unwrap();
    assert_eq!(a.schedule(&[parked("j", "someone/else/1", t(10))], TTL).await.unwrap(), [false], "not its claim to park");
    assert!(b.claim_due(t(9), 10, LEASE, TTL).await.unwrap().is_empty(), "not due");
    let c = b.claim_due(t(10), 10, LEASE, TTL).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].entry.as_str(), c[0].payload.as_str(), c[0].kind, c[0].src.as_deref()), ("j", r#"{"id":"j"}"#, DueKind::Resumed, Some("jobs/0/j")));
    let tb = c[0].token.clone().unwrap();
    assert_eq!(s.job_state("j").await.as_deref(), Some("claimed"));
    assert!(a.claim_due(t(20), 10, LEASE, TTL).await.unwrap().is_empty(), "leased");
    // b is alive and on it: a lapsed lease brings it back to nobody while b holds the claim.
    assert!(a.claim_due(t(41), 10, LEASE, TTL).await.unwrap().is_empty(), "its live claimer is on it");
    // b dies before sending: the next claimer takes it over, and b's token is fenced off.
    b.shutdown().await;
    let again = a.claim_due(t(100), 10, LEASE, TTL).await.unwrap();
    assert_eq!((again.len(), again[0].kind), (1, DueKind::Resumed));
    assert_eq!(b.mark_submitting(&[("j", &tb)]).await.unwrap(), [false]);
    let ta2 = again[0].token.clone().unwrap();
    assert_eq!(a.mark_submitting(&[("j", &ta2)]).await.unwrap(), [true]);
    // The stale lease cannot finish the entry; the current one can.
    b.finish_scheduled(&[("j".into(), c[0].lease)]).await.unwrap();
    assert_eq!(s.cmd::<i64>(&["HLEN", &s.key("sched:payload")]).await, 1);
    a.finish_scheduled(&[("j".into(), again[0].lease)]).await.unwrap();
    assert_eq!(s.cmd::<i64>(&["HLEN", &s.key("sched:payload")]).await, 0);
    s.cleanup().await;
}

#[tokio::test]
async fn a_due_job_whose_claimer_died_mid_submit_comes_back_orphaned_and_a_sent_one_not_at_all() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, t0) = claim_from(&a, &[("m", Some("jobs/0/m")), ("n", Some("jobs/0/n"))]).await;
    a.schedule(&[parked("m", &t0[0], t(0)), parked("n", &t0[1], t(0))], TTL).await.unwrap();
    a.record_events(&[report("m", EventKind::Deferred), report("n", EventKind::Deferred)], TTL).await.unwrap();
    let c = a.claim_due(t(0), 10, LEASE, TTL).await.unwrap();
    let tok = |id: &str| c.iter().find(|j| j.entry == id).unwrap().token.clone().unwrap();
    assert_eq!(a.mark_submitting(&[("m", &tok("m")), ("n", &tok("n"))]).await.unwrap(), [true, true]);
    let deadline = Utc::now() + chrono::Duration::seconds(100);
    assert_eq!(a.track_sent(&[(sent("n", &["n1"]), deadline, tok("n"))], TTL).await.unwrap(), [true]);
    a.shutdown().await;
    let back = b.claim_due(t(100), 10, LEASE, TTL).await.unwrap();
    assert_eq!(back.iter().map(|j| (j.entry.as_str(), j.kind)).collect::<Vec<_>>(), [("m", DueKind::Orphaned)], "n was sent: dropped");
    assert_eq!(s.job_state("m").await.as_deref(), Some("orphaned"));
    assert_eq!(s.cmd::<i64>(&["HLEN", &s.key("sched:payload")]).await, 1);
    s.cleanup().await;
}

#[tokio::test]
async fn a_claim_known_to_outlive_the_receipt_deadline_is_not_extended_and_a_rerun_tracks_once() {
    let s = Space::new().await;
    let (a, _b) = s.two().await;
    let deadline = Utc::now() + chrono::Duration::seconds(100);
    let (_, tokens) = claim_from(&a, &[("long", None), ("short", None)]).await;
    // `long`: the caller knows its claim lasts past the mapping's life; `short`: it does not.
    let mut long = sent("long", &["l1"]);
    long.claim_until = Some(Utc::now() + chrono::Duration::days(7));
    let mut short = sent("short", &["s1"]);
    short.claim_until = Some(Utc::now() + chrono::Duration::seconds(10));
    let jobs = [(long, deadline, tokens[0].clone()), (short, deadline, tokens[1].clone())];
    assert_eq!(a.track_sent(&jobs, TTL).await.unwrap(), [true, true]);
    let pttl = s.pttl("job:long").await;
    assert!(pttl > 50_000 && pttl <= 60_000, "left at the claim's TTL (the caller said it outlives the deadline), got {pttl}");
    let pttl = s.pttl("job:short").await;
    assert!(pttl > 150_000 && pttl <= 160_000, "extended to the mapping's life, got {pttl}");
    // Run again (a reply lost): the same answer, and the parts are not counted again.
    assert_eq!(a.settle_part("p", "l1", PartOutcome::Delivered, Utc::now()).await.unwrap(), Settled::HandedOff);
    assert_eq!(a.track_sent(&jobs, TTL).await.unwrap(), [true, true]);
    assert_eq!(s.cmd::<Option<String>>(&["HGET", &s.key("job:long"), "left"]).await.as_deref(), Some("0"));
    s.cleanup().await;
}

#[tokio::test]
async fn a_batch_larger_than_one_zadd_chunk_sets_every_deadline_and_its_finals_clear_them() {
    let s = Space::new().await;
    let (a, _b) = s.two().await;
    let deadline = Utc::now() + chrono::Duration::seconds(100);
    // 600 jobs: 1,200 ZADD arguments, more than the scripts put in one command (1,000).
    let ids: Vec<String> = (0..600).map(|i| format!("z{i}")).collect();
    let jobs: Vec<(SentJob, DateTime<Utc>)> = ids.iter().map(|id| (sent(id, &[&format!("m{id}")]), deadline)).collect();
    track(&a, &jobs).await;
    assert_eq!(s.cmd::<usize>(&["ZCARD", &s.key("deadlines")]).await, 600);
    let finals: Vec<Report> = ids.iter().map(|id| report(id, EventKind::Delivered)).collect();
    a.record_events(&finals, TTL).await.unwrap();
    assert_eq!(s.cmd::<usize>(&["ZCARD", &s.key("deadlines")]).await, 0, "recording the finals forgets every deadline");
    s.cleanup().await;
}

#[tokio::test]
async fn multipart_is_final_once_every_part_is_delivered_or_one_fails() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let deadline = Utc::now() + chrono::Duration::seconds(100);
    track(&a, &[(sent("j1", &["1", "2"]), deadline), (sent("j2", &["3", "4"]), deadline)]).await;
    assert_eq!(s.job_state("j1").await.as_deref(), Some("sent"));
    let mapped: Vec<Option<String>> = s.cmd(&["HMGET", &s.key("msgs:p"), "1", "2", "3", "4"]).await;
    assert_eq!(mapped, ["j1", "j1", "j2", "j2"].map(|j| Some(j.to_string())), "one hash of mappings per provider");
    let pttl = s.pttl("job:j1").await;
    assert!(pttl > 150_000 && pttl <= 160_000, "the claim is extended past the deadline by the ttl, got {pttl}");
    let confirm_by = Utc::now() + chrono::Duration::seconds(30);
    // Receipts may come to any instance.
    assert_eq!(b.settle_part("p", "1", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Pending);
    assert_eq!(
        a.settle_part("p", "2", PartOutcome::Delivered, confirm_by).await.unwrap(),
        Settled::Final { job: Box::new(sent("j1", &["1", "2"])), outcome: PartOutcome::Delivered }
    );
    assert!(matches!(b.settle_part("p", "3", PartOutcome::Undelivered, confirm_by).await.unwrap(), Settled::Final { outcome: PartOutcome::Undelivered, .. }));
    // j2 is decided already: its other part changes nothing.
    assert_eq!(a.settle_part("p", "4", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Pending);
    assert_eq!(a.settle_part("p", "never", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Unmatched);
    // Decided (j1 by a, j2 by b) but not confirmed: while their deciders live, theirs to publish.
    let later = confirm_by + chrono::Duration::seconds(1);
    assert!(a.take_overdue(later, 10, later + chrono::Duration::seconds(30)).await.unwrap().is_empty());
    // a dies: b gets j1, flagged as maybe published already (read the topic back first).
    a.shutdown().await;
    let after_lease = later + chrono::Duration::seconds(31);
    let back = b.take_overdue(after_lease, 10, after_lease + chrono::Duration::seconds(30)).await.unwrap();
    assert_eq!(back.iter().map(shape).collect::<Vec<_>>(), [("j1".to_string(), Some(PartOutcome::Delivered), true)]);
    assert_eq!(back[0].sent, Some(sent("j1", &["1", "2"])));
    b.record_events(&[report("j1", EventKind::Delivered), report("j2", EventKind::Delivered)], TTL).await.unwrap();
    // Finished jobs stay claimed: the same id again is a duplicate, on any instance.
    assert_eq!(claim(&b, &["j1", "j2"]).await, [Claim::Duplicate, Claim::Duplicate]);
    assert!(a.take_overdue(deadline + chrono::Duration::seconds(1000), 10, deadline).await.unwrap().is_empty());
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("msgs:p")]).await, 0, "every part's mapping is gone");
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("deadlines")]).await, 0);
    for j in ["job:j1", "job:j2"] {
        assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key(j), "j"]).await, 0, "{j} forgot its SentJob");
    }
    s.cleanup().await;
}

#[tokio::test]
async fn the_mappings_no_receipt_took_go_with_a_final_that_is_not_delivered() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    let deadline = Utc::now() + chrono::Duration::seconds(100);
    track(&a, &[(sent("u1", &["u1.0", "u1.1", "u1.2"]), deadline), (sent("u2", &["u2.0", "u2.1"]), deadline), (sent("d1", &["d1.0"]), deadline)]).await;
    assert_eq!(s.cmd::<i64>(&["HLEN", &s.key("msgs:p")]).await, 6);
    let confirm_by = Utc::now() + chrono::Duration::seconds(30);
    // u1's first part fails: decided. A receipt for another part before the final is recorded
    // still finds the job (decided: nothing more); the third part's receipt never comes.
    assert!(matches!(a.settle_part("p", "u1.0", PartOutcome::Undelivered, confirm_by).await.unwrap(), Settled::Final { .. }));
    assert_eq!(a.settle_part("p", "u1.1", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Pending);
    assert!(matches!(a.settle_part("p", "d1.0", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Final { .. }));
    a.record_events(&[report("u1", EventKind::Undelivered), report("d1", EventKind::Delivered)], TTL).await.unwrap();
    assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("msgs:p"), "u1.2"]).await, 0, "gone with its job's final");
    assert_eq!(a.settle_part("p", "u1.2", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Unmatched);
    // u2: no receipt at all. The sweep ends it `unknown`; recording that drops both mappings.
    let later = deadline + chrono::Duration::seconds(1);
    let back = a.take_overdue(later, 10, later + chrono::Duration::seconds(30)).await.unwrap();
    assert_eq!(back.iter().map(shape).collect::<Vec<_>>(), [("u2".to_string(), None, false)]);
    a.record_events(&[report("u2", EventKind::Unknown)], TTL).await.unwrap();
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("msgs:p")]).await, 0, "no mapping is left behind");
    for j in ["job:u1", "job:u2", "job:d1"] {
        assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key(j), "m"]).await, 0, "{j} forgot its mapping list");
    }
    s.cleanup().await;
}

#[tokio::test]
async fn two_receipts_for_one_message_in_one_call_match_once() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    track(&a, &[(sent("r1", &["r1.0"]), Utc::now() + chrono::Duration::seconds(100))]).await;
    let confirm_by = Utc::now() + chrono::Duration::seconds(30);
    let twice = [("p", "r1.0", PartOutcome::Delivered, None), ("p", "r1.0", PartOutcome::Delivered, None)];
    let got = a.settle_parts(&twice, confirm_by).await.unwrap();
    assert!(matches!(got[0], Settled::Final { outcome: PartOutcome::Delivered, .. }), "{got:?}");
    assert_eq!(got[1], Settled::Unmatched);
    s.cleanup().await;
}

#[tokio::test]
async fn a_receipt_whose_job_is_gone_leaves_no_key_behind() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    let confirm_by = Utc::now() + chrono::Duration::seconds(30);
    // A mapping whose job hash is gone (evicted, deleted by hand) must not make one without a TTL.
    let _: () = s.cmd(&["SET", &s.key("msg:p:77"), "ghost", "PX", "60000"]).await;
    assert_eq!(a.settle_part("p", "77", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Unmatched);
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("job:ghost")]).await, 0);
    s.cleanup().await;
}

#[tokio::test]
async fn a_job_tracked_by_the_previous_version_still_settles() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    claim(&a, &["old"]).await;
    // What the previous track_sent.lua wrote: delivered parts counted up in `ok` against `n`.
    let job = serde_json::to_string(&sent("old", &["1", "2"])).unwrap();
    let _: i64 = s.cmd(&["HSET", &s.key("job:old"), "st", "sent", "j", &job, "n", "2", "ok", "0"]).await;
    for m in ["1", "2"] {
        let _: () = s.cmd(&["SET", &s.key(&format!("msg:p:{m}")), "old", "PX", "60000"]).await;
    }
    let confirm_by = Utc::now() + chrono::Duration::seconds(30);
    assert_eq!(a.settle_part("p", "1", PartOutcome::Delivered, confirm_by).await.unwrap(), Settled::Pending);
    assert_eq!(
        a.settle_part("p", "2", PartOutcome::Delivered, confirm_by).await.unwrap(),
        Settled::Final { job: Box::new(sent("old", &["1", "2"])), outcome: PartOutcome::Delivered }
    );
    assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("job:old"), "left"]).await, 0, "no field of the new count is left on it");
    a.record_events(&[report("old", EventKind::Delivered)], TTL).await.unwrap();
    for f in ["j", "n", "ok", "fin"] {
        assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("job:old"), f]).await, 0, "{f} forgotten");
    }
    s.cleanup().await;
}

#[tokio::test]
async fn overdue_jobs_are_leased_until_finished() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    track(&a, &[(sent("j", &["1", "2"]), t(100)), (sent("k", &["3"]), t(200))]).await;
    assert!(a.take_overdue(t(99), 10, t(130)).await.unwrap().is_empty());
    assert!(a.take_overdue(t(100), 0, t(130)).await.unwrap().is_empty());
    let first = a.take_overdue(t(150), 10, t(180)).await.unwrap();
    assert_eq!(first.iter().map(shape).collect::<Vec<_>>(), [("j".to_string(), None, false)], "undecided: never published");
    assert!(b.take_overdue(t(150), 10, t(180)).await.unwrap().is_empty(), "leased to a");
    // A receipt arriving while a publishes that `unknown` finds the job decided: no second final.
    assert_eq!(b.settle_part("p", "1", PartOutcome::Delivered, t(400)).await.unwrap(), Settled::Pending);
    // a is alive past its lease (a slow broker): still a's to publish.
    assert!(b.take_overdue(t(180), 10, t(210)).await.unwrap().is_empty());
    // a died without confirming: b gets it, decided `unknown` by a, maybe published already.
    a.shutdown().await;
    let back = b.take_overdue(t(210), 10, t(240)).await.unwrap();
    let due = [("k".to_string(), None, false), ("j".to_string(), Some(PartOutcome::Unknown), true)];
    assert_eq!(back.iter().map(shape).collect::<Vec<_>>(), due, "k's own deadline came too: undecided");
    b.record_events(&[report("j", EventKind::Delivered)], TTL).await.unwrap();
    assert_eq!(b.settle_part("p", "2", PartOutcome::Delivered, t(400)).await.unwrap(), Settled::Unmatched);
    for f in ["j", "n", "left"] {
        assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("job:j"), f]).await, 0, "{f} forgotten, and not recreated by the late receipt");
    }
    s.cleanup().await;
}

/// The model test's first finding: the sweep decided `unknown` at the receipt deadline while
/// the job's `accepted` was still on its way to the broker, so `accepted` could follow the final.
/// A job whose `accepted` is not recorded is its live tracker's: the sweep leases it again.
#[tokio::test]
async fn the_sweep_leaves_a_job_whose_accepted_is_not_recorded_to_its_live_tracker() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, tok) = claim_from(&a, &[("j", None), ("k", None)]).await;
    let with = [(sent("j", &["1"]), t(100), tok[0].clone()), (sent("k", &["2"]), t(100), tok[1].clone())];
    assert_eq!(a.track_sent(&with, TTL).await.unwrap(), [true, true]);
    // k's `accepted` is out and recorded; j's is still on its way to the broker.
    a.record_events(&[report("k", EventKind::Accepted)], TTL).await.unwrap();
    let due = b.take_overdue(t(150), 10, t(180)).await.unwrap();
    assert_eq!(due.iter().map(shape).collect::<Vec<_>>(), [("k".to_string(), None, false)], "j is held by its live tracker");
    assert_eq!(s.cmd::<Option<String>>(&["HGET", &s.key("job:j"), "fin"]).await, None, "j is not decided");
    assert_eq!(s.cmd::<i64>(&["ZSCORE", &s.key("deadlines"), "j"]).await, t(180).timestamp_millis(), "leased again");
    // Its tracker's own sweep leaves it too.
    assert!(a.take_overdue(t(180), 10, t(210)).await.unwrap().is_empty());
    // Once `accepted` is recorded, the sweep decides it.
    a.record_events(&[report("j", EventKind::Accepted)], TTL).await.unwrap();
    let due = b.take_overdue(t(210), 10, t(240)).await.unwrap();
    assert_eq!(due.iter().map(shape).collect::<Vec<_>>(), [("j".to_string(), None, false)]);
    s.cleanup().await;
}

/// A tracker that died before recording `accepted` never publishes it: its job ends `unknown`.
#[tokio::test]
async fn the_sweep_ends_a_job_whose_tracker_died_before_recording_its_accepted() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, tok) = claim_from(&a, &[("j", None)]).await;
    assert_eq!(a.track_sent(&[(sent("j", &["1"]), t(100), tok[0].clone())], TTL).await.unwrap(), [true]);
    a.shutdown().await;
    let due = b.take_overdue(t(150), 10, t(180)).await.unwrap();
    assert_eq!(due.iter().map(shape).collect::<Vec<_>>(), [("j".to_string(), None, false)]);
    s.cleanup().await;
}

/// The model test's second finding: the scheduler resumed a parked job when it fell due while
/// the `deferred` of its parking was still on its way to the broker, so `deferred` could follow
/// the resumed job's final. A parking whose `deferred` is not recorded is held while its parker
/// lives: the entry comes back shortly (`HELD_RETRY`), unleased.
#[tokio::test]
async fn a_parked_job_is_not_resumed_before_its_deferred_is_recorded_while_its_parker_lives() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, ta) = claim_from(&a, &[("j", Some("jobs/0/j")), ("k", Some("jobs/0/k"))]).await;
    assert_eq!(a.schedule(&[parked("j", &ta[0], t(10)), parked("k", &ta[1], t(10))], TTL).await.unwrap(), [true, true]);
    a.record_events(&[report("k", EventKind::Deferred)], TTL).await.unwrap();
    let c = b.claim_due(t(10), 10, LEASE, TTL).await.unwrap();
    assert_eq!(c.iter().map(|c| (c.entry.as_str(), c.kind)).collect::<Vec<_>>(), [("k", DueKind::Resumed)], "j is held by its live parker");
    assert_eq!(s.job_state("j").await.as_deref(), Some("deferred"));
    let retry = t(10) + chrono::Duration::from_std(HELD_RETRY).unwrap();
    assert_eq!(s.cmd::<i64>(&["ZSCORE", &s.key("sched"), "j"]).await, retry.timestamp_millis(), "due again shortly");
    assert_eq!(s.cmd::<Option<String>>(&["HGET", &s.key("sched:lease"), "j"]).await, None, "not leased");
    // Its parker's own scheduler leaves it too.
    assert!(a.claim_due(retry, 10, LEASE, TTL).await.unwrap().is_empty());
    a.record_events(&[report("j", EventKind::Deferred)], TTL).await.unwrap();
    let later = retry + chrono::Duration::from_std(HELD_RETRY).unwrap();
    let c = b.claim_due(later, 10, LEASE, TTL).await.unwrap();
    assert_eq!(c.iter().map(|c| (c.entry.as_str(), c.kind)).collect::<Vec<_>>(), [("j", DueKind::Resumed)]);
    assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("job:j"), "dhold"]).await, 0);
    s.cleanup().await;
}

/// A parker that died before recording `deferred` never publishes it: its job is resumed.
#[tokio::test]
async fn a_parked_job_whose_parker_died_before_recording_its_deferred_is_resumed() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let (_, ta) = claim_from(&a, &[("j", Some("jobs/0/j"))]).await;
    assert_eq!(a.schedule(&[parked("j", &ta[0], t(10))], TTL).await.unwrap(), [true]);
    a.shutdown().await;
    let c = b.claim_due(t(10), 10, LEASE, TTL).await.unwrap();
    assert_eq!(c.iter().map(|c| (c.entry.as_str(), c.kind)).collect::<Vec<_>>(), [("j", DueKind::Resumed)]);
    assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("job:j"), "dhold"]).await, 0, "the hold goes with the parking");
    s.cleanup().await;
}

#[tokio::test]
async fn a_history_and_the_claim_a_final_makes_carry_the_ttl() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    a.record_events(&[report("j", EventKind::Accepted)], TTL).await.unwrap();
    a.record_events(&[report("j", EventKind::Delivered)], TTL).await.unwrap();
    let pttl = s.pttl("history:j").await;
    assert!(pttl > 50_000 && pttl <= 60_000, "history TTL, got {pttl}");
    // A final report for an id with no claim (expired, say) marks it, with a TTL.
    assert_eq!(s.job_state("j").await.as_deref(), Some("final"));
    let pttl = s.pttl("job:j").await;
    assert!(pttl > 50_000 && pttl <= 60_000, "claim TTL, got {pttl}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_history_keeps_its_order_and_ttl_and_one_an_older_build_began_as_a_list_is_read_with_it() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    let kinds = |r: Vec<Report>| r.into_iter().map(|r| r.event).collect::<Vec<_>>();
    // `deferred` first: the history is made by an append, which `accepted` then adds to.
    for ev in [EventKind::Deferred, EventKind::Accepted, EventKind::Delivered] {
        a.record_events(&[report("j", ev)], TTL).await.unwrap();
    }
    assert_eq!(kinds(a.events("j").await.unwrap()), [EventKind::Deferred, EventKind::Accepted, EventKind::Delivered]);
    let pttl = s.pttl("history:j").await;
    assert!(pttl > 50_000 && pttl <= 60_000, "history TTL, got {pttl}");
    // A final alone (rejected at ingest, say) makes the history too, with its TTL.
    a.record_events(&[report("f", EventKind::Rejected)], TTL).await.unwrap();
    assert_eq!(kinds(a.events("f").await.unwrap()), [EventKind::Rejected]);
    let pttl = s.pttl("history:f").await;
    assert!(pttl > 50_000 && pttl <= 60_000, "history TTL, got {pttl}");
    // Begun by this build, ended by an older one (a list under `hist:`, during an upgrade):
    // read as one history, in the order the events happened.
    let mut accepted = report("o", EventKind::Accepted);
    accepted.at = Utc::now() - chrono::Duration::seconds(5);
    a.record_events(&[accepted], TTL).await.unwrap();
    let _: i64 = s.cmd(&["RPUSH", &s.key("hist:o"), &serde_json::to_string(&report("o", EventKind::Delivered)).unwrap()]).await;
    assert_eq!(kinds(a.events("o").await.unwrap()), [EventKind::Accepted, EventKind::Delivered]);
    assert_eq!(s.cmd::<String>(&["TYPE", &s.key("hist:o")]).await, "list", "the old list is left as it is");
    s.cleanup().await;
}

#[tokio::test]
async fn a_thousand_claims_go_in_one_call() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let ids: Vec<String> = (0..1000).map(|i| format!("bulk-{i}")).collect();
    let recs: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), Some(id.as_str()))).collect();
    let calls_before = evalsha_calls(&s).await;
    let (claims, tokens) = claim_from(&a, &recs).await;
    assert!(claims.iter().all(|c| *c == Claim::New));
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(claim(&a, &refs).await, vec![Claim::Duplicate; 1000]);
    assert_eq!(claim_from(&b, &recs).await.0, vec![Claim::Busy; 1000]);
    let fenced: Vec<(&str, &str)> = refs.iter().zip(&tokens).map(|(id, t)| (*id, t.as_str())).collect();
    assert!(a.mark_submitting(&fenced).await.unwrap().iter().all(|m| *m));
    // Other tests share this Redis, so only an upper bound: a per-id call would add thousands.
    assert!(evalsha_calls(&s).await - calls_before < 1000, "one script call per batch");
    s.cleanup().await;
}

#[tokio::test]
async fn scripts_reload_after_a_flush_and_foreign_data_is_corrupt() {
    let s = Space::new().await;
    let (a, _b) = s.two().await;
    // What a Redis restart without the script cache looks like: EVALSHA meets NOSCRIPT.
    let _: String = s.cmd(&["SCRIPT", "FLUSH"]).await;
    assert_eq!(claim(&a, &["x"]).await, [Claim::New]);
    let _: String = s.cmd(&["SET", &s.key("job:str"), "v"]).await;
    let err = a.claim_ids(&[ClaimReq { id: "str", token: "a/1/1", src: None, plan: None }], TTL).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let _: i64 = s.cmd(&["RPUSH", &s.key("hist:bad"), "not json"]).await;
    let err = a.events("bad").await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { key, .. } if key.ends_with("hist:bad")), "{err:?}");
    s.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    let cfg = RedisConfig { url: "redis://127.0.0.1:1/".into(), prefix: "x:".into(), instance_id: None, heartbeat_ttl: Duration::from_secs(1) };
    let err = RedisStore::connect(&cfg).await.err().expect("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// EVALSHA calls the server has run so far (INFO commandstats).
async fn evalsha_calls(s: &Space) -> u64 {
    let info: String = s.cmd(&["INFO", "commandstats"]).await;
    info.lines().find_map(|l| l.strip_prefix("cmdstat_evalsha:calls=")).and_then(|rest| rest.split(',').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_final_already_published_is_not_handed_out_again() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    track(&a, &[(sent("pub", &["9"]), t(100))]).await;
    assert!(matches!(a.settle_part("p", "9", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Final { .. }));
    // The report went out and was recorded, then `a` died before it recorded it.
    let report = sendgate::report::Report::from_parts("pub", "t", "sms", "+4915112345678", &Default::default(), sendgate::report::EventKind::Delivered, t(1));
    a.record_events(&[report], TTL).await.unwrap();
    assert!(b.take_overdue(t(31), 10, t(60)).await.unwrap().is_empty(), "published: forgotten, not re-published");
    assert_eq!(s.cmd::<i64>(&["HEXISTS", &s.key("job:pub"), "j"]).await, 0);
    s.cleanup().await;
}

#[path = "redis_store/conformance.rs"]
mod conformance;
#[path = "redis_store/model.rs"]
mod model;
#[path = "redis_store/round_trips.rs"]
mod round_trips;
#[path = "redis_store/whatsapp.rs"]
mod whatsapp;

fn rate_req(limit: &str, interval_us: u64, want: u32, horizon_us: u64) -> RateLease {
    RateLease { limit: limit.into(), interval_us, want, horizon_us, tolerance_us: 0 }
}

/// Two instances leasing from one limit as fast as they can for 1.5 s of Redis time: no slot
/// is handed out twice, no window holds more slots than the rate allows, and the limit is used
/// (leases reach only 100 ms ahead, so nobody books far ahead of the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_leasing_one_limit_never_exceed_its_rate() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    const INTERVAL: u64 = 5_000; // 200/s
    let lease = |store: Arc<RedisStore>, seed: u32| async move {
        let mut slots = Vec::new();
        let started = std::time::Instant::now();
        let mut i = seed;
        while started.elapsed() < Duration::from_millis(1500) {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let want = 1 + (i >> 16) % 30;
            let g = store.rate_lease(&[rate_req("provider:p", INTERVAL, want, 100_000)], Utc::now()).await.unwrap().remove(0);
            assert!(g.granted <= want && (g.granted == 0 || g.first_us <= 100_000), "{g:?}");
            slots.extend((0..u64::from(g.granted)).map(|k| g.first_at_us + k * INTERVAL));
            tokio::time::sleep(Duration::from_millis(u64::from((i >> 8) % 7))).await;
        }
        slots
    };
    let (sa, sb) = tokio::join!(tokio::spawn(lease(a.clone(), 1)), tokio::spawn(lease(b.clone(), 2)));
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert!(!sa.is_empty() && !sb.is_empty(), "both got tokens: {} and {}", sa.len(), sb.len());
    let mut all: Vec<u64> = sa.into_iter().chain(sb).collect();
    all.sort_unstable();
    assert!(all.windows(2).all(|w| w[1] - w[0] >= INTERVAL), "two slots closer than 1/rate");
    // Any 500 ms window: at most 100 slots (+1 for where the window falls).
    let window = 500_000;
    let most = all.iter().enumerate().map(|(i, &from)| all[i..].iter().take_while(|&&t| t < from + window).count()).max().unwrap();
    assert!(most <= 101, "{most} slots in 500 ms at 200/s");
    // Leased back to back, nearly every slot of the span is used (a stalled machine may leave gaps).
    let span_slots = (all[all.len() - 1] - all[0]) / INTERVAL + 1;
    assert!(all.len() as u64 * 3 >= span_slots * 2 && all.len() >= 200, "{} of {span_slots} slots leased", all.len());
    s.cleanup().await;
}

#[tokio::test]
async fn a_limits_tat_is_kept_as_long_as_it_is_booked_ahead() {
    let s = Space::new().await;
    let a = s.instance("a", Duration::from_secs(30)).await;
    // 2/s: booked 500 ms ahead by one token; kept that long, plus a second.
    let g = a.rate_lease(&[rate_req("campaign:t/c", 500_000, 5, 100_000)], Utc::now()).await.unwrap();
    assert_eq!(g[0].granted, 1);
    let pttl = s.pttl("rate:campaign:t/c").await;
    assert!((1_000..=1_500).contains(&pttl), "{pttl}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_campaign_speed_that_does_not_parse_is_ignored() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    a.set_campaign_rate(None, "bf", Some(4.0)).await.unwrap();
    let _: i64 = s.cmd(&["HSET", &s.key("campaign_rates"), "*/x", "fast"]).await;
    let _: i64 = s.cmd(&["HSET", &s.key("campaign_rates"), "acme/bf", "-1"]).await;
    assert_eq!(b.campaign_rates(&[("acme", "bf"), ("acme", "x")]).await.unwrap(), [Some(4.0), None], "a bad value is ignored");
    s.cleanup().await;
}

#[tokio::test]
async fn early_receipts_are_kept_taken_back_after_a_while_and_dropped_once_matched() {
    use sendgate::store::EarlyReceipt;
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let early = |id: &str| EarlyReceipt { provider: "p".into(), message_id: id.into(), outcome: PartOutcome::Delivered, error_code: None };
    let failed = EarlyReceipt { provider: "p".into(), message_id: "m:3".into(), outcome: PartOutcome::Undelivered, error_code: Some("0x0b".into()) };
    a.keep_early(&[early("m1"), early("m2"), failed.clone()], t(0)).await.unwrap();
    assert!(b.take_early(t(-1), t(20), 10).await.unwrap().is_empty(), "tried too recently");
    let mut got = b.take_early(t(15), t(20), 10).await.unwrap();
    got.sort_by(|x, y| x.message_id.cmp(&y.message_id));
    assert_eq!(got, [early("m1"), early("m2"), failed], "message ids may hold ':'");
    assert!(a.take_early(t(15), t(21), 10).await.unwrap().is_empty(), "marked tried at t(20)");
    a.drop_early(&[("p", "m1")]).await.unwrap();
    let later: Vec<String> = a.take_early(t(40), t(41), 10).await.unwrap().into_iter().map(|e| e.message_id).collect();
    assert_eq!(later.len(), 2, "{later:?}");
    assert!(!later.contains(&"m1".to_string()));
    let pttl = s.pttl("early:p:m2").await;
    assert!(pttl > 100_000 && pttl <= 120_000, "kept two minutes, got {pttl}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_parked_job_whose_claim_had_expired_keeps_its_record_so_a_reread_is_a_replay() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    // No claim left for `gone` (expired): parking makes it again, with the entry's record.
    assert_eq!(a.schedule(&[parked("gone", &mint_token(a.owner()), t(10))], TTL).await.unwrap(), [true]);
    assert_eq!(claim_from(&b, &[("gone", Some("jobs/0/gone"))]).await.0, [Claim::Replay]);
    assert_eq!(claim_from(&b, &[("gone", Some("jobs/1/other"))]).await.0, [Claim::Duplicate]);
    s.cleanup().await;
}
