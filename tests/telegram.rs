//! The Telegram Bot API provider end to end: `sendgate` (embedded ingest, Redis for shared
//! state) sends over real HTTP to a Bot API stand-in in this process, which answers as Telegram
//! documents: every row of the error table, 429 with `retry_after`, slow answers, a refused
//! token. Every job gets exactly one final; `ok` is `delivered` at once. The bot token (in the
//! request path) never shows in logs, reports, `/readyz` or metrics, and chat ids only masked.

#[path = "telegram/bot_api.rs"]
mod bot_api;
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_api::{serve, BotApi, Reply, Seen, CHANNEL_ID, SECRET, TOKEN};
use bytes::Bytes;
use sendgate::config::{self, Config, ProviderConfig};
use sendgate::report::{EventKind, Reason, Report};
use serde_json::{json, Value};
use support::{finals, services::env, Harness};
use tokio::time::Instant;

/// Every log line of this test binary, at debug level: what the token and chat ids must not
/// appear in.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter("debug").with_ansi(false).with_writer(|| LogSink).try_init();
}

struct World {
    h: Harness,
    api: Arc<BotApi>,
    _secrets: tempfile::TempDir,
}

/// The daemon with a `tg` provider talking to the stand-in (or to `base_url` when given),
/// state in Redis; `keys` go into the provider's section.
async fn world(keys: &str, base_url: Option<&str>) -> World {
    capture_logs();
    let api = Arc::new(BotApi::default());
    let addr = serve(api.clone()).await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let section = format!(
        r#"
[providers.tg]
kind = "telegram"
base_url = "{base}"
token_file = "{token}"
request_timeout = "1s"
throttle_backoff = "200ms"
max_retries = 1
auth_retry = "1h"
opt_out_on_blocked = true
chat_interval = "300ms"
group_interval = "900ms"
{keys}

[redis]
url = "{redis}"
prefix = "{prefix}:"
"#,
        base = base_url.map_or_else(|| format!("http://{addr}"), str::to_owned),
        token = secrets.path().join("token").display(),
        redis = env("SENDGATE_TEST_REDIS_URL"),
        prefix = support::services::unique("tg"),
    );
    let extra = config::parse(&section).unwrap_or_else(|e| panic!("{e}"));
    let h = support::start(move |cfg: &mut Config| {
        let ProviderConfig::Telegram(tg) = extra.providers["tg"].clone() else { unreachable!() };
        cfg.providers.insert("tg".into(), ProviderConfig::Telegram(tg));
        cfg.redis = extra.redis.clone();
        cfg.pipeline.retry_backoff = Duration::from_secs(5);
    })
    .await;
    World { h, api, _secrets: secrets }
}

fn job(id: &str, chat: &str, text: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "telegram", "to": chat, "text": text})
}

fn one_final(id: &str, rs: &[Report]) -> Report {
    let f = finals(rs);
    assert_eq!(f.len(), 1, "{id}: {:?}", rs.iter().map(|r| r.event).collect::<Vec<_>>());
    f[0].clone()
}

fn code(r: &Report) -> Option<&str> {
    r.error.as_ref().and_then(|e| e.code.as_deref())
}

impl World {
    async fn submit(&self, jobs: &[Value]) {
        let body: String = jobs.iter().map(|j| format!("{j}\n")).collect();
        let (status, answer) = self.h.post("/v1/jobs", "application/x-ndjson", body).await;
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(jobs.len() as u64)), "{answer}");
    }

    /// Waits until `id` has an event of `kind`; its reports so far.
    async fn wait_event(&self, id: &str, kind: EventKind) -> Vec<Report> {
        let mut got = Vec::new();
        self.h
            .wait_until(&format!("{id}: {kind:?}"), || {
                got = self.h.reports_by_job().remove(id).unwrap_or_default();
                got.iter().any(|r| r.event == kind)
            })
            .await;
        got
    }

    /// Moves the clock on until every id has its final (deferred jobs come back when due).
    async fn settle(&self, ids: &[String]) -> HashMap<String, Vec<Report>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let by = self.h.reports_by_job();
            if ids.iter().all(|id| by.get(id).is_some_and(|rs| rs.iter().any(|r| r.is_final))) {
                return by;
            }
            assert!(Instant::now() < deadline, "no final for some of {ids:?}: {by:?}");
            self.h.clock.advance(chrono::Duration::seconds(10));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Every job has at most one final (exactly one once settled), and nothing the daemon
    /// wrote or serves shows the token or an unmasked chat id.
    async fn assert_clean(&self, chats: &[&str]) {
        let by = self.h.reports_by_job();
        for (id, rs) in &by {
            assert!(finals(rs).len() <= 1, "{id}: {rs:?}");
            if let Some(f) = finals(rs).first() {
                let accepted = rs.iter().position(|r| r.event == EventKind::Accepted);
                let fin = rs.iter().position(|r| r.is_final).unwrap();
                assert!(accepted.is_none_or(|a| a < fin), "{id}: accepted before the final: {rs:?}");
                assert!(fin == rs.len() - 1, "{id}: nothing after the final ({f:?}): {rs:?}");
            }
        }
        let reports = std::fs::read_to_string(&self.h.reports_path).unwrap();
        let (_, readyz) = self.h.get("/readyz").await;
        let (_, metrics) = support::request(self.h.app.metrics_addr, "GET", "/metrics", None, Bytes::new()).await;
        let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
        assert!(!logs.is_empty(), "logs are captured");
        for (what, text) in [("reports", reports.as_str()), ("/readyz", &readyz.to_string()), ("/metrics", &metrics.to_string()), ("logs", &logs)] {
            assert!(!text.contains(SECRET), "the token shows in {what}");
        }
        for chat in chats {
            let bare = chat.trim_start_matches(['-', '@']);
            assert!(!logs.contains(bare), "chat {chat} unmasked in the logs");
            assert!(!metrics.to_string().contains(bare), "chat {chat} in /metrics");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_error_table() {
    let w = world("parse_mode = \"HTML\"", None).await;
    let rows: &[(&str, &[Reply])] = &[
        ("700000001", &[]),
        ("700000002", &[Reply::Error(429, "Too Many Requests: retry after 1", Some(1))]),
        ("700000003", &[Reply::Error(400, "Bad Request: chat not found", None)]),
        ("-700000004", &[Reply::Migrated(-1009876543210)]),
        ("700000005", &[Reply::Error(403, "Forbidden: bot was blocked by the user", None)]),
        ("-700000006", &[Reply::Error(403, "Forbidden: bot was kicked from the group chat", None)]),
        ("700000007", &[Reply::Error(500, "Internal Server Error", None)]),
        ("700000008", &[Reply::Bare(502)]),
        ("700000009", &[Reply::Slow(Duration::from_secs(3))]),
        ("700000010", &[Reply::NoId]),
        // Throttled more often than `max_retries` (1) allows: back to the pipeline, then taken.
        ("700000011", &[Reply::Error(429, "Too Many Requests: retry after 1", Some(1)), Reply::Error(429, "Too Many Requests: retry after 1", Some(1))]),
        ("@acme_news", &[]),
    ];
    let mut jobs = Vec::new();
    for (i, (chat, replies)) in rows.iter().enumerate() {
        w.api.script(chat, replies);
        jobs.push(job(&format!("row-{i:02}"), chat, "<b>Your order</b> has shipped"));
    }
    // Refused before any request: not a chat id, and a template.
    jobs.push(job("bad-chat", "acme", "hi"));
    jobs.push(json!({"id": "template", "tenant": "acme", "channel": "telegram", "to": "700000012", "template": {"name": "x", "language": "en"}}));
    w.submit(&jobs).await;

    for (id, want) in [("bad-chat", "invalid_chat_id"), ("template", "unsupported_content")] {
        let rs = w.wait_event(id, EventKind::Rejected).await;
        assert_eq!(code(&one_final(id, &rs)), Some(want), "{id}");
    }
    assert!(w.api.seen_for("acme").is_empty() && w.api.seen_for("700000012").is_empty(), "no request spent on them");
    // Refused for good: `rejected` with Telegram's code, sent once.
    for (i, want) in [(2, "400"), (3, "400"), (4, "403"), (5, "403")] {
        let id = format!("row-{i:02}");
        let rs = w.wait_event(&id, EventKind::Rejected).await;
        let f = one_final(&id, &rs);
        assert_eq!(code(&f), Some(want), "{id}");
        assert_eq!(w.api.seen_for(rows[i].0).len(), 1, "{id}: sent once");
    }
    let rs = w.wait_event("row-03", EventKind::Rejected).await;
    assert!(one_final("row-03", &rs).error.unwrap().message.contains("migrate_to_chat_id -1009876543210"));
    // Blocked: the chat is on acme's telegram list; kicked from a group: it is not.
    w.h.wait_opted_out(("acme", "telegram", "700000005"), true).await;
    assert_eq!(w.h.app.store.opted_out(&[("acme", "telegram", "-700000006")]).await.unwrap(), [false]);
    // No answer within request_timeout, or `ok` without a message: maybe taken, never resent.
    for (i, id) in [(8, "row-08"), (9, "row-09")] {
        let rs = w.wait_event(id, EventKind::Unknown).await;
        one_final(id, &rs);
        assert_eq!(w.api.seen_for(rows[i].0).len(), 1, "{id}: never resent");
    }
    // 429 within max_retries: the bot paused and the same message went again, in place.
    let rs = w.wait_event("row-01", EventKind::Delivered).await;
    assert!(!rs.iter().any(|r| r.event == EventKind::Deferred), "{rs:?}");
    assert_eq!(w.api.seen_for(rows[1].0).len(), 2);
    // 5xx (with and without Telegram's body) and throttled past max_retries: deferred...
    // (a provider asking us to slow down is a speed limit: `rate_limited`, not an outage).
    for (id, reason) in [("row-06", Reason::ProviderUnavailable), ("row-07", Reason::ProviderUnavailable), ("row-10", Reason::RateLimited)] {
        let rs = w.wait_event(id, EventKind::Deferred).await;
        assert!(rs.iter().all(|r| !r.is_final), "{id}: {rs:?}");
        assert_eq!(rs.iter().find(|r| r.event == EventKind::Deferred).and_then(|r| r.reason), Some(reason), "{id}");
    }
    // ...and sent again when due. Everything taken ends `delivered` at once: no receipts.
    let ids: Vec<String> = (0..rows.len()).map(|i| format!("row-{i:02}")).collect();
    let by = w.settle(&ids).await;
    for i in [0, 1, 6, 7, 10, 11] {
        let id = &ids[i];
        let f = one_final(id, &by[id]);
        assert_eq!(f.event, EventKind::Delivered, "{id}");
        let accepted = by[id].iter().find(|r| r.event == EventKind::Accepted).unwrap_or_else(|| panic!("{id}: {:?}", by[id]));
        assert_eq!(f.provider_message_id, accepted.provider_message_id, "{id}");
    }
    // Message ids are unique per chat only: the provider's id is `chat:message`, with the
    // numeric chat id Telegram answers (a channel's, for an @username).
    let first = &w.api.seen_for("700000001")[0];
    let accepted = by["row-00"].iter().find(|r| r.event == EventKind::Accepted).unwrap();
    assert_eq!(accepted.provider_message_id, Some(format!("700000001:{}", first.message_id.unwrap())));
    let channel = by["row-11"].iter().find(|r| r.event == EventKind::Accepted).unwrap();
    assert!(channel.provider_message_id.as_deref().unwrap().starts_with(&format!("{CHANNEL_ID}:")), "{channel:?}");
    assert_eq!(first.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!((first.text.as_str(), first.parse_mode.as_deref()), ("<b>Your order</b> has shipped", Some("HTML")));

    // While a 429's pause ran, nothing else went out.
    let all = w.api.all();
    for t in all.iter().filter(|s| s.throttled) {
        let during: Vec<&Seen> = all.iter().filter(|s| s.at > t.at + Duration::from_millis(100) && s.at < t.at + Duration::from_millis(900)).collect();
        assert!(during.is_empty(), "sent during the bot's pause: {during:?}");
    }
    let chats: Vec<&str> = rows.iter().map(|(c, _)| *c).collect();
    w.assert_clean(&chats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_whole_bot_and_keeps_the_chats_order() {
    let w = world("", None).await;
    let (ann, bob) = ("710000001", "710000002");
    // The retry is answered late: Ann's next message waits for that answer, then her interval.
    w.api.script(ann, &[Reply::Error(429, "Too Many Requests: retry after 2", Some(2)), Reply::Late(Duration::from_millis(500))]);
    w.submit(&[job("ann-1", ann, "first")]).await;
    w.h.wait_until("ann's first try", || !w.api.seen_for(ann).is_empty()).await;
    let throttled_at = w.api.seen_for(ann)[0].at;
    // During the pause: Ann's next message and Bob's first.
    w.submit(&[job("ann-2", ann, "second"), job("bob-1", bob, "hello")]).await;
    let ids = ["ann-1".to_owned(), "ann-2".to_owned(), "bob-1".to_owned()];
    let by = w.h.wait_final(&ids).await;
    for id in &ids {
        assert_eq!(one_final(id, &by[id]).event, EventKind::Delivered, "{id}");
        assert!(!by[id].iter().any(|r| r.event == EventKind::Deferred), "waited in place: {:?}", by[id]);
    }
    let seen = w.api.seen_for(ann);
    let texts: Vec<&str> = seen.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["first", "first", "second"], "the retried message kept its place");
    let gap = seen[2].at - seen[1].at;
    assert!(gap >= Duration::from_millis(770), "one message at a time per chat, 300 ms after the answer: {gap:?}");
    for s in w.api.all().iter().filter(|s| !s.throttled) {
        assert!(s.at >= throttled_at + Duration::from_millis(1900), "{} went during the pause", s.text);
    }
    w.assert_clean(&[ann, bob]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_get_their_interval_and_a_long_queue_is_deferred() {
    let w = world("max_wait = \"1s\"", None).await;
    let (private, group, busy) = ("720000001", "-720000002", "720000003");
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(job(&format!("p-{i}"), private, &format!("p{i}")));
    }
    for i in 0..2 {
        jobs.push(job(&format!("g-{i}"), group, &format!("g{i}")));
    }
    // 300 ms apart, at most 1 s of queue: the fifth and later do not wait here.
    for i in 0..7 {
        jobs.push(job(&format!("b-{i}"), busy, &format!("b{i}")));
    }
    let ids: Vec<String> = jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect();
    w.submit(&jobs).await;
    let by = w.settle(&ids).await;
    for id in &ids {
        assert_eq!(one_final(id, &by[id]).event, EventKind::Delivered, "{id}");
    }
    let deferred = ids.iter().filter(|id| by[*id].iter().any(|r| r.event == EventKind::Deferred && r.reason == Some(Reason::RateLimited))).count();
    assert!(deferred >= 2, "a queue longer than max_wait is deferred, not held: {deferred}");
    for (chat, interval, n) in [(private, 300, 3), (group, 900, 2), (busy, 300, 7)] {
        let seen = w.api.seen_for(chat);
        assert_eq!(seen.len(), n, "{chat}: each sent once");
        for pair in seen.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= Duration::from_millis(interval - 30), "{chat}: {gap:?} between two messages");
        }
    }
    w.assert_clean(&[private, group, busy]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_keeps_its_pace_across_chats() {
    let w = world("bot_tps = 5", None).await;
    let jobs: Vec<Value> = (0..8).map(|i| job(&format!("c-{i}"), &format!("73000000{i}"), "news")).collect();
    let ids: Vec<String> = (0..8).map(|i| format!("c-{i}")).collect();
    w.submit(&jobs).await;
    let by = w.settle(&ids).await;
    for id in &ids {
        assert_eq!(one_final(id, &by[id]).event, EventKind::Delivered, "{id}");
    }
    let mut at: Vec<Instant> = w.api.all().iter().map(|s| s.at).collect();
    at.sort();
    assert_eq!(at.len(), 8);
    // 5 a second: requests go 200 ms apart. Checked over five intervals, where one request
    // that a busy machine sent a little late cannot make the next look early.
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(100), "{:?} apart", pair[1] - pair[0]);
    }
    for six in at.windows(6) {
        assert!(six[5] - six[0] >= Duration::from_millis(900), "six requests within {:?}", six[5] - six[0]);
    }
    w.assert_clean(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_marks_the_provider_down_without_showing_it() {
    let w = world("", None).await;
    let ann = "740000001";
    w.api.script(ann, &[Reply::Error(401, "Unauthorized", None)]);
    w.submit(&[job("refused", ann, "hi")]).await;
    let rs = w.wait_event("refused", EventKind::Deferred).await;
    assert!(finals(&rs).is_empty());
    let (status, v) = w.h.get("/readyz").await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["providers"]["tg"]["ready"], json!(false), "{v}");
    let why = v["providers"]["tg"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("401") && why.contains("Unauthorized"), "{why}");
    w.assert_clean(&[ann]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_retried_and_its_errors_carry_no_token() {
    // A port nobody listens on: connecting fails, nothing was sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let w = world("", Some(&format!("http://{closed}"))).await;
    let ann = "750000001";
    w.submit(&[job("unreachable", ann, "hi")]).await;
    let rs = w.wait_event("unreachable", EventKind::Deferred).await;
    let deferred = rs.iter().find(|r| r.event == EventKind::Deferred).unwrap();
    assert_eq!(deferred.reason, Some(Reason::ProviderUnavailable));
    let message = &deferred.error.as_ref().unwrap().message;
    assert!(!message.contains(SECRET) && !message.contains("/bot"), "{message}");
    w.assert_clean(&[ann]).await;
}
