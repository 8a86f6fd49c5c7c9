//! The HTTP API: `POST /v1/jobs` ingest, `GET /v1/jobs/{id}`, `/healthz`, `/readyz`, the
//! admin API under `/v1/admin/` (in `admin.rs`); and the separate `/metrics` listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::admin::Admin;
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

pub(super) fn json_resp(status: StatusCode, v: Value) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("static response parts")
}

/// Serves `handler` on `listener` until `stop`; in-progress requests finish first.
pub async fn serve<F, Fut>(listener: TcpListener, stop: CancellationToken, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => { warn!(error = %e, "accept failed"); continue; }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!(error = %e, "connection ended with error") },
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    conns.close();
    conns.wait().await;
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
        if let Err(e) = self.store.ping().await {
            problems.push(format!("store: {e}"));
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
        let too_big = || json_resp(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": format!("body: larger than {} bytes", self.max_body_bytes)}));
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            metrics::counter!(telemetry::JOBS_REJECTED_AT_INGEST_TOTAL, "source" => "http", "reason" => "body_too_large").increment(1);
            return too_big();
        }
        let ndjson = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-ndjson") || v.starts_with("application/jsonl"));
        let body = match Limited::new(req.into_body(), self.max_body_bytes).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                metrics::counter!(telemetry::JOBS_REJECTED_AT_INGEST_TOTAL, "source" => "http", "reason" => "body_too_large").increment(1);
                return too_big();
            }
            Err(e) => return json_resp(StatusCode::BAD_REQUEST, json!({"error": format!("body: cannot be read: {e}")})),
        };
        let items = match split_items(&body, ndjson) {
            Ok(items) => items,
            Err(msg) => return json_resp(StatusCode::BAD_REQUEST, json!({"error": msg})),
        };
        let now = self.clock.now();
        let mut accepted = 0usize;
        let mut rejected = Vec::new();
        let mut to_publish: Vec<(String, Vec<u8>)> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let parsed = item.map_err(|e| (None, e)).and_then(|v| {
                // Only Kafka needs the job's bytes again; the embedded pipeline takes the job.
                let raw = matches!(self.ingest, Ingest::Kafka { .. }).then(|| serde_json::to_vec(&v).expect("a parsed value serializes"));
                crate::job::from_value(v, now).map(|j| (j, raw)).map_err(|e| (e.id().map(str::to_owned), e.to_string()))
            });
            match parsed {
                Ok((job, raw)) => match &self.ingest {
                    Ingest::Embedded(intake) => {
                        if intake.submit(job, crate::pipeline::Origin::Record { src: None }, None).await.is_err() {
                            return json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "shutting down", "accepted": accepted, "rejected": rejected}));
                        }
                        accepted += 1;
                    }
                    // Keyed by recipient so one recipient's jobs keep their order (CONTRACT.md).
                    Ingest::Kafka { .. } => to_publish.push((job.to, raw.unwrap_or_default())),
                },
                Err((id, error)) => {
                    metrics::counter!(telemetry::JOBS_REJECTED_AT_INGEST_TOTAL, "source" => "http", "reason" => "invalid").increment(1);
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

/// One JSON job, a JSON array of jobs, or NDJSON (one per line; a bad line is one bad item).
/// A body that is not one JSON value but has several lines is read as NDJSON, whatever its
/// content type said.
fn split_items(body: &[u8], ndjson: bool) -> Result<Vec<Result<Value, String>>, String> {
    if !ndjson {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => return Ok(items.into_iter().map(Ok).collect()),
            Ok(v @ Value::Object(_)) => return Ok(vec![Ok(v)]),
            Ok(other) => return Err(format!("body: must be a job object, an array of jobs, or NDJSON; got {}", short(&other))),
            Err(e) if !body.contains(&b'\n') => return Err(format!("body: not JSON: {e}")),
            Err(_) => {}
        }
    }
    Ok(body
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| serde_json::from_slice::<Value>(line).map_err(|e| format!("not JSON: {e}")))
        .collect())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 { format!("{}...", &s[..s.floor_char_boundary(40)]) } else { s }
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
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
