//! The webhook mechanism through a real listener and real HTTP requests, with a test-only
//! provider whose webhook takes a shared token and a small JSON body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyper::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::WebhookEvents;
use crate::api::{Api, Ingest};
use crate::clock::SystemClock;
use crate::job::Job;
use crate::pipeline::Intake;
use crate::provider::webhook::{Unauthorized, Verification, Webhook};
use crate::provider::{Accepted, Metered, OnWire, Provider, SendError};
use crate::receipt::{InboundMessage, InboundReceipt, ProviderEvent, ReceiptAck};
use crate::route::Router;
use crate::store::{MemoryStore, PartOutcome, Store};

const TOKEN: &str = "test-webhook-token";

/// A provider that sends nothing and takes `[{"id":..,"status":..}|{"from":..,"to":..,"text":..}]`
/// on its webhook with `x-token: TOKEN`.
struct Hooked {
    name: &'static str,
    channels: Vec<String>,
    hook: Option<TokenHook>,
}

struct TokenHook;

impl Webhook for TokenHook {
    fn max_body_bytes(&self) -> usize {
        1024
    }

    fn verify(&self, query: &str) -> Option<Verification> {
        let mut challenge = None;
        let mut ok = false;
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "challenge" => challenge = Some(v.to_owned()),
                "token" => ok = v == TOKEN,
                _ => {}
            }
        }
        Some(match challenge {
            Some(c) if ok => Verification::Challenge(c),
            _ => Verification::Refused,
        })
    }

    fn authenticate(&self, headers: &HeaderMap, _body: &[u8]) -> Result<(), Unauthorized> {
        match headers.get("x-token") {
            Some(t) if t.as_bytes() == TOKEN.as_bytes() => Ok(()),
            Some(_) => Err(Unauthorized("wrong token")),
            None => Err(Unauthorized("no token")),
        }
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<ProviderEvent>, String> {
        let items: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let s = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_owned).ok_or(format!("{k}: missing"));
        items
            .iter()
            .map(|v| {
                Ok(if v.get("id").is_some() {
                    let outcome = match s(v, "status")?.as_str() {
                        "delivered" => Some(PartOutcome::Delivered),
                        "failed" => Some(PartOutcome::Undelivered),
                        _ => None,
                    };
                    ProviderEvent::Receipt(InboundReceipt {
                        provider: "set by the caller".into(),
                        message_id: s(v, "id")?,
                        outcome,
                        error_code: None,
                        read: false,
                        stored: false,
                        ack: ReceiptAck::default(),
                    })
                } else {
                    ProviderEvent::Inbound(InboundMessage {
                        provider: "set by the caller".into(),
                        channel: "sms".into(),
                        from: s(v, "from")?,
                        to: s(v, "to")?,
                        text: s(v, "text")?,
                        at: None,
                        ack: ReceiptAck::default(),
                    })
                })
            })
            .collect()
    }
}

#[async_trait]
impl Provider for Hooked {
    fn name(&self) -> &str {
        self.name
    }
    fn channels(&self) -> &[String] {
        &self.channels
    }
    fn weight(&self) -> u32 {
        1
    }
    fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn send(&self, _job: &Job, _wire: &dyn OnWire) -> Result<Accepted, SendError> {
        Err(SendError::Unavailable("test provider sends nothing".into()))
    }
    async fn shutdown(&self) {}
    fn webhook(&self) -> Option<&dyn Webhook> {
        self.hook.as_ref().map(|h| h as &dyn Webhook)
    }
}

/// The API on a loopback port with a provider `hooked` (webhook) and `plain` (none).
async fn serve(store: Arc<dyn Store>, events: &mpsc::Sender<ProviderEvent>, stop: &CancellationToken) -> SocketAddr {
    let providers: Vec<Arc<dyn Provider>> = vec![
        Metered::wrap(Arc::new(Hooked { name: "hooked", channels: vec!["chat".into()], hook: Some(TokenHook) })),
        Metered::wrap(Arc::new(Hooked { name: "plain", channels: vec!["chat".into()], hook: None })),
    ];
    let api = Arc::new(Api {
        ingest: Ingest::Embedded(Intake::new(16).0),
        store,
        router: Arc::new(Router::new(providers)),
        clock: Arc::new(SystemClock),
        max_body_bytes: 1 << 20,
        admin: None,
        webhook_events: Some(WebhookEvents(events.downgrade())),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::api::serve(listener, stop.clone(), move |req| api.clone().handle(req)));
    addr
}

/// One request on its own connection; the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    // A refused large body may close the connection before all of it is written.
    let _ = conn.write_all(body).await;
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn webhooks_are_authenticated_before_parsing_and_answered_once_stored() {
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let addr = serve(Arc::new(MemoryStore::new()), &tx, &stop).await;
    let path = "/v1/webhooks/hooked";
    let good = [("x-token", TOKEN)];
    let body = br#"[{"id":"m1","status":"delivered"},{"id":"m1","status":"enroute"},{"from":"+4915100000001","to":"12345","text":"hi"}]"#;

    // Refused before anything in the body is looked at: nothing reaches the receipt path.
    for (method, p, headers, body, want) in [
        ("POST", path, &[][..], &body[..], 401),
        ("POST", path, &[("x-token", "nope")][..], &body[..], 401),
        // Unauthenticated and malformed: still 401, the body is never parsed.
        ("POST", path, &[("x-token", "nope")][..], &b"{not json"[..], 401),
        ("POST", path, &good[..], &b"{not json"[..], 400),
        ("POST", path, &good[..], &[b' '; 2048][..], 413),
        ("POST", "/v1/webhooks/nobody", &good[..], &body[..], 404),
        ("POST", "/v1/webhooks/plain", &good[..], &body[..], 404),
        ("PUT", path, &good[..], &body[..], 405),
        ("GET", "/v1/webhooks/plain?challenge=x", &[][..], &b""[..], 404),
        ("GET", &format!("{path}?challenge=abc&token=wrong"), &[][..], &b""[..], 403),
    ] {
        let (status, answer) = request(addr, method, p, headers, body).await;
        assert_eq!(status, want, "{method} {p}: {answer}");
        assert!(rx.try_recv().is_err(), "{method} {p} ({want}) reached the receipt path");
    }
    let (status, answer) = request(addr, "GET", &format!("{path}?challenge=abc123&token={TOKEN}"), &[], b"").await;
    assert_eq!((status, answer.as_str()), (200, "abc123"));

    // Accepted: the answer waits until the receipt path says it has what was stored.
    let acker = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(rx.recv().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for ev in &got {
            match ev {
                ProviderEvent::Receipt(r) => r.ack.done(),
                ProviderEvent::Inbound(m) => m.ack.done(),
            }
        }
        got
    });
    let started = Instant::now();
    let (status, answer) = request(addr, "POST", path, &good, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300), "answered before the events were stored");
    let got = acker.await.unwrap();
    match &got[..] {
        [ProviderEvent::Receipt(a), ProviderEvent::Receipt(b), ProviderEvent::Inbound(m)] => {
            assert_eq!((&*a.provider, a.message_id.as_str(), a.outcome), ("hooked", "m1", Some(PartOutcome::Delivered)));
            assert_eq!((&*b.provider, b.outcome), ("hooked", None));
            assert_eq!((&*m.provider, m.from.as_str(), m.text.as_str()), ("hooked", "+4915100000001", "hi"));
        }
        other => panic!("{other:?}"),
    }

    // Once the receipt path is gone (shutdown), a webhook is told to come again.
    drop(tx);
    let (status, _) = request(addr, "POST", path, &good, body).await;
    assert_eq!(status, 503);
    stop.cancel();
}

#[tokio::test]
async fn a_webhook_stop_reply_reaches_the_opt_out_list_through_the_correlator() {
    use crate::receipt::correlate::Correlator;
    use crate::receipt::inbound::InboundOut;
    use crate::receipt::opt_out::StopReplies;

    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = crate::config::parse("[opt_out]\nsenders = { \"12345\" = \"acme\" }\n").unwrap();
    let sink = Arc::new(crate::sink::jsonl::JsonlSink::open(false, None).await.unwrap());
    let reporter = Arc::new(crate::pipeline::Reporter::new(sink, store.clone(), Duration::from_secs(60)));
    let (tx, rx) = mpsc::channel(16);
    let correlator = Correlator {
        clock: Arc::new(SystemClock),
        store: store.clone(),
        reporter,
        stop_replies: Arc::new(StopReplies::new(&cfg.opt_out, store.clone())),
        inbound: Arc::new(InboundOut::Log),
        reads: Default::default(),
        untracked: Default::default(),
    };
    let running = tokio::spawn(correlator.run(rx));
    let stop = CancellationToken::new();
    let addr = serve(store.clone(), &tx, &stop).await;

    let body = br#"[{"from":"+4915100000001","to":"12345","text":"STOP"},{"id":"nobody-sent-this","status":"delivered"}]"#;
    let (status, answer) = request(addr, "POST", "/v1/webhooks/hooked", &[("x-token", TOKEN)], body).await;
    assert_eq!(status, 200, "{answer}");
    // Answered only once stored: the opt-out is there already.
    let listed = store.opted_out(&[("acme", "sms", "+4915100000001")]).await.unwrap();
    assert_eq!(listed, [true]);

    stop.cancel();
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(15), running).await;
}
