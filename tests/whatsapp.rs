//! The WhatsApp Cloud API provider end to end: `sendgate` (embedded ingest, Redis for shared
//! state) sends over real HTTPS to a Cloud API stand-in in this process (TLS with the test CA
//! in `src/provider/smpp/testdata`), which answers as Meta documents: every row of the error
//! table, slow answers, a refused token. Statuses and inbound messages come back through the
//! signed webhook, forged ones are refused; every job gets exactly one final.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use sendgate::config::{self, Config, ProviderConfig};
use sendgate::provider::whatsapp_cloud::webhook::sign;
use sendgate::report::{EventKind, Report};
use serde_json::{json, Value};
use support::https::testdata;
use support::{finals, request_with, services::env, Harness};

const TOKEN: &str = "EAAG-test-token";
const APP_SECRET: &str = "app-secret-for-tests";
const NUMBER: &str = "106540352242922";

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
enum Reply {
    /// Meta's error body with this HTTP status and code.
    Error(u16, i64, &'static str),
    /// A 5xx without Meta's body (a proxy in between).
    Bare(u16),
    /// No answer for this long.
    Slow(Duration),
}

/// What the stand-in saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: String,
    body: Value,
    /// The id answered, when it took the message.
    wamid: Option<String>,
}

/// The Cloud API stand-in: per recipient (`to`, digits) a queue of scripted replies; an empty
/// queue takes the message (`200` with a fresh `wamid.`).
#[derive(Default)]
struct CloudApi {
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    seen: Mutex<Vec<Seen>>,
}

impl CloudApi {
    fn script(&self, to: &str, replies: &[Reply]) {
        self.script.lock().unwrap().entry(to.trim_start_matches('+').to_owned()).or_default().extend(replies.iter().cloned());
    }

    fn seen_for(&self, to: &str) -> Vec<Seen> {
        let to = to.trim_start_matches('+');
        self.seen.lock().unwrap().iter().filter(|s| s.body["to"] == to).cloned().collect()
    }

    fn wamid_for(&self, to: &str) -> String {
        self.seen_for(to).iter().find_map(|s| s.wamid.clone()).unwrap_or_else(|| panic!("no message to {to} was taken"))
    }

    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let path = req.uri().path().to_owned();
        let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&req.into_body().collect().await?.to_bytes()).unwrap_or(Value::Null);
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let reply = self.script.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front);
        let mut seen = Seen { path, auth, body, wamid: None };
        let (status, answer) = match reply {
            None => {
                let n = self.seen.lock().unwrap().len();
                let wamid = format!("wamid.HBgL{to}{n:06}");
                seen.wamid = Some(wamid.clone());
                let ok = json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": wamid, "message_status": "accepted"}]});
                (200, ok.to_string())
            }
            Some(Reply::Error(status, code, title)) => {
                let e = json!({"error": {"message": format!("(#{code}) {title}"), "type": "OAuthException", "code": code,
                    "error_data": {"messaging_product": "whatsapp", "details": title}, "fbtrace_id": "AbCdEf"}});
                (status, e.to_string())
            }
            Some(Reply::Bare(status)) => (status, "<html>upstream error</html>".to_owned()),
            Some(Reply::Slow(d)) => {
                self.seen.lock().unwrap().push(seen.clone());
                tokio::time::sleep(d).await;
                return Ok(Response::builder().status(504).body(Full::new(Bytes::new())).unwrap());
            }
        };
        self.seen.lock().unwrap().push(seen);
        Ok(Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(answer))).unwrap())
    }
}

struct World {
    h: Harness,
    api: Arc<CloudApi>,
    _secrets: tempfile::TempDir,
}

/// The daemon with a `wa` provider talking HTTPS to the stand-in, state in Redis.
async fn world(tweak: impl FnOnce(&mut Config)) -> World {
    let api = Arc::new(CloudApi::default());
    let addr = {
        let api = api.clone();
        support::https::serve(move |req| api.clone().answer(req)).await
    };
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(secrets.path().join("app_secret"), APP_SECRET).unwrap();
    let section = format!(
        r#"
[providers.wa]
kind = "whatsapp_cloud"
base_url = "https://127.0.0.1:{port}"
phone_number_id = "{NUMBER}"
token_file = "{token}"
app_secret_file = "{secret}"
verify_token = "verify-me-please"
tls_ca_file = "{ca}"
request_timeout = "1s"
throttle_backoff = "50ms"
max_retries = 2
auth_retry = "1h"
receipt_timeout = "1h"

[redis]
url = "{redis}"
prefix = "{prefix}:"

[opt_out]
default_tenant = "acme"
"#,
        port = addr.port(),
        token = secrets.path().join("token").display(),
        secret = secrets.path().join("app_secret").display(),
        ca = testdata("ca.pem").display(),
        redis = env("SENDGATE_TEST_REDIS_URL"),
        prefix = support::services::unique("wa"),
    );
    let extra = config::parse(&section).unwrap_or_else(|e| panic!("{e}"));
    let h = support::start(move |cfg| {
        let ProviderConfig::WhatsappCloud(wa) = extra.providers["wa"].clone() else { unreachable!() };
        cfg.providers.insert("wa".into(), ProviderConfig::WhatsappCloud(wa));
        cfg.redis = extra.redis.clone();
        cfg.opt_out = extra.opt_out.clone();
        cfg.pipeline.retry_backoff = Duration::from_secs(5);
        tweak(cfg);
    })
    .await;
    World { h, api, _secrets: secrets }
}

fn template_job(id: &str, to: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "whatsapp", "to": to, "template": {"name": "order_shipped", "language": "en_US", "params": ["Ann", "123"]}})
}

fn text_job(id: &str, to: &str, text: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "whatsapp", "to": to, "text": text})
}

impl World {
    async fn submit(&self, jobs: &[Value]) {
        let body: String = jobs.iter().map(|j| format!("{j}\n")).collect();
        let (status, answer) = self.h.post("/v1/jobs", "application/x-ndjson", body).await;
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(jobs.len() as u64)), "{answer}");
    }

    /// A signed (or, with `secret`, forged) webhook POST; the status and the answer.
    async fn webhook(&self, payload: &Value, secret: Option<&str>) -> (u16, Value) {
        let body = payload.to_string();
        let sig = sign(secret.unwrap_or(APP_SECRET).as_bytes(), body.as_bytes());
        let headers = [("content-type", "application/json"), ("x-hub-signature-256", sig.as_str())];
        let (status, _, v) = request_with(self.h.app.api_addr, "POST", "/v1/webhooks/wa", &headers, Bytes::from(body)).await;
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
}

fn statuses(items: &[(&str, &str, Option<i64>)]) -> Value {
    let statuses: Vec<Value> = items
        .iter()
        .map(|(wamid, status, code)| {
            let mut s = json!({"id": wamid, "status": status, "timestamp": "1795242600", "recipient_id": "4915100000001"});
            if let Some(code) = code {
                s["errors"] = json!([{"code": code, "title": "Message undeliverable", "message": "Message undeliverable"}]);
            }
            s
        })
        .collect();
    payload(json!({"statuses": statuses}))
}

fn inbound(from: &str, text: &str) -> Value {
    // 2026-11-21T06:30:00Z, the tests' clock.
    payload(json!({
        "contacts": [{"profile": {"name": "Ann"}, "wa_id": from.trim_start_matches('+')}],
        "messages": [{"from": from.trim_start_matches('+'), "id": "wamid.in", "timestamp": "1795242600", "type": "text", "text": {"body": text}}],
    }))
}

fn payload(mut value: Value) -> Value {
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({"display_phone_number": "15550783881", "phone_number_id": NUMBER});
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]})
}

fn one_final(id: &str, rs: &[Report]) -> Report {
    let f = finals(rs);
    assert_eq!(f.len(), 1, "{id}: {:?}", rs.iter().map(|r| r.event).collect::<Vec<_>>());
    f[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_error_table_over_https() {
    let w = world(|_| {}).await;
    let rows: &[(&str, &[Reply])] = &[
        ("+4915100000001", &[]),
        ("+4915100000002", &[Reply::Error(429, 130429, "Rate limit hit")]),
        ("+4915100000003", &[Reply::Error(400, 131056, "(Business Account, Consumer Account) pair rate limit hit")]),
        ("+4915100000004", &[Reply::Error(400, 131026, "Message undeliverable")]),
        ("+4915100000005", &[Reply::Error(400, 131047, "Re-engagement message")]),
        ("+4915100000006", &[Reply::Error(400, 131051, "Unsupported message type")]),
        ("+4915100000007", &[Reply::Error(400, 131048, "Spam rate limit hit")]),
        ("+4915100000008", &[Reply::Error(400, 131049, "Meta chose not to deliver")]),
        ("+4915100000009", &[Reply::Error(404, 132001, "Template name does not exist in the translation")]),
        ("+4915100000010", &[Reply::Error(500, 131000, "Something went wrong")]),
        ("+4915100000011", &[Reply::Bare(502)]),
        ("+4915100000012", &[Reply::Slow(Duration::from_secs(3))]),
        // Throttled more often than `max_retries` allows: back to the pipeline, then taken.
        (
            "+4915100000013",
            &[Reply::Error(429, 130429, "Rate limit hit"), Reply::Error(429, 130429, "Rate limit hit"), Reply::Error(429, 130429, "Rate limit hit")],
        ),
    ];
    let mut jobs = Vec::new();
    for (i, (to, replies)) in rows.iter().enumerate() {
        w.api.script(to, replies);
        jobs.push(template_job(&format!("row-{i:02}"), to));
    }
    w.submit(&jobs).await;

    // Refused for good: `rejected` with Meta's code, at once.
    for (i, code) in [(3, "131026"), (4, "131047"), (5, "131051"), (6, "131048"), (7, "131049"), (8, "132001")] {
        let id = format!("row-{i:02}");
        let rs = w.wait_event(&id, EventKind::Rejected).await;
        let f = one_final(&id, &rs);
        assert_eq!(f.error.as_ref().and_then(|e| e.code.as_deref()), Some(code), "{id}");
        assert_eq!(w.api.seen_for(rows[i].0).len(), 1, "{id}: sent once");
    }
    // No answer within request_timeout: it may have been taken, so never resent: `unknown`.
    let rs = w.wait_event("row-11", EventKind::Unknown).await;
    one_final("row-11", &rs);
    // 130429 within max_retries: the number paused and the same message went again, in place.
    let rs = w.wait_event("row-01", EventKind::Accepted).await;
    assert!(!rs.iter().any(|r| r.event == EventKind::Deferred), "{rs:?}");
    assert_eq!(w.api.seen_for(rows[1].0).len(), 2);
    // Pair limit, 5xx (with and without Meta's body), throttled past max_retries: deferred...
    for id in ["row-02", "row-09", "row-10", "row-12"] {
        let rs = w.wait_event(id, EventKind::Deferred).await;
        assert!(rs.iter().all(|r| !r.is_final), "{id}: {rs:?}");
    }
    // ...and sent again when due.
    w.h.clock.advance(chrono::Duration::seconds(10));
    for id in ["row-00", "row-02", "row-09", "row-10", "row-12"] {
        w.wait_event(id, EventKind::Accepted).await;
    }
    let request = &w.api.seen_for(rows[0].0)[0];
    assert_eq!(request.path, format!("/v23.0/{NUMBER}/messages"));
    assert_eq!(request.auth, format!("Bearer {TOKEN}"));
    assert_eq!(request.body["template"]["components"][0]["parameters"][1], json!({"type": "text", "text": "123"}));

    // Statuses by webhook: delivered; read before (without) delivered; failed with a code;
    // sent only (nothing final); replays.
    let (a, b, c, d) = (w.api.wamid_for(rows[0].0), w.api.wamid_for(rows[1].0), w.api.wamid_for(rows[2].0), w.api.wamid_for(rows[9].0));
    let batch = statuses(&[(&a, "sent", None), (&a, "delivered", None), (&b, "read", None), (&c, "failed", Some(131026)), (&d, "sent", None)]);
    let (status, answer) = w.webhook(&batch, None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = w.webhook(&statuses(&[(&a, "read", None), (&a, "delivered", None), (&b, "delivered", None), (&c, "failed", Some(131026))]), None).await;
    assert_eq!(status, 200);

    let by = w.h.wait_final(&["row-00".into(), "row-01".into(), "row-02".into()]).await;
    assert_eq!(one_final("row-00", &by["row-00"]).event, EventKind::Delivered);
    // `read` after `delivered`: its job was kept for it, so it is reported after the final.
    let events: Vec<EventKind> = w.wait_event("row-00", EventKind::Read).await.iter().map(|r| r.event).collect();
    assert_eq!(events, [EventKind::Accepted, EventKind::Delivered, EventKind::Read]);
    let events: Vec<EventKind> = by["row-01"].iter().map(|r| r.event).collect();
    assert_eq!(&events[events.len() - 2..], [EventKind::Delivered, EventKind::Read], "read first: delivered, then read");
    let f = one_final("row-02", &by["row-02"]);
    assert_eq!((f.event, f.error.as_ref().and_then(|e| e.code.as_deref())), (EventKind::Undelivered, Some("131026")));
    // Only `sent` so far: not final.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by = w.h.reports_by_job();
    assert!(finals(&by["row-09"]).is_empty(), "{:?}", by["row-09"]);
    for (id, rs) in &by {
        assert!(finals(rs).len() <= 1, "{id}: {rs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_form_text_only_inside_the_service_window_and_stop_opts_out() {
    let w = world(|_| {}).await;
    let (ann, bob) = ("+4915100000101", "+4915100000102");
    w.submit(&[text_job("text-early", ann, "your order?")]).await;
    let rs = w.wait_event("text-early", EventKind::Rejected).await;
    let f = one_final("text-early", &rs);
    assert_eq!(f.error.as_ref().and_then(|e| e.code.as_deref()), Some("outside_service_window"));
    assert!(w.api.seen_for(ann).is_empty(), "no request was spent on it");

    // Ann writes: the window opens (answered 200 only once stored), and text may go.
    let (status, answer) = w.webhook(&inbound(ann, "Where is my order?"), None).await;
    assert_eq!(status, 200, "{answer}");
    w.submit(&[text_job("text-in-window", ann, "On its way!")]).await;
    w.wait_event("text-in-window", EventKind::Accepted).await;
    assert_eq!(w.api.seen_for(ann)[0].body["text"], json!({"preview_url": false, "body": "On its way!"}));

    // Bob says STOP: on acme's whatsapp opt-out list once answered.
    let (status, _) = w.webhook(&inbound(bob, "stop"), None).await;
    assert_eq!(status, 200);
    assert_eq!(w.h.app.store.opted_out(&[("acme", "whatsapp", bob), ("acme", "sms", bob)]).await.unwrap(), [true, false]);
    w.submit(&[template_job("to-bob", bob)]).await;
    let rs = w.wait_event("to-bob", EventKind::Suppressed).await;
    one_final("to-bob", &rs);
    assert!(w.api.seen_for(bob).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_are_refused_and_the_subscription_check_answers() {
    let w = world(|_| {}).await;
    let ann = "+4915100000201";
    w.submit(&[template_job("forged", ann)]).await;
    w.wait_event("forged", EventKind::Accepted).await;
    let wamid = w.api.wamid_for(ann);

    // Forged, unsigned, or signed over other bytes: 401, and nothing in it used.
    let (status, _) = w.webhook(&statuses(&[(&wamid, "failed", Some(131026))]), Some("not the app secret")).await;
    assert_eq!(status, 401);
    let body = statuses(&[(&wamid, "failed", Some(131026))]).to_string();
    let (status, _, _) = request_with(w.h.app.api_addr, "POST", "/v1/webhooks/wa", &[("content-type", "application/json")], Bytes::from(body)).await;
    assert_eq!(status, 401);
    let (status, _) = w.webhook(&inbound(ann, "STOP"), Some("not the app secret")).await;
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(finals(&w.h.reports_by_job()["forged"]).is_empty());
    assert_eq!(w.h.app.store.opted_out(&[("acme", "whatsapp", ann)]).await.unwrap(), [false]);

    // Signed: taken. Malformed but signed: 400.
    let (status, _) = w.webhook(&statuses(&[(&wamid, "delivered", None)]), None).await;
    assert_eq!(status, 200);
    let rs = w.wait_event("forged", EventKind::Delivered).await;
    one_final("forged", &rs);
    let sig = sign(APP_SECRET.as_bytes(), b"{not json");
    let (status, _, _) =
        request_with(w.h.app.api_addr, "POST", "/v1/webhooks/wa", &[("x-hub-signature-256", sig.as_str())], Bytes::from_static(b"{not json")).await;
    assert_eq!(status, 400);

    for (query, want) in [
        ("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me-please", (200, json!(1158201444))), // echoed as is (the helper reads it as JSON)
        ("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess", (403, json!({"error": "verification refused"}))),
    ] {
        let (status, v) = w.h.get(&format!("/v1/webhooks/wa?{query}")).await;
        assert_eq!((status, v), want, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_marks_the_provider_down_with_the_reason() {
    let w = world(|_| {}).await;
    let ann = "+4915100000301";
    w.api.script(ann, &[Reply::Error(401, 190, "Error validating access token: Session has expired")]);
    w.submit(&[template_job("expired-token", ann)]).await;
    let rs = w.wait_event("expired-token", EventKind::Deferred).await;
    assert!(finals(&rs).is_empty());
    let (status, v) = w.h.get("/readyz").await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["providers"]["wa"]["ready"], json!(false), "{v}");
    let why = v["providers"]["wa"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("190") && why.contains("Session has expired"), "{why}");
    assert!(!why.contains(TOKEN), "the token is never shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_counts_recipients_outside_their_service_window_through_the_provider() {
    let portfolio = config::parse(&format!("[whatsapp.portfolios.acme]\ntier = 1\nnumbers = [\"{NUMBER}\"]\n")).unwrap().whatsapp;
    let w = world(move |cfg| cfg.whatsapp = portfolio).await;
    let (ann, bob, cat) = ("+4915100000401", "+4915100000402", "+4915100000403");
    // Cat wrote: inside her service window she costs no tier slot, and text may go.
    let (status, _) = w.webhook(&inbound(cat, "hello?"), None).await;
    assert_eq!(status, 200);
    let from = |mut j: Value| {
        j["from"] = json!(NUMBER);
        j
    };
    w.submit(&[from(template_job("tier-ann", ann)), from(text_job("tier-cat", cat, "hi Cat")), from(template_job("tier-bob", bob))]).await;
    w.wait_event("tier-ann", EventKind::Accepted).await;
    w.wait_event("tier-cat", EventKind::Accepted).await;
    let rs = w.wait_event("tier-bob", EventKind::Deferred).await;
    assert_eq!(rs.iter().find(|r| r.event == EventKind::Deferred).and_then(|r| r.reason), Some(sendgate::report::Reason::TierCap), "{rs:?}");
    assert!(w.api.seen_for(bob).is_empty(), "held back before any request");
}
