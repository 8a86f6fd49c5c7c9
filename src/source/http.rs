//! The HTTP API: `POST /v1/jobs` ingest, `GET /v1/jobs/{id}`, `/healthz`, `/readyz`, the
//! admin API under `/v1/admin/` (in `admin.rs`); and the separate `/metrics` listener.
//! Connections, timeouts and body reads are `listener.rs`'s; splitting a body into jobs is
//! `items.rs`'s.

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

use super::admin::Admin;
use super::items::{self, SplitError};
use super::listener::{self, BodyError, Limits};
use crate::clock::Clock;
use crate::pipeline::Intake;
use crate::sink::kafka::{KafkaProducer, Record};
use crate::route::Router;
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
}

pub(super) type Resp = Response<Full<Bytes>>;

/// How long `/readyz` waits for a Kafka broker's metadata: below the probe timeouts of
/// load balancers and orchestrators (typically 1-5 s), above a healthy broker's answer.
const KAFKA_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);

pub(super) fn json_resp(status: StatusCode, v: Value) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("static response parts")
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
                None => super::admin::disabled(),
            },
            (_, "/v1/jobs") => json_resp(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST"})),
            _ => json_resp(StatusCode::NOT_FOUND, json!({"error": format!("no route for {path}")})),
        }
    }

    async fn readyz(&self) -> Resp {
        let mut problems = Vec::new();
        // With Kafka, its broker must answer too: the jobs topic's metadata, through the
        // producer POST /v1/jobs publishes with (reports and DLQ records share it).
        let kafka = async {
            match &self.ingest {
                Ingest::Kafka { producer, topic } => producer.reachable(topic, KAFKA_PROBE_TIMEOUT).await.err(),
                Ingest::Embedded(_) => None,
            }
        };
        let (store, kafka) = tokio::join!(self.store.ping(), kafka);
        if let Err(e) = store {
            problems.push(format!("store: {e}"));
        }
        if let Some(e) = kafka {
            problems.push(format!("kafka: {e}"));
        }
        for c in self.router.channels_down() {
            problems.push(format!("channel {c}: no provider connected"));
        }
        // Every provider's binds, up or not, for people: a provider that is down while another
        // serves its channels shows here without making the instance unready.
        let providers: serde_json::Map<String, Value> =
            self.router.providers().iter().map(|p| (p.name().to_owned(), json!(p.status()))).collect();
        if problems.is_empty() {
            json_resp(StatusCode::OK, json!({"status": "ready", "providers": providers}))
        } else {
            json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not ready", "problems": problems, "providers": providers}))
        }
    }

    async fn get_job(&self, raw_id: &str) -> Resp {
        let id = percent_decode(raw_id);
        match self.store.events(&id).await {
            Ok(events) if events.is_empty() => json_resp(StatusCode::NOT_FOUND, json!({"error": "no events recorded for this job id", "job_id": id})),
            Ok(events) => json_resp(StatusCode::OK, json!({"job_id": id, "events": events})),
            Err(e) => json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e.to_string()})),
        }
    }

    async fn post_jobs(&self, req: Request<Incoming>) -> Resp {
        let refused = |reason: &'static str| {
            metrics::counter!(telemetry::JOBS_REJECTED_AT_INGEST_TOTAL, "source" => "http", "reason" => reason).increment(1);
        };
        let ndjson = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-ndjson") || v.starts_with("application/jsonl"));
        let max_jobs = Limits::of(&req).max_jobs_per_request;
        // A declared length over the limit is refused before a byte of the body is read.
        let body = match listener::read_body(req, self.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return body_error(e, refused),
        };
        let items = match items::split(&body, ndjson, max_jobs) {
            Ok(items) => items,
            Err(SplitError::TooMany { max }) => {
                refused("too_many_jobs");
                return json_resp(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": format!("body: more than {max} jobs in one request"), "max_jobs_per_request": max}),
                );
            }
            Err(SplitError::Malformed(msg)) => return json_resp(StatusCode::BAD_REQUEST, json!({"error": msg})),
        };
        let now = self.clock.now();
        let mut accepted = 0usize;
        let mut rejected = Vec::new();
        let mut to_publish: Vec<(String, &[u8])> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let item = item.trim_ascii();
            // Only Kafka needs the job's bytes again: the item as the client sent it.
            let parsed = parse_item(item, now).map(|job| (job, item));
            match parsed {
                Ok((job, raw)) => match &self.ingest {
                    Ingest::Embedded(intake) => {
                        if intake.submit(job, crate::pipeline::Origin::Record { src: None }, None).await.is_err() {
                            return json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "shutting down", "accepted": accepted, "rejected": rejected}));
                        }
                        accepted += 1;
                    }
                    // Keyed by recipient so one recipient's jobs keep their order (CONTRACT.md).
                    Ingest::Kafka { .. } => to_publish.push((job.to, raw)),
                },
                Err((id, error)) => {
                    refused("invalid");
                    rejected.push(json!({"index": index, "id": id, "error": error}));
                }
            }
        }
        if let Ingest::Kafka { producer, topic } = &self.ingest {
            let records: Vec<Record> = to_publish
                .iter()
                .map(|(key, payload)| Record { topic, partition: None, key: key.as_bytes(), payload, headers: &[] })
                .collect();
            producer.send_all(&records).await;
            accepted += records.len();
        }
        metrics::counter!(telemetry::JOBS_CONSUMED_TOTAL, "source" => "http").increment(accepted as u64);
        json_resp(StatusCode::ACCEPTED, json!({"accepted": accepted, "rejected": rejected}))
    }
}

/// One item of a body as a job, or the id (when it has one) and why not. An item too large
/// to be a valid job is refused before its JSON tree is built: the tree of a few MiB of
/// JSON takes ten times that in memory.
pub(crate) fn parse_item(item: &[u8], now: chrono::DateTime<chrono::Utc>) -> Result<crate::job::Job, (Option<String>, String)> {
    use crate::job::JOB_MAX_BYTES;
    if item.len() > JOB_MAX_BYTES {
        return Err((None, format!("job: larger than {JOB_MAX_BYTES} bytes ({})", item.len())));
    }
    let v: Value = serde_json::from_slice(item).map_err(|e| (None, format!("not JSON: {e}")))?;
    crate::job::from_value(v, now).map_err(|e| (e.id().map(str::to_owned), e.to_string()))
}

/// The answer to a body that was not read: too large, too slow, or cut off.
pub(super) fn body_error(e: BodyError, refused: impl Fn(&'static str)) -> Resp {
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
