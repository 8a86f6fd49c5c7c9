//! The SMPP provider against a misbehaving SMSC: 20,000 jobs through `sendgate dev` while the
//! embedded simulator injects one fault; every job must end with exactly one final event, none
//! may reach the simulator twice, and the link must carry traffic again afterwards.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sendgate::app::{App, Mode};
use sendgate::clock::SystemClock;
use sendgate::config::{Config, ProviderConfig};
use sendgate::report::{EventKind, Report};
use sendgate::smsc_sim::{SimConfig, SimStats};
use serde_json::{json, Value};

const JOBS: usize = 20_000;

struct Run {
    app: App,
    reports_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// `sendgate dev` on real time (retries and link pauses must run by themselves), reports to
/// a file, the embedded simulator recording what it took, `fault` applied to it.
async fn start(fault: impl FnOnce(&mut SimConfig), tweak: impl FnOnce(&mut Config)) -> Run {
    let run = start_unbound(fault, tweak).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !run.app.providers_ready() {
        assert!(tokio::time::Instant::now() < deadline, "providers never bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run
}

/// [`start`] without waiting for the binds (an SMSC that refuses them).
async fn start_unbound(fault: impl FnOnce(&mut SimConfig), tweak: impl FnOnce(&mut Config)) -> Run {
    // `RUST_LOG=debug cargo test --test smpp -- --nocapture` shows the daemon's logs.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = support::dev_config(dir.path());
    cfg.dev.smsc_sim.receipt_delay = Duration::from_millis(50);
    fault(&mut cfg.dev.smsc_sim);
    for p in cfg.providers.values_mut() {
        // The SMPP providers only: dev also has a WhatsApp one.
        let ProviderConfig::Smpp(s) = p else { continue };
        // A dead link is noticed within a second or two, not the production 10 s.
        s.response_timeout = Duration::from_secs(1);
        s.reconnect_min = Duration::from_millis(50);
        s.reconnect_max = Duration::from_millis(500);
        // Pauses short enough that 20,000 jobs under throttling finish in seconds, not minutes.
        s.throttle_backoff = Duration::from_millis(100);
        s.queue_full_backoff = Duration::from_millis(200);
    }
    tweak(&mut cfg);
    let reports_path = cfg.reports.file.clone().unwrap();
    let app = App::start_with_clock(cfg, Mode::Dev, Arc::new(SystemClock)).await.expect("app starts");
    Run { app, reports_path, _dir: dir }
}

fn number(tag: &str, i: usize) -> String {
    // Distinct per job and per run phase, so the simulator's log tells who got what.
    let phase = if tag == "after" { 9 } else { 1 };
    format!("+44770{phase}{i:05}")
}

impl Run {
    async fn post(&self, tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
        self.post_with(tag, range, |_| {}).await
    }

    async fn post_with(&self, tag: &str, range: std::ops::Range<usize>, tweak: impl Fn(&mut Value)) -> Vec<String> {
        let ids: Vec<String> = range.clone().map(|i| format!("{tag}-{i}")).collect();
        let jobs: Vec<Value> = range
            .map(|i| {
                let mut j =
                    json!({"id": format!("{tag}-{i}"), "tenant": "acme", "channel": "sms", "to": number(tag, i), "text": format!("fault test {tag} {i}")});
                tweak(&mut j);
                j
            })
            .collect();
        for chunk in jobs.chunks(2000) {
            let body: String = chunk.iter().map(|j| j.to_string() + "\n").collect();
            let (status, resp) = support::request(self.app.api_addr, "POST", "/v1/jobs", Some("application/x-ndjson"), body.into()).await;
            assert_eq!(status, 202, "{resp}");
        }
        ids
    }

    fn reports_by_job(&self) -> HashMap<String, Vec<Report>> {
        let text = std::fs::read_to_string(&self.reports_path).unwrap_or_default();
        let mut by: HashMap<String, Vec<Report>> = HashMap::new();
        for line in support::complete_lines(&text) {
            let r: Report = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad report {line}: {e}"));
            by.entry(r.job_id.clone()).or_default().push(r);
        }
        by
    }

    async fn wait_final(&self, ids: &[String], within: Duration) -> HashMap<String, Vec<Report>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let by = self.reports_by_job();
            let missing: Vec<&String> = ids.iter().filter(|id| !by.get(*id).is_some_and(|rs| rs.iter().any(|r| r.is_final))).collect();
            if missing.is_empty() {
                return by;
            }
            if tokio::time::Instant::now() > deadline {
                let sample: Vec<_> = missing.iter().take(3).map(|id| (id, by.get(*id).map(|rs| rs.iter().map(|r| r.event).collect::<Vec<_>>()))).collect();
                panic!("{} of {} jobs have no final report, e.g. {sample:?}; simulator {:?}", missing.len(), ids.len(), self.stats());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stats(&self) -> SimStats {
        self.app.sim.as_ref().expect("embedded simulator").stats()
    }

    /// How often the simulator took a message for each destination.
    fn taken(&self) -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for m in self.app.sim.as_ref().expect("embedded simulator").messages() {
            *n.entry(m.destination).or_default() += 1;
        }
        n
    }
}

/// The invariant, and what each final says: returns the count of finals per event.
fn check(run: &Run, tag: &str, ids: &[String], by: &HashMap<String, Vec<Report>>) -> HashMap<EventKind, usize> {
    let taken = run.taken();
    let mut events = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let finals: Vec<&Report> = by[id].iter().filter(|r| r.is_final).collect();
        assert_eq!(finals.len(), 1, "{id}: exactly one final, got {:?}", by[id].iter().map(|r| r.event).collect::<Vec<_>>());
        *events.entry(finals[0].event).or_default() += 1;
        let to = number(tag, i);
        let times = taken.get(to.trim_start_matches('+')).copied().unwrap_or(0);
        if times > 1 {
            let msgs: Vec<_> = run.app.sim.as_ref().unwrap().messages().into_iter().filter(|m| m.destination == to.trim_start_matches('+')).collect();
            eprintln!("DOUBLE {id}: {msgs:?} reports {:?}", by[id]);
        }
        assert!(times <= 1, "{id} reached the SMSC {times} times");
        if finals[0].event == EventKind::Delivered {
            assert_eq!(times, 1, "{id} delivered but the SMSC never took it");
        }
    }
    events
}

/// 20,000 jobs under the fault, then 200 more that must all be delivered: the link is back.
async fn survive(fault: impl FnOnce(&mut SimConfig), tweak: impl FnOnce(&mut Config)) -> (Run, HashMap<EventKind, usize>) {
    let run = start(fault, tweak).await;
    let ids = run.post("fault", 0..JOBS).await;
    let by = run.wait_final(&ids, Duration::from_secs(240)).await;
    let events = check(&run, "fault", &ids, &by);
    eprintln!("finals under the fault: {events:?}; simulator {:?}", run.stats());
    (run, events)
}

/// 200 more jobs after the fault phase: each ends once, none doubled; returns how many were
/// delivered.
async fn recovers(run: &Run) -> usize {
    let ids = run.post("after", 0..200).await;
    let by = run.wait_final(&ids, Duration::from_secs(60)).await;
    let events = check(run, "after", &ids, &by);
    events.get(&EventKind::Delivered).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_every_nth_submit_slows_the_link_and_loses_nothing() {
    let (run, events) = survive(|s| s.throttle_every = std::num::NonZeroU64::new(50), |_| {}).await;
    assert!(run.stats().throttled >= (JOBS / 50) as u64 - 1, "{:?}", run.stats());
    // A throttled submit keeps its place: every job is delivered, none parked as a failure.
    assert_eq!(events.get(&EventKind::Delivered), Some(&JOBS), "{events:?}");
    assert_eq!(recovers(&run).await, 200, "the link carries traffic again");
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_end_in_flight_jobs_unknown_never_resent() {
    let (run, events) = survive(
        |s| {
            s.drop_after_submits = std::num::NonZeroU64::new(2000);
            s.drop_repeat = true;
        },
        |_| {},
    )
    .await;
    assert!(run.stats().connections_dropped >= 3, "{:?}", run.stats());
    let unknown = events.get(&EventKind::Unknown).copied().unwrap_or(0);
    assert!(unknown > 0, "the message taken just before each drop has an unknown outcome: {events:?}");
    // Drops go on every 2,000 submits, so one may land among these 200 too: most get through.
    let delivered = recovers(&run).await;
    assert!(delivered >= 150, "the link carries traffic again: {delivered} of 200 delivered");
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_dead_link_is_declared_dead_and_rebound() {
    let (run, _events) = survive(|s| s.half_dead_after_submits = std::num::NonZeroU64::new(5000), |_| {}).await;
    assert_eq!(run.stats().half_dead_sessions, 1, "{:?}", run.stats());
    assert_eq!(recovers(&run).await, 200, "the link carries traffic again");
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_shuffled_early_receipts_in_mixed_id_forms_all_correlate() {
    let (run, events) = survive(
        |s| {
            s.response_latency = Duration::from_millis(20);
            s.receipt_order = sendgate::smsc_sim::ReceiptOrder::Shuffled;
            s.receipt_id_format = sendgate::smsc_sim::ReceiptIdFormat::Mixed;
            s.receipt_before_resp_ratio = 0.2;
        },
        |_| {},
    )
    .await;
    assert!(run.stats().receipts_before_resp > 0, "{:?}", run.stats());
    assert_eq!(events.get(&EventKind::Delivered), Some(&JOBS), "every receipt matched its job: {events:?}");
    assert_eq!(recovers(&run).await, 200, "the link carries traffic again");
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_outcome_mix_rolls_up_to_one_final_each() {
    let (run, events) = survive(|s| s.outcome_mix = "delivered=90,undelivered=5,expired=3,rejected=2".into(), |_| {}).await;
    for e in [EventKind::Delivered, EventKind::Undelivered, EventKind::Expired, EventKind::Rejected] {
        assert!(events.get(&e).copied().unwrap_or(0) > 0, "{e:?} missing: {events:?}");
    }
    recovers(&run).await;
    run.app.shutdown().await;
}

/// Jobs at full speed against an SMSC that throttles above 300 segments/s.
async fn against_a_300_tps_smsc(tps: u32) -> Run {
    let run = start(
        |s| s.throttle_above_tps = std::num::NonZeroU32::new(300),
        |c| {
            for p in c.providers.values_mut() {
                // The SMPP providers only: dev also has a WhatsApp one.
                let ProviderConfig::Smpp(s) = p else { continue };
                s.tps = tps;
            }
        },
    )
    .await;
    let ids = run.post("tps", 0..3000).await;
    let by = run.wait_final(&ids, Duration::from_secs(120)).await;
    let events = check(&run, "tps", &ids, &by);
    assert_eq!(events.get(&EventKind::Delivered), Some(&3000), "{events:?}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tps_under_the_smscs_limit_is_never_throttled() {
    let run = against_a_300_tps_smsc(250).await;
    assert_eq!(run.stats().throttled, 0, "{:?}", run.stats());
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tps_over_the_smscs_limit_is_throttled_and_slowed_without_loss() {
    let run = against_a_300_tps_smsc(1000).await;
    assert!(run.stats().throttled > 0, "{:?}", run.stats());
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_never_answer_enquire_link_are_cut_and_rebound_without_doubles() {
    let (run, events) = survive(
        |s| s.ignore_enquire_link = true,
        |c| {
            for p in c.providers.values_mut() {
                // The SMPP providers only: dev also has a WhatsApp one.
                let ProviderConfig::Smpp(s) = p else { continue };
                s.enquire_link_interval = Duration::from_millis(200);
            }
        },
    )
    .await;
    assert!(run.stats().enquire_links_ignored > 0 && run.stats().binds > 4, "links were cut and bound again: {:?}", run.stats());
    assert!(events.get(&EventKind::Delivered).copied().unwrap_or(0) > JOBS / 2, "traffic flows between cuts: {events:?}");
    assert!(recovers(&run).await > 100, "traffic still flows after the fault phase");
    run.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_refusing_every_bind_gets_no_job_and_each_job_still_ends_once() {
    let run = start_unbound(|s| s.refuse_binds = true, |_| {}).await;
    // Valid for 3 s: parked as provider_unavailable until then, then failed or expired.
    let ids = run.post_with("refused", 0..JOBS, |j| j["ttl_s"] = json!(3)).await;
    let by = run.wait_final(&ids, Duration::from_secs(120)).await;
    let events = check(&run, "refused", &ids, &by);
    assert_eq!(events.get(&EventKind::Delivered), None, "{events:?}");
    assert_eq!(run.stats().messages, 0);
    assert!(run.stats().binds_refused > 0, "{:?}", run.stats());
    // No reconnect storm: a handful of attempts per bind over the test, not thousands.
    assert!(run.stats().binds_refused < 200, "{:?}", run.stats());
    assert!(!run.app.providers_ready());
    run.app.shutdown().await;
}
