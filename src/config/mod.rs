//! Typed configuration: every section, key and default, with units in the values.
//!
//! Loading and validation live in [`load`]; this file only says what the keys are.

mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::{load_file, parse, ConfigErrors};

/// The configuration `sendgate dev` runs on when given no `--config`.
pub const DEV_TOML: &str = include_str!("../../config/dev.toml");

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub reports: ReportsConfig,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub dev: DevConfig,
    /// Kafka in and out (`sendgate run`); absent: HTTP ingest feeds the embedded queue.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Shared state (`sendgate run`); absent: in-memory (one instance only).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    #[serde(default = "default_jobs_topic")]
    pub jobs_topic: String,
    #[serde(default = "default_reports_topic")]
    pub reports_topic: String,
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// A consumer silent for this long is dropped from the group and its partitions move.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long a fetch may wait for data: low, or every hop adds up to this much latency.
    #[serde(default = "default_fetch_wait_max", with = "humantime_serde")]
    pub fetch_wait_max: Duration,
    /// How often finished offsets are committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Most reports (and DLQ records) in flight to the broker at once.
    #[serde(default = "default_producer_in_flight")]
    pub producer_max_in_flight: usize,
    /// Extra librdkafka properties for the consumer and producer (e.g. security settings).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

fn default_group() -> String {
    "sendgate".into()
}
fn default_jobs_topic() -> String {
    "sendgate.jobs".into()
}
fn default_reports_topic() -> String {
    "sendgate.reports".into()
}
fn default_dlq_topic() -> String {
    "sendgate.jobs.dlq".into()
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_fetch_wait_max() -> Duration {
    Duration::from_millis(50)
}
fn default_commit_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_producer_in_flight() -> usize {
    100_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`. Run Redis with AOF (`appendonly yes`): deferred jobs, dedup
    /// claims and receipt mappings live here.
    pub url: String,
    /// Every key starts with this, so several deployments can share one Redis.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This instance's name; claims it holds are taken over by others once its heartbeat
    /// lapses. Default: the host name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How long an instance counts as alive after its last heartbeat.
    #[serde(default = "default_heartbeat_ttl", with = "humantime_serde")]
    pub heartbeat_ttl: Duration,
}

fn default_prefix() -> String {
    "sendgate:".into()
}
fn default_heartbeat_ttl() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the ingest/query API listens.
    pub listen: SocketAddr,
    /// Where `/metrics` listens: its own port so that scraping never competes with ingest.
    pub metrics_listen: SocketAddr,
    /// Largest `POST /v1/jobs` body; a bigger one gets `413` before it is read whole.
    pub max_body_bytes: usize,
    /// How long `GET /v1/jobs/{id}` remembers a job's events.
    #[serde(with = "humantime_serde")]
    pub job_history_ttl: Duration,
    /// How long shutdown waits for in-flight work before naming what is left and exiting.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("literal"),
            metrics_listen: "127.0.0.1:9464".parse().expect("literal"),
            max_body_bytes: 16 * 1024 * 1024,
            job_history_ttl: Duration::from_secs(24 * 3600),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most jobs between a source and a durable point at once; sources wait (HTTP answers
    /// slower, Kafka partitions pause) when it is reached, so memory stays bounded.
    pub max_in_flight: usize,
    /// Most jobs one pass of the policy chain takes at once (one store round per batch).
    pub batch_size: usize,
    /// How often the scheduler looks for deferred jobs that fell due.
    #[serde(with = "humantime_serde")]
    pub scheduler_tick: Duration,
    /// How long a claimed deferred job stays claimed before another instance may take it.
    #[serde(with = "humantime_serde")]
    pub scheduler_lease: Duration,
    /// How long a job id is remembered for dedup: longer than any producer retries a job.
    #[serde(with = "humantime_serde")]
    pub dedup_ttl: Duration,
    /// How long a transient provider failure waits before the job is tried again.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 20_000,
            batch_size: 512,
            scheduler_tick: Duration::from_millis(200),
            scheduler_lease: Duration::from_secs(30),
            dedup_ttl: Duration::from_secs(7 * 86_400),
            retry_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Print report events to stdout as JSON lines.
    pub stdout: bool,
    /// Also append them to this file as JSON lines.
    pub file: Option<PathBuf>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self { stdout: true, file: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    Smpp(SmppConfig),
}

impl ProviderConfig {
    pub fn channels(&self) -> &[String] {
        match self {
            Self::Smpp(c) => &c.channels,
        }
    }
}

/// The address value that means "the simulator `sendgate dev` starts in-process".
pub const EMBEDDED_SIM: &str = "embedded-sim";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// `host:port` of the SMSC, or `embedded-sim` in `sendgate dev`.
    pub address: String,
    pub system_id: String,
    pub password: String,
    #[serde(default)]
    pub system_type: String,
    /// Channels this provider serves.
    #[serde(default = "default_sms")]
    pub channels: Vec<String>,
    /// Share of a channel's traffic when several providers serve it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Parallel binds (TCP connections) to the SMSC.
    #[serde(default = "default_binds")]
    pub binds: usize,
    /// What each bind is; see [`SmppBindMode`].
    #[serde(default)]
    pub bind_mode: SmppBindMode,
    /// In-flight `submit_sm` per bind awaiting their `submit_sm_resp`.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Default sender when a job has no `from`.
    #[serde(default)]
    pub default_from: Option<String>,
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(default = "default_enquire_link", with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    /// A job whose receipt has not come by then ends `unknown`.
    #[serde(default = "default_receipt_timeout", with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Alphabet for message text; see [`SmppEncoding`].
    #[serde(default)]
    pub encoding: SmppEncoding,
    /// `data_coding` sent with GSM-7 text: 0x00 ("SMSC default alphabet") suits most SMSCs;
    /// some want 0x01 before they read the octets as GSM 03.38.
    #[serde(default)]
    pub data_coding_gsm7: u8,
    /// How a text longer than one SMS travels; see [`SmppConcatenation`].
    #[serde(default)]
    pub concatenation: SmppConcatenation,
    /// A text needing more segments is rejected rather than billed as a small book; every
    /// segment costs as much as a whole SMS.
    #[serde(default = "default_max_segments")]
    pub max_segments: u8,
    /// After ESME_RTHROTTLED the bind sends nothing for this long, then the same PDU again.
    #[serde(default = "default_throttle_backoff", with = "humantime_serde")]
    pub throttle_backoff: Duration,
    /// After ESME_RMSGQFUL (the SMSC's queue is full) the bind pauses this long.
    #[serde(default = "default_queue_full_backoff", with = "humantime_serde")]
    pub queue_full_backoff: Duration,
    /// Times a submit answered with a passing error (ESME_RSYSERR, ...) is sent again in place
    /// before the job goes back to the pipeline to be retried later.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first such resend; doubles with each further one.
    #[serde(default = "default_retry_delay", with = "humantime_serde")]
    pub retry_delay: Duration,
    /// Most SMS segments per second this instance sends over all binds of this provider;
    /// 0 = no cap. A multipart job costs one per part, a `message_payload` one per segment.
    #[serde(default)]
    pub tps: u32,
    /// Most segments per second on each bind; 0 = no cap.
    #[serde(default)]
    pub bind_tps: u32,
    /// How this SMSC writes message ids in `submit_sm_resp` and in receipts; see
    /// [`SmppReceiptIdFormat`].
    #[serde(default)]
    pub receipt_id_format: SmppReceiptIdFormat,
    /// What a `submit_sm` with no answer in `response_timeout` leads to; see [`SmppOnTimeout`].
    #[serde(default)]
    pub on_response_timeout: SmppOnTimeout,
}

/// How an SMSC's receipt names a message relative to the id its `submit_sm_resp` gave. Both ids
/// are put in one canonical form before they are stored or looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmppReceiptIdFormat {
    /// The same id both times, maybe in another case or with leading zeros: compared
    /// lowercased, leading zeros dropped.
    #[default]
    Auto,
    /// Byte for byte, for SMSCs whose ids are case-sensitive.
    AsIs,
    /// Hex in `submit_sm_resp`, decimal in the receipt: compared as numbers (stored in decimal).
    HexToDecimal,
    /// Decimal in `submit_sm_resp`, hex in the receipt: compared as numbers (stored in decimal).
    DecimalToHex,
}

/// How a provider's binds are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmppBindMode {
    /// `binds` transceivers: submits and receipts share each connection.
    #[default]
    Transceiver,
    /// `binds` transmitters for submits plus `binds` receivers for receipts and MO messages,
    /// for SMSCs that offer no transceiver binds.
    TransmitterReceiver,
}

/// A submit that got no answer may or may not have been taken by the SMSC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppOnTimeout {
    /// Never resend: the job ends `unknown` (`sendgate_submits_ambiguous_total`).
    #[default]
    Fail,
    /// Resend it once, on another bind or the same one rebound: the operator accepts that the
    /// recipient may get it twice (`sendgate_smpp_submits_resent_total`).
    Retry,
}

/// Which alphabet a provider sends text in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppEncoding {
    /// GSM-7 when every character is in the GSM 03.38 alphabet, else UCS-2 (UTF-16BE).
    #[default]
    Auto,
    /// GSM-7 only; a text with any other character is rejected.
    Gsm7,
    /// UCS-2 (UTF-16BE) always: 70 characters per SMS even for plain Latin text.
    Ucs2,
    /// ISO-8859-1 (`data_coding` 0x03) when every character fits, else UCS-2.
    Latin1,
}

/// How a multi-part text is tied together for the handset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppConcatenation {
    /// A User Data Header with an 8-bit reference in each part (153 GSM-7 septets per part).
    #[default]
    Udh8,
    /// A User Data Header with a 16-bit reference: fewer reference clashes, 152 septets per part.
    Udh16,
    /// SAR TLVs (`sar_msg_ref_num`, …) and no UDH: the SMSC builds the header itself.
    Sar,
    /// One `submit_sm` with the whole text in `message_payload`; the SMSC splits it.
    Payload,
}

fn default_sms() -> Vec<String> {
    vec!["sms".into()]
}
fn default_weight() -> u32 {
    1
}
fn default_binds() -> usize {
    1
}
fn default_window() -> usize {
    64
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(10)
}
/// Far shorter than the 30-60 s gateways usually use: rusmppc 0.4's connection task can go
/// idle with submits still queued and only wakes for incoming traffic or its enquire_link
/// timer, so with slow receipts a long interval stalls submits (measured: a few hundred jobs
/// then nothing until the next enquire_link). 200 ms keeps that stall negligible.
fn default_enquire_link() -> Duration {
    Duration::from_millis(200)
}
fn default_receipt_timeout() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_throttle_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_full_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_delay() -> Duration {
    Duration::from_millis(500)
}
/// Twilio's limit too (1,600 GSM-7 characters): beyond it, handsets and costs both suffer.
fn default_max_segments() -> u8 {
    10
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    /// The in-process SMSC simulator of `sendgate dev`.
    pub smsc_sim: DevSimConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevSimConfig {
    #[serde(with = "humantime_serde")]
    pub receipt_delay: Duration,
    /// e.g. `"delivered=90,undelivered=5,expired=5"`.
    pub outcome_mix: String,
    /// Keep every decoded message in memory (tests); off for load tests.
    pub record_messages: bool,
}

impl Default for DevSimConfig {
    fn default() -> Self {
        Self { receipt_delay: Duration::from_millis(100), outcome_mix: "delivered=100".into(), record_messages: false }
    }
}

/// `"30s"`-style durations (humantime) for serde.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("not a duration like \"30s\": {s:?} ({e})")))
    }
}
