//! The provider's links against the real simulator over loopback TCP, with its faults: the
//! helpers here serve `scripted_tests` too.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use super::config::SmppConfig;
use super::SmppProvider;
use crate::clock::SystemClock;
use crate::config::ProviderConfig;
use crate::job::Job;
use crate::provider::{Provider, SendError};
use crate::receipt::ProviderEvent;
use crate::smsc_sim::{SimConfig, SimHandle, SmscSim};

/// An SMPP provider section with test-sized timers, and `extra` TOML lines that may replace them.
pub(super) fn smpp_config(address: &str, extra: &str) -> SmppConfig {
    let defaults = [("reconnect_min", "\"50ms\""), ("reconnect_max", "\"500ms\""), ("response_timeout", "\"2s\"")];
    let mut text = format!("[providers.p]\nkind = \"smpp\"\naddress = \"{address}\"\nsystem_id = \"gw\"\npassword = \"pw\"\n{extra}\n");
    for (key, value) in defaults {
        if !extra.lines().any(|l| l.split('=').next().is_some_and(|k| k.trim() == key)) {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    let cfg = crate::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ProviderConfig::Smpp(c) = cfg.providers["p"].clone() else { unreachable!("an smpp section") };
    c
}

pub(super) async fn sim(edit: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig { receipt_delay: Duration::from_millis(20), record_messages: true, ..SimConfig::default() };
    edit(&mut cfg);
    SmscSim::start(cfg).await.unwrap()
}

/// Starts the provider and waits (bounded) until `binds` of its binds are up.
pub(super) async fn provider(address: &str, extra: &str) -> (Arc<SmppProvider>, mpsc::Receiver<ProviderEvent>) {
    let (tx, rx) = mpsc::channel(100_000);
    let p = SmppProvider::start("p", smpp_config(address, extra), address.to_owned(), tx, Arc::new(SystemClock));
    wait_for("a bind", || p.is_ready()).await;
    (p, rx)
}

pub(super) async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A job to a number of its own, so the simulator's messages tell jobs apart.
pub(super) fn job(i: usize, extra: serde_json::Value) -> Job {
    let mut v = serde_json::json!({"id": format!("j{i}"), "tenant": "t", "channel": "sms", "to": format!("+4915100{i:06}"), "text": format!("hello {i}")});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    crate::job::from_value(v, Utc::now()).unwrap()
}

/// Sends `n` jobs at once; returns the results in job order.
pub(super) async fn send_all(p: &Arc<SmppProvider>, n: usize) -> Vec<Result<crate::provider::Accepted, SendError>> {
    let sends = (0..n).map(|i| {
        let p = p.clone();
        tokio::spawn(async move { p.send(&job(i, serde_json::json!({})), &crate::provider::Unclaimed).await })
    });
    futures::future::join_all(sends).await.into_iter().map(|r| r.unwrap()).collect()
}

/// Destinations the simulator took, each once: a job sent twice would show up twice.
fn assert_each_taken_once(sim: &SimHandle, n: usize) {
    let mut dests: Vec<String> = sim.messages().into_iter().map(|m| m.destination).collect();
    assert_eq!(dests.len(), n, "messages the SMSC took");
    dests.sort();
    dests.dedup();
    assert_eq!(dests.len(), n, "a job was taken twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_pauses_the_bind_and_resends_in_place() {
    let sim = sim(|c| c.throttle_every = std::num::NonZeroU64::new(5)).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "binds = 2\nthrottle_backoff = \"100ms\"").await;
    let started = std::time::Instant::now();
    let results = send_all(&p, 60).await;
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "job {i}: {r:?}");
    }
    let stats = sim.stats();
    assert!(stats.throttled >= 60 / 5, "{stats:?}");
    // Every throttled PDU was sent again and nothing else was: no job lost, none doubled.
    assert_eq!(stats.submit_sm, 60 + stats.throttled, "{stats:?}");
    assert_each_taken_once(&sim, 60);
    assert!(started.elapsed() >= Duration::from_millis(100), "no pause happened");
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_past_expires_at_fails_the_job() {
    let sim = sim(|c| c.throttle_every = std::num::NonZeroU64::new(1)).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "throttle_backoff = \"300ms\"").await;
    let expires = (Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339();
    let started = std::time::Instant::now();
    let err = p.send(&job(1, serde_json::json!({"expires_at": expires})), &crate::provider::Unclaimed).await.unwrap_err();
    assert!(matches!(&err, SendError::Failed { code, .. } if code == "throttled"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "gave up late: {:?}", started.elapsed());
    assert_eq!(sim.stats().messages, 0);
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pause_is_extended_never_shortened() {
    let ms = Duration::from_millis;
    let slot = super::bind::BindSlot::new(0, 1, 0);
    assert_eq!(slot.paused_until(), None);
    assert_eq!(slot.pause(ms(500)), ms(500));
    // A shorter pause inside a longer one adds nothing.
    assert_eq!(slot.pause(ms(100)), Duration::ZERO);
    tokio::time::sleep(ms(300)).await;
    // 400 ms from now ends (at least) 200 ms after the first pause would have.
    let added = slot.pause(ms(400));
    assert!(added >= ms(200) && added < ms(400), "{added:?}");
    tokio::time::sleep(ms(450)).await;
    assert_eq!(slot.paused_until(), None);
}

/// Jobs sent at once to a bind that goes half-dead after its 5th submit: the rest get no answer.
async fn half_dead_run(on_timeout: &str) -> (SimHandle, Vec<Result<crate::provider::Accepted, SendError>>, Arc<SmppProvider>) {
    let sim = sim(|c| c.half_dead_after_submits = std::num::NonZeroU64::new(5)).await;
    let extra = format!("response_timeout = \"500ms\"\non_response_timeout = \"{on_timeout}\"");
    let (p, _rx) = provider(&sim.local_addr().to_string(), &extra).await;
    let results = send_all(&p, 20).await;
    (sim, results, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_timeout_fail_ends_ambiguous_and_never_resends() {
    let (sim, results, p) = half_dead_run("fail").await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let ambiguous = results.iter().filter(|r| matches!(r, Err(SendError::Ambiguous { .. }))).count();
    // Every submit the dead link got or may have got is in doubt and not sent again; the
    // ones it ignored are among them.
    let stats = sim.stats();
    assert_eq!(ok + ambiguous, 20, "{results:?}");
    assert!(stats.submit_sm <= 20, "{stats:?}");
    assert!(ambiguous as u64 >= stats.submits_ignored, "{stats:?} {results:?}");
    assert!(ok >= 5, "{results:?}");
    assert_each_taken_once(&sim, ok);
    // The dead link was noticed and replaced: later jobs go through on a new bind.
    let later = futures::future::join_all((100..110).map(|i| {
        let p = p.clone();
        async move { p.send(&job(i, serde_json::json!({})), &crate::provider::Unclaimed).await }
    }))
    .await;
    assert!(later.iter().all(|r| r.is_ok()), "{later:?}");
    assert_eq!(sim.stats().binds, 2);
    assert_eq!(p.status(), crate::provider::ProviderStatus { ready: true, binds_up: 1, binds_down: 0, error: None });
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_timeout_retry_resends_once_on_a_fresh_bind() {
    let (sim, results, p) = half_dead_run("retry").await;
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "job {i}: {r:?}");
    }
    let stats = sim.stats();
    // The 15 unanswered went once more each, on the new bind.
    assert_eq!((stats.submit_sm - stats.submits_ignored, stats.binds), (20, 2), "{stats:?}");
    assert_each_taken_once(&sim, 20);
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tps_keeps_under_the_smscs_limit() {
    let sim = sim(|c| c.throttle_above_tps = std::num::NonZeroU32::new(300)).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "binds = 2\ntps = 250").await;
    let started = std::time::Instant::now();
    let results = send_all(&p, 600).await;
    let took = started.elapsed();
    assert!(results.iter().all(|r| r.is_ok()));
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.submit_sm), (0, 600), "{stats:?}");
    // 600 segments at 250/s after a burst of 25.
    assert!(took >= Duration::from_millis(2200), "{took:?}");
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_enquire_link_gets_the_link_rebound() {
    let sim = sim(|c| c.ignore_enquire_link = true).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "response_timeout = \"300ms\"\nenquire_link_interval = \"100ms\"").await;
    // Each link lives about interval + timeout, then rusmppc ends it and the bind loop rebinds.
    wait_for("three binds", || sim.stats().binds >= 3).await;
    assert!(sim.stats().enquire_links_ignored >= 2);
    wait_for("bound again", || p.is_ready()).await;
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_binds_mark_the_provider_down_and_retry_slowly() {
    let sim = sim(|c| c.refuse_binds = true).await;
    let (tx, _rx) = mpsc::channel(16);
    let cfg = smpp_config(&sim.local_addr().to_string(), "binds = 2\nreconnect_min = \"10ms\"\nreconnect_max = \"1s\"");
    let p = SmppProvider::start("p", cfg, sim.local_addr().to_string(), tx, Arc::new(SystemClock));
    wait_for("a refusal", || p.status().error.is_some()).await;
    let status = p.status();
    assert_eq!((status.ready, status.binds_up, status.binds_down), (false, 0, 2));
    assert!(status.error.as_deref().unwrap_or_default().contains("EsmeRbindfail"), "{status:?}");
    // Refused: a send answers at once instead of waiting for a bind.
    let started = std::time::Instant::now();
    let err = p.send(&job(1, serde_json::json!({})), &crate::provider::Unclaimed).await.unwrap_err();
    assert!(matches!(err, SendError::Unavailable(_)) && started.elapsed() < Duration::from_millis(500), "{err:?}");
    // With reconnect_min = 10ms a plain backoff would try ~8 times per bind in 2 s; refused
    // binds wait 0.5-1 × reconnect_max between attempts: at most 1 + 2 / 0.5 per bind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = sim.stats().binds_refused;
    assert!((2..=10).contains(&refused), "{refused} bind attempts");
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmitter_receiver_pairs_submit_on_one_and_get_receipts_on_the_other() {
    let sim = sim(|_| {}).await;
    let (p, mut rx) = provider(&sim.local_addr().to_string(), "binds = 2\nbind_mode = \"transmitter_receiver\"").await;
    wait_for("four binds", || p.status().binds_up == 4).await;
    let results = send_all(&p, 20).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let mut receipts = 0;
    while receipts < 20 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(ProviderEvent::Receipt(_))) => receipts += 1,
            other => panic!("after {receipts} receipts: {other:?}"),
        }
    }
    assert_eq!(sim.stats().binds, 4);
    p.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_and_decimal_receipts_name_the_stored_ids() {
    use crate::smsc_sim::ReceiptIdFormat as Sim;
    for (sim_format, setting) in [(Sim::Hex, "decimal_to_hex"), (Sim::Decimal, "hex_to_decimal"), (Sim::AsIssued, "auto")] {
        let sim = sim(|c| c.receipt_id_format = sim_format).await;
        let (p, mut rx) = provider(&sim.local_addr().to_string(), &format!("receipt_id_format = \"{setting}\"")).await;
        let mut stored: Vec<String> = send_all(&p, 10).await.into_iter().flat_map(|r| r.expect("accepted").message_ids).collect();
        let mut named = Vec::new();
        while named.len() < 10 {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(ProviderEvent::Receipt(r))) => named.push(r.message_id),
                other => panic!("{sim_format:?}: after {} receipts: {other:?}", named.len()),
            }
        }
        stored.sort();
        named.sort();
        assert_eq!(stored, named, "{sim_format:?} with receipt_id_format = {setting}");
        p.shutdown().await;
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_leaves_only_written_submits_in_doubt() {
    let sim = sim(|c| c.drop_after_submits = std::num::NonZeroU64::new(3)).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "").await;
    let results = send_all(&p, 10).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let ambiguous = results.iter().filter(|r| matches!(r, Err(SendError::Ambiguous { .. }))).count();
    assert_eq!(ok + ambiguous, 10, "{results:?}");
    // The 3rd was taken and never answered. Others written on that link are in doubt too: the
    // SMSC may not have read them, or took them and its answers were lost with the connection
    // (a close with unread data sends a reset, and the reset discards what we had not read).
    // Every job it took was taken once.
    let taken = sim.stats().messages as usize;
    assert!(ambiguous >= 1 && (ok + 1..=ok + ambiguous).contains(&taken), "{taken} taken: {results:?}");
    assert_each_taken_once(&sim, taken);
    assert_eq!(sim.stats().connections_dropped, 1);
    p.shutdown().await;
    sim.shutdown().await;
}

/// rusmppc's connection stops after a few actions per poll and, with its queue not drained,
/// waits for incoming traffic or the enquire_link timer (`coalesce::Repoll`). With no receipts
/// coming and enquire_link a minute away, a burst of submits must still all go out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_submits_never_waits_for_the_enquire_link_timer() {
    let sim = sim(|c| c.receipt_delay = Duration::from_secs(600)).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "binds = 1\nwindow = 64\nenquire_link_interval = \"60s\"\nresponse_timeout = \"30s\"").await;
    for round in 0..5 {
        let started = std::time::Instant::now();
        let results = tokio::time::timeout(Duration::from_secs(20), send_all(&p, 2000))
            .await
            .unwrap_or_else(|_| panic!("round {round}: 2,000 submits not answered within 20 s: {} reached the SMSC", sim.stats().submit_sm));
        assert!(results.iter().all(Result::is_ok), "round {round}");
        eprintln!("round {round}: 2,000 submits in {:?}", started.elapsed());
    }
    p.shutdown().await;
    sim.shutdown().await;
}

/// Keeps what the provider hands over (a window slot) until the test lets it go, as the
/// pipeline keeps it until the job's answer is recorded.
#[derive(Default)]
struct Keeper(std::sync::Mutex<Vec<Box<dyn Send + Sync>>>);

impl crate::provider::OnWire for Keeper {
    fn enter(&self) -> crate::provider::Entry {
        crate::provider::Entry::Ready(true)
    }

    fn keep(&self, slot: Box<dyn Send + Sync>) {
        self.0.lock().unwrap().push(slot);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_job_holds_its_window_slot_until_it_is_let_go_and_the_count_says_so() {
    let sim = sim(|_| {}).await;
    let (p, _rx) = provider(&sim.local_addr().to_string(), "binds = 2\nwindow = 3").await;
    wait_for("both binds", || p.status().binds_up == 2).await;
    assert_eq!(p.window_slots_in_use(), 0);
    let keeper = Arc::new(Keeper::default());
    for i in 0..6 {
        p.send(&job(i, serde_json::json!({})), keeper.as_ref()).await.expect("accepted");
    }
    assert_eq!(p.window_slots_in_use(), 6, "answered, not let go: every slot still taken");
    // A seventh job finds no slot: it waits, nothing is written for it.
    let seventh = {
        let (p, keeper) = (p.clone(), keeper.clone());
        tokio::spawn(async move { p.send(&job(6, serde_json::json!({})), keeper.as_ref()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!seventh.is_finished(), "sent without a free slot");
    assert_eq!(sim.stats().messages, 6);
    // Letting the six go frees their slots; the seventh takes one and holds it.
    let held: Vec<_> = std::mem::take(&mut *keeper.0.lock().unwrap());
    drop(held);
    seventh.await.unwrap().expect("accepted once a slot was free");
    assert_eq!(p.window_slots_in_use(), 1);
    keeper.0.lock().unwrap().clear();
    assert_eq!(p.window_slots_in_use(), 0);
    assert_eq!(sim.stats().messages, 7);
    p.shutdown().await;
    sim.shutdown().await;
}
