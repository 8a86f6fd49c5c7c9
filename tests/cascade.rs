//! Cascades (docs/cascades.md) through the daemon against its simulators: a job falls back
//! from one channel to the next by its steps' results, with exactly one final and every step's
//! end in the report stream; each step goes through its own channel's policies.
//!
//! `sendgate dev` (memory store, embedded SMSC and chat simulators) for the flows; `sendgate
//! run` (Redis + Kafka, two instances) for the crash test.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use sendgate::clock::Clock;
use sendgate::config::Config;
use sendgate::report::{EventKind, Report};
use serde_json::{json, Value};
use support::{finals, Harness};

async fn dev(tweak: impl FnOnce(&mut Config)) -> Harness {
    support::start_with_chats(tweak).await
}

async fn submit(h: &Harness, jobs: &[Value]) {
    let body: String = jobs.iter().map(|j| format!("{j}\n")).collect();
    let (status, answer) = h.post("/v1/jobs", "application/x-ndjson", body).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(jobs.len() as u64)), "{answer}");
}

/// An SMS job to `to` falling back to Telegram chat 4242.
fn sms_then_telegram(id: &str, to: &str, first: Value) -> Value {
    let mut first = first;
    first["channel"] = "sms".into();
    json!({"id": id, "tenant": "acme", "channel": "sms", "to": to, "text": "your code is 1234",
           "cascade": [first, {"channel": "telegram", "to": "4242"}]})
}

/// (event, step index, step outcome) of each report, in order.
fn steps(rs: &[Report]) -> Vec<(EventKind, Option<u32>, Option<EventKind>)> {
    rs.iter().map(|r| (r.event, r.step.as_ref().map(|s| s.index), r.step.as_ref().and_then(|s| s.outcome))).collect()
}

fn one_final<'a>(id: &str, by: &'a HashMap<String, Vec<Report>>) -> &'a Report {
    let rs = &by[id];
    let f = finals(rs);
    assert_eq!(f.len(), 1, "{id}: {:?}", steps(rs));
    f[0]
}

fn telegram_texts(h: &Harness) -> usize {
    h.app.provider_sims.iter().find(|(n, _)| n == "tg").expect("dev simulates tg").1.messages().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_first_step_falls_back_and_the_second_steps_delivery_is_the_one_final() {
    let h = dev(|c| c.dev.smsc_sim.outcome_mix = "undelivered=100".into()).await;
    submit(&h, &[sms_then_telegram("c1", "+4915112345678", json!({}))]).await;
    let by = h.wait_final(&["c1".into()]).await;
    let f = one_final("c1", &by);
    assert_eq!((f.event, f.channel.as_str(), f.to.as_str()), (EventKind::Delivered, "telegram", "4242"));
    use EventKind::*;
    assert_eq!(
        steps(&by["c1"]),
        [(Accepted, Some(0), None), (Step, Some(0), Some(Undelivered)), (Accepted, Some(1), None), (Delivered, Some(1), Some(Delivered))]
    );
    let step = &by["c1"][1];
    assert_eq!((step.provider.as_deref(), step.channel.as_str(), step.is_final), (Some("smsc-a"), "sms", false));
    assert_eq!(telegram_texts(&h), 1);
    // The job's history holds every step under the job's own id.
    let (status, history) = h.get("/v1/jobs/c1").await;
    assert_eq!(status, 200, "{history}");
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_first_step_ends_the_job_and_no_later_step_goes() {
    let h = dev(|_| {}).await;
    submit(&h, &[sms_then_telegram("c2", "+4915112345678", json!({}))]).await;
    let by = h.wait_final(&["c2".into()]).await;
    assert_eq!(one_final("c2", &by).event, EventKind::Delivered);
    assert_eq!(steps(&by["c2"]), [(EventKind::Accepted, Some(0), None), (EventKind::Delivered, Some(0), Some(EventKind::Delivered))]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(telegram_texts(&h), 0);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_without_a_provider_or_opted_out_on_its_channel_falls_back_at_once() {
    let h = dev(|_| {}).await;
    // Opted out on SMS only: the SMS step is suppressed, the Telegram step still goes.
    h.app.store.add_opt_outs(&[("acme", "sms", "+4915100000001")]).await.unwrap();
    let no_route = json!({"id": "c3", "tenant": "acme", "channel": "sms", "to": "+4915112345678", "text": "x",
                          "cascade": [{"channel": "viber"}, {"channel": "telegram", "to": "4242"}]});
    let opted_out = sms_then_telegram("c6", "+4915100000001", json!({}));
    submit(&h, &[no_route, opted_out]).await;
    let by = h.wait_final(&["c3".into(), "c6".into()]).await;
    for (id, outcome) in [("c3", EventKind::Rejected), ("c6", EventKind::Suppressed)] {
        assert_eq!(one_final(id, &by).event, EventKind::Delivered, "{id}");
        let first = &by[id][0];
        assert_eq!((first.event, first.step.as_ref().and_then(|s| s.outcome)), (EventKind::Step, Some(outcome)), "{id}");
    }
    assert!(by["c3"][0].error.as_ref().is_some_and(|e| e.message.contains("viber")), "{:?}", by["c3"][0]);
    assert_eq!(telegram_texts(&h), 2);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cascade_is_rejected_naming_the_field() {
    let h = dev(|_| {}).await;
    let body = json!({"id": "c4", "tenant": "acme", "channel": "sms", "to": "+4915112345678", "text": "x",
                      "cascade": [{"channel": "sms"}, {"channel": "telegram", "until": "seen"}]});
    let (status, answer) = h.post("/v1/jobs", "application/json", body.to_string()).await;
    assert!(answer.to_string().contains("cascade[1].until: must be"), "{status} {answer}");
    let body = json!({"id": "c5", "tenant": "acme", "channel": "sms", "to": "+4915112345678", "text": "x", "cascade": "nope"});
    submit(&h, &[body]).await;
    let by = h.wait_final(&["c5".into()]).await;
    let f = one_final("c5", &by);
    assert_eq!(f.event, EventKind::Rejected);
    assert_eq!(f.error.as_ref().map(|e| e.message.as_str()), Some("cascade: no cascade \"nope\" is configured"));
    h.app.shutdown().await;
}

/// Waits until `id` has an event of `kind`; its reports so far.
async fn wait_event(h: &Harness, id: &str, kind: EventKind) -> Vec<Report> {
    let mut got = Vec::new();
    h.wait_until(&format!("{id}: {kind:?}"), || {
        got = h.reports_by_job().remove(id).unwrap_or_default();
        got.iter().any(|r| r.event == kind)
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_step_moves_on_after_its_decision_time_and_its_late_receipt_is_no_second_final() {
    // The SMSC's receipts come 3 s (real time) after the submit: after the decision time,
    // which the test clock passes at once.
    let h = dev(|c| c.dev.smsc_sim.receipt_delay = Duration::from_secs(3)).await;
    submit(&h, &[sms_then_telegram("d1", "+4915112345678", json!({"decision_time": "5m"}))]).await;
    wait_event(&h, "d1", EventKind::Accepted).await;
    // Not yet: the step waits for its decision time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(telegram_texts(&h), 0);
    h.clock.advance(chrono::Duration::seconds(301));
    let by = h.wait_final(&["d1".into()]).await;
    use EventKind::*;
    assert_eq!(steps(&by["d1"]), [(Accepted, Some(0), None), (Step, Some(0), Some(Unknown)), (Accepted, Some(1), None), (Delivered, Some(1), Some(Delivered))]);
    let step = &by["d1"][1];
    assert_eq!(step.error.as_ref().map(|e| e.message.as_str()), Some("no result within the step's decision time"));
    // The SMS receipt comes after all: recorded as a late non-final event of step 0.
    h.wait_until("the late receipt", || h.reports_by_job()["d1"].iter().any(|r| r.step.as_ref().is_some_and(|s| s.late))).await;
    let rs = h.reports_by_job().remove("d1").unwrap();
    let late = rs.iter().find(|r| r.step.as_ref().is_some_and(|s| s.late)).unwrap();
    assert_eq!((late.event, late.is_final, late.step.as_ref().unwrap().index, late.step.as_ref().unwrap().outcome), (Step, false, 0, Some(Delivered)));
    assert_eq!(finals(&rs).len(), 1);
    assert_eq!(telegram_texts(&h), 1);
    h.app.shutdown().await;
}

/// A WhatsApp template that must be read within 30 s, then SMS.
fn whatsapp_read_then_sms(id: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "sms", "to": "+4915112345678", "text": "your order shipped",
           "cascade": [{"channel": "whatsapp", "until": "read", "decision_time": "30s",
                        "template": {"name": "order_shipped", "language": "en_US", "params": ["A-1042"]}},
                       {"channel": "sms"}]})
}

fn sms_sent(h: &Harness) -> usize {
    h.app.sim.as_ref().expect("dev embeds the SMSC simulator").messages().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_read_falls_back_when_the_status_webhook_never_says_read() {
    let h = dev(|c| c.dev.provider_sim.outcome_mix = "delivered=100".into()).await;
    submit(&h, &[whatsapp_read_then_sms("r1")]).await;
    let rs = wait_event(&h, "r1", EventKind::Step).await;
    let step = rs.iter().find(|r| r.event == EventKind::Step).unwrap();
    assert_eq!((step.channel.as_str(), step.step.as_ref().unwrap().outcome), ("whatsapp", Some(EventKind::Delivered)));
    // Delivered, not read: the SMS waits for the rest of the decision time.
    let waits_until = step.retry_at.expect("a step event says when the next step goes");
    assert!(waits_until > h.clock.now() + chrono::Duration::seconds(25), "{waits_until}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms_sent(&h), 0);
    h.clock.advance(chrono::Duration::seconds(31));
    let by = h.wait_final(&["r1".into()]).await;
    let f = one_final("r1", &by);
    assert_eq!((f.event, f.channel.as_str(), f.step.as_ref().unwrap().index), (EventKind::Delivered, "sms", 1));
    assert_eq!(sms_sent(&h), 1);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_read_a_read_within_the_decision_time_is_the_final_and_the_next_step_never_goes() {
    let h = dev(|c| c.dev.provider_sim.outcome_mix = "read=100".into()).await;
    submit(&h, &[whatsapp_read_then_sms("r2")]).await;
    let by = h.wait_final(&["r2".into()]).await;
    let f = one_final("r2", &by);
    assert_eq!((f.event, f.channel.as_str(), f.step.as_ref().unwrap().index), (EventKind::Delivered, "whatsapp", 0));
    wait_event(&h, "r2", EventKind::Read).await;
    // Past the decision time: the SMS step was cancelled by the read, it never goes.
    h.clock.advance(chrono::Duration::seconds(400));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sms_sent(&h), 0);
    let rs = h.reports_by_job().remove("r2").unwrap();
    assert_eq!(finals(&rs).len(), 1, "{:?}", steps(&rs));
    assert_eq!(rs.last().map(|r| r.event), Some(EventKind::Read));
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_that_falls_in_quiet_hours_waits_for_their_end() {
    use sendgate::config::{QuietHoursConfig, TenantConfig};
    let hm = |s| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
    let h = dev(|c| {
        c.dev.smsc_sim.receipt_delay = Duration::from_secs(600);
        let acme = TenantConfig {
            tz: Some(chrono_tz::Europe::Berlin),
            quiet_hours: Some(QuietHoursConfig::Window { start: hm("21:00"), end: hm("09:00") }),
            ..Default::default()
        };
        c.tenants.insert("acme".into(), acme);
    })
    .await;
    // 20:58 in Berlin: the SMS goes; its decision time ends at 21:03, in quiet hours.
    h.clock.set(chrono::DateTime::parse_from_rfc3339("2026-11-21T19:58:00Z").unwrap().to_utc());
    submit(&h, &[sms_then_telegram("q1", "+4915112345678", json!({"decision_time": "5m"}))]).await;
    wait_event(&h, "q1", EventKind::Accepted).await;
    h.clock.advance(chrono::Duration::seconds(301));
    let rs = wait_event(&h, "q1", EventKind::Deferred).await;
    let deferred = rs.iter().find(|r| r.event == EventKind::Deferred).unwrap();
    assert_eq!((deferred.channel.as_str(), deferred.step.as_ref().map(|s| s.index)), ("telegram", Some(1)));
    assert_eq!(deferred.retry_at.map(|t| t.to_rfc3339()), Some("2026-11-22T08:00:00+00:00".into()));
    assert_eq!(telegram_texts(&h), 0);
    h.clock.set(chrono::DateTime::parse_from_rfc3339("2026-11-22T08:00:01Z").unwrap().to_utc());
    let by = h.wait_final(&["q1".into()]).await;
    let f = one_final("q1", &by);
    assert_eq!((f.event, f.channel.as_str()), (EventKind::Delivered, "telegram"));
    assert_eq!(telegram_texts(&h), 1);
    h.app.shutdown().await;
}

/// `sendgate run`: two instances sharing Redis and a consumer group, jobs in and reports out
/// through Kafka, the SMPP simulator as the provider (tests/support/services.rs).
mod run {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use sendgate::report::{EventKind, Report};
    use sendgate::smsc_sim::{SimConfig, SmscSim};
    use serde_json::json;

    use crate::support::services::{self, Collector, Daemon, Topics};

    const JOBS: usize = 200;
    /// The config's binds × window: what one kill can leave ambiguous.
    const BINDS_X_WINDOW: usize = 2 * 128;

    /// Kill -9 during a decision time and again as it ends (when step events are being
    /// published and next steps parked and sent): no job gets two finals or none, no step's
    /// message reaches the SMSC twice, no step is skipped (`unknown` finals, from a kill
    /// mid-submit, stay within binds × window per kill).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kill_9_during_decision_times_repeats_no_step_and_skips_none() {
        let dir = tempfile::tempdir().unwrap();
        let topics = Topics::create(2);
        // Receipts come after the first step's decision time (4 s): its step is silent, its
        // receipt late; the second step waits for nothing (`until = "accepted"`).
        let sim = SmscSim::start(SimConfig { receipt_delay: Duration::from_secs(10), record_messages: true, ..SimConfig::default() }).await.expect("simulator");
        let reports = Collector::start(&topics.reports);
        let (group, prefix, redis) = (services::unique("casc"), format!("{}:", services::unique("casc")), services::env("SENDGATE_TEST_REDIS_URL"));
        let configs: Vec<_> =
            ["gw-a", "gw-b"].iter().map(|n| services::run_config(dir.path(), n, &topics, &group, &redis, &prefix, sim.local_addr())).collect();
        let log = |n: usize| dir.path().join(format!("gw-{n}.log"));
        let mut daemons: Vec<Daemon> = configs.iter().enumerate().map(|(i, c)| Daemon::start(c, log(i))).collect();

        let ids: Vec<String> = (0..JOBS).map(|i| services::unique(&format!("cj{i}"))).collect();
        let records: Vec<(String, Vec<u8>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let job = json!({"id": id, "tenant": "acme", "channel": "sms", "to": format!("+4479{i:08}"), "text": format!("{id} step"), "quiet_hours": false,
                                 "cascade": [{"channel": "sms", "decision_time": "4s"}, {"channel": "sms", "to": format!("+4478{i:08}"), "until": "accepted"}]});
                (id.clone(), job.to_string().into_bytes())
            })
            .collect();
        services::produce(&services::producer(), &topics.jobs, &records).await;

        let count = |f: &dyn Fn(&Report) -> bool| reports.reports().iter().filter(|r| f(r)).count();
        let waited = Instant::now() + Duration::from_secs(90);
        while count(&|r| r.event == EventKind::Accepted && r.step.as_ref().is_some_and(|s| s.index == 0)) < JOBS {
            assert!(Instant::now() < waited, "first steps never all accepted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Mid decision time: the first steps are all out, waiting; nothing is being submitted.
        daemons.remove(0).kill9();
        daemons.insert(0, Daemon::start(&configs[0], log(0)));
        // As the decision times end: step events published, next steps parked and submitted.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        daemons.remove(1).kill9();
        daemons.push(Daemon::start(&configs[1], log(1)));

        reports.wait_finals(JOBS, Duration::from_secs(120)).await;
        // Late events and any second final would show up by now.
        tokio::time::sleep(Duration::from_secs(8)).await;
        for d in daemons {
            d.terminate();
        }

        let mut by: HashMap<String, Vec<Report>> = HashMap::new();
        for r in reports.reports() {
            by.entry(r.job_id.clone()).or_default().push(r);
        }
        let mut at_smsc: HashMap<String, usize> = HashMap::new();
        for m in sim.messages() {
            *at_smsc.entry(m.destination).or_default() += 1;
        }
        let mut unknown = 0;
        for (i, id) in ids.iter().enumerate() {
            let rs = by.get(id).unwrap_or_else(|| panic!("{id}: no reports"));
            let shape: Vec<_> = rs.iter().map(|r| (r.event, r.step.as_ref().map(|s| (s.index, s.late)))).collect();
            let finals: Vec<_> = rs.iter().filter(|r| r.is_final).collect();
            assert_eq!(finals.len(), 1, "{id}: {shape:?}");
            // Nothing after the final but late events and `read`.
            let at = rs.iter().position(|r| r.is_final).unwrap();
            assert!(rs[at + 1..].iter().all(|r| r.step.as_ref().is_some_and(|s| s.late) || r.event == EventKind::Read), "{id}: {shape:?}");
            let (first, second) = (format!("4479{i:08}"), format!("4478{i:08}"));
            assert_eq!(at_smsc.get(&first), Some(&1), "{id}: the first step's SMS, once: {shape:?}");
            assert!(at_smsc.get(&second).copied().unwrap_or(0) <= 1, "{id}: the second step's SMS twice: {shape:?}");
            let step_ends = rs.iter().filter(|r| r.event == EventKind::Step && r.step.as_ref().is_some_and(|s| !s.late)).count();
            assert_eq!(step_ends, 1, "{id}: the first step ends once: {shape:?}");
            if finals[0].event == EventKind::Unknown {
                unknown += 1;
            } else {
                // Not skipped: the job ended on its second step, which reached the SMSC.
                assert_eq!(finals[0].step.as_ref().map(|s| s.index), Some(1), "{id}: {shape:?}");
                assert_eq!(at_smsc.get(&second), Some(&1), "{id}: {shape:?}");
            }
        }
        assert!(unknown <= 2 * BINDS_X_WINDOW, "{unknown} unknown finals for two kills");
        eprintln!("{JOBS} jobs, {} reports, {} SMSC messages, {unknown} unknown finals", reports.reports().len(), at_smsc.values().sum::<usize>());
    }
}

/// The instant between the broker taking a batch of `step` events and the store recording them
/// (which would park the next steps): the instance is killed there (cargo feature
/// `failpoints`), restarted under the same id, and its decided step events are read back from
/// the reports topic, not published again; recording them parks the next steps.
#[cfg(feature = "failpoints")]
mod failpoints {
    use std::collections::HashMap;
    use std::time::Duration;

    use sendgate::report::EventKind;
    use sendgate::smsc_sim::{SimConfig, SmscSim};
    use serde_json::json;

    use crate::support::services::{self, Collector, Daemon, Topics};

    /// A log without its terminal colours.
    fn plain(log: &str) -> String {
        let mut out = String::with_capacity(log.len());
        let mut rest = log;
        while let Some(at) = rest.find('\x1b') {
            out.push_str(&rest[..at]);
            rest = rest[at..].find('m').map_or("", |m| &rest[at + m + 1..]);
        }
        out + rest
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_after_the_broker_took_step_events_and_before_the_store_recorded_them() {
        let dir = tempfile::tempdir().unwrap();
        let topics = Topics::create(2);
        let sim =
            SmscSim::start(SimConfig { receipt_delay: Duration::from_millis(20), record_messages: true, ..SimConfig::default() }).await.expect("simulator");
        let reports = Collector::start(&topics.reports);
        let (group, prefix, redis) = (services::unique("casf"), format!("{}:", services::unique("casf")), services::env("SENDGATE_TEST_REDIS_URL"));
        let cfg = services::run_config(dir.path(), "gw-a", &topics, &group, &redis, &prefix, sim.local_addr());
        let mut a = Daemon::start_with(&cfg, dir.path().join("gw-a.first.log"), &[("SENDGATE_FAILPOINTS", "finals-published=kill-after(2)")]);
        // The first step has no provider (viber): it ends `rejected` at once, a `step` event.
        let ids: Vec<String> = (0..500).map(|i| services::unique(&format!("cf{i}"))).collect();
        let records: Vec<(String, Vec<u8>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let job = json!({"id": id, "tenant": "acme", "channel": "sms", "to": format!("+4477{i:08}"), "text": "x", "quiet_hours": false,
                                 "cascade": [{"channel": "viber"}, {"channel": "sms", "until": "accepted"}]});
                (id.clone(), job.to_string().into_bytes())
            })
            .collect();
        services::produce(&services::producer(), &topics.jobs, &records).await;
        a.wait_dead(Duration::from_secs(120)).await;
        let b = Daemon::start(&cfg, dir.path().join("gw-a.log"));
        let finals = reports.wait_finals(ids.len(), Duration::from_secs(180)).await;
        assert_eq!(finals.len(), ids.len(), "jobs without a final");
        // Past the confirmation grace: a step event published twice would be in the topic.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !b.log_text().contains("read back finals of a dead instance") {
            assert!(std::time::Instant::now() < deadline, "no read-back: {}", b.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The batch the broker took before the kill was found in the topic, not sent again.
        let log = plain(&b.log_text());
        let found: usize = log
            .lines()
            .filter(|l| l.contains("read back finals"))
            .filter_map(|l| l.split("in_topic=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
            .sum();
        assert!(found > 0, "no step event of the dead instance was found in the topic: {log}");
        let mut by: HashMap<String, Vec<EventKind>> = HashMap::new();
        for r in reports.reports() {
            by.entry(r.job_id.clone()).or_default().push(r.event);
        }
        let mut at_smsc: HashMap<String, usize> = HashMap::new();
        for m in sim.messages() {
            *at_smsc.entry(m.destination).or_default() += 1;
        }
        for (i, id) in ids.iter().enumerate() {
            let events = &by[id];
            assert_eq!(events.iter().filter(|e| e.is_final()).count(), 1, "{id}: {events:?}");
            assert_eq!(events.iter().filter(|e| **e == EventKind::Step).count(), 1, "{id}: the first step ends once: {events:?}");
            assert!(at_smsc.get(&format!("4477{i:08}")).copied().unwrap_or(0) <= 1, "{id}: sent twice");
        }
        assert_eq!(b.terminate(), Some(0));
    }
}
