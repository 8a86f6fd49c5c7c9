//! The Kafka source: a consumer group reading jobs, committing an offset only when every job
//! at or below it reached a durable point, pausing partitions when the in-flight budget is
//! full, and sending records that are not jobs to the DLQ.

mod dlq;
mod offsets;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use self::offsets::{Offsets, Tp};
use crate::clock::Clock;
use crate::config::KafkaConfig;
use crate::job::JobError;
use crate::pipeline::Origin;
use crate::pipeline::{begin_finals, Intake, Reporter};
use crate::report::{EventKind, Reason, Report};
use crate::sink::kafka::KafkaProducer;
use crate::store::{Claim, ClaimReq, Store};
use crate::telemetry;
use dlq::{DlqItem, DlqWriter};

/// Rebalance hooks: commit what is done before partitions leave, track new ones.
pub struct Ctx {
    offsets: Arc<Offsets>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let tps = tps_of(tpl);
            // Jobs still in flight on these partitions finish here; the new owner re-reads
            // them from the last commit and finds their ids claimed.
            let commit = self.offsets.committable(Some(&tps));
            if !commit.is_empty() {
                if let Err(e) = consumer.commit(&to_tpl(&commit), CommitMode::Sync) {
                    warn!(error = %e, "commit on revoke failed");
                }
            }
            self.offsets.revoke(&tps);
            info!(partitions = tps.len(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let tps = tps_of(tpl);
            info!(partitions = tps.len(), "partitions assigned");
            self.offsets.assign(tps);
        }
    }
}

fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements().iter().map(|e| Tp { topic: e.topic().to_owned(), partition: e.partition() }).collect()
}

fn to_tpl(commit: &[(Tp, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (tp, at) in commit {
        let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*at));
    }
    tpl
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer<Ctx>>,
    offsets: Arc<Offsets>,
    cfg: KafkaConfig,
}

/// What the source hands work to.
pub struct SourceDeps {
    pub intake: Intake,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    /// The DLQ's own producer, whose records expire (and are offered again): a DLQ topic the
    /// broker does not take holds up only the bad records' partitions, never the reports.
    pub dlq: Arc<KafkaProducer>,
    pub dedup_ttl: Duration,
    /// Reads the reports topic back for a dead instance's `duplicate` of an invalid record.
    pub ledger: Option<Arc<crate::sink::ledger::Ledger>>,
}

impl KafkaSource {
    pub fn new(cfg: &KafkaConfig) -> KafkaResult<Self> {
        let offsets = Arc::new(Offsets::default());
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers)
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", cfg.session_timeout.as_millis().to_string())
            .set("fetch.wait.max.ms", cfg.fetch_wait_max.as_millis().to_string())
            // The prefetch queue is memory too: keep it small, the in-flight budget is the buffer.
            .set("queued.max.messages.kbytes", "16384")
            .set("partition.assignment.strategy", "range,roundrobin");
        for (k, v) in &cfg.consumer {
            c.set(k, v);
        }
        let consumer: StreamConsumer<Ctx> = c.create_with_context(Ctx { offsets: offsets.clone() })?;
        consumer.subscribe(&[&cfg.jobs_topic])?;
        Ok(Self { consumer: Arc::new(consumer), offsets, cfg: cfg.clone() })
    }

    /// Reads until `stop`, then leaves the loop with in-flight jobs still tracked;
    /// [`KafkaSource::finish`] commits what they reach.
    pub async fn run(&self, deps: SourceDeps, stop: CancellationToken) {
        let committer = {
            let (consumer, offsets, every, stop) = (self.consumer.clone(), self.offsets.clone(), self.cfg.commit_interval, stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                while !stop.is_cancelled() {
                    tick.tick().await;
                    commit(&consumer, &offsets, CommitMode::Async);
                }
            })
        };
        let low_water = deps.intake.capacity() / 4;
        // Looked up once: per record, the labelled lookup cost more than the count.
        let consumed = metrics::counter!(telemetry::JOBS_CONSUMED_TOTAL, "source" => "kafka");
        let dlq = DlqWriter::spawn(deps.dlq.clone(), self.cfg.dlq_topic.clone());
        loop {
            if deps.intake.room() == 0 {
                self.pause_until_room(&deps.intake, low_water, &stop).await;
            }
            let msg = tokio::select! {
                m = self.consumer.recv() => m,
                _ = stop.cancelled() => break,
            };
            match msg {
                Ok(m) => {
                    if self.take(&m, &deps, &dlq, &consumed).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        committer.abort();
    }

    /// Pauses every assigned partition until intake has room again: librdkafka stops
    /// fetching, so the backlog stays in Kafka instead of in memory.
    async fn pause_until_room(&self, intake: &Intake, low_water: usize, stop: &CancellationToken) {
        let Ok(assigned) = self.consumer.assignment() else { return };
        if self.consumer.pause(&assigned).is_err() {
            return;
        }
        while intake.room() <= low_water && !stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The assignment may have changed meanwhile; resume whatever is ours now.
        if let Ok(now) = self.consumer.assignment() {
            let _ = self.consumer.resume(&now);
        }
    }

    async fn take(&self, m: &BorrowedMessage<'_>, deps: &SourceDeps, dlq: &DlqWriter, consumed: &metrics::Counter) -> Result<(), crate::pipeline::Closed> {
        let tp = Tp { topic: m.topic().to_owned(), partition: m.partition() };
        let offset = m.offset();
        let Some(epoch) = self.offsets.read(&tp, offset) else { return Ok(()) };
        let payload = m.payload().unwrap_or_default();
        let now = deps.clock.now();
        let offsets = self.offsets.clone();
        // Where this record is: the same record read again (a crash, a rebalance) is told from
        // a second record with the same id by it.
        let src = format!("{}/{}/{}", tp.topic, tp.partition, offset);
        let ack = move || offsets.done(&tp, epoch, offset);
        match crate::job::parse(payload, now) {
            Ok(job) => {
                consumed.increment(1);
                deps.intake.submit(job, Origin::Record { src: Some(src) }, Some(Box::new(ack))).await?;
            }
            // Bad records hold an in-flight permit like jobs until their DLQ record or their
            // `rejected` is out: a flood of them is bounded by the budget, not by memory.
            Err(JobError::NotAJob(why)) => {
                let permit = deps.intake.reserve().await?;
                metrics::counter!(telemetry::JOBS_REJECTED_AT_INGEST_TOTAL, "source" => "kafka", "reason" => "dlq").increment(1);
                let source = src;
                warn!(source = %source, error = %why, "record is not a job; sent to the DLQ");
                dlq.send(DlqItem {
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: payload.to_vec(),
                    error: why,
                    source,
                    done: Box::new(move || {
                        ack();
                        drop(permit);
                    }),
                });
            }
            Err(e @ JobError::Invalid { .. }) => {
                let permit = deps.intake.reserve().await?;
                metrics::counter!(telemetry::JOBS_REJECTED_AT_INGEST_TOTAL, "source" => "kafka", "reason" => "invalid").increment(1);
                let (store, reporter, ttl, ledger) = (deps.store.clone(), deps.reporter.clone(), deps.dedup_ttl, deps.ledger.clone());
                tokio::spawn(async move {
                    reject(store.as_ref(), ledger.as_deref(), &reporter, e, ttl, now, &src).await;
                    ack();
                    drop(permit);
                });
            }
        }
        Ok(())
    }

    /// Commits every offset whose jobs are done, synchronously (shutdown).
    pub fn finish(&self) {
        commit(&self.consumer, &self.offsets, CommitMode::Sync);
        self.consumer.unsubscribe();
    }
}

fn commit(consumer: &StreamConsumer<Ctx>, offsets: &Offsets, mode: CommitMode) {
    let c = offsets.committable(None);
    if c.is_empty() {
        return;
    }
    if let Err(e) = consumer.commit(&to_tpl(&c), mode) {
        warn!(error = %e, "offset commit failed");
    }
}

/// An invalid job with an id: its final `rejected`, once per id like any other final.
///
/// The `rejected` is decided in the store before it is published ([`begin_finals`]), as every
/// pipeline final is. Published straight from a `claimed` claim, it could be published twice:
/// an instance that died after the broker took it and before the store recorded it left the
/// claim `claimed` under a dead owner and the record uncommitted, and whoever read the record
/// again took the claim over (`New`) and published a second `rejected`.
async fn reject(
    store: &dyn Store,
    ledger: Option<&crate::sink::ledger::Ledger>,
    reporter: &Reporter,
    e: JobError,
    ttl: Duration,
    now: chrono::DateTime<chrono::Utc>,
    src: &str,
) {
    let JobError::Invalid { id, fields, .. } = &e else { return };
    let token = crate::store::mint_token(store.owner());
    let req = [ClaimReq { id, token: &token, src: Some(src), plan: None }];
    let claim = loop {
        match crate::retry::until_ok("claim", 1, || store.claim_ids(&req, ttl)).await[..] {
            // The same record in a live instance's hands (a rebalance): it reports it, unless
            // it dies first; look again once its heartbeat could have lapsed.
            // The same record (or, as a second record, its `duplicate`) in a live instance's
            // hands: it reports it, unless it dies first; look again once its heartbeat could
            // have lapsed.
            [Claim::Busy | Claim::DuplicateBusy] => tokio::time::sleep(Duration::from_secs(1)).await,
            [c] => break c,
            _ => return error!(job_id = %id, "the store answered a claim of one id with another count"),
        }
    };
    let event = match claim {
        // Never submitted, so never really orphaned: ours to reject.
        Claim::New | Claim::Orphaned => EventKind::Rejected,
        Claim::Duplicate => EventKind::Duplicate,
        Claim::DuplicateUnsure { decided_at }
            if !crate::policy::unpublished_duplicates(store, ledger, vec![(id.clone(), src.to_owned(), decided_at)]).await.is_empty() =>
        {
            EventKind::Duplicate
        }
        Claim::DuplicateUnsure { .. } | Claim::Replay | Claim::Busy | Claim::DuplicateBusy => return,
    };
    let mut r = Report::from_parts(id, &fields.tenant, &fields.channel, &fields.to, &fields.meta, event, now);
    if event == EventKind::Duplicate {
        r.record = Some(src.to_owned());
    }
    let reports = if event == EventKind::Rejected {
        let r = r.with_reason(Reason::InvalidJob).with_error(None, e.to_string());
        // Fenced off (empty) only if another claim took the id meanwhile: it reports it.
        begin_finals(store, vec![(r, token)]).await
    } else {
        vec![r]
    };
    reporter.emit(&reports).await;
}
