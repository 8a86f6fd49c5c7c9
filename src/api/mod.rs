//! The HTTP API: one listener, one router ([`Api::handle`]), and the separate `/metrics`
//! listener.
//!
//! - [`listener`]: connections, the connection cap, header/idle/body timeouts, body reads.
//! - `jobs`: `POST /v1/jobs` ingest and `GET /v1/jobs/{id}`; `items` splits a body into jobs.
//! - `health`: `/healthz`, `/readyz`.
//! - [`admin`]: `/v1/admin/...` behind the bearer token.
//! - [`webhooks`]: `/v1/webhooks/{provider}` for every provider with a webhook.
//!
//! Nothing below the API imports it: the pipeline, sources and providers never see HTTP routes.

pub mod admin;
mod health;
pub(crate) mod items;
pub(crate) mod jobs;
pub mod listener;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::admin::Admin;
use self::listener::{BodyError, Limits};
use crate::clock::Clock;
use crate::pipeline::Intake;
use crate::route::Router;
use crate::sink::kafka::KafkaProducer;
use crate::store::Store;
use crate::telemetry;

/// Where `POST /v1/jobs` puts valid jobs.
pub enum Ingest {
    /// Straight into this process's pipeline (no Kafka configured).
    Embedded(Intake),
    /// Onto the jobs topic, answered only once the broker confirms; the Kafka source reads
    /// them back like any producer's jobs.
    Kafka { producer: Arc<KafkaProducer>, topic: String },
}

pub struct Api {
    pub ingest: Ingest,
    pub store: Arc<dyn Store>,
    pub router: Arc<Router>,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// `None` without `[admin]` in config: `/v1/admin/...` answers 404.
    pub admin: Option<Admin>,
    /// Where `/v1/webhooks/{provider}` hands receipts and inbound messages; `None`: `503`.
    pub webhook_events: Option<webhooks::WebhookEvents>,
}

pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) fn json_resp(status: StatusCode, v: Value) -> Resp {
    Response::builder().status(status).header(CONTENT_TYPE, "application/json").body(Full::new(Bytes::from(v.to_string()))).expect("static response parts")
}

/// Serves `handler` on `listener` under the default `[server]` limits until `stop`; see
/// [`listener::serve_with`] to give the configured ones.
pub async fn serve<F, Fut>(listener: TcpListener, stop: CancellationToken, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    listener::serve_with(listener, Limits::default(), stop, handler).await
}

pub async fn serve_metrics(listener: TcpListener, stop: CancellationToken) {
    serve(listener, stop, |req: Request<Incoming>| async move {
        if req.uri().path() == "/metrics" {
            Response::builder()
                .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(telemetry::prometheus().render())))
                .expect("static response parts")
        } else {
            json_resp(StatusCode::NOT_FOUND, json!({"error": "only /metrics here"}))
        }
    })
    .await
}

impl Api {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::POST, "/v1/jobs") => self.post_jobs(req).await,
            (&Method::GET, p) if p.starts_with("/v1/jobs/") => self.get_job(&p["/v1/jobs/".len()..]).await,
            (&Method::GET, "/healthz") => json_resp(StatusCode::OK, json!({"status": "ok"})),
            (&Method::GET, "/readyz") => self.readyz().await,
            (_, p) if p.starts_with("/v1/admin/") => match &self.admin {
                Some(admin) => admin.handle(req).await,
                None => admin::disabled(),
            },
            (_, p) if p.starts_with("/v1/webhooks/") => self.webhook(req, &p["/v1/webhooks/".len()..]).await,
            (_, "/v1/jobs") => json_resp(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST"})),
            _ => json_resp(StatusCode::NOT_FOUND, json!({"error": format!("no route for {path}")})),
        }
    }
}

/// The answer to a body that was not read: too large, too slow, or cut off.
pub(crate) fn body_error(e: BodyError, refused: impl Fn(&'static str)) -> Resp {
    match e {
        BodyError::TooLarge { max } => {
            refused("body_too_large");
            json_resp(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": format!("body: larger than {max} bytes"), "max_body_bytes": max}))
        }
        BodyError::TooSlow { timeout } => {
            refused("body_timeout");
            let t = humantime::format_duration(timeout).to_string();
            json_resp(StatusCode::REQUEST_TIMEOUT, json!({"error": format!("body: not received in full within {t}"), "body_timeout": t}))
        }
        BodyError::Broken(e) => json_resp(StatusCode::BAD_REQUEST, json!({"error": format!("body: cannot be read: {e}")})),
    }
}

/// `%XX` to the byte it names; a `%` not followed by two hex digits stays as it is. Bytes,
/// not `&s[..]` slices: the two after a `%` may be half of a multi-byte character (fuzzing
/// found `%aé` panicking), and `from_str_radix` would also take `%+1`.
pub(crate) fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let [b'%', hi, lo, ..] = b[i..] {
            if let (Some(hi), Some(lo)) = (hex(hi), hex(lo)) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds a listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
