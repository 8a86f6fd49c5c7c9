//! The correlator against the memory store: receipts that beat their mappings.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Correlator;
use crate::clock::SystemClock;
use crate::pipeline::{Reporter, Untracked};
use crate::receipt::inbound::InboundOut;
use crate::receipt::opt_out::StopReplies;
use crate::receipt::{InboundReceipt, ProviderEvent, ReceiptAck};
use crate::report::{EventKind, Report};
use crate::store::memory::tests::sent;
use crate::store::{mint_token, ClaimReq, MemoryStore, PartOutcome, Store};

const TTL: Duration = Duration::from_secs(3600);

fn receipt(message_id: &str) -> (InboundReceipt, oneshot::Receiver<()>) {
    let (ack, acked) = ReceiptAck::pair();
    let r = InboundReceipt {
        provider: Arc::from("p"),
        message_id: message_id.into(),
        outcome: Some(PartOutcome::Delivered),
        error_code: None,
        read: false,
        stored: false,
        ack,
    };
    (r, acked)
}

#[tokio::test]
async fn a_receipt_for_a_message_whose_mapping_is_being_stored_waits_unacknowledged_then_settles() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sink = Arc::new(crate::sink::jsonl::JsonlSink::open(false, None).await.unwrap());
    let reporter = Arc::new(Reporter::new(sink, store.clone(), TTL));
    let cfg = crate::config::parse("").unwrap();
    let untracked = Arc::new(Untracked::new());
    let (tx, rx) = mpsc::channel(16);
    let correlator = Correlator {
        clock: Arc::new(SystemClock),
        store: store.clone(),
        reporter: reporter.clone(),
        stop_replies: Arc::new(StopReplies::new(&cfg.opt_out, store.clone())),
        inbound: Arc::new(InboundOut::Log),
        reads: Default::default(),
        untracked: untracked.clone(),
    };
    let running = tokio::spawn(correlator.run(rx));

    // The provider took j1's message m1; its mapping is not stored yet.
    let token = mint_token(store.owner());
    store.claim_ids(&[ClaimReq { id: "j1", token: &token, src: None, plan: None }], TTL).await.unwrap();
    assert_eq!(store.mark_submitting(&[("j1", &token)]).await.unwrap(), [true]);
    untracked.taken("p", &["m1".to_owned()]);

    let (r, mut acked) = receipt("m1");
    tx.send(ProviderEvent::Receipt(r)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Matched nothing yet: without the wait it would have been kept as early and acknowledged.
    assert_eq!(acked.try_recv(), Err(oneshot::error::TryRecvError::Empty), "acknowledged before its mapping was stored");

    let now = chrono::Utc::now();
    let tracked = store.track_sent(&[(sent("j1", &["m1"]), now + chrono::Duration::hours(1), token.clone())], TTL).await.unwrap();
    assert_eq!(tracked, [true]);
    let accepted = Report::from_parts("j1", "t", "sms", "+4915112345678", &Default::default(), EventKind::Accepted, now);
    reporter.emit(&[accepted]).await;
    untracked.tracked([("p", &["m1".to_owned()][..])]);

    tokio::time::timeout(Duration::from_secs(2), &mut acked).await.expect("acknowledged once the mapping is stored").unwrap();
    let mut events = Vec::new();
    for _ in 0..200 {
        events = store.events("j1").await.unwrap().iter().map(|r| r.event).collect();
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(events, [EventKind::Accepted, EventKind::Delivered], "settled on its first try: one final");

    // A receipt for a message nobody is storing goes its way at once (here: early, acknowledged).
    let (r, acked) = receipt("m-unknown");
    tx.send(ProviderEvent::Receipt(r)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), acked).await.expect("not held back").unwrap();
    drop(tx);
    running.await.unwrap();
}
