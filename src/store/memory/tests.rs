//! What only the memory store does. Everything both stores promise is held to one suite, run
//! against each (`tests/redis_store/conformance.rs`); these check what the memory store alone
//! keeps: the count shutdown waits on, and that what is finished leaves nothing behind.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::MemoryStore;
use crate::report::{EventKind, Report};
use crate::store::{mint_token, ClaimReq, Claims, History, Receipts, Schedule, ScheduledJob, SentJob};

const TTL: Duration = Duration::from_secs(60);

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

/// A sent job of provider `p` with these message ids (also used by the correlator's tests).
pub(crate) fn sent(id: &str, parts: &[&str]) -> SentJob {
    SentJob {
        job_id: id.into(),
        tenant: "t".into(),
        channel: "sms".into(),
        to: "+4915112345678".into(),
        meta: Default::default(),
        provider: "p".into(),
        message_ids: parts.iter().map(|s| s.to_string()).collect(),
        segments: parts.len() as u32,
        charge: None,
        claim_until: None,
        step: None,
    }
}

fn report(id: &str, event: EventKind) -> Report {
    Report::from_parts(id, "t", "sms", "+4915112345678", &Default::default(), event, t(0))
}

/// Claims `id` and marks it submitting under a fresh token.
async fn claimed(s: &MemoryStore, id: &str) -> String {
    let token = mint_token(s.owner());
    s.claim_ids(&[ClaimReq { id, token: &token, src: None, plan: None }], TTL).await.unwrap();
    assert_eq!(s.mark_submitting(&[(id, &token)]).await.unwrap(), [true]);
    token
}

#[tokio::test]
async fn awaiting_receipts_counts_tracked_jobs_until_their_final_is_out() {
    let s = MemoryStore::new();
    assert_eq!(s.awaiting_receipts(), Some(0));
    let (a, b) = (claimed(&s, "a").await, claimed(&s, "b").await);
    s.track_sent(&[(sent("a", &["1"]), t(100), a), (sent("b", &["2"]), t(100), b)], TTL).await.unwrap();
    assert_eq!(s.awaiting_receipts(), Some(2));
    s.record_events(&[report("a", EventKind::Accepted)], TTL).await.unwrap();
    s.settle_part("p", "1", crate::store::PartOutcome::Delivered, t(30)).await.unwrap();
    assert_eq!(s.awaiting_receipts(), Some(2), "decided, but its final is not out yet");
    s.record_events(&[report("a", EventKind::Delivered)], TTL).await.unwrap();
    assert_eq!(s.awaiting_receipts(), Some(1));
    let g = s.lock();
    assert_eq!((g.messages["p"].len(), g.deadlines.len()), (1, 1), "only b's mapping and deadline are left");
}

#[tokio::test]
async fn a_lapsed_entry_of_a_final_job_is_dropped_not_kept() {
    let s = MemoryStore::new();
    let token = claimed(&s, "j").await;
    let parked = ScheduledJob { id: "j".into(), token, src: None, due: t(10), payload: "{}".into(), recheck: false };
    assert_eq!(s.schedule(&[parked], TTL).await.unwrap(), [true]);
    s.record_events(&[report("j", EventKind::Deferred)], TTL).await.unwrap();
    let c = s.claim_due(t(10), 10, Duration::from_secs(30), TTL).await.unwrap();
    assert_eq!(c.len(), 1);
    // Ended without finishing its entry (a failed finish_scheduled): the lapsed lease drops it.
    s.record_events(&[report("j", EventKind::Rejected)], TTL).await.unwrap();
    assert!(s.claim_due(t(500), 10, Duration::from_secs(30), TTL).await.unwrap().is_empty());
    let g = s.lock();
    assert!(g.scheduled.is_empty() && g.due.is_empty());
}
