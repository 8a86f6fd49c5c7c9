//! The whole flow on the embedded default: HTTP in, policies, real SMPP over loopback to the
//! simulator, receipts back, JSONL reports out.

mod support;

use std::time::Duration;

use sendgate::report::{EventKind, Reason};
use serde_json::{json, Value};
use support::{finals, start};

const EXAMPLE: &str = r#"{
  "id": "crm-7f3a-000123",
  "tenant": "acme",
  "channel": "sms",
  "to": "+79161234567",
  "from": "ACME",
  "text": "Your order 123 has shipped",
  "priority": "marketing",
  "send_at": "2026-11-21T09:00:00+03:00",
  "expires_at": "2026-11-22T09:00:00+03:00",
  "quiet_hours": { "start": "21:00", "end": "09:00" },
  "tz": "Europe/Moscow",
  "route": "smsc-a",
  "campaign": "black-friday",
  "meta": { "crm_contact": "55012" }
}"#;

fn job(id: &str, to: &str, text: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "sms", "to": to, "text": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_example_is_accepted_then_delivered_and_a_repeat_is_one_duplicate() {
    let h = start(|_| {}).await;
    let (status, body) = h.post("/v1/jobs", "application/json", EXAMPLE).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1);
    let id = "crm-7f3a-000123".to_string();
    let by = h.wait_final(std::slice::from_ref(&id)).await;
    let events: Vec<EventKind> = by[&id].iter().map(|r| r.event).collect();
    assert_eq!(events, [EventKind::Accepted, EventKind::Delivered]);
    for r in &by[&id] {
        assert_eq!(r.meta.get("crm_contact").map(String::as_str), Some("55012"));
        assert_eq!(r.provider.as_deref(), Some("smsc-a"));
    }
    assert_eq!(by[&id][0].segments, Some(1));
    assert!(by[&id][0].provider_message_id.is_some());

    let (status, got) = h.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = got["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["accepted", "delivered"]);
    assert_eq!(got["events"][1]["meta"]["crm_contact"], "55012");

    let (status, _) = h.post("/v1/jobs", "application/json", EXAMPLE).await;
    assert_eq!(status, 202);
    h.wait_until("duplicate event", || h.reports_by_job()[&id].len() == 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rs = &h.reports_by_job()[&id];
    assert_eq!(rs.len(), 3, "{rs:?}");
    assert_eq!(rs[2].event, EventKind::Duplicate);
    assert!(!rs[2].is_final);
    let sim = h.app.sim.as_ref().unwrap();
    assert_eq!(sim.messages().iter().filter(|m| m.destination == "79161234567").count(), 1);
    assert_eq!(sim.stats().submit_sm, 1);
    let left = h.app.shutdown().await;
    assert_eq!((left.in_flight, left.awaiting_receipts), (0, 0));
}

/// Texts that exercise GSM-7, its extension table, UCS-2 and surrogate pairs, single and
/// concatenated.
fn text_for(i: usize) -> String {
    match i % 5 {
        0 => format!("Order {i} shipped"),
        1 => format!("{i} Привет! Ваш заказ собран и передан в доставку. ").repeat(1 + i % 4),
        2 => format!("{i} emoji 🎉🚀👍🏽 and more 😀 ").repeat(1 + i % 7),
        3 => format!("{i} GSM ext €[]{{}}\\~^| plain text continues here. ").repeat(1 + i % 6),
        _ => format!("{i} long plain text for concatenation ").repeat(2 + i % 9),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_mixed_texts_arrive_encoded_numbered_and_decoded_exactly() {
    let h = start(|_| {}).await;
    let jobs: Vec<Value> = (0..1000).map(|i| job(&format!("mix-{i}"), &format!("+44770090{i:04}"), &text_for(i))).collect();
    let ids: Vec<String> = (0..1000).map(|i| format!("mix-{i}")).collect();
    for chunk in jobs.chunks(250) {
        let (status, body) = h.post("/v1/jobs", "application/json", Value::Array(chunk.to_vec()).to_string()).await;
        assert_eq!(status, 202);
        assert_eq!(body["accepted"], 250, "{body}");
    }
    let by = h.wait_final(&ids).await;
    let sim = h.app.sim.as_ref().unwrap();
    let received: std::collections::HashMap<String, sendgate::smsc_sim::SimMessage> = sim.messages().into_iter().map(|m| (m.destination.clone(), m)).collect();
    let missing: Vec<usize> = (0..1000).filter(|i| !received.contains_key(&format!("44770090{i:04}"))).collect();
    assert!(missing.is_empty(), "{} missing, e.g. {:?}; stats {:?}", missing.len(), &missing[..missing.len().min(10)], sim.stats());
    for i in 0..1000 {
        let id = format!("mix-{i}");
        let rs = &by[&id];
        assert_eq!(finals(rs).len(), 1, "{id}: {rs:?}");
        assert_eq!(finals(rs)[0].event, EventKind::Delivered);
        let m = &received[&format!("44770090{i:04}")];
        assert_eq!(m.text, text_for(i), "{id}");
        let accepted = rs.iter().find(|r| r.event == EventKind::Accepted).unwrap();
        assert_eq!(accepted.segments, Some(m.parts as u32), "{id}");
        let gsm = text_for(i).chars().all(|c| c.is_ascii() || "€".contains(c));
        assert_eq!(m.data_coding, if gsm { 0x00 } else { 0x08 }, "{id}");
    }
    assert_eq!(sim.stats().messages, 1000);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_per_item_errors_and_good_neighbours_finish() {
    let h = start(|c| c.server.max_body_bytes = 64 * 1024).await;
    let ok = |i: usize| job(&format!("good-{i}"), &format!("+4915100000{i:03}"), "hello").to_string();
    let base = r#""tenant":"acme","channel":"sms","to":"+79161234567""#;
    let bad: Vec<(String, &str)> = vec![
        (r#"{"tenant":"acme","channel":"sms","to":"+79161234567","text":"x"}"#.into(), "id: missing"),
        (r#"{"id":"b1","tenant":"acme","channel":"sms","to":"+7 916","text":"x"}"#.to_owned(), "to: not an E.164 number"),
        (format!(r#"{{"id":"b2",{base},"text":"x","template":{{"name":"t","language":"en"}}}}"#), "text: give either text or template"),
        (format!(r#"{{"id":"b3",{base}}}"#), "text: one of text or template"),
        (format!(r#"{{"id":"b4",{base},"text":"x","send_at":"21/11/2026"}}"#), "send_at: not an RFC 3339 time"),
        (format!(r#"{{"id":"b5",{base},"text":"x","meta":{{"k":"{}"}}}}"#, "v".repeat(5000)), "meta: larger than 4096"),
        (r#"{"id":"b6","tenant":"acme","channel":"pigeon post","to":"+79161234567","text":"x"}"#.into(), "channel: not a channel name"),
        (format!(r#"{{"id":"b7",{base},"text":42}}"#), "text: must be a string"),
        ("this is not json".into(), "not JSON"),
        (format!(r#"{{"id":"b9",{base},"text":"x","priority":"urgent"}}"#), "priority:"),
        (format!(r#"{{"id":"b10",{base},"text":"x","tz":"Moon/Base"}}"#), "tz: not an IANA time zone"),
        (format!(r#"{{"id":"b11",{base},"text":"x","quiet_hours":{{"start":"9pm","end":"08:00"}}}}"#), "quiet_hours: start: not HH:MM"),
        (format!(r#"{{"id":"b12",{base},"text":"x","ttl_s":"soon"}}"#), "ttl_s: must be whole seconds"),
        (r#"{"id":"b13","tenant":"ACME Corp","channel":"sms","to":"+79161234567","text":"x"}"#.into(), "tenant: must match"),
        (format!(r#"{{"id":"b14",{base},"text":"x","meta":["a"]}}"#), "meta: must be an object"),
        (r#"{"id":"b15","tenant":"acme","channel":"whatsapp","to":"+79161234567","template":{"name":"t"}}"#.into(), "template: language: required"),
        (r#"[1,2,3]"#.into(), "not a JSON object"),
        (format!(r#"{{"id":"b17",{base},"text":"x","route":"nowhere"}}"#), "__routed__"),
    ];
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for (i, (line, why)) in bad.iter().enumerate() {
        lines.push(ok(i));
        expected.push((lines.len(), *why));
        lines.push(line.clone());
    }
    lines.push(ok(999));
    let (status, body) = h.post("/v1/jobs", "application/x-ndjson", lines.join("\n")).await;
    assert_eq!(status, 202, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    let routed: Vec<_> = expected.iter().filter(|(_, w)| *w == "__routed__").collect();
    assert_eq!(rejected.len(), expected.len() - routed.len(), "{body:#}");
    for (index, why) in expected.iter().filter(|(_, w)| *w != "__routed__") {
        let r = rejected.iter().find(|r| r["index"] == *index).unwrap_or_else(|| panic!("line {index} not rejected: {body}"));
        let msg = r["error"].as_str().unwrap();
        assert!(msg.contains(why), "line {index}: {msg:?} should say {why:?}");
    }
    assert_eq!(body["accepted"].as_u64().unwrap() as usize, bad.len() + 1 + routed.len());

    // A valid job naming an unknown route is rejected by the pipeline, with a final report.
    let good: Vec<String> = (0..bad.len()).map(|i| format!("good-{i}")).chain(["good-999".into(), "b17".into()]).collect();
    let by = h.wait_final(&good).await;
    for id in &good[..good.len() - 1] {
        assert_eq!(finals(&by[id]).len(), 1);
        assert_eq!(finals(&by[id])[0].event, EventKind::Delivered, "{id}");
    }
    let b17 = finals(&by["b17"])[0];
    assert_eq!((b17.event, b17.reason), (EventKind::Rejected, Some(Reason::InvalidJob)));
    assert!(b17.error.as_ref().unwrap().message.starts_with("route: unknown provider"));

    // Whole-body failures: over the limit, not JSON at all, a JSON scalar.
    let (status, body) = h.post("/v1/jobs", "application/json", "x".repeat(70 * 1024)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("body: larger than"));
    let (status, body) = h.post("/v1/jobs", "application/json", "{nope").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("body: not JSON"));
    let (status, _) = h.post("/v1/jobs", "application/json", "42").await;
    assert_eq!(status, 400);
    // Still serving.
    assert_eq!(h.get("/healthz").await.0, 200);
    assert_eq!(h.get("/readyz").await.0, 200);
    assert_eq!(h.get("/v1/jobs/never-seen").await.0, 404);
    h.app.shutdown().await;
}

/// `[0,0,...]` with `n` zeros.
fn zeros(n: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 * n + 1);
    body.push(b'[');
    for i in 0..n {
        body.extend_from_slice(if i + 1 < n { b"0," } else { b"0" });
    }
    body.push(b']');
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_jobs_in_one_request_is_413_naming_the_limit_and_nothing_is_taken() {
    let h = start(|_| {}).await;
    // The default limit: 10,000 items pass (each rejected: not a job), one more does not.
    let (status, body) = h.post("/v1/jobs", "application/json", zeros(10_000)).await;
    assert_eq!(status, 202, "{}", &body.to_string()[..200]);
    assert_eq!(body["rejected"].as_array().unwrap().len(), 10_000);
    for many in [zeros(10_001), zeros(8 * 1024 * 1024 - 1)] {
        let (status, body) = h.post("/v1/jobs", "application/json", many).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["max_jobs_per_request"], 10_000, "{body}");
        assert_eq!(body["error"], "body: more than 10000 jobs in one request");
    }
    // NDJSON counts its lines the same way, and a request over the limit takes none of them.
    let line = |i: usize| job(&format!("many-{i}"), "+4915100000001", "hi").to_string();
    let lines: Vec<String> = (0..10_001).map(line).collect();
    let (status, _) = h.post("/v1/jobs", "application/x-ndjson", lines.join("\n")).await;
    assert_eq!(status, 413);
    assert_eq!(h.get("/v1/jobs/many-0").await.0, 404);
    // One item too large to be a job is refused unparsed; its neighbours are taken.
    let huge = job("huge", "+4915100000002", &"x".repeat(300 * 1024));
    let body = json!([job("small", "+4915100000003", "hi"), huge]).to_string();
    let (status, body) = h.post("/v1/jobs", "application/json", body).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!((&body["accepted"], &body["rejected"][0]["index"]), (&json!(1), &json!(1)));
    assert!(body["rejected"][0]["error"].as_str().unwrap().starts_with("job: larger than 262144 bytes"), "{body}");
    h.wait_final(&["small".to_string()]).await;
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_expired_jobs_follow_the_clock() {
    let h = start(|_| {}).await;
    let t0 = support::t0();
    let later = (t0 + chrono::Duration::seconds(90)).to_rfc3339();
    let past = (t0 - chrono::Duration::seconds(1)).to_rfc3339();
    let jobs = json!([
        {"id": "sched-1", "tenant": "acme", "channel": "sms", "to": "+4915100000001", "text": "later", "send_at": later},
        {"id": "exp-1", "tenant": "acme", "channel": "sms", "to": "+4915100000002", "text": "too late", "expires_at": past},
        {"id": "ttl-1", "tenant": "acme", "channel": "sms", "to": "+4915100000003", "text": "later, short ttl",
         "send_at": later, "ttl_s": 60},
    ]);
    let (status, body) = h.post("/v1/jobs", "application/json", jobs.to_string()).await;
    assert_eq!(status, 202, "{body}");
    // ttl_s 60 with send_at 90 s ahead: rejected up front, since it could never be sent.
    assert_eq!(body["rejected"][0]["id"], "ttl-1");
    assert!(body["rejected"][0]["error"].as_str().unwrap().starts_with("expires_at: must be after send_at"));

    let by = h.wait_final(&["exp-1".to_string()]).await;
    assert_eq!(finals(&by["exp-1"])[0].event, EventKind::Expired);
    h.wait_until("deferral", || h.reports_by_job().contains_key("sched-1")).await;
    let d = &h.reports_by_job()["sched-1"][0];
    assert_eq!((d.event, d.reason), (EventKind::Deferred, Some(Reason::Scheduled)));
    assert_eq!(d.retry_at, Some(t0 + chrono::Duration::seconds(90)));
    // Nothing goes before its time, however long the scheduler ticks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.reports_by_job()["sched-1"].len(), 1);
    assert_eq!(h.app.sim.as_ref().unwrap().stats().submit_sm, 0);

    h.clock.advance(chrono::Duration::seconds(90));
    let by = h.wait_final(&["sched-1".to_string()]).await;
    let kinds: Vec<EventKind> = by["sched-1"].iter().map(|r| r.event).collect();
    assert_eq!(kinds, [EventKind::Deferred, EventKind::Accepted, EventKind::Delivered]);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_receipt_ends_unknown_at_the_receipt_timeout() {
    // The simulator holds receipts for an hour of real time: only the deadline can end the job.
    let h = start(|c| c.dev.smsc_sim.receipt_delay = Duration::from_secs(3600)).await;
    h.post("/v1/jobs", "application/json", job("silent-1", "+4915100000009", "anyone there?").to_string()).await;
    h.wait_until("accepted", || h.reports_by_job().contains_key("silent-1")).await;
    assert_eq!(h.reports_by_job()["silent-1"][0].event, EventKind::Accepted);
    // dev.toml's receipt_timeout is 60 s.
    h.clock.advance(chrono::Duration::seconds(61));
    let by = h.wait_final(&["silent-1".to_string()]).await;
    let f = finals(&by["silent-1"]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].event, EventKind::Unknown);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_outcomes_map_to_final_events() {
    let h = start(|c| c.dev.smsc_sim.outcome_mix = "undelivered=1,expired=1,rejected=1".into()).await;
    let jobs: Vec<Value> = (0..60).map(|i| job(&format!("mixout-{i}"), &format!("+4915200000{i:03}"), &text_for(i))).collect();
    h.post("/v1/jobs", "application/json", Value::Array(jobs).to_string()).await;
    let ids: Vec<String> = (0..60).map(|i| format!("mixout-{i}")).collect();
    let by = h.wait_final(&ids).await;
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        let f = finals(&by[id]);
        assert_eq!(f.len(), 1, "{id}");
        assert!(matches!(f[0].event, EventKind::Undelivered | EventKind::Expired | EventKind::Rejected), "{id}: {:?}", f[0].event);
        seen.insert(f[0].event);
    }
    assert_eq!(seen.len(), 3, "every outcome of the mix shows up in 60 jobs");
    h.app.shutdown().await;
}

fn prio(id: &str, to: &str, priority: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "sms", "to": to, "text": format!("{priority} text"), "priority": priority})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reply_suppresses_later_marketing_jobs_but_not_transactional_ones() {
    let h = start(|c| {
        c.opt_out.senders.insert("+12345".into(), "acme".into());
    })
    .await;
    // No [admin] in config: the admin API does not exist.
    let (status, _, body) = h.admin("GET", "/v1/admin/opt-outs/acme/sms", Some("Bearer anything-at-all-123")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("admin API is disabled"));

    let sim = h.app.sim.as_ref().unwrap();
    // In order on one session: a STOP to a number no tenant owns, a message that is not a
    // stop word, then the STOP that counts (so once it is listed, the others were handled).
    assert!(sim.send_mo("79161230002", "99999", "STOP"));
    assert!(sim.send_mo("79161230003", "12345", "stop by tomorrow?"));
    assert!(sim.send_mo("79161230001", "12345", "  Stop. "));
    h.wait_opted_out(("acme", "sms", "+79161230001"), true).await;
    let others = [("acme", "sms", "+79161230002"), ("acme", "sms", "+79161230003")];
    assert_eq!(h.app.store.opted_out(&others).await.unwrap(), [false, false]);

    let jobs = json!([
        prio("stop-m1", "+79161230001", "marketing"),
        prio("stop-t1", "+79161230001", "transactional"),
        prio("stop-m2", "+79161230002", "marketing"),
        prio("stop-m3", "+79161230003", "marketing"),
    ]);
    let (status, body) = h.post("/v1/jobs", "application/json", jobs.to_string()).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(4)), "{body}");
    let ids: Vec<String> = ["stop-m1", "stop-t1", "stop-m2", "stop-m3"].map(String::from).to_vec();
    let by = h.wait_final(&ids).await;
    let m1 = &by["stop-m1"];
    assert_eq!(m1.len(), 1, "suppressed is the only event: {m1:?}");
    assert_eq!((m1[0].event, m1[0].is_final, m1[0].reason), (EventKind::Suppressed, true, None));
    assert_eq!(m1[0].error.as_ref().unwrap().message, "recipient is on tenant acme's opt-out list for sms");
    for id in ["stop-t1", "stop-m2", "stop-m3"] {
        let kinds: Vec<EventKind> = by[id].iter().map(|r| r.event).collect();
        assert_eq!(kinds, [EventKind::Accepted, EventKind::Delivered], "{id}");
    }
    let to_listed: Vec<String> = sim.messages().into_iter().filter(|m| m.destination == "79161230001").map(|m| m.text).collect();
    assert_eq!(to_listed, ["transactional text"], "only the transactional job reached the SMSC");
    let (status, got) = h.get("/v1/jobs/stop-m1").await;
    assert_eq!((status, got["events"][0]["event"].as_str()), (200, Some("suppressed")));
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_wants_its_token_and_its_changes_apply_to_the_next_job() {
    const TOKEN: &str = "test-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let h = start(|c| {
        c.admin = Some(sendgate::config::AdminConfig { token: None, token_file: Some(token_file), actor: "ops".into() });
    })
    .await;
    let auth = format!("Bearer {TOKEN}");
    let auth = Some(auth.as_str());
    let entry = "/v1/admin/opt-outs/acme/sms/+79161230010";

    // Without the token, or with a wrong one, nothing is touched and routes are not revealed.
    for (method, path, header, challenge) in [
        ("PUT", entry, None, "Bearer realm=\"sendgate-admin\""),
        ("GET", "/v1/admin/nowhere", None, "Bearer realm=\"sendgate-admin\""),
        ("PUT", entry, Some("Bearer test-admin-token-0123456788"), "Bearer realm=\"sendgate-admin\", error=\"invalid_token\""),
        ("PUT", entry, Some("Basic b3BzOnNlY3JldA=="), "Bearer realm=\"sendgate-admin\""),
    ] {
        let (status, headers, body) = h.admin(method, path, header).await;
        assert_eq!(status, 401, "{method} {path} {header:?}: {body}");
        assert_eq!(headers["www-authenticate"], challenge, "{header:?}");
        assert!(body["error"].as_str().unwrap().starts_with("authorization: "), "{body}");
    }
    h.wait_opted_out(("acme", "sms", "+79161230010"), false).await;

    // Adding is idempotent and says whether it changed the list.
    for changed in [true, false] {
        let (status, _, body) = h.admin("PUT", entry, auth).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"tenant": "acme", "channel": "sms", "recipient": "+79161230010", "opted_out": true, "changed": changed}));
    }
    let (status, _, _) = h.admin("PUT", "/v1/admin/opt-outs/acme/sms/%2B79161230011", auth).await;
    assert_eq!(status, 200, "a percent-encoded + is a +");
    let (_, _, one) = h.admin("GET", entry, auth).await;
    assert_eq!(one["opted_out"], true);

    // Listing pages in recipient order.
    let (status, _, page) = h.admin("GET", "/v1/admin/opt-outs/acme/sms?limit=1", auth).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["recipients"], json!(["+79161230010"]));
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, _, page) = h.admin("GET", &format!("/v1/admin/opt-outs/acme/sms?limit=1&cursor={cursor}"), auth).await;
    assert_eq!((&page["recipients"], &page["next_cursor"]), (&json!(["+79161230011"]), &Value::Null));

    // Errors name the bad part.
    for (method, path, status, error) in [
        ("PUT", "/v1/admin/opt-outs/acme/sms/7916123", 400, "recipient: not an E.164 number: \"7916123\""),
        ("PUT", "/v1/admin/opt-outs/ACME/sms/+79161230010", 400, "tenant: must match"),
        ("GET", "/v1/admin/opt-outs/acme/s%20ms", 400, "channel: not a channel name"),
        ("GET", "/v1/admin/opt-outs/acme/sms?limit=0", 400, "limit: must be a whole number from 1 to 1000"),
        ("GET", "/v1/admin/opt-outs/acme/sms?size=5", 400, "query: unknown parameter \"size\""),
        ("POST", entry, 405, "method: use PUT, DELETE, GET"),
        ("GET", "/v1/admin/tiers", 404, "no admin route for /v1/admin/tiers"),
    ] {
        let (got, _, body) = h.admin(method, path, auth).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body["error"].as_str().unwrap().starts_with(error), "{method} {path}: {body}");
    }

    // The list decides the next job: suppressed while listed, sent once removed.
    h.post("/v1/jobs", "application/json", prio("adm-1", "+79161230010", "marketing").to_string()).await;
    let by = h.wait_final(&["adm-1".to_string()]).await;
    assert_eq!(finals(&by["adm-1"])[0].event, EventKind::Suppressed);
    let (status, _, body) = h.admin("DELETE", entry, auth).await;
    assert_eq!((status, &body["opted_out"], &body["changed"]), (200, &json!(false), &json!(true)), "{body}");
    let (_, _, body) = h.admin("DELETE", entry, auth).await;
    assert_eq!(body["changed"], false);
    h.post("/v1/jobs", "application/json", prio("adm-2", "+79161230010", "marketing").to_string()).await;
    let by = h.wait_final(&["adm-2".to_string()]).await;
    let kinds: Vec<EventKind> = by["adm-2"].iter().map(|r| r.event).collect();
    assert_eq!(kinds, [EventKind::Accepted, EventKind::Delivered]);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_job_at_night_waits_for_the_end_of_quiet_hours_in_the_recipients_zone() {
    use sendgate::config::{QuietHoursConfig, TenantConfig};
    let hm = |s| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
    let h = start(|c| {
        let acme = TenantConfig {
            tz: Some(chrono_tz::Europe::Moscow),
            quiet_hours: Some(QuietHoursConfig::Window { start: hm("21:00"), end: hm("09:00") }),
            ..Default::default()
        };
        c.tenants.insert("acme".into(), acme);
    })
    .await;
    // 23:00 in Berlin (CET, UTC+1), where +49 numbers are; 01:00 in the tenant's Moscow.
    let night = chrono::DateTime::parse_from_rfc3339("2026-11-21T22:00:00Z").unwrap().to_utc();
    h.clock.set(night);
    let jobs = json!([
        job("qh-marketing", "+4915100000077", "sale starts tomorrow"),
        {"id": "qh-code", "tenant": "acme", "channel": "sms", "to": "+4915100000078", "text": "code 123456", "priority": "transactional"},
    ]);
    let (status, body) = h.post("/v1/jobs", "application/json", jobs.to_string()).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)), "{body}");

    // The one-time code goes at once; the marketing text waits for 09:00 in Berlin, 08:00Z.
    let by = h.wait_final(&["qh-code".to_string()]).await;
    assert_eq!(finals(&by["qh-code"])[0].event, EventKind::Delivered);
    h.wait_until("deferral", || h.reports_by_job().contains_key("qh-marketing")).await;
    let d = &h.reports_by_job()["qh-marketing"][0];
    assert_eq!((d.event, d.reason), (EventKind::Deferred, Some(Reason::QuietHours)));
    let nine_in_berlin = chrono::DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z").unwrap().to_utc();
    assert_eq!(d.retry_at, Some(nine_in_berlin));
    let (_, history) = h.get("/v1/jobs/qh-marketing").await;
    assert_eq!(history["events"][0]["reason"], "quiet_hours");

    // A minute before, it still waits.
    h.clock.set(nine_in_berlin - chrono::Duration::minutes(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.reports_by_job()["qh-marketing"].len(), 1);
    let sim = h.app.sim.as_ref().unwrap();
    assert!(!sim.messages().iter().any(|m| m.destination == "4915100000077"));

    h.clock.set(nine_in_berlin);
    let by = h.wait_final(&["qh-marketing".to_string()]).await;
    let kinds: Vec<EventKind> = by["qh-marketing"].iter().map(|r| r.event).collect();
    assert_eq!(kinds, [EventKind::Deferred, EventKind::Accepted, EventKind::Delivered]);
    assert_eq!(sim.messages().iter().filter(|m| m.destination == "4915100000077").count(), 1);
    h.app.shutdown().await;
}

/// The phone number id of the WhatsApp tests' portfolio.
const NUMBER: &str = "106540352242922";

/// A WhatsApp portfolio `name` of `tier` recipients holding [`NUMBER`]. The dev SMPP provider
/// serves `whatsapp` instead of dev's Cloud API provider (`wa`, dropped here), so that free-form
/// text goes out without a service window and the SMSC simulator records what was sent: what
/// these tests cover is the policy, the scheduled set, the clock and the admin API
/// (`tests/whatsapp.rs` and `tests/provider_sim.rs` cover the Cloud API provider).
fn whatsapp_portfolio(c: &mut sendgate::config::Config, name: &str, tier: u64) {
    let toml = sendgate::config::DEV_TOML.replace(r#"channels = ["sms"]"#, r#"channels = ["sms", "whatsapp"]"#)
        + &format!("\n[whatsapp.portfolios.{name}]\ntier = {tier}\nnumbers = [\"{NUMBER}\"]\n");
    let mut parsed = sendgate::config::parse(&toml).unwrap();
    assert_eq!(parsed.providers["smsc-a"].channels(), ["sms", "whatsapp"]);
    parsed.providers.remove("wa");
    c.providers = parsed.providers;
    c.whatsapp = parsed.whatsapp;
}

fn wa_job(id: &str, to: &str) -> Value {
    json!({"id": id, "tenant": "acme", "channel": "whatsapp", "from": NUMBER, "to": to, "text": "Your order shipped"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_tier_of_250_sends_250_now_and_the_other_150_a_window_later() {
    let h = start(|c| whatsapp_portfolio(c, "pipeline_test", 250)).await;
    let t0 = support::t0();
    let ids: Vec<String> = (0..400).map(|i| format!("wa-{i}")).collect();
    let jobs: Vec<Value> = (0..400).map(|i| wa_job(&ids[i], &format!("+4915300{i:05}"))).collect();
    let (status, body) = h.post("/v1/jobs", "application/json", Value::Array(jobs).to_string()).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(400)), "{body}");

    let settled = |by: &std::collections::HashMap<String, Vec<sendgate::report::Report>>| {
        ids.iter().filter(|id| by.get(*id).is_some_and(|rs| rs.iter().any(|r| r.is_final || r.event == EventKind::Deferred))).count()
    };
    h.wait_until("every job delivered or deferred", || settled(&h.reports_by_job()) == 400).await;
    let by = h.reports_by_job();
    let delivered: Vec<&String> = ids.iter().filter(|id| finals(&by[*id]).iter().any(|r| r.event == EventKind::Delivered)).collect();
    let deferred: Vec<&String> = ids.iter().filter(|id| by[*id].iter().any(|r| r.event == EventKind::Deferred)).collect();
    assert_eq!((delivered.len(), deferred.len()), (250, 150));
    for id in &deferred {
        let rs = &by[*id];
        assert_eq!(rs.len(), 1, "{id}: {rs:?}");
        assert_eq!((rs[0].reason, rs[0].retry_at), (Some(Reason::TierCap), Some(t0 + chrono::Duration::hours(24))), "{id}");
    }
    let sim = h.app.sim.as_ref().unwrap();
    assert_eq!(sim.stats().messages, 250);
    let (_, metrics) = support::request(h.app.metrics_addr, "GET", "/metrics", None, Default::default()).await;
    let metrics = metrics.as_str().unwrap();
    for line in [
        r#"sendgate_whatsapp_tier_used_recipients{portfolio="pipeline_test"} 250"#,
        r#"sendgate_whatsapp_tier_limit_recipients{portfolio="pipeline_test"} 250"#,
        r#"sendgate_whatsapp_deferred_total{portfolio="pipeline_test",reason="tier_cap"} 150"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
    }

    // Nothing more goes while the window is full; a window later the 150 do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.stats().messages, 250);
    h.clock.advance(chrono::Duration::hours(24));
    let by = h.wait_final(&ids).await;
    for id in &deferred {
        let kinds: Vec<EventKind> = by[*id].iter().map(|r| r.event).collect();
        assert_eq!(kinds, [EventKind::Deferred, EventKind::Accepted, EventKind::Delivered], "{id}");
    }
    assert_eq!(sim.stats().messages, 400);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_shows_a_portfolios_use_and_opens_service_windows() {
    const TOKEN: &str = "test-admin-token-0123456789";
    let h = start(|c| {
        whatsapp_portfolio(c, "admin_test", 1);
        c.admin = Some(sendgate::config::AdminConfig { token: Some(TOKEN.into()), token_file: None, actor: "ops".into() });
    })
    .await;
    let t0 = support::t0();
    let auth = format!("Bearer {TOKEN}");
    let call = |method: &'static str, path: &'static str, body: &str| {
        let headers = [("authorization", auth.clone()), ("content-type", "application/json".to_owned())];
        let body = bytes::Bytes::from(body.to_owned());
        let addr = h.app.api_addr;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, v) = support::request_with(addr, method, path, &headers, body).await;
            (status, v)
        }
    };
    let portfolio = "/v1/admin/whatsapp/portfolios/admin_test";
    let (status, body) = call("GET", portfolio, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"portfolio": "admin_test", "tier": 1, "window_s": 86400, "used": 0, "remaining": 1, "oldest": null, "next_release": null}));

    h.post("/v1/jobs", "application/json", wa_job("adm-wa-1", "+4915400000001").to_string()).await;
    h.wait_final(&["adm-wa-1".to_string()]).await;
    let (_, body) = call("GET", portfolio, "").await;
    assert_eq!((&body["used"], &body["remaining"]), (&json!(1), &json!(0)), "{body}");
    assert_eq!(body["next_release"], json!(t0 + chrono::Duration::hours(24)));

    // The tier is used up, but a recipient who wrote to us may still be answered.
    let contact = json!([{"number": NUMBER, "from": "+4915400000002", "at": (t0 - chrono::Duration::hours(1)).to_rfc3339()}]);
    let (status, body) = call("POST", "/v1/admin/whatsapp/inbound", &contact.to_string()).await;
    assert_eq!((status, body), (200, json!({"recorded": 1})));
    let jobs = json!([wa_job("adm-wa-2", "+4915400000002"), wa_job("adm-wa-3", "+4915400000003")]);
    h.post("/v1/jobs", "application/json", jobs.to_string()).await;
    let by = h.wait_final(&["adm-wa-2".to_string()]).await;
    assert_eq!(finals(&by["adm-wa-2"])[0].event, EventKind::Delivered);
    h.wait_until("deferral", || h.reports_by_job().contains_key("adm-wa-3")).await;
    let d = &h.reports_by_job()["adm-wa-3"][0];
    assert_eq!((d.event, d.reason, d.retry_at), (EventKind::Deferred, Some(Reason::TierCap), Some(t0 + chrono::Duration::hours(24))));
    let (_, body) = call("GET", portfolio, "").await;
    assert_eq!(body["used"], 1, "the service-window reply was not counted");

    for (method, path, body, status, error) in [
        ("GET", "/v1/admin/whatsapp/portfolios/nope", "", 404, "no WhatsApp portfolio named \"nope\""),
        ("PUT", portfolio, "", 405, "method: use GET"),
        ("GET", "/v1/admin/whatsapp/inbound", "", 405, "method: use POST"),
        ("POST", "/v1/admin/whatsapp/inbound", r#"[{"number":"1","from":"+4915400000009"},{"number":"1","from":"49"}]"#, 400, "[1].from: not an E.164 number"),
        ("POST", "/v1/admin/whatsapp/inbound", r#"{"number":"1"}"#, 400, "[0].from: required"),
        ("POST", "/v1/admin/whatsapp/inbound", "nope", 400, "body: not JSON"),
    ] {
        let (got, v) = call(method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(error), "{method} {path}: {v}");
    }
    let (status, _, _) = h.admin("GET", portfolio, None).await;
    assert_eq!(status, 401);
    h.app.shutdown().await;
}

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The embedded default with the admin API on, and the header value it wants.
async fn start_with_admin() -> (support::Harness, String) {
    let h = start(|c| {
        c.admin = Some(sendgate::config::AdminConfig { token: Some(ADMIN_TOKEN.into()), token_file: None, actor: "ops".into() });
    })
    .await;
    (h, format!("Bearer {ADMIN_TOKEN}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_speeds_are_set_and_read_through_the_admin_api() {
    let (h, auth) = start_with_admin().await;
    let put = |path: &'static str, body: &'static str, auth: Option<String>| {
        let addr = h.app.api_addr;
        async move {
            let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("authorization", a)).into_iter().collect();
            support::request_with(addr, "PUT", path, &headers, body.into()).await
        }
    };
    let (status, _, _) = put("/v1/admin/campaigns/acme/black-friday", r#"{"rate": 2}"#, None).await;
    assert_eq!(status, 401);
    let (status, _, body) = put("/v1/admin/campaigns/acme/black-friday", r#"{"rate": 2.5}"#, Some(auth.clone())).await;
    assert_eq!((status, &body["rate"]), (200, &json!(2.5)), "{body}");
    assert_eq!(h.app.store.campaign_rates(&[("acme", "black-friday")]).await.unwrap(), [Some(2.5)]);
    let (_, _, body) = h.admin("GET", "/v1/admin/campaigns/acme/black-friday", Some(&auth)).await;
    assert_eq!(body["rate"], json!(2.5), "{body}");
    // Mistakes name the part at fault and change nothing.
    for (path, body, want) in [
        ("/v1/admin/campaigns/acme/black-friday", r#"{"rate": "fast"}"#, "rate:"),
        ("/v1/admin/campaigns/acme/black-friday", r#"{"speed": 2}"#, "rate: required"),
        ("/v1/admin/campaigns/ACME/black-friday", r#"{"rate": 2}"#, "tenant:"),
    ] {
        let (status, _, resp) = put(path, body, Some(auth.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {resp}");
        assert!(resp["error"].as_str().unwrap_or_default().starts_with(want), "{path} {body}: {resp}");
    }
    // null clears it: back to the configured speed (none here).
    let (status, _, _) = put("/v1/admin/campaigns/acme/black-friday", r#"{"rate": null}"#, Some(auth.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(h.app.store.campaign_rates(&[("acme", "black-friday")]).await.unwrap(), [None]);
    h.app.shutdown().await;
}

/// Smooth sending through the admin route on the embedded default (memory store, a clock that
/// stands still): a `finish_by` set, its campaign paced, and mistakes named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_finish_by_is_set_and_its_pace_shown_through_the_admin_api() {
    let (h, auth) = start_with_admin().await;
    let put = |path: &'static str, body: String| {
        let (addr, auth) = (h.app.api_addr, auth.clone());
        async move { support::request_with(addr, "PUT", path, &[("authorization", &auth)], body.into()).await }
    };
    let path = "/v1/admin/campaigns/acme/bf";
    let day_ahead = (support::t0() + chrono::Duration::hours(24)).to_rfc3339();
    let (status, _, body) = put(path, format!(r#"{{"finish_by": "{day_ahead}"}}"#)).await;
    assert_eq!((status, body["finish_by"].as_str()), (200, Some(day_ahead.as_str())), "{body}");
    let (_, _, body) = h.admin("GET", path, Some(&auth)).await;
    assert_eq!((&body["finish_by_source"], &body["pending"], &body["pace_jobs_per_second"]), (&json!("admin"), &json!(0), &Value::Null), "{body}");

    // Three jobs: the first goes at once, the other two wait for their turns.
    let jobs: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("bf-{i}"), "tenant": "acme", "channel": "sms", "to": format!("+4915112345{i:03}"), "text": "sale", "campaign": "bf"}))
        .collect();
    let (status, _) = h.post("/v1/jobs", "application/json", serde_json::to_vec(&jobs).unwrap()).await;
    assert_eq!(status, 202);
    h.wait_until("one sent, two deferred", || {
        let r = h.reports();
        r.iter().filter(|r| r.event == EventKind::Deferred).count() == 2 && r.iter().any(|r| r.event == EventKind::Accepted)
    })
    .await;
    let (_, _, body) = h.admin("GET", path, Some(&auth)).await;
    assert_eq!(body["pending"], json!(2), "{body}");
    // The first job took the pace's first slot and booked the next 8 h out (a day for three):
    // the other two share the 16 h from there.
    let pace = body["pace_jobs_per_second"].as_f64().unwrap();
    assert!((1.98 / 57_600.0..2.02 / 57_600.0).contains(&pace), "{body}");
    let projected: chrono::DateTime<chrono::Utc> = body["projected_finish"].as_str().unwrap().parse().unwrap();
    assert!((projected - (support::t0() + chrono::Duration::hours(24))).num_seconds().abs() < 600, "{body}");

    // Mistakes name the field and change nothing.
    let past = (support::t0() - chrono::Duration::seconds(1)).to_rfc3339();
    for (path, body, want) in [
        (path, format!(r#"{{"finish_by": "{past}"}}"#), "finish_by: must be in the future"),
        (path, r#"{"finish_by": "Friday"}"#.to_owned(), "finish_by: not an RFC 3339 time"),
        (path, r#"{"finish_by": 1700000000}"#.to_owned(), "finish_by: must be an RFC 3339 time"),
        (path, format!(r#"{{"rate": 0, "finish_by": "{day_ahead}"}}"#), "rate: must be > 0"),
        ("/v1/admin/campaigns/*/bf", format!(r#"{{"finish_by": "{day_ahead}"}}"#), "tenant: a finish_by is one tenant's"),
        ("/v1/admin/campaigns/acme/b%20f", format!(r#"{{"finish_by": "{day_ahead}"}}"#), "campaign:"),
    ] {
        let (status, _, resp) = put(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {resp}");
        assert!(resp["error"].as_str().unwrap_or_default().starts_with(want), "{path} {body}: {resp}");
    }
    let (_, _, body) = h.admin("GET", path, Some(&auth)).await;
    assert_eq!(body["finish_by"].as_str(), Some(day_ahead.as_str()), "{body}");
    // Cleared: not paced any more (the two waiting jobs go when they come back).
    let (status, _, _) = put(path, r#"{"finish_by": null}"#.to_owned()).await;
    assert_eq!(status, 200);
    let (_, _, body) = h.admin("GET", path, Some(&auth)).await;
    assert_eq!((&body["finish_by"], &body["pace_jobs_per_second"]), (&Value::Null, &Value::Null), "{body}");
    h.app.shutdown().await;
}
