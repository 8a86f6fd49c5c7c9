//! Reports (and DLQ records) to Kafka through one idempotent producer.
//!
//! A report counts as done only when the broker confirms it. A failed record is retried on
//! its own, never with the batch around it, so a partial failure does not publish the
//! confirmed reports twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tracing::warn;

use super::{Sink, SinkError};
use crate::config::KafkaConfig;
use crate::report::Report;

/// The shared producer: reports, DLQ records, and `POST /v1/jobs` in Kafka mode.
pub struct KafkaProducer {
    producer: FutureProducer,
    /// The last broker probe ([`Self::reachable`]) and when it ran: `/readyz` polled by many
    /// checkers costs the broker one metadata request a second, and concurrent asks share it.
    probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// How long a broker probe's answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

impl KafkaProducer {
    pub fn new(cfg: &KafkaConfig) -> Result<Arc<Self>, SinkError> {
        Self::with_message_timeout(cfg, None)
    }

    /// A producer whose records expire in librdkafka after `timeout` (`None`: never, as for
    /// reports, which are retried until confirmed). MO records use one that expires: a
    /// record for a topic the broker never takes would otherwise hold its queue slot for good.
    pub fn with_message_timeout(cfg: &KafkaConfig, timeout: Option<Duration>) -> Result<Arc<Self>, SinkError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", cfg.producer_max_in_flight.to_string())
            // A DLQ record copies the original whatever its size; jobs are tiny otherwise.
            .set("message.max.bytes", (64 * 1024 * 1024).to_string())
            .set("message.timeout.ms", timeout.map_or(0, |t| t.as_millis().max(1)).to_string());
        for (k, v) in &cfg.producer {
            c.set(k, v);
        }
        let producer = c.create().map_err(|e| SinkError::Unavailable(format!("kafka producer: {e}")))?;
        Ok(Arc::new(Self { producer, probe: tokio::sync::Mutex::new(None) }))
    }

    /// Whether a broker answers a metadata request for `topic` within `timeout` and knows the
    /// topic: what `/readyz` says about Kafka. The answer is reused for a second.
    pub async fn reachable(&self, topic: &str, timeout: Duration) -> Result<(), String> {
        let mut last = self.probe.lock().await;
        if let Some((_, r)) = last.as_ref().filter(|(at, _)| at.elapsed() < PROBE_TTL) {
            return r.clone();
        }
        let (producer, topic) = (self.producer.clone(), topic.to_owned());
        // librdkafka's metadata call blocks its thread for up to `timeout`.
        let r = tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| format!("no broker answered within {}: {e}", humantime::format_duration(timeout)))?;
            match md.topics().iter().find(|t| t.name() == topic).and_then(|t| t.error()) {
                Some(e) => Err(format!("topic {topic}: {}", rdkafka::error::RDKafkaErrorCode::from(e))),
                None => Ok(()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("metadata probe failed: {e}")));
        *last = Some((Instant::now(), r.clone()));
        r
    }

    /// Sends records and resolves when the broker confirmed every one; a record that fails
    /// is sent again (alone) until it is confirmed.
    pub async fn send_all(&self, records: &[Record<'_>]) {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut wait = Duration::from_millis(50);
        while !pending.is_empty() {
            let mut inflight = Vec::with_capacity(pending.len());
            for &i in &pending {
                let r = &records[i];
                let mut rec = FutureRecord::to(r.topic).key(r.key).payload(r.payload);
                if !r.headers.is_empty() {
                    let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                    for (k, v) in r.headers {
                        h = h.insert(Header { key: k, value: Some(v.as_bytes()) });
                    }
                    rec = rec.headers(h);
                }
                // `send` waits for room in the producer queue: that is the in-flight bound.
                let fut = self.producer.send_result(rec);
                match fut {
                    Ok(delivery) => inflight.push((i, Some(delivery))),
                    Err((e, _)) => {
                        warn!(error = %e, "producer queue refused a record; retrying");
                        inflight.push((i, None));
                    }
                }
            }
            let mut failed = Vec::new();
            for (i, d) in inflight {
                match d {
                    Some(d) => match d.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => {
                            warn!(error = %e, topic = records[i].topic, "broker refused a record; retrying");
                            failed.push(i);
                        }
                        Err(_) => failed.push(i),
                    },
                    None => failed.push(i),
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }

    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

/// One record to produce.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, String)],
}

pub struct KafkaSink {
    producer: Arc<KafkaProducer>,
    topic: String,
}

impl KafkaSink {
    pub fn new(producer: Arc<KafkaProducer>, topic: String) -> Self {
        Self { producer, topic }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn publish(&self, reports: &[Report]) -> Result<(), SinkError> {
        let json: Vec<String> = reports.iter().map(|r| serde_json::to_string(r).expect("reports serialize")).collect();
        self.publish_json(reports, &json).await
    }

    fn takes_report_json(&self) -> bool {
        true
    }

    async fn publish_json(&self, reports: &[Report], json: &[String]) -> Result<(), SinkError> {
        if json.len() != reports.len() {
            // Zipping would drop reports: encode them here instead.
            return self.publish(reports).await;
        }
        let records: Vec<Record> = reports
            .iter()
            .zip(json)
            .map(|(r, p)| Record { topic: &self.topic, key: r.job_id.as_bytes(), payload: p.as_bytes(), headers: &[] })
            .collect();
        self.producer.send_all(&records).await;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(10)))
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))
    }
}
