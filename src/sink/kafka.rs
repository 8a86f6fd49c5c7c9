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

/// How long a record waits in librdkafka for others to share its produce request. Each job
/// publishes in several small rounds (its `accepted` after tracking, its final after the
/// receipt, a handed-over final with a later batch), so at 5 ms (librdkafka's default) the
/// broker got many small requests: 15 ms cut Tansu's CPU per job by about a third, and
/// sendgate's, Redis's and Tansu's together by 7% (docs/performance.md, session 15), for at
/// most 15 ms more per report.
/// `[kafka.producer] "linger.ms"` overrides it.
const LINGER_MS: &str = "15";

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
        let producer = client_config(cfg, timeout).create().map_err(|e| SinkError::Unavailable(format!("kafka producer: {e}")))?;
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
        self.send_all_to(records, |_, _| {}).await
    }

    /// [`KafkaProducer::send_all`], telling `delivered` each record's partition and offset.
    pub async fn send_all_to(&self, records: &[Record<'_>], mut delivered: impl FnMut(i32, i64)) {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut attempts = crate::retry::Attempts::new("produce", records.len());
        while !pending.is_empty() {
            let mut inflight = Vec::with_capacity(pending.len());
            for &i in &pending {
                let r = &records[i];
                let mut rec = FutureRecord::to(r.topic).key(r.key).payload(r.payload);
                if let Some(p) = r.partition {
                    rec = rec.partition(p);
                }
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
                        Ok(Ok(at)) => delivered(at.partition, at.offset),
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
                let wait = attempts.failed(&format_args!("{} records not confirmed by the broker", pending.len()));
                wait.await;
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
    /// `None`: the producer's partitioner picks it from the key.
    pub partition: Option<i32>,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, String)],
}

/// The reports topic as the sink writes it: each report goes to the partition its job id
/// names ([`partition_for`]), so that whoever must find out whether a job's final is already
/// in the topic (after its publisher died: `sink::ledger`) knows where to look. The partition
/// count is asked of the broker on first use, not at start: a daemon whose broker is down still
/// starts (and says so on `/readyz`).
pub struct ReportsTopic {
    pub name: String,
    producer: Arc<KafkaProducer>,
    partitions: tokio::sync::OnceCell<i32>,
}

impl ReportsTopic {
    pub fn new(producer: Arc<KafkaProducer>, name: &str) -> Arc<Self> {
        Arc::new(Self { name: name.to_owned(), producer, partitions: tokio::sync::OnceCell::new() })
    }

    /// The topic's partition count, asked of the broker until it answers (once per process).
    pub async fn partitions(&self) -> i32 {
        *self
            .partitions
            .get_or_init(|| async {
                crate::retry::until_ok("reports_topic_metadata", 1, || async {
                    let (client, topic) = (self.producer.producer.clone(), self.name.clone());
                    tokio::task::spawn_blocking(move || {
                        let md = client.client().fetch_metadata(Some(&topic), Duration::from_secs(5)).map_err(|e| e.to_string())?;
                        let n = md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
                        if n == 0 {
                            return Err(format!("topic {topic} has no partitions (does it exist?)"));
                        }
                        Ok(n as i32)
                    })
                    .await
                    .map_err(|e| e.to_string())?
                })
                .await
            })
            .await
    }

    pub async fn partition_for(&self, job_id: &str) -> i32 {
        partition_for(job_id.as_bytes(), self.partitions().await)
    }
}

/// The partition of `key` among `n`: Kafka's own default (Java client) choice, murmur2 of the
/// key, positive, modulo `n`; so a report lands where any Kafka client would put its key.
pub fn partition_for(key: &[u8], n: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % n.max(1) as u32) as i32
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

pub struct KafkaSink {
    producer: Arc<KafkaProducer>,
    topic: Arc<ReportsTopic>,
    /// Per partition, the highest offset the broker confirmed to this sink: checkpointed to
    /// the store, so a read-back after a crash starts near, not at the start.
    delivered: std::sync::Mutex<std::collections::BTreeMap<i32, i64>>,
}

impl KafkaSink {
    pub fn new(producer: Arc<KafkaProducer>, topic: Arc<ReportsTopic>) -> Self {
        Self { producer, topic, delivered: Default::default() }
    }

    /// `(partition, highest offset confirmed)` for every partition written so far.
    pub fn delivered_offsets(&self) -> Vec<(i32, i64)> {
        self.delivered.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(p, o)| (*p, *o)).collect()
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

    fn delivered_offsets(&self) -> Vec<(i32, i64)> {
        KafkaSink::delivered_offsets(self)
    }

    async fn publish_json(&self, reports: &[Report], json: &[String]) -> Result<(), SinkError> {
        if json.len() != reports.len() {
            // Zipping would drop reports: encode them here instead.
            return self.publish(reports).await;
        }
        let partitions = self.topic.partitions().await;
        let records: Vec<Record> = reports
            .iter()
            .zip(json)
            .map(|(r, p)| Record {
                topic: &self.topic.name,
                partition: Some(partition_for(r.job_id.as_bytes(), partitions)),
                key: r.job_id.as_bytes(),
                payload: p.as_bytes(),
                headers: &[],
            })
            .collect();
        let mut highest = std::collections::BTreeMap::new();
        self.producer
            .send_all_to(&records, |p, offset| {
                let h = highest.entry(p).or_insert(offset);
                *h = (*h).max(offset);
            })
            .await;
        let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        for (p, o) in highest {
            let d = delivered.entry(p).or_insert(o);
            *d = (*d).max(o);
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(10))).await.map_err(|e| SinkError::Unavailable(e.to_string()))
    }
}

/// The producer's librdkafka properties: sendgate's own, then `[kafka.producer]` over them.
fn client_config(cfg: &KafkaConfig, timeout: Option<Duration>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", LINGER_MS)
        .set("queue.buffering.max.messages", cfg.producer_max_in_flight.to_string())
        // A DLQ record copies the original whatever its size; jobs are tiny otherwise.
        .set("message.max.bytes", (64 * 1024 * 1024).to_string())
        .set("message.timeout.ms", timeout.map_or(0, |t| t.as_millis().max(1)).to_string());
    for (k, v) in &cfg.producer {
        c.set(k, v);
    }
    c
}

#[cfg(test)]
mod tests {
    fn kafka_config(extra: &str) -> crate::config::KafkaConfig {
        toml::from_str(&format!("brokers = \"127.0.0.1:9092\"\ngroup_id = \"g\"\n{extra}")).unwrap()
    }

    #[test]
    fn the_producer_lingers_15_ms_unless_the_config_says_otherwise() {
        let c = super::client_config(&kafka_config(""), None);
        assert_eq!(c.get("linger.ms"), Some("15"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"), "reports never expire in the producer");
        let c = super::client_config(&kafka_config("[producer]\n\"linger.ms\" = \"5\"\n"), Some(std::time::Duration::from_secs(30)));
        assert_eq!(c.get("linger.ms"), Some("5"), "[kafka.producer] wins over sendgate's own");
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
    }

    #[test]
    fn partitions_match_kafkas_default_partitioner() {
        // Kafka's Java client: Utils.toPositive(Utils.murmur2(key)) % partitions.
        assert_eq!(super::murmur2(b"abc") as i32, 479_470_107);
        assert_eq!(super::murmur2(b"21") as i32, -973_932_308);
        assert_eq!(super::murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(super::murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(super::murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        for n in [1, 6, 50] {
            assert!((0..n).contains(&super::partition_for(b"crm-7f3a-000123", n)));
        }
    }
}
