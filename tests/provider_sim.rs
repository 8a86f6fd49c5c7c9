//! `sendgate dev`'s WhatsApp provider against the embedded Cloud API simulator
//! (`src/provider_sim/`): a template job reports accepted → delivered → read, and each fault the
//! simulator injects is handled as docs/providers.md says: `130429` pauses the number and sends
//! the same message again in its place, `131056` defers that job, a 5xx is retried later, a slow
//! answer ends the job `unknown`, and a forged status webhook is refused and changes nothing.
//! The same for `tg`, dev's Telegram provider, against the embedded Bot API simulator: a text job
//! reports accepted → delivered, a 429 pauses the bot and sends the same message again in place,
//! a 403 (blocked by the user) is rejected. Everything in memory (no Redis), real loopback HTTP.

mod support;

use std::num::NonZeroU64;
use std::time::Duration;

use sendgate::config::{Config, ProviderConfig};
use sendgate::provider_sim::{ProviderSimHandle, SimMessage};
use sendgate::report::{EventKind, Report};
use serde_json::{json, Value};
use support::{finals, Harness};

const NUMBER: &str = "106540352242922";

/// The dev daemon with its embedded simulator (statuses after 20 ms, every request recorded),
/// as `tweak` changes it.
async fn dev(tweak: impl FnOnce(&mut Config)) -> Harness {
    support::start_with_chats(tweak).await
}

fn wa(cfg: &mut Config) -> &mut sendgate::provider::whatsapp_cloud::WhatsappCloudConfig {
    match cfg.providers.get_mut("wa") {
        Some(ProviderConfig::WhatsappCloud(c)) => c,
        _ => panic!("config/dev.toml has a whatsapp_cloud provider named wa"),
    }
}

fn every(n: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(n)
}

fn sim(h: &Harness) -> &ProviderSimHandle {
    &h.app.provider_sims.iter().find(|(name, _)| name == "wa").expect("dev starts a simulator for wa").1
}

fn template_job(id: &str, to: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "whatsapp", "to": to, "template": {"name": "order_shipped", "language": "en_US", "params": ["A-1042"]}})
}

async fn submit(h: &Harness, jobs: &[Value]) {
    let body: String = jobs.iter().map(|j| format!("{j}\n")).collect();
    let (status, answer) = h.post("/v1/jobs", "application/x-ndjson", body).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(jobs.len() as u64)), "{answer}");
}

async fn events_until(h: &Harness, id: &str, kind: EventKind) -> Vec<EventKind> {
    let mut got: Vec<Report> = Vec::new();
    h.wait_until(&format!("{id}: {kind:?}"), || {
        got = h.reports_by_job().remove(id).unwrap_or_default();
        got.iter().any(|r| r.event == kind)
    })
    .await;
    got.iter().map(|r| r.event).collect()
}

fn requests_to(h: &Harness, to: &str) -> Vec<SimMessage> {
    sim(h).messages().into_iter().filter(|m| m.recipient == to.trim_start_matches('+')).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_job_goes_accepted_delivered_read() {
    let h = dev(|_| {}).await;
    submit(&h, &[template_job("wa-1", "+4915112345678")]).await;
    let events = events_until(&h, "wa-1", EventKind::Read).await;
    assert_eq!(events, [EventKind::Accepted, EventKind::Delivered, EventKind::Read]);
    let reports = &h.reports_by_job()["wa-1"];
    let wamid = reports[0].provider_message_id.clone().unwrap();
    assert!(wamid.starts_with("wamid.") && reports.iter().all(|r| r.provider_message_id.as_deref() == Some(&wamid) && r.provider.as_deref() == Some("wa")));
    // What the simulator was sent is the Cloud API's message object, from the dev number.
    let sent = requests_to(&h, "+4915112345678");
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].sender.as_str(), &sent[0].body["template"]["name"]), (NUMBER, &json!("order_shipped")));
    let st = sim(&h).stats();
    assert_eq!((st.sent, st.delivered, st.read, st.webhook_retries, st.statuses_dropped), (1, 1, 1, 0, 0), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_130429_pauses_the_number_and_sends_the_same_message_again_in_its_place() {
    let h = dev(|cfg| {
        cfg.dev.provider_sim.throttle_every = every(3);
        let wa = wa(cfg);
        // One request at a time from the number: what comes next shows whose place it kept.
        wa.concurrency = 1;
        wa.throttle_backoff = Duration::from_millis(200);
        wa.max_retries = 3;
    })
    .await;
    let jobs: Vec<Value> = (0..6).map(|i| template_job(&format!("tp-{i}"), &format!("+49151000010{i:02}"))).collect();
    submit(&h, &jobs).await;
    for i in 0..6 {
        let events = events_until(&h, &format!("tp-{i}"), EventKind::Read).await;
        assert_eq!(events, [EventKind::Accepted, EventKind::Delivered, EventKind::Read], "tp-{i}: sent again in place, never deferred");
    }
    let log = sim(&h).messages();
    let throttled: Vec<usize> = log.iter().enumerate().filter(|(_, m)| m.answer == "throttled").map(|(i, _)| i).collect();
    assert!(throttled.len() >= 2, "{log:?}");
    for i in throttled {
        // The next request from the number is the same message, after the pause.
        let (refused, next) = (&log[i], &log[i + 1]);
        assert_eq!((next.recipient.as_str(), next.answer), (refused.recipient.as_str(), "taken"), "{log:#?}");
        assert!(next.at - refused.at >= chrono::Duration::milliseconds(190), "paused {:?}", next.at - refused.at);
    }
    assert_eq!(log.iter().filter(|m| m.answer == "taken").count(), 6, "each message taken once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_limit_131056_defers_that_job_and_a_5xx_is_retried_later() {
    let h = dev(|cfg| {
        // The 5th and 6th of the six requests; the two sent again are the 7th and 8th.
        cfg.dev.provider_sim.pair_limit_every = every(5);
        cfg.dev.provider_sim.server_error_every = every(6);
        wa(cfg).concurrency = 1;
    })
    .await;
    let jobs: Vec<Value> = (0..6).map(|i| template_job(&format!("pl-{i}"), &format!("+49151000020{i:02}"))).collect();
    submit(&h, &jobs).await;
    h.wait_until("six requests answered", || sim(&h).messages().len() >= 6).await;
    let log = sim(&h).messages();
    let by_answer = |a: &str| log.iter().filter(|m| m.answer == a).map(|m| format!("+{}", m.recipient)).collect::<Vec<_>>();
    let (paired, failed) = (by_answer("pair_limit"), by_answer("server_error"));
    assert_eq!((paired.len(), failed.len()), (1, 1), "{log:#?}");
    let id_of = |to: &str| jobs.iter().find(|j| j["to"] == to).unwrap()["id"].as_str().unwrap().to_owned();
    for to in [&paired[0], &failed[0]] {
        let events = events_until(&h, &id_of(to), EventKind::Deferred).await;
        assert_eq!(events, [EventKind::Deferred], "{to}: deferred, nothing final");
    }
    // The others went on meanwhile.
    let others: Vec<String> =
        jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()).filter(|id| *id != id_of(&paired[0]) && *id != id_of(&failed[0])).collect();
    let by = h.wait_final(&others).await;
    assert!(others.iter().all(|id| !by[id].iter().any(|r| r.event == EventKind::Deferred)), "{by:?}");
    // Due again: sent again and delivered.
    h.clock.advance(chrono::Duration::seconds(10));
    for to in [&paired[0], &failed[0]] {
        let events = events_until(&h, &id_of(to), EventKind::Read).await;
        assert_eq!(events, [EventKind::Deferred, EventKind::Accepted, EventKind::Delivered, EventKind::Read], "{to}");
        assert_eq!(requests_to(&h, to).len(), 2, "{to}: refused once, then taken");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_past_the_request_timeout_ends_unknown_and_is_never_resent() {
    let h = dev(|cfg| {
        cfg.dev.provider_sim.slow_every = every(1);
        cfg.dev.provider_sim.slow_answer = Duration::from_millis(1500);
        wa(cfg).request_timeout = Duration::from_millis(300);
    })
    .await;
    submit(&h, &[template_job("slow-1", "+4915100000301")]).await;
    let events = events_until(&h, "slow-1", EventKind::Unknown).await;
    assert_eq!(events, [EventKind::Unknown]);
    // Its statuses come anyway (the simulator took it) and match nothing any more.
    h.wait_until("statuses pushed", || sim(&h).stats().read == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(finals(&h.reports_by_job()["slow-1"]).len(), 1);
    assert_eq!(requests_to(&h, "+4915100000301").len(), 1, "never resent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_status_webhooks_are_refused_and_nothing_in_them_is_acted_on() {
    // Every genuine POST is followed by a forged one saying the messages failed.
    let h = dev(|cfg| {
        cfg.dev.provider_sim.forge_every = every(1);
        cfg.dev.provider_sim.webhook_batch = 5;
    })
    .await;
    let jobs: Vec<Value> = (0..5).map(|i| template_job(&format!("fg-{i}"), &format!("+49151000040{i:02}"))).collect();
    submit(&h, &jobs).await;
    for i in 0..5 {
        let events = events_until(&h, &format!("fg-{i}"), EventKind::Read).await;
        assert_eq!(events, [EventKind::Accepted, EventKind::Delivered, EventKind::Read], "fg-{i}");
    }
    h.wait_until("forged twins answered", || {
        let st = sim(&h).stats();
        st.live == 0 && st.forged_refused == st.webhook_posts
    })
    .await;
    let st = sim(&h).stats();
    assert_eq!(st.forged_taken, 0, "{st:?}");
    assert!(st.forged_refused >= 3, "{st:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (id, rs) in h.reports_by_job() {
        assert!(!rs.iter().any(|r| r.event == EventKind::Undelivered), "{id}: {rs:?}");
    }
}

// ---- `sendgate dev`'s Telegram provider (`tg`) against the embedded Bot API simulator ----

fn tg(cfg: &mut Config) -> &mut sendgate::provider::telegram::TelegramConfig {
    match cfg.providers.get_mut("tg") {
        Some(ProviderConfig::Telegram(c)) => c,
        _ => panic!("config/dev.toml has a telegram provider named tg"),
    }
}

fn tg_sim(h: &Harness) -> &ProviderSimHandle {
    &h.app.provider_sims.iter().find(|(name, _)| name == "tg").expect("dev starts a simulator for tg").1
}

fn text_job(id: &str, chat: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "telegram", "to": chat, "text": "Your order shipped"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_job_goes_accepted_delivered() {
    let h = dev(|_| {}).await;
    submit(&h, &[text_job("tg-1", "700000001")]).await;
    let events = events_until(&h, "tg-1", EventKind::Delivered).await;
    assert_eq!(events, [EventKind::Accepted, EventKind::Delivered]);
    let reports = &h.reports_by_job()["tg-1"];
    // Telegram's ids are unique within a chat: the provider names them `<chat>:<message id>`.
    let id = reports[0].provider_message_id.clone().unwrap();
    assert!(id.starts_with("700000001:") && reports.iter().all(|r| r.provider.as_deref() == Some("tg")), "{reports:?}");
    let sent = tg_sim(&h).messages();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].recipient.as_str(), &sent[0].body["chat_id"], &sent[0].body["text"]), ("700000001", &json!(700000001), &json!("Your order shipped")));
    let st = tg_sim(&h).stats();
    assert_eq!((st.taken, st.webhook_posts, st.live), (1, 0, 0), "no statuses from Telegram: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_429_pauses_the_bot_and_sends_the_same_message_again_in_place() {
    let h = dev(|cfg| {
        // The third of the three first tries; the one sent again is the fourth request.
        cfg.dev.provider_sim.throttle_every = every(3);
        tg(cfg).concurrency = 1;
    })
    .await;
    let jobs: Vec<Value> = (0..3).map(|i| text_job(&format!("tg-t{i}"), &format!("70000010{i}"))).collect();
    submit(&h, &jobs).await;
    for i in 0..3 {
        let events = events_until(&h, &format!("tg-t{i}"), EventKind::Delivered).await;
        assert_eq!(events, [EventKind::Accepted, EventKind::Delivered], "tg-t{i}: sent again in place, never deferred");
    }
    let log = tg_sim(&h).messages();
    let throttled: Vec<usize> = log.iter().enumerate().filter(|(_, m)| m.answer == "throttled").map(|(i, _)| i).collect();
    assert_eq!(throttled.len(), 1, "{log:#?}");
    for i in throttled {
        // The whole bot pauses for the simulator's retry_after (1 s): nothing goes out meanwhile.
        let (refused, next) = (&log[i], &log[i + 1]);
        assert!(next.at - refused.at >= chrono::Duration::milliseconds(990), "paused {:?}", next.at - refused.at);
        // The same message goes again (a 429 is never a deferral), taken this time.
        let again = log[i + 1..].iter().find(|m| m.recipient == refused.recipient).expect("sent again");
        assert_eq!(again.answer, "taken", "{log:#?}");
    }
    assert_eq!(log.iter().filter(|m| m.answer == "taken").count(), 3, "each message taken once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_403_blocked_is_rejected_and_others_go_on() {
    let h = dev(|cfg| {
        cfg.dev.provider_sim.blocked_every = every(2);
        tg(cfg).concurrency = 1;
    })
    .await;
    let jobs: Vec<Value> = (0..3).map(|i| text_job(&format!("tg-b{i}"), &format!("70000020{i}"))).collect();
    submit(&h, &jobs).await;
    let ids: Vec<String> = jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect();
    let by = h.wait_final(&ids).await;
    let log = tg_sim(&h).messages();
    let blocked: Vec<&str> = log.iter().filter(|m| m.answer == "blocked").map(|m| m.recipient.as_str()).collect();
    assert_eq!(blocked.len(), 1, "{log:#?}");
    for job in &jobs {
        let events: Vec<EventKind> = by[job["id"].as_str().unwrap()].iter().map(|r| r.event).collect();
        if job["to"] == blocked[0] {
            assert_eq!(events, [EventKind::Rejected], "{job}");
            let r = &by[job["id"].as_str().unwrap()][0];
            assert_eq!(r.error.as_ref().and_then(|e| e.code.as_deref()), Some("403"), "{r:?}");
        } else {
            assert_eq!(events, [EventKind::Accepted, EventKind::Delivered], "{job}");
        }
    }
    assert_eq!(log.len(), 3, "the blocked one is never sent again");
}

// ---- `sendgate provider-sim http`: the shipped Infobip Viber example against it ----

const HTTP_TOKEN: &str = "sharedtoken0123456789abcdefABCDEF";

/// `config/examples/http-infobip-viber.toml` as shipped, but for its origin (`http://` on
/// `port`) and its secret files (temporary ones holding [`HTTP_TOKEN`]).
fn infobip_example(port: u16, secrets: &std::path::Path) -> String {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/http-infobip-viber.toml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("url = \"https://") {
            out.push_str(&format!("url = \"http://127.0.0.1:{port}{}\n", &rest[rest.find('/').unwrap()..]));
        } else if let Some((key, file)) = line.split_once(" = \"/etc/sendgate/") {
            let path = secrets.join(file.trim_end_matches('"'));
            std::fs::write(&path, format!("{HTTP_TOKEN}\n")).unwrap();
            out.push_str(&format!("{key} = {:?}\n", path.display().to_string()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_example_runs_against_the_http_simulator_statuses_by_webhook() {
    // The simulator's port is in the provider's url, and dev's webhook URL in the simulator's
    // config: the port is picked first, the daemon started, then the simulator on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secrets = tempfile::tempdir().unwrap();
    let extra = sendgate::config::parse(&infobip_example(port, secrets.path())).unwrap_or_else(|e| panic!("{e}"));
    let h = dev(|cfg| {
        let mut p = extra.providers["infobip_viber"].clone();
        if let ProviderConfig::Http(c) = &mut p {
            c.concurrency = 1;
        }
        cfg.providers.insert("infobip_viber".into(), p);
    })
    .await;
    let sim_cfg = sendgate::provider_sim::ProviderSimConfig {
        listen: ([127, 0, 0, 1], port).into(),
        token: Some(HTTP_TOKEN.into()),
        webhook_url: Some(format!("{}/v1/webhooks/infobip_viber?token={HTTP_TOKEN}", h.base())),
        status_delay: Duration::from_millis(20),
        outcome_mix: "delivered=100".into(),
        blocked_every: every(3),
        forge_every: every(1),
        record_messages: true,
        ..Default::default()
    };
    let sim = sendgate::provider_sim::ProviderSim::start(sendgate::provider_sim::SimMode::Http, sim_cfg).await.unwrap();
    let jobs: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("ib-{i}"), "tenant": "acme", "channel": "viber", "to": format!("+49151000050{i:02}"), "text": "Your order shipped"}))
        .collect();
    submit(&h, &jobs).await;
    let ids: Vec<String> = jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect();
    let by = h.wait_final(&ids).await;
    let log = sim.messages();
    let blocked: Vec<String> = log.iter().filter(|m| m.answer == "blocked").map(|m| format!("+{}", m.recipient)).collect();
    assert_eq!((blocked.len(), log.len()), (1, 3), "{log:#?}");
    for job in &jobs {
        let rs = &by[job["id"].as_str().unwrap()];
        let events: Vec<EventKind> = rs.iter().map(|r| r.event).collect();
        if job["to"] == blocked[0] {
            assert_eq!(events, [EventKind::Rejected], "{job}");
            assert_eq!(rs[0].error.as_ref().and_then(|e| e.code.as_deref()), Some("REJECTED_DESTINATION_BLOCKLISTED"), "{rs:?}");
        } else {
            assert_eq!(events, [EventKind::Accepted, EventKind::Delivered], "{job}: delivered by the simulator's status webhook");
            assert!(rs[0].provider_message_id.as_deref().is_some_and(|id| id.starts_with("ib-")), "{rs:?}");
        }
    }
    // What was sent is the example's body; every forged twin (a wrong token) was refused.
    assert_eq!((&log[0].body["messages"][0]["sender"], &log[0].body["messages"][0]["content"]["type"]), (&json!("DemoCompany"), &json!("TEXT")));
    h.wait_until("forged twins answered", || {
        let st = sim.stats();
        st.live == 0 && st.forged_refused == st.webhook_posts
    })
    .await;
    let st = sim.stats();
    assert_eq!((st.sent, st.delivered, st.forged_taken), (2, 2, 0), "{st:?}");
    sim.shutdown().await;
}
