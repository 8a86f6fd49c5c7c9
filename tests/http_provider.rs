//! The generic HTTP provider (`kind = "http"`) end to end: `sendgate` (embedded ingest, Redis
//! for shared state) sends over real HTTPS to API stand-ins in this process that answer as the
//! providers' public references show. The shipped examples (`config/examples/http-*.toml`) are
//! loaded as they stand (the origin, the secret files' paths and some timeouts replaced), so
//! they cannot rot. Every row of their error tables, statuses by webhook (signed, forged,
//! replayed, out of order, early), a provider that never reports: one final per job.

mod support;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use sendgate::config::{self, Config, ProviderConfig};
use sendgate::provider::http::config::SignatureEncoding;
use sendgate::provider::http::webhook::sign;
use sendgate::provider::http::HttpConfig;
use sendgate::report::{EventKind, Report};
use serde_json::{json, Value};
use support::https::testdata;
use support::{finals, request_with, services::env, Harness};

/// What every secret file holds in these tests.
const TOKEN: &str = "secret-token-123";

/// One scripted answer of a stand-in.
#[derive(Clone)]
enum Reply {
    /// This status and JSON body, with `Retry-After` when given.
    Json(u16, Value, Option<u64>),
    /// This status and a body that is not the API's (a proxy in between).
    Bare(u16),
    /// No answer for this long.
    Slow(Duration),
    /// Takes the message, but first pushes the callback built from its id to sendgate (a
    /// status that overtakes the answer).
    TakeAfterCallback(fn(&str) -> Value),
}

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: hyper::HeaderMap,
    body: Value,
    /// The id answered, when it took the message.
    id: Option<String>,
}

/// A provider API stand-in: per recipient a queue of scripted replies; an empty queue takes
/// the message with the API's own success body.
struct Api {
    /// Where the recipient is in a request body.
    to_pointer: &'static str,
    /// The success body for a fresh id.
    ok: fn(&str, &str) -> Value,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    seen: Mutex<Vec<Seen>>,
    /// Where `TakeAfterCallback` posts: sendgate's address and the webhook's path and query.
    hook: OnceLock<(SocketAddr, String)>,
}

impl Api {
    fn new(to_pointer: &'static str, ok: fn(&str, &str) -> Value) -> Arc<Self> {
        Arc::new(Self { to_pointer, ok, script: Mutex::default(), seen: Mutex::default(), hook: OnceLock::new() })
    }

    fn script(&self, to: &str, replies: &[Reply]) {
        self.script.lock().unwrap().entry(to.to_owned()).or_default().extend(replies.iter().cloned());
    }

    fn seen_for(&self, to: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.body.pointer(self.to_pointer).and_then(Value::as_str) == Some(to)).cloned().collect()
    }

    fn id_for(&self, to: &str) -> String {
        self.seen_for(to).iter().find_map(|s| s.id.clone()).unwrap_or_else(|| panic!("no message to {to} was taken"))
    }

    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let (path, headers) = (req.uri().path().to_owned(), req.headers().clone());
        let body: Value = serde_json::from_slice(&req.into_body().collect().await?.to_bytes()).unwrap_or(Value::Null);
        let to = body.pointer(self.to_pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
        let reply = self.script.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front);
        let mut seen = Seen { path, headers, body, id: None };
        let n = self.seen.lock().unwrap().len();
        let fresh = format!("id-{}-{n:04}", to.trim_start_matches('+'));
        let (status, text, retry_after) = match reply {
            None => {
                seen.id = Some(fresh.clone());
                (200, (self.ok)(&fresh, &to).to_string(), None)
            }
            Some(Reply::TakeAfterCallback(callback)) => {
                let (addr, path) = self.hook.get().expect("the hook address is set").clone();
                let payload = callback(&fresh).to_string();
                let (status, _, v) = request_with(addr, "POST", &path, &[("content-type", "application/json")], Bytes::from(payload)).await;
                assert_eq!(status, 200, "the early callback was taken: {v}");
                seen.id = Some(fresh.clone());
                (200, (self.ok)(&fresh, &to).to_string(), None)
            }
            Some(Reply::Json(status, body, retry_after)) => (status, body.to_string(), retry_after),
            Some(Reply::Bare(status)) => (status, "<html>502 Bad Gateway</html>".to_owned(), None),
            Some(Reply::Slow(d)) => {
                self.seen.lock().unwrap().push(seen);
                tokio::time::sleep(d).await;
                return Ok(Response::builder().status(504).body(Full::new(Bytes::new())).unwrap());
            }
        };
        self.seen.lock().unwrap().push(seen);
        let mut resp = Response::builder().status(status).header("content-type", "application/json");
        if let Some(s) = retry_after {
            resp = resp.header("retry-after", s.to_string());
        }
        Ok(resp.body(Full::new(Bytes::from(text))).unwrap())
    }
}

struct World {
    h: Harness,
    api: Arc<Api>,
    _secrets: tempfile::TempDir,
}

/// A provider section as the test runs it: `https://HOST` in `url` becomes the stand-in, each
/// `/etc/sendgate/...` secret file a temporary one holding [`TOKEN`], and the test CA trusted.
fn localize(text: &str, port: u16, secrets: &std::path::Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("url = \"https://") {
            let path = &rest[rest.find('/').unwrap_or(rest.len())..];
            out.push_str(&format!("url = \"https://127.0.0.1:{port}{path}\n"));
        } else if let Some((key, file)) = line.split_once(" = \"/etc/sendgate/") {
            let path = secrets.join(file.trim_end_matches('"'));
            std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
            out.push_str(&format!("{key} = {:?}\n", path.display().to_string()));
        } else {
            out.push_str(line);
            out.push('\n');
            if line == "kind = \"http\"" {
                out.push_str(&format!("tls_ca_file = {:?}\n", testdata("ca.pem").display().to_string()));
            }
        }
    }
    out
}

fn example(file: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples").join(file)).unwrap()
}

/// The daemon with the providers of `section` (TOML, as shipped) talking HTTPS to `api`, state
/// in Redis; `tweak` may shorten a provider's timeouts.
async fn world(api: Arc<Api>, section: &str, tweak: impl Fn(&str, &mut HttpConfig)) -> World {
    let addr = {
        let api = api.clone();
        support::https::serve(move |req| api.clone().answer(req)).await
    };
    let secrets = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[redis]\nurl = \"{}\"\nprefix = \"{}:\"\n",
        localize(section, addr.port(), secrets.path()),
        env("SENDGATE_TEST_REDIS_URL"),
        support::services::unique("http")
    );
    let extra = config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let h = support::start(move |cfg: &mut Config| {
        for (name, p) in &extra.providers {
            let ProviderConfig::Http(mut c) = p.clone() else { unreachable!() };
            tweak(name, &mut c);
            cfg.providers.insert(name.clone(), ProviderConfig::Http(c));
        }
        cfg.redis = extra.redis.clone();
        cfg.pipeline.retry_backoff = Duration::from_secs(5);
    })
    .await;
    World { h, api, _secrets: secrets }
}

fn job(id: &str, channel: &str, to: &str, text: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": channel, "to": to, "text": text, "meta": {"crm_contact": "55012"}})
}

impl World {
    async fn submit(&self, jobs: &[Value]) {
        let body: String = jobs.iter().map(|j| format!("{j}\n")).collect();
        let (status, answer) = self.h.post("/v1/jobs", "application/x-ndjson", body).await;
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(jobs.len() as u64)), "{answer}");
    }

    /// A webhook POST to `path` (with its query) and the answer.
    async fn hook(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> (u16, Value) {
        let (status, _, v) = request_with(self.h.app.api_addr, "POST", path, headers, body.into()).await;
        (status, v)
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

    /// Moves the clock on until `id` has an event of `kind` (a deferred job comes back; a
    /// throttled provider's pause is real time, so once may not be enough).
    async fn advance_until(&self, id: &str, kind: EventKind) -> Vec<Report> {
        for _ in 0..100 {
            let rs = self.h.reports_by_job().remove(id).unwrap_or_default();
            if rs.iter().any(|r| r.event == kind) {
                return rs;
            }
            self.h.clock.advance(chrono::Duration::seconds(10));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{id}: no {kind:?}: {:?}", self.h.reports_by_job().remove(id));
    }

    /// The value of a counter series whose line holds every one of `labels`.
    async fn counter(&self, name: &str, labels: &[&str]) -> u64 {
        let (_, _, text) = request_with(self.h.app.metrics_addr, "GET", "/metrics", &[], Bytes::new()).await;
        let text = text.as_str().unwrap_or_default().to_owned();
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|lb| l.contains(lb)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Checks that every job has at most one final, now and a moment later.
    async fn at_most_one_final_each(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (id, rs) in self.h.reports_by_job() {
            assert!(finals(&rs).len() <= 1, "{id}: {:?}", rs.iter().map(|r| r.event).collect::<Vec<_>>());
        }
    }
}

fn one_final(id: &str, rs: &[Report]) -> Report {
    let f = finals(rs);
    assert_eq!(f.len(), 1, "{id}: {:?}", rs.iter().map(|r| r.event).collect::<Vec<_>>());
    f[0].clone()
}

fn code(r: &Report) -> Option<&str> {
    r.error.as_ref().and_then(|e| e.code.as_deref())
}

// ---- Infobip Viber Business Messages --------------------------------------------------------

/// Infobip's send answer (`POST /viber/2/messages`), as its API reference shows it.
fn infobip_ok(id: &str, to: &str) -> Value {
    infobip_status(id, to, 1, "PENDING", 26, "PENDING_ACCEPTED")
}

fn infobip_status(id: &str, to: &str, group_id: u32, group: &str, status_id: u32, name: &str) -> Value {
    json!({"bulkId": "a28dd97c-2222-4fcf-99f1-0b557ed381da", "messages": [{"messageId": id,
        "status": {"groupId": group_id, "groupName": group, "id": status_id, "name": name, "description": format!("{name} (test)")},
        "destination": to}]})
}

fn infobip_error(code: &str, description: &str) -> Value {
    json!({"errorCode": code, "description": description, "action": "Check the request.", "violations": [], "resources": []})
}

/// An Infobip delivery report batch.
fn infobip_dlr(items: &[(&str, &str, &str)]) -> Value {
    let results: Vec<Value> = items
        .iter()
        .map(|(id, status, error)| {
            let group = status.split('_').next().unwrap();
            json!({"bulkId": "a28dd97c-2222-4fcf-99f1-0b557ed381da", "price": {"pricePerMessage": 0.15, "currency": "EUR"},
                "status": {"groupId": 3, "groupName": group, "id": 5, "name": status, "description": "test"},
                "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": error, "description": "test", "permanent": false},
                "messageId": id, "to": "4915100000001", "sender": "DemoCompany", "sentAt": "2026-11-21T06:30:00.000+0000",
                "doneAt": "2026-11-21T06:30:01.000+0000", "messageCount": 1, "mccMnc": "22801", "callbackData": "x"})
        })
        .collect();
    json!({"results": results})
}

async fn infobip_world() -> World {
    let api = Api::new("/messages/0/destinations/0/to", infobip_ok);
    world(api, &example("http-infobip-viber.toml"), |_, c| {
        c.request_timeout = Duration::from_secs(1);
        c.down_for = Duration::from_secs(3600);
    })
    .await
}

const WEBHOOKS: &str = "sendgate_webhook_requests_total";
const IB: &str = "provider=\"infobip_viber\"";
const INFOBIP_HOOK: &str = "/v1/webhooks/infobip_viber?token=secret-token-123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infobip_viber_every_row_of_its_table() {
    let w = infobip_world().await;
    let to = |i: usize| format!("+49151000001{i:02}");
    let rows: Vec<(usize, Vec<Reply>)> = vec![
        (0, vec![]),
        (1, vec![Reply::Json(200, infobip_status("r1", "x", 5, "REJECTED", 52, "REJECTED_DESTINATION"), None)]),
        (2, vec![Reply::Json(200, infobip_status("r2", "x", 5, "REJECTED", 20, "REJECTED_FLOODING_FILTER"), None)]),
        (3, vec![Reply::Json(200, infobip_status("r3", "x", 5, "REJECTED", 21, "REJECTED_SYSTEM_ERROR"), None)]),
        (4, vec![Reply::Json(400, infobip_error("E400", "Request cannot be processed."), None)]),
        (5, vec![Reply::Json(500, infobip_error("E500", "Something went wrong."), None)]),
        (6, vec![Reply::Bare(502)]),
        (7, vec![Reply::Slow(Duration::from_secs(3))]),
        (8, vec![Reply::Json(200, json!({"bulkId": "b", "messages": []}), None)]),
        (9, vec![Reply::Json(404, infobip_error("E404", "Not found."), None)]),
    ];
    let mut jobs = Vec::new();
    for (i, replies) in &rows {
        let digits = to(*i).trim_start_matches('+').to_owned();
        w.api.script(&digits, replies);
        jobs.push(job(&format!("ib-{i:02}"), "viber", &to(*i), "Order \"123\" shipped\nDanke, ü 😀"));
    }
    w.submit(&jobs).await;

    // Refused for good, each with Infobip's code, sent once.
    for (i, want) in [(1, "REJECTED_DESTINATION"), (2, "REJECTED_FLOODING_FILTER"), (4, "E400"), (9, "E404")] {
        let id = format!("ib-{i:02}");
        let f = one_final(&id, &w.wait_event(&id, EventKind::Rejected).await);
        assert_eq!(code(&f), Some(want), "{id}");
        assert_eq!(w.api.seen_for(&to(i)[1..]).len(), 1, "{id}: sent once");
    }
    // No answer within request_timeout, or taken without an id: never resent, `unknown`.
    for i in [7, 8] {
        let id = format!("ib-{i:02}");
        one_final(&id, &w.wait_event(&id, EventKind::Unknown).await);
        assert_eq!(w.api.seen_for(&to(i)[1..]).len(), 1, "{id}: never resent");
    }
    // Transient (a per-message system error, a 500 with Infobip's body, a bare 502): deferred,
    // then taken when due.
    for i in [3, 5, 6] {
        let rs = w.wait_event(&format!("ib-{i:02}"), EventKind::Deferred).await;
        assert!(finals(&rs).is_empty(), "{rs:?}");
    }
    for i in [0, 3, 5, 6] {
        w.advance_until(&format!("ib-{i:02}"), EventKind::Accepted).await;
    }

    // The request as Infobip documents it.
    let r = &w.api.seen_for(&to(0)[1..])[0];
    assert_eq!(r.path, "/viber/2/messages");
    assert_eq!(r.headers["authorization"], format!("App {TOKEN}"));
    assert_eq!(r.headers["content-type"], "application/json");
    let m = &r.body["messages"][0];
    assert_eq!((m["sender"].as_str(), m["content"]["type"].as_str()), (Some("DemoCompany"), Some("TEXT")));
    assert_eq!(m["content"]["text"], "Order \"123\" shipped\nDanke, ü 😀", "JSON-escaped, not mangled");
    assert_eq!(m["webhooks"]["delivery"]["url"], format!("https://sendgate.example.com/v1/webhooks/infobip_viber?token={TOKEN}"));
    assert_eq!(m["webhooks"]["callbackData"], "ib-00");

    // Delivery reports: delivered; undeliverable with its error; intermediate then expired; a
    // replay and a contradicting late status; an id nobody knows.
    let (a, b, c) = (w.api.id_for(&to(0)[1..]), w.api.id_for(&to(3)[1..]), w.api.id_for(&to(5)[1..]));
    let dlr = infobip_dlr(&[
        (&a, "DELIVERED_TO_HANDSET", "NO_ERROR"),
        (&b, "UNDELIVERABLE_NOT_DELIVERED", "EC_ABSENT_SUBSCRIBER"),
        (&c, "PENDING_ENROUTE", "NO_ERROR"),
        ("no-such-message", "DELIVERED_TO_HANDSET", "NO_ERROR"),
    ]);
    let (status, v) = w.hook(INFOBIP_HOOK, &[("content-type", "application/json")], dlr.to_string()).await;
    assert_eq!((status, &v["received"]), (200, &json!(4)), "{v}");
    let later = infobip_dlr(&[(&c, "EXPIRED_EXPIRED", "NO_ERROR"), (&a, "DELIVERED_TO_HANDSET", "NO_ERROR"), (&a, "UNDELIVERABLE_NOT_DELIVERED", "EC_X")]);
    let (status, _) = w.hook(INFOBIP_HOOK, &[], later.to_string()).await;
    assert_eq!(status, 200);
    let by = w.h.wait_final(&["ib-00".into(), "ib-03".into(), "ib-05".into()]).await;
    assert_eq!(one_final("ib-00", &by["ib-00"]).event, EventKind::Delivered);
    let f = one_final("ib-03", &by["ib-03"]);
    assert_eq!((f.event, code(&f)), (EventKind::Undelivered, Some("EC_ABSENT_SUBSCRIBER")));
    assert_eq!(one_final("ib-05", &by["ib-05"]).event, EventKind::Expired);
    assert!(finals(&by["ib-06"]).is_empty(), "no report yet: {:?}", by["ib-06"]);
    w.at_most_one_final_each().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infobip_viber_bad_webhooks_are_answered_counted_and_never_used() {
    let w = infobip_world().await;
    let to = "+4915100000201";
    w.submit(&[job("forged", "viber", to, "hi")]).await;
    w.wait_event("forged", EventKind::Accepted).await;
    let id = w.api.id_for(&to[1..]);
    let failed = infobip_dlr(&[(&id, "UNDELIVERABLE_NOT_DELIVERED", "EC_X")]).to_string();
    let json_ct = [("content-type", "application/json")];
    let mut before = HashMap::new();
    for outcome in ["unauthorized", "too_large", "malformed"] {
        before.insert(outcome, w.counter(WEBHOOKS, &[IB, &format!("outcome=\"{outcome}\"")]).await);
    }

    // No token, a wrong token, the token in a header instead of the query: 401, nothing used.
    for path in ["/v1/webhooks/infobip_viber", "/v1/webhooks/infobip_viber?token=secret-token-124", "/v1/webhooks/infobip_viber?tok=secret-token-123"] {
        let (status, _) = w.hook(path, &json_ct, failed.clone()).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = w.hook("/v1/webhooks/infobip_viber", &[("token", TOKEN)], failed.clone()).await;
    assert_eq!(status, 401);
    // An unknown provider: 404. Too large: 413. Not JSON, or no array of results: 400.
    let (status, _) = w.hook("/v1/webhooks/no_such_provider?token=secret-token-123", &json_ct, failed.clone()).await;
    assert_eq!(status, 404);
    let (status, _) = w.hook(INFOBIP_HOOK, &json_ct, vec![b' '; 300 * 1024]).await;
    assert_eq!(status, 413);
    let (status, _) = w.hook(INFOBIP_HOOK, &json_ct, "{\"results\": [").await;
    assert_eq!(status, 400);
    let (status, _) = w.hook(INFOBIP_HOOK, &json_ct, "{\"results\": {}}").await;
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(finals(&w.h.reports_by_job()["forged"]).is_empty(), "nothing of them was used");

    // The real one: taken once; its replay: 200, and no second final.
    for _ in 0..2 {
        let (status, _) = w.hook(INFOBIP_HOOK, &json_ct, failed.clone()).await;
        assert_eq!(status, 200);
    }
    let f = one_final("forged", &w.wait_event("forged", EventKind::Undelivered).await);
    assert_eq!(code(&f), Some("EC_X"));
    w.at_most_one_final_each().await;

    // Counted by how each was answered (the recorder is the process's: other tests' webhooks
    // to this provider name are only ever accepted).
    let counted = [("unauthorized", 4), ("too_large", 1), ("malformed", 2)];
    for (outcome, n) in counted {
        let now = w.counter(WEBHOOKS, &[IB, &format!("outcome=\"{outcome}\"")]).await;
        assert_eq!(now - before[outcome], n, "{outcome}");
    }
    assert!(w.counter(WEBHOOKS, &[IB, "outcome=\"accepted\""]).await >= 2);
    assert!(w.counter(WEBHOOKS, &["provider=\"(unknown)\"", "outcome=\"unknown_provider\""]).await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infobip_viber_throttling_pauses_and_a_refused_account_takes_the_provider_down() {
    let w = infobip_world().await;
    let (a, b, c) = ("+4915100000301", "+4915100000302", "+4915100000303");
    w.api.script(&a[1..], &[Reply::Json(429, infobip_error("E429", "Too many requests sent."), Some(1))]);
    w.submit(&[job("throttled", "viber", a, "hi")]).await;
    let rs = w.wait_event("throttled", EventKind::Deferred).await;
    let d = rs.iter().find(|r| r.event == EventKind::Deferred).unwrap();
    assert_eq!(d.retry_at, Some(d.at + chrono::Duration::seconds(1)), "Retry-After is kept");
    w.advance_until("throttled", EventKind::Accepted).await;
    assert_eq!(w.api.seen_for(&a[1..]).len(), 2);

    // No credit on the account (a 200 with REJECTED_NOT_ENOUGH_CREDITS): down, deferred.
    w.api.script(&b[1..], &[Reply::Json(200, infobip_status("r", "x", 5, "REJECTED", 12, "REJECTED_NOT_ENOUGH_CREDITS"), None)]);
    w.submit(&[job("no-credit", "viber", b, "hi")]).await;
    let rs = w.wait_event("no-credit", EventKind::Deferred).await;
    assert!(finals(&rs).is_empty());
    let (status, v) = w.h.get("/readyz").await;
    assert_eq!((status, &v["providers"]["infobip_viber"]["ready"]), (503, &json!(false)), "{v}");
    let why = v["providers"]["infobip_viber"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("REJECTED_NOT_ENOUGH_CREDITS") && !why.contains(TOKEN), "{why}");
    // While down, nothing is sent: the job waits.
    w.submit(&[job("while-down", "viber", c, "hi")]).await;
    w.wait_event("while-down", EventKind::Deferred).await;
    assert!(w.api.seen_for(&c[1..]).is_empty());
}

// ---- Sinch Voice (text-to-speech callouts) ---------------------------------------------------

fn sinch_ok(id: &str, _to: &str) -> Value {
    json!({"callId": id})
}

fn sinch_error(status: u16, code: u32, message: &str) -> Reply {
    Reply::Json(status, json!({"status": format!("{status} Error"), "errorCode": code, "message": message}), None)
}

/// A Disconnected Call Event as Sinch posts it.
fn dice(call_id: &str, result: &str, reason: &str) -> Value {
    json!({"event": "dice", "callId": call_id, "timestamp": "2026-11-21T06:35:00Z", "version": 1, "custom": "x",
        "applicationKey": "00000000-0000-0000-0000-000000000000", "reason": reason, "result": result, "duration": 12,
        "debit": {"currencyId": "USD", "amount": 0.05}, "userRate": {"currencyId": "USD", "amount": 0.01}})
}

fn dice_answered(call_id: &str) -> Value {
    dice(call_id, "ANSWERED", "CALLEEHANGUP")
}

const SINCH_HOOK: &str = "/v1/webhooks/sinch_voice?token=secret-token-123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinch_voice_calls_and_their_disconnect_events() {
    let api = Api::new("/ttsCallout/destination/endpoint", sinch_ok);
    let w = world(api, &example("http-sinch-voice.toml"), |_, c| c.request_timeout = Duration::from_secs(1)).await;
    w.api.hook.set((w.h.app.api_addr, SINCH_HOOK.to_owned())).unwrap();
    let to = |i: usize| format!("+14045005{i:03}");
    let rows: Vec<(usize, Vec<Reply>)> = vec![
        (0, vec![]),
        (1, vec![]),
        (2, vec![sinch_error(400, 40005, "Number missing leading plus")]),
        (3, vec![sinch_error(400, 40001, "Invalid parameters: locale")]),
        (4, vec![sinch_error(400, 40003, "Invalid request")]),
        (5, vec![sinch_error(500, 50000, "Internal server error")]),
        (6, vec![sinch_error(503, 50300, "Service is temporarily unavailable, please try again later.")]),
        // The call ended before Sinch's answer reached us: the status is early.
        (7, vec![Reply::TakeAfterCallback(dice_answered)]),
    ];
    let mut jobs = Vec::new();
    for (i, replies) in &rows {
        w.api.script(&to(*i), replies);
        jobs.push(job(&format!("call-{i}"), "voice", &to(*i), "Your code is 1 2 3 4"));
    }
    w.submit(&jobs).await;
    for (i, want) in [(2, "40005"), (3, "40001"), (4, "40003")] {
        let id = format!("call-{i}");
        let f = one_final(&id, &w.wait_event(&id, EventKind::Rejected).await);
        assert_eq!(code(&f), Some(want), "{id}");
    }
    for i in [5, 6] {
        w.wait_event(&format!("call-{i}"), EventKind::Deferred).await;
    }
    for i in [0, 1, 5, 6, 7] {
        w.advance_until(&format!("call-{i}"), EventKind::Accepted).await;
    }
    let r = &w.api.seen_for(&to(0))[0];
    assert_eq!((r.path.as_str(), r.headers["authorization"].to_str().unwrap()), ("/calling/v1/callouts", format!("Basic {TOKEN}").as_str()));
    assert_eq!(r.body["method"], "ttsCallout");
    assert_eq!(r.body["ttsCallout"]["cli"], "+14045001000");
    assert_eq!((r.body["ttsCallout"]["text"].as_str(), r.body["ttsCallout"]["enableDice"].as_bool()), (Some("Your code is 1 2 3 4"), Some(true)));

    // Answered; not answered; an answered-call event without a result (ignored, counted); a
    // replayed and a contradicting DiCE.
    let (a, b) = (w.api.id_for(&to(0)), w.api.id_for(&to(1)));
    let ace = json!({"event": "ace", "callId": a, "timestamp": "2026-11-21T06:34:00Z", "version": 1, "applicationKey": "k"});
    for payload in [ace, dice_answered(&a), dice(&b, "NOANSWER", "TIMEOUT"), dice_answered(&a), dice(&a, "FAILED", "GENERALERROR")] {
        let (status, v) = w.hook(SINCH_HOOK, &[("content-type", "application/json")], payload.to_string()).await;
        assert_eq!(status, 200, "{v}");
    }
    let by = w.h.wait_final(&["call-0".into(), "call-1".into(), "call-7".into()]).await;
    assert_eq!(one_final("call-0", &by["call-0"]).event, EventKind::Delivered);
    let f = one_final("call-1", &by["call-1"]);
    assert_eq!((f.event, code(&f)), (EventKind::Undelivered, Some("TIMEOUT")));
    let rs = &by["call-7"];
    assert_eq!(one_final("call-7", rs).event, EventKind::Delivered, "the early status waited for its job");
    let accepted = rs.iter().position(|r| r.event == EventKind::Accepted).unwrap();
    assert!(accepted < rs.iter().position(|r| r.is_final).unwrap(), "accepted before the final: {rs:?}");
    assert!(w.counter("sendgate_webhook_statuses_ignored_total", &["provider=\"sinch_voice\"", "reason=\"no_status\""]).await >= 1);
    w.at_most_one_final_each().await;
}

// ---- An HMAC-signed API, and one that never reports ------------------------------------------

/// Shaped as Viber's REST API: errors are `status` codes in a 200, ids are JSON numbers,
/// callbacks are signed with `X-Viber-Content-Signature` (hex HMAC-SHA256 of the raw body under
/// the auth token). `silent` has no webhook: its jobs can only end `unknown`.
const SIGNED: &str = r#"
[providers.viber_bot]
kind = "http"
channels = ["viber_bot"]
url = "https://chatapi.viber.com/pa/send_message"
token_file = "/etc/sendgate/viber.token"
headers = { X-Viber-Auth-Token = "{{secret}}" }
default_from = "ACME"
body = '{"receiver": "{{to}}", "min_api_version": 1, "sender": {"name": "{{from}}"}, "type": "text", "text": "{{text}}"}'

[providers.viber_bot.answer]
message_id_pointer = "/message_token"
error_code_pointer = "/status"
error_message_pointer = "/status_message"
permanent_codes = ["3", "4", "5", "6", "7", "11"]
throttle_codes = ["12"]
down_codes = ["2", "8", "9"]

[providers.viber_bot.webhook]
auth = "hmac_sha256"
header = "X-Viber-Content-Signature"
secret_file = "/etc/sendgate/viber.token"
message_id_pointer = "/message_token"
status_pointer = "/event"
error_code_pointer = "/desc"
statuses = { delivered = "delivered", seen = "read", failed = "undelivered" }

[providers.silent]
kind = "http"
channels = ["viber_bot"]
url = "https://chatapi.viber.com/silent/send_message"
body = '{"receiver": "{{to}}", "text": "{{text}}"}'
receipt_timeout = "10m"

[providers.silent.answer]
message_id_pointer = "/message_token"
"#;

fn viber_ok(id: &str, _to: &str) -> Value {
    let n: u64 = id.bytes().fold(5_741_311_803_571_721_087, |acc, b| acc.wrapping_mul(31).wrapping_add(u64::from(b)) % 9_000_000_000_000_000_000);
    json!({"status": 0, "status_message": "ok", "message_token": n, "chat_hostname": "SN-CHAT-05_"})
}

fn viber_event(event: &str, token: &str) -> String {
    let token: u64 = token.parse().unwrap();
    json!({"event": event, "timestamp": 1_795_242_600_000u64, "message_token": token, "user_id": "01234567890A=", "chat_hostname": "SN-CHAT-05_"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_callbacks_read_after_delivered_and_exactly_one_unknown_without_callbacks() {
    let api = Api::new("/receiver", viber_ok);
    let w = world(api, SIGNED, |_, c| c.request_timeout = Duration::from_secs(1)).await;
    let (ann, bob, cat) = ("01234567890A=", "01234567890B=", "01234567890C=");
    w.api.script(bob, &[Reply::Json(200, json!({"status": 6, "status_message": "notSubscribed"}), None)]);
    w.api.script(cat, &[Reply::Json(200, json!({"status": 12, "status_message": "tooManyRequests"}), None)]);
    let mut silent = job("never-reported", "viber_bot", "01234567890D=", "hi");
    silent["route"] = json!("silent");
    let routed = |id: &str, to: &str| {
        let mut j = job(id, "viber_bot", to, "hi");
        j["route"] = json!("viber_bot");
        j
    };
    w.submit(&[routed("ann", ann), routed("bob", bob), routed("cat", cat), silent]).await;
    let f = one_final("bob", &w.wait_event("bob", EventKind::Rejected).await);
    assert_eq!((code(&f), f.error.as_ref().map(|e| e.message.as_str())), (Some("6"), Some("HTTP 200: notSubscribed")), "an error in a 200");
    w.wait_event("cat", EventKind::Deferred).await;
    w.wait_event("ann", EventKind::Accepted).await;
    let r = &w.api.seen_for(ann)[0];
    assert_eq!((r.headers["x-viber-auth-token"].to_str().unwrap(), r.body["sender"]["name"].as_str()), (TOKEN, Some("ACME")));
    let token = w.api.id_for(ann);
    let rs = w.h.reports_by_job().remove("ann").unwrap();
    assert_eq!(
        rs.iter().find(|r| r.event == EventKind::Accepted).and_then(|r| r.provider_message_id.clone()),
        Some(viber_ok(&token, "")["message_token"].to_string())
    );
    let token = viber_ok(&token, "")["message_token"].to_string();

    let post = |body: String, key: &str| {
        let sig = sign(key.as_bytes(), body.as_bytes(), SignatureEncoding::Hex);
        let w = &w;
        async move { w.hook("/v1/webhooks/viber_bot", &[("x-viber-content-signature", sig.as_str())], body).await.0 }
    };
    // Forged, or signed over other bytes: 401, nothing used.
    assert_eq!(post(viber_event("failed", &token), "not the token").await, 401);
    let body = viber_event("failed", &token);
    let sig = sign(TOKEN.as_bytes(), body.as_bytes(), SignatureEncoding::Hex);
    let (status, _) = w.hook("/v1/webhooks/viber_bot", &[("x-viber-content-signature", sig.as_str())], format!("{body} ")).await;
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(finals(&w.h.reports_by_job()["ann"]).is_empty());
    // Seen before delivered (out of order): delivered, then read; the late delivered and a
    // replayed seen change nothing.
    for event in ["seen", "delivered", "seen"] {
        assert_eq!(post(viber_event(event, &token), TOKEN).await, 200, "{event}");
    }
    let rs = w.wait_event("ann", EventKind::Read).await;
    let events: Vec<EventKind> = rs.iter().map(|r| r.event).collect();
    assert_eq!(&events[events.len() - 2..], [EventKind::Delivered, EventKind::Read], "{events:?}");
    one_final("ann", &rs);

    // No callbacks ever: `unknown` at receipt_timeout, exactly once.
    w.wait_event("never-reported", EventKind::Accepted).await;
    w.h.clock.advance(chrono::Duration::minutes(11));
    let rs = w.wait_event("never-reported", EventKind::Unknown).await;
    one_final("never-reported", &rs);
    w.h.clock.advance(chrono::Duration::minutes(30));
    w.at_most_one_final_each().await;
    assert_eq!(one_final("never-reported", &w.h.reports_by_job()["never-reported"]).event, EventKind::Unknown);
}
