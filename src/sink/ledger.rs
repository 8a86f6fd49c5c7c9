//! Reading the reports topic back: is a job's final already in it?
//!
//! A final is decided in the store, published, then recorded. An instance that dies between
//! the broker's confirmation and the record leaves a decision nobody knows the fate of; the
//! instance that takes it over (the deadline sweep, `receipt::correlate`) reads the job's
//! partition back before it publishes anything: found, the final is only recorded; not found,
//! it is published. The partition is the one the sink wrote the job's reports to
//! ([`ReportsTopic::partition_for`]); the scan starts at an offset checkpointed in the store
//! before the decision was made, so it reads seconds of the partition, not its whole history.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::ReportsTopic;
use crate::config::KafkaConfig;

/// Checkpoints of the sink's offsets may be this much behind a decision (instances' clocks
/// differ; a checkpoint is written every few seconds): a read-back starts this much earlier.
pub const CHECKPOINT_SLACK: chrono::Duration = chrono::Duration::seconds(10);

pub struct Ledger {
    client: ClientConfig,
    topic: std::sync::Arc<ReportsTopic>,
    /// A scan that cannot reach the partition's end by then gives up: the jobs stay undecided
    /// (nothing is published) and are looked at again after their lease.
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("reading back {topic}/{partition}: {reason}")]
    Read { topic: String, partition: i32, reason: String },
}

impl Ledger {
    pub fn new(cfg: &KafkaConfig, topic: std::sync::Arc<ReportsTopic>) -> Self {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &cfg.brokers)
            // Never joins a group or commits: assigned one partition per scan.
            .set("group.id", format!("{}-ledger", cfg.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50");
        for (k, v) in &cfg.consumer {
            client.set(k, v);
        }
        Self { client, topic, timeout: Duration::from_secs(60) }
    }

    pub async fn partition_for(&self, job_id: &str) -> i32 {
        self.topic.partition_for(job_id).await
    }

    /// The final reports (JSON) of `ids` found in `partition` from offset `from` (`None`: its
    /// start) to its end, by job id. `ids` are store ids: for a cascade's step, what is found
    /// is the report that ended that step (its job's final, or its `step` event), matched by
    /// the job id it is keyed by and its `step.index`.
    pub async fn finals_in(&self, partition: i32, from: Option<i64>, ids: HashSet<String>) -> Result<HashMap<String, String>, LedgerError> {
        // Reports are keyed by their job's id; a cascade step's store id names its job.
        let keys: HashSet<String> = ids.iter().map(|id| crate::cascade::split_store_id(id).0.to_owned()).collect();
        self.scan(partition, from, keys, move |key, payload| ending(key, payload).filter(|id| ids.contains(id))).await
    }

    /// Of second records `(job id, record)` whose reports go to `partition`, those whose
    /// `duplicate` ([`crate::report::Report::record`]) it holds from offset `from` to its end.
    pub async fn duplicates_in(&self, partition: i32, from: Option<i64>, wanted: HashSet<(String, String)>) -> Result<HashSet<(String, String)>, LedgerError> {
        let keys: HashSet<String> = wanted.iter().map(|(job, _)| job.clone()).collect();
        let found = self
            .scan(partition, from, keys, move |key, payload| {
                let v = serde_json::from_slice::<serde_json::Value>(payload).ok()?;
                let record = v.get("record")?.as_str()?;
                (v.get("event")?.as_str()? == "duplicate" && wanted.contains(&(key.to_owned(), record.to_owned()))).then(|| format!("{key}\n{record}"))
            })
            .await?;
        Ok(found.into_keys().filter_map(|k| k.split_once('\n').map(|(j, r)| (j.to_owned(), r.to_owned()))).collect())
    }

    /// [`scan`] on a blocking thread (librdkafka's consumer blocks).
    async fn scan(
        &self,
        partition: i32,
        from: Option<i64>,
        keys: HashSet<String>,
        matches: impl Fn(&str, &[u8]) -> Option<String> + Send + 'static,
    ) -> Result<HashMap<String, String>, LedgerError> {
        let (client, topic, timeout) = (self.client.clone(), self.topic.name.clone(), self.timeout);
        let err = move |topic: &str, reason: String| LedgerError::Read { topic: topic.to_owned(), partition, reason };
        let name = topic.clone();
        tokio::task::spawn_blocking(move || scan(&client, &topic, partition, from, &keys, timeout, matches).map_err(|r| err(&topic, r)))
            .await
            .map_err(|e| err(&name, e.to_string()))?
    }
}

/// librdkafka reports reaching a partition's end as an error event too, which the default
/// context logs at error level on every scan: it is the answer here, not a fault.
struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(error = %error, reason, "reports read-back consumer");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// Reads `partition` from `from` to its end; for each record keyed by one of `keys`,
/// `matches(key, payload)` names what it is (a store id, a job id), and the found are
/// returned with their JSON.
fn scan(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    keys: &HashSet<String>,
    timeout: Duration,
    matches: impl Fn(&str, &[u8]) -> Option<String>,
) -> Result<HashMap<String, String>, String> {
    let consumer: BaseConsumer<Quiet> = client.create_with_context(Quiet).map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, from.map_or(Offset::Beginning, Offset::Offset)).map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut found = HashMap::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(found),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(m)) => {
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                if !keys.contains(key) {
                    continue;
                }
                let payload = m.payload().unwrap_or_default();
                if let Some(id) = matches(key, payload) {
                    found.insert(id, String::from_utf8_lossy(payload).into_owned());
                }
            }
        }
    }
    Err(format!("did not reach the end within {timeout:?}"))
}

/// The store id whose claim a report keyed `key` ends, if it ends one: a final, or a cascade
/// step's `step` event (for a step, the store id names the step).
fn ending(key: &str, payload: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<serde_json::Value>(payload).ok()?;
    let step = v.get("step");
    let late = step.and_then(|s| s.get("late")?.as_bool()) == Some(true);
    let ends = v.get("final")?.as_bool() == Some(true) || (v.get("event")?.as_str() == Some("step") && !late);
    let mut index = step.and_then(|s| s.get("index")?.as_u64()).unwrap_or(0);
    // A final won by a `read` ends the next step's claim (Report::store_id).
    if v.get("final")?.as_bool() == Some(true) && step.and_then(|s| s.get("outcome")?.as_str()) == Some("read") {
        index += 1;
    }
    ends.then(|| crate::cascade::store_id(key, index as u32))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_step_report_ends_its_steps_claim() {
        assert_eq!(super::ending("j", br#"{"final":true,"event":"delivered"}"#).as_deref(), Some("j"));
        assert_eq!(super::ending("j", br#"{"final":false,"event":"accepted"}"#), None);
        assert_eq!(super::ending("j", br#"{"final":false,"event":"step","step":{"index":1}}"#).as_deref(), Some("j #1"));
        assert_eq!(super::ending("j", br#"{"final":true,"event":"delivered","step":{"index":2}}"#).as_deref(), Some("j #2"));
        assert_eq!(super::ending("j", br#"{"final":false,"event":"step","step":{"index":1,"late":true}}"#), None);
    }
}
