//! The Bot API stand-in `tests/telegram.rs` sends to: a real HTTP server in the test process,
//! answering `sendMessage` as Telegram documents, per chat id from a script.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Shaped like @BotFather's: the secret half is 35 characters.
pub const TOKEN: &str = "7012345678:AAH-test_Secret0123456789abcdefghijkl";
pub const SECRET: &str = "AAH-test_Secret0123456789abcdefghijkl";
/// What the stand-in answers for `@acme_news`.
pub const CHANNEL_ID: i64 = -1001111111111;

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `{"ok":false,...}` with this `error_code` (and HTTP status), description, `retry_after`.
    Error(u16, &'static str, Option<u64>),
    /// 400: the group became a supergroup with this id.
    Migrated(i64),
    /// A status without Telegram's body (a proxy in between).
    Bare(u16),
    /// `ok` but no message to name it by.
    NoId,
    /// No answer for this long.
    Slow(Duration),
    /// Takes the message, answering after this long.
    Late(Duration),
}

/// What the stand-in saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub chat: String,
    pub text: String,
    pub parse_mode: Option<String>,
    /// When it arrived, and when (if it was one) the 429 was answered.
    pub at: Instant,
    pub throttled: bool,
    /// The id answered, when it took the message.
    pub message_id: Option<i64>,
}

/// The Bot API stand-in: per chat id a queue of scripted replies; an empty queue takes the
/// message (`ok` with the chat's next message id).
#[derive(Default)]
pub struct BotApi {
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    seen: Mutex<Vec<Seen>>,
    next_id: AtomicI64,
}

impl BotApi {
    pub fn script(&self, chat: &str, replies: &[Reply]) {
        self.script.lock().unwrap().entry(chat.to_owned()).or_default().extend(replies.iter().cloned());
    }

    pub fn seen_for(&self, chat: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.chat == chat).cloned().collect()
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let at = Instant::now();
        let path = req.uri().path().to_owned();
        let body: Value = serde_json::from_slice(&req.into_body().collect().await?.to_bytes()).unwrap_or(Value::Null);
        let chat = match &body["chat_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut reply = self.script.lock().unwrap().get_mut(&chat).and_then(VecDeque::pop_front);
        if let Some(Reply::Late(d)) = reply {
            tokio::time::sleep(d).await;
            reply = None;
        }
        let mut seen = Seen {
            path,
            chat: chat.clone(),
            text: body["text"].as_str().unwrap_or_default().to_owned(),
            parse_mode: body["parse_mode"].as_str().map(str::to_owned),
            at,
            throttled: false,
            message_id: None,
        };
        let refused = |code: u16, description: &str| json!({"ok": false, "error_code": code, "description": description});
        let (status, answer) = match reply {
            None => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                seen.message_id = Some(id);
                let chat_id = if chat.starts_with('@') { json!(CHANNEL_ID) } else { json!(chat.parse::<i64>().unwrap()) };
                let ok = json!({"ok": true, "result": {"message_id": id, "from": {"id": 7012345678i64, "is_bot": true, "first_name": "Acme"},
                    "chat": {"id": chat_id, "type": "private"}, "date": 1795242600, "text": seen.text}});
                (200, ok.to_string())
            }
            Some(Reply::Error(code, description, retry_after)) => {
                let mut e = refused(code, description);
                if let Some(s) = retry_after {
                    e["parameters"] = json!({"retry_after": s});
                }
                seen.throttled = code == 429;
                (code, e.to_string())
            }
            Some(Reply::Migrated(to)) => {
                let mut e = refused(400, "Bad Request: group chat was upgraded to a supergroup chat");
                e["parameters"] = json!({"migrate_to_chat_id": to});
                (400, e.to_string())
            }
            Some(Reply::Bare(status)) => (status, "<html>upstream error</html>".to_owned()),
            Some(Reply::NoId) => (200, r#"{"ok":true,"result":true}"#.to_owned()),
            Some(Reply::Late(_)) => unreachable!("answered as taken above"),
            Some(Reply::Slow(d)) => {
                self.seen.lock().unwrap().push(seen);
                tokio::time::sleep(d).await;
                return Ok(Response::builder().status(504).body(Full::new(Bytes::new())).unwrap());
            }
        };
        self.seen.lock().unwrap().push(seen);
        Ok(Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(answer))).unwrap())
    }
}

/// Serves `api` over plain HTTP on a free port.
pub async fn serve(api: Arc<BotApi>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let api = api.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| api.clone().answer(req));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    addr
}
