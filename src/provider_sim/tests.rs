//! The simulator over real loopback HTTP: sends answered as the Cloud API answers them, each
//! fault as Meta documents it, statuses pushed in order, signed, batched and retried to a
//! webhook receiver in this test (checked with our own webhook code), forged twins, and the
//! bounded queue.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::*;
use crate::provider::webhook::Webhook;
use crate::provider::whatsapp_cloud::webhook::CloudWebhook;
use crate::receipt::ProviderEvent;

const TOKEN: &str = "sim-token";
const SECRET: &str = "sim-app-secret";

/// A webhook receiver: checks each POST with our Cloud API webhook (signature, then parse),
/// answers 401 to a bad signature, 500 to the first `fail_first` good ones, else 200.
#[derive(Default)]
struct Receiver {
    fail_first: AtomicUsize,
    /// Each POST it took: (message id, status) in body order.
    taken: Mutex<Vec<Vec<(String, String)>>>,
    refused: AtomicUsize,
    failed: AtomicUsize,
}

impl Receiver {
    async fn serve(self: Arc<Self>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hook = Arc::new(CloudWebhook::new(SECRET.as_bytes(), None, "whatsapp".into()));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (me, hook) = (self.clone(), hook.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| me.clone().take(hook.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        addr
    }

    async fn take(self: Arc<Self>, hook: Arc<CloudWebhook>, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let headers = req.headers().clone();
        let body = req.into_body().collect().await?.to_bytes();
        let status = if hook.authenticate(&headers, &body).is_err() {
            self.refused.fetch_add(1, SeqCst);
            401
        } else if self.fail_first.load(SeqCst) > 0 {
            self.fail_first.fetch_sub(1, SeqCst);
            self.failed.fetch_add(1, SeqCst);
            500
        } else {
            let raw: Value = serde_json::from_slice(&body).unwrap();
            let statuses = raw["entry"][0]["changes"][0]["value"]["statuses"].as_array().unwrap();
            // Every status is one our webhook reads as a receipt.
            assert_eq!(hook.parse(&body).unwrap().iter().filter(|e| matches!(e, ProviderEvent::Receipt(_))).count(), statuses.len());
            let items = statuses.iter().map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned())).collect();
            self.taken.lock().unwrap().push(items);
            200
        };
        Ok(Response::builder().status(status).body(Full::new(Bytes::from_static(b"{}"))).unwrap())
    }

    fn statuses_of(&self, id: &str) -> Vec<String> {
        self.taken.lock().unwrap().iter().flatten().filter(|(i, _)| i == id).map(|(_, s)| s.clone()).collect()
    }
}

fn every(n: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(n)
}

async fn sim(tweak: impl FnOnce(&mut ProviderSimConfig), webhook: Option<SocketAddr>) -> ProviderSimHandle {
    let mut cfg = ProviderSimConfig {
        token: Some(TOKEN.into()),
        app_secret: SECRET.into(),
        webhook_url: webhook.map(|a| format!("http://{a}/v1/webhooks/wa")),
        status_delay: Duration::from_millis(20),
        push_retry_backoff: Duration::from_millis(10),
        record_messages: true,
        ..ProviderSimConfig::default()
    };
    tweak(&mut cfg);
    ProviderSim::start(SimMode::Whatsapp, cfg).await.unwrap()
}

/// One send to the simulator: HTTP status and JSON answer.
async fn send(sim: &ProviderSimHandle, to: &str, token: &str) -> (u16, Value) {
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    let stream = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/v23.0/106540352242922/messages")
        .header("host", "graph.facebook.com")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap())
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn each_fault_answers_as_meta_documents_it() {
    let s = sim(
        |c| {
            c.throttle_every = every(6);
            c.pair_limit_every = every(5);
            c.server_error_every = every(4);
            c.slow_every = every(3);
            c.slow_answer = Duration::from_millis(300);
        },
        None,
    )
    .await;
    let (status, ok) = send(&s, "4915100000001", TOKEN).await;
    assert_eq!(status, 200, "{ok}");
    let wamid = ok["messages"][0]["id"].as_str().unwrap();
    assert!(wamid.starts_with("wamid."), "{ok}");
    assert_eq!((ok["messages"][0]["message_status"].as_str(), ok["contacts"][0]["wa_id"].as_str()), (Some("accepted"), Some("4915100000001")));
    assert_eq!(send(&s, "4915100000002", TOKEN).await.0, 200);
    let started = std::time::Instant::now();
    assert_eq!(send(&s, "4915100000003", TOKEN).await.0, 200, "3rd: taken, answered late");
    assert!(started.elapsed() >= Duration::from_millis(300));
    for (to, http, code) in [("4915100000004", 500, 131000), ("4915100000005", 400, 131056), ("4915100000006", 400, 130429)] {
        let (status, e) = send(&s, to, TOKEN).await;
        assert_eq!((status, e["error"]["code"].as_i64(), e["error"]["type"].as_str()), (http, Some(code), Some("OAuthException")), "{e}");
        assert!(e["error"]["message"].as_str().unwrap().starts_with(&format!("(#{code}) ")), "{e}");
        assert!(e["error"]["error_data"]["details"].is_string() && e["error"]["fbtrace_id"].is_string(), "{e}");
    }
    let (status, e) = send(&s, "4915100000007", "a stolen token").await;
    assert_eq!((status, e["error"]["code"].as_i64()), (401, Some(190)));
    let st = s.stats();
    assert_eq!((st.taken, st.slow, st.server_errors, st.pair_limited, st.throttled, st.bad_token), (3, 1, 1, 1, 1, 1), "{st:?}");
    let taken: Vec<String> = s.messages().into_iter().filter(|m| !m.id.is_empty()).map(|m| m.recipient).collect();
    assert_eq!(taken, ["4915100000001", "4915100000002", "4915100000003"], "refused ones were not taken");
    let answers: Vec<&str> = s.messages().iter().map(|m| m.answer).collect();
    assert_eq!(answers, ["taken", "taken", "taken_slowly", "server_error", "pair_limit", "throttled"], "bad tokens are not sends");
    s.shutdown().await;
}

#[tokio::test]
async fn statuses_come_in_order_signed_batched_and_retried() {
    let rx = Arc::new(Receiver::default());
    rx.fail_first.store(2, SeqCst);
    let addr = rx.clone().serve().await;
    let s = sim(
        |c| {
            c.webhook_batch = 3;
            c.outcome_mix = "read=1,failed=1,delivered=1".into();
        },
        Some(addr),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let (status, ok) = send(&s, &format!("49151000001{i:02}"), TOKEN).await;
        assert_eq!(status, 200);
        ids.push(ok["messages"][0]["id"].as_str().unwrap().to_owned());
    }
    wait_until("every message's statuses", || s.stats().live == 0).await;
    for id in &ids {
        let got = rx.statuses_of(id);
        let ok = [vec!["sent", "delivered", "read"], vec!["sent", "delivered"], vec!["sent", "failed"]].iter().any(|want| got == *want);
        assert!(ok, "{id}: {got:?}");
    }
    assert!(rx.taken.lock().unwrap().iter().all(|post| post.len() <= 3), "at most webhook_batch per POST");
    let st = s.stats();
    assert_eq!((rx.failed.load(SeqCst), st.webhook_retries, st.statuses_dropped), (2, 2, 0), "{st:?}");
    assert_eq!(st.sent, 12, "{st:?}");
    assert_eq!(st.delivered + st.failed, 12, "{st:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn forged_twins_are_signed_with_another_secret() {
    let rx = Arc::new(Receiver::default());
    let addr = rx.clone().serve().await;
    let s = sim(|c| c.forge_every = every(2), Some(addr)).await;
    let (_, ok) = send(&s, "4915100000201", TOKEN).await;
    let id = ok["messages"][0]["id"].as_str().unwrap().to_owned();
    wait_until("statuses pushed", || s.stats().live == 0).await;
    // sent, delivered, read: three genuine POSTs, one forged twin after the second.
    assert_eq!(rx.statuses_of(&id), ["sent", "delivered", "read"]);
    let st = s.stats();
    assert_eq!((st.webhook_posts, st.forged_refused, st.forged_taken, rx.refused.load(SeqCst)), (3, 1, 0, 1), "{st:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_fills_the_bounded_queue_and_sends_are_refused() {
    // Nothing listens there: every POST fails to connect.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let s = sim(
        |c| {
            c.queue_capacity = 2;
            c.push_retries = 1;
        },
        Some(dead),
    )
    .await;
    assert_eq!(send(&s, "4915100000301", TOKEN).await.0, 200);
    assert_eq!(send(&s, "4915100000302", TOKEN).await.0, 200);
    let (status, e) = send(&s, "4915100000303", TOKEN).await;
    assert_eq!((status, e["error"]["code"].as_i64()), (503, Some(131016)), "{e}");
    // Given up on after the retries: room again, and the loss is counted.
    wait_until("statuses dropped", || s.stats().statuses_dropped == 2).await;
    assert_eq!(s.stats().live, 0);
    assert_eq!(send(&s, "4915100000303", TOKEN).await.0, 200);
    s.shutdown().await;
}
