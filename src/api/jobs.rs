//! `POST /v1/jobs` (one job, a JSON array or NDJSON, split by `items.rs`, fed to the
//! pipeline's intake or the jobs topic) and `GET /v1/jobs/{id}` (a job's recorded events).

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::items::{self, SplitError};
use super::listener::{self, Limits};
use super::{body_error, json_resp, percent_decode, Api, Ingest, Resp};
use crate::sink::kafka::Record;
use crate::telemetry;

impl Api {
    pub(super) async fn get_job(&self, raw_id: &str) -> Resp {
        let id = percent_decode(raw_id);
        match self.store.events(&id).await {
            Ok(events) if events.is_empty() => json_resp(StatusCode::NOT_FOUND, json!({"error": "no events recorded for this job id", "job_id": id})),
            Ok(events) => json_resp(StatusCode::OK, json!({"job_id": id, "events": events})),
            Err(e) => json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e.to_string()})),
        }
    }

    pub(super) async fn post_jobs(&self, req: Request<Incoming>) -> Resp {
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
            let records: Vec<Record> =
                to_publish.iter().map(|(key, payload)| Record { topic, partition: None, key: key.as_bytes(), payload, headers: &[] }).collect();
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
