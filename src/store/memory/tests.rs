//! MemoryStore unit tests.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::MemoryStore;
use crate::report::Report;
use crate::store::{
    Claim, ClaimReq, Claims, DueKind, History, OptOutPage, OptOuts, Overdue, PartOutcome, Receipts, Schedule, ScheduledJob, SentJob, Settled,
};

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn sent(id: &str, parts: &[&str]) -> SentJob {
    SentJob {
        job_id: id.into(),
        tenant: "t".into(),
        channel: "sms".into(),
        to: "+4915112345678".into(),
        meta: Default::default(),
        provider: "p".into(),
        message_ids: parts.iter().map(|s| s.to_string()).collect(),
        segments: parts.len() as u32,
    }
}

fn req<'a>(id: &'a str, token: &'a str, src: Option<&'a str>) -> ClaimReq<'a> {
    ClaimReq { id, token, src }
}

#[tokio::test]
async fn claims_are_first_come_and_a_record_read_again_is_a_replay() {
    let s = MemoryStore::new();
    let ttl = Duration::from_secs(60);
    let got = s.claim_ids(&[req("a", "t1", None), req("b", "t2", Some("p/0/1")), req("a", "t3", None)], ttl).await.unwrap();
    assert_eq!(got, [Claim::New, Claim::New, Claim::Duplicate]);
    // The same token again (a retried step): the same answer, not a duplicate.
    assert_eq!(s.claim_ids(&[req("a", "t1", None)], ttl).await.unwrap(), [Claim::New]);
    // The same record again while its claim is in flight: wait; once parked: nothing.
    assert_eq!(s.claim_ids(&[req("b", "t4", Some("p/0/1"))], ttl).await.unwrap(), [Claim::Busy]);
    assert_eq!(s.claim_ids(&[req("b", "t5", Some("p/0/2")), req("c", "t6", None)], ttl).await.unwrap(), [Claim::Duplicate, Claim::New]);
    let parked = ScheduledJob { id: "b".into(), token: "t2".into(), src: Some("p/0/1".into()), due: t(10), payload: "{}".into(), recheck: false };
    assert_eq!(s.schedule(&[parked], ttl).await.unwrap(), [true]);
    assert_eq!(s.claim_ids(&[req("b", "t7", Some("p/0/1"))], ttl).await.unwrap(), [Claim::Replay]);
}

#[tokio::test]
async fn every_step_is_fenced_by_the_claim_token() {
    let s = MemoryStore::new();
    let ttl = Duration::from_secs(60);
    s.claim_ids(&[req("a", "mine", None)], ttl).await.unwrap();
    assert_eq!(s.mark_submitting(&[("a", "other"), ("nope", "mine")]).await.unwrap(), [false, false]);
    assert_eq!(s.begin_finals(&[("a", "other", "{}")], t(30)).await.unwrap(), [false]);
    assert_eq!(s.mark_submitting(&[("a", "mine")]).await.unwrap(), [true]);
    let tracked = s.track_sent(&[(sent("a", &["1"]), t(100), "other".into())], ttl).await.unwrap();
    assert_eq!(tracked, [false]);
    assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Unmatched);
    assert_eq!(s.track_sent(&[(sent("a", &["1"]), t(100), "mine".into())], ttl).await.unwrap(), [true]);
    // Until its `accepted` is recorded, a receipt that would end it waits, untouched.
    assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Held);
    let acc = Report::from_parts("a", "t", "sms", "+4915112345678", &Default::default(), crate::report::EventKind::Accepted, t(0));
    s.record_events(&[acc], ttl).await.unwrap();
    assert!(matches!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Final { .. }));
}

fn accepted(id: &str) -> Report {
    Report::from_parts(id, "t", "sms", "+4915112345678", &Default::default(), crate::report::EventKind::Accepted, t(0))
}

#[tokio::test]
async fn due_jobs_are_leased_and_wait_while_their_claimer_is_on_them() {
    let s = MemoryStore::new();
    let (lease, ttl) = (Duration::from_secs(30), Duration::from_secs(60));
    let parked = |token: &str, due| ScheduledJob { id: "a".into(), token: token.into(), src: None, due, payload: "{}".into(), recheck: false };
    s.claim_ids(&[ClaimReq { id: "a", token: "x/1/1", src: None }], ttl).await.unwrap();
    assert_eq!(s.schedule(&[parked("x/1/1", t(10))], ttl).await.unwrap(), [true]);
    assert_eq!(s.schedule(&[parked("not-the-owner", t(10))], ttl).await.unwrap(), [false], "fenced");
    assert!(s.claim_due(t(9), 10, lease, ttl).await.unwrap().is_empty());
    let c = s.claim_due(t(10), 10, lease, ttl).await.unwrap();
    assert_eq!((c.len(), c[0].kind), (1, DueKind::Resumed));
    let token = c[0].token.clone().expect("resumed under a new token");
    assert_eq!(s.mark_submitting(&[("a", "x/1/1")]).await.unwrap(), [false], "the parker is fenced off");
    assert!(s.claim_due(t(20), 10, lease, ttl).await.unwrap().is_empty(), "leased");
    // Lapsed, but its claimer (this process: alive) is still on it: leased again, not run.
    assert!(s.claim_due(t(41), 10, lease, ttl).await.unwrap().is_empty());
    // The claimer parks it again (a retry): the new entry runs when due.
    assert_eq!(s.schedule(&[parked(&token, t(50))], ttl).await.unwrap(), [true]);
    s.finish_scheduled(&[("a".into(), c[0].lease)]).await.unwrap();
    let again = s.claim_due(t(50), 10, lease, ttl).await.unwrap();
    assert_eq!(again.len(), 1, "the stale lease did not remove the newer entry");
    // Once its job is final, a lapsed entry is dropped instead of run.
    let fin = Report::from_parts("a", "t", "sms", "+4915112345678", &Default::default(), crate::report::EventKind::Rejected, t(0));
    s.record_events(&[fin], ttl).await.unwrap();
    assert!(s.claim_due(t(500), 10, lease, ttl).await.unwrap().is_empty());
    assert!(s.lock().scheduled.is_empty());
}

#[tokio::test]
async fn multipart_is_final_once_every_part_is_delivered_or_one_fails() {
    let s = MemoryStore::new();
    s.track_sent(&[(sent("j1", &["1", "2"]), t(100), "x".into()), (sent("j2", &["3", "4"]), t(100), "x".into())], Duration::from_secs(60)).await.unwrap();
    s.record_events(&[accepted("j1"), accepted("j2")], Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
    assert!(matches!(s.settle_part("p", "2", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Final { outcome: PartOutcome::Delivered, .. }));
    assert!(matches!(s.settle_part("p", "3", PartOutcome::Undelivered, t(30)).await.unwrap(), Settled::Final { outcome: PartOutcome::Undelivered, .. }));
    // j2 is decided: its other part changes nothing.
    assert_eq!(s.settle_part("p", "4", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
    // Not confirmed by t(30): still this process's to publish (it is alive), not handed out.
    assert!(s.take_overdue(t(30), 10, t(60)).await.unwrap().is_empty());
    s.finish_sent(&["j1".into(), "j2".into()]).await.unwrap();
    assert!(s.take_overdue(t(200), 10, t(300)).await.unwrap().is_empty());
    assert_eq!(s.awaiting_receipts(), Some(0));
}

#[tokio::test]
async fn opt_out_lists_are_per_tenant_and_channel_and_page_in_order() {
    let s = MemoryStore::new();
    let added = s.add_opt_outs(&[("a", "sms", "+2"), ("a", "sms", "+1"), ("a", "sms", "+2"), ("b", "sms", "+1")]).await.unwrap();
    assert_eq!(added, [true, true, false, true]);
    let asked = [("a", "sms", "+1"), ("a", "whatsapp", "+1"), ("b", "sms", "+2"), ("c", "sms", "+1")];
    assert_eq!(s.opted_out(&asked).await.unwrap(), [true, false, false, false]);
    s.add_opt_outs(&[("a", "sms", "+3")]).await.unwrap();
    let p1 = s.list_opt_outs("a", "sms", None, 2).await.unwrap();
    assert_eq!((p1.recipients.as_slice(), p1.next_cursor.as_deref()), (&["+1".to_string(), "+2".to_string()][..], Some("+2")));
    let p2 = s.list_opt_outs("a", "sms", p1.next_cursor.as_deref(), 2).await.unwrap();
    assert_eq!((p2.recipients, p2.next_cursor), (vec!["+3".to_string()], None));
    assert_eq!(s.remove_opt_outs(&[("a", "sms", "+1"), ("a", "sms", "+9")]).await.unwrap(), [true, false]);
    assert_eq!(s.opted_out(&[("a", "sms", "+1")]).await.unwrap(), [false]);
    assert_eq!(s.list_opt_outs("nobody", "sms", None, 10).await.unwrap(), OptOutPage::default());
}

#[tokio::test]
async fn overdue_jobs_are_leased_until_finished() {
    let s = MemoryStore::new();
    s.track_sent(&[(sent("j", &["1"]), t(100), "x".into())], Duration::from_secs(60)).await.unwrap();
    assert!(s.take_overdue(t(99), 10, t(130)).await.unwrap().is_empty());
    let due = s.take_overdue(t(100), 10, t(130)).await.unwrap();
    assert_eq!(due, vec![Overdue { job_id: "j".into(), sent: Some(sent("j", &["1"])), outcome: None, report: None, decided_at: None }]);
    // Decided `unknown` by that: a receipt now makes no second final.
    assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(110)).await.unwrap(), Settled::Pending);
    assert!(s.take_overdue(t(129), 10, t(160)).await.unwrap().is_empty());
    assert!(s.take_overdue(t(130), 10, t(160)).await.unwrap().is_empty(), "decided: its publisher is this process");
    s.finish_sent(&["j".into()]).await.unwrap();
    assert!(s.take_overdue(t(500), 10, t(600)).await.unwrap().is_empty());
    assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(600)).await.unwrap(), Settled::Unmatched);
}
