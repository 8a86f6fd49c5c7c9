//! Typed configuration: every section, key and default, with units in the values.
//!
//! Loading and validation live in [`load`]; this file only says what the keys are. A provider
//! kind's section is its own (`provider/<kind>/config.rs`): here is only [`ProviderConfig`],
//! the list of kinds.

mod cascades;
mod load;
mod senders;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use cascades::CascadeConfig;
pub use load::{load_file, parse, ConfigErrors};
pub use senders::{sender_key, SenderEntry};

use crate::provider::http::HttpConfig;
use crate::provider::smpp::SmppConfig;
use crate::provider::telegram::TelegramConfig;
use crate::provider::whatsapp_cloud::WhatsappCloudConfig;
use crate::provider::KindConfig;

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
    /// Opt-out lists: which MO texts opt a sender out, and whose list they go on.
    #[serde(default)]
    pub opt_out: OptOutConfig,
    /// The admin API under `/v1/admin/`; absent: disabled (404).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// What a tenant not listed under `[tenants]` gets, and what a listed one leaves out.
    #[serde(default)]
    pub tenant_defaults: TenantConfig,
    /// Per-tenant settings, keyed by the jobs' `tenant`.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// WhatsApp Business messaging limits (`[whatsapp.portfolios.<name>]`).
    #[serde(default)]
    pub whatsapp: WhatsappConfig,
    /// Global sending speeds in segments per second (`[rate_limits]`); empty: no limits.
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    /// Cascades jobs may name (`[cascades.NAME]`, docs/cascades.md).
    #[serde(skip)]
    pub cascades: BTreeMap<String, CascadeConfig>,
    /// Per-campaign settings, keyed `"tenant/campaign"` (`[campaigns."acme/black-friday"]`):
    /// smooth sending to a deadline.
    #[serde(default)]
    pub campaigns: BTreeMap<String, CampaignConfig>,
    /// Each provider's price table, built from its `[providers.NAME.pricing]` (the loader
    /// takes that key out before the kind's own keys are read: it is the same for every kind).
    #[serde(skip)]
    pub prices: crate::provider::price::Prices,
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
    /// Where MO messages (replies from recipients) are published.
    #[serde(default = "default_inbound_topic")]
    pub inbound_topic: String,
    /// How long MO messages are offered to the broker before they are dropped (counted, and
    /// logged without sender or text): a missing or forbidden inbound topic must not hold up
    /// the receipts behind them.
    #[serde(default = "default_inbound_timeout", with = "humantime_serde")]
    pub inbound_timeout: Duration,
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
fn default_inbound_topic() -> String {
    "sendgate.inbound".into()
}
fn default_inbound_timeout() -> Duration {
    Duration::from_secs(30)
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
    /// Most jobs one `POST /v1/jobs` may carry; more get `413` before any of them is taken,
    /// so one request's answer and memory stay bounded.
    pub max_jobs_per_request: usize,
    /// How long a client may take to send a request's head (request line and headers),
    /// counted from its first byte, or from connecting for a connection's first request:
    /// connections that trickle a head are closed instead of holding a file descriptor.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a request body may take to arrive in full; a slower one gets `408`.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long a keep-alive connection may sit between requests before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections the API listener keeps open at once; one more is answered `503`
    /// and closed, so a flood of clients cannot exhaust the process's file descriptors.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("literal"),
            metrics_listen: "127.0.0.1:9464".parse().expect("literal"),
            max_body_bytes: 16 * 1024 * 1024,
            job_history_ttl: Duration::from_secs(24 * 3600),
            drain_timeout: Duration::from_secs(30),
            max_jobs_per_request: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
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

/// `[providers.NAME]`: the provider kinds, by their `kind` key. Each kind's keys, defaults,
/// checks and construction live in its folder, `provider/<kind>/config.rs`; adding a kind is a
/// variant here, its arm in [`ProviderConfig::KINDS`], [`ProviderConfig::parse`] and
/// [`ProviderConfig::kind`], and the folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    Smpp(SmppConfig),
    WhatsappCloud(WhatsappCloudConfig),
    /// Boxed: its templates and tables make it several times the size of the others.
    Http(Box<HttpConfig>),
    Telegram(TelegramConfig),
}

impl ProviderConfig {
    /// Every `kind` value, for error messages.
    pub const KINDS: &'static [&'static str] = &["smpp", "whatsapp_cloud", "http", "telegram"];

    /// The section of `kind` from the rest of its table; `None` when `kind` is not one of
    /// [`Self::KINDS`]. Errors name the key under `path`.
    pub(crate) fn parse(kind: &str, path: &str, table: toml::Value, errors: &mut Vec<String>) -> Option<Option<Self>> {
        match kind {
            "smpp" => Some(load::typed(path, table, errors).map(Self::Smpp)),
            "whatsapp_cloud" => Some(load::typed(path, table, errors).map(Self::WhatsappCloud)),
            "http" => Some(load::typed(path, table, errors).map(Self::Http)),
            "telegram" => Some(load::typed(path, table, errors).map(Self::Telegram)),
            _ => None,
        }
    }

    /// What every kind offers: channels, checks, construction.
    pub fn kind(&self) -> &dyn KindConfig {
        match self {
            Self::Smpp(c) => c,
            Self::WhatsappCloud(c) => c,
            Self::Http(c) => c.as_ref(),
            Self::Telegram(c) => c,
        }
    }

    pub fn channels(&self) -> &[String] {
        self.kind().channels()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    /// The in-process SMSC simulator of `sendgate dev`: every `sendgate smsc-sim` flag is a
    /// key here (`throttle_every = 5`, `receipt_id_format = "hex"`, ...), so a misbehaving
    /// SMSC can be reproduced without a second process.
    pub smsc_sim: crate::smsc_sim::SimConfig,
    /// The in-process provider simulator of `sendgate dev`, one per provider whose `base_url`
    /// is `embedded-sim`: every `sendgate provider-sim` flag is a key here (`status_delay =
    /// "100ms"`, `throttle_every = 5`, ...). `listen`, `token`, `app_secret` and `webhook_url`
    /// are set by dev itself (a loopback port, secrets made up per run, dev's own
    /// `/v1/webhooks/{provider}`).
    pub provider_sim: crate::provider_sim::ProviderSimConfig,
}

/// `"30s"`-style durations (humantime) for serde; provider kinds' configs use it too.
pub(crate) mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("not a duration like \"30s\": {s:?} ({e})")))
    }
}

/// The stop words every tenant gets unless `[opt_out.tenants.<t>]` says otherwise: the usual
/// English set plus Russian (`СТОП`, `ОТПИСАТЬСЯ`).
pub const DEFAULT_STOP_WORDS: [&str; 8] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "СТОП", "ОТПИСАТЬСЯ"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptOutConfig {
    /// An MO whose whole text is one of these (case, surrounding spaces and trailing
    /// punctuation ignored) puts its sender on the opt-out list.
    pub stop_words: Vec<String>,
    /// The MO's destination (our sender number or short code, `+` optional) → the tenant
    /// whose list the sender goes on.
    pub senders: BTreeMap<String, String>,
    /// The tenant for an MO to a destination not in `senders`; without it such a STOP is
    /// logged and dropped.
    pub default_tenant: Option<String>,
    /// Per-tenant settings, `[opt_out.tenants.<tenant>]`.
    pub tenants: BTreeMap<String, TenantOptOutConfig>,
}

impl Default for OptOutConfig {
    fn default() -> Self {
        Self {
            stop_words: DEFAULT_STOP_WORDS.iter().map(|w| (*w).to_owned()).collect(),
            senders: BTreeMap::new(),
            default_tenant: None,
            tenants: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOptOutConfig {
    /// Replaces `opt_out.stop_words` for this tenant.
    pub stop_words: Vec<String>,
}

/// Debug is written by hand so that printing a `Config` never prints the token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token the admin API wants; at least 16 characters. Prefer `token_file`,
    /// which keeps the secret out of a config that is often world-readable.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token (surrounding whitespace ignored), read at startup.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Who holds the token: every admin change is logged as done by this name.
    #[serde(default = "default_actor")]
    pub actor: String,
}

fn default_actor() -> String {
    "admin".into()
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("actor", &self.actor)
            .finish()
    }
}

/// `[tenants.NAME]` and `[tenant_defaults]`. A key left out of a tenant's section comes from
/// `[tenant_defaults]`; left out there too, the zone is UTC and there are no quiet hours.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// The zone of the tenant's recipients when neither the job's `tz` nor the number's
    /// prefix says, and when a prefix's zones share no allowed time within a day.
    #[serde(deserialize_with = "tz_serde::deserialize")]
    pub tz: Option<chrono_tz::Tz>,
    /// Quiet hours of the tenant's marketing jobs, in the recipient's zone; a job's own
    /// `quiet_hours` overrides them.
    pub quiet_hours: Option<QuietHoursConfig>,
    /// Channel → the senders (`from`) the tenant registered there. A channel without a list
    /// takes any sender; a job without `from` goes out with the provider's default sender.
    pub senders: BTreeMap<String, Vec<SenderEntry>>,
    /// The cascade (`[cascades.NAME]`) of the tenant's jobs that give no `cascade` of their own.
    pub cascade: Option<String>,
}

/// `quiet_hours = { start = "21:00", end = "09:00" }`, or `false` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietHoursConfig {
    Off,
    Window { start: chrono::NaiveTime, end: chrono::NaiveTime },
}

impl<'de> Deserialize<'de> for QuietHoursConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// `"HH:MM"`, parsed where serde still knows the key, so errors name it.
        struct HhMm(chrono::NaiveTime);
        impl<'de> Deserialize<'de> for HhMm {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                chrono::NaiveTime::parse_from_str(&s, "%H:%M").map(HhMm).map_err(|_| serde::de::Error::custom(format!("not HH:MM: {s:?}")))
            }
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Window {
            start: HhMm,
            end: HhMm,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = QuietHoursConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"{ start = "HH:MM", end = "HH:MM" } or false"#)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::custom(r#"must be { start = "HH:MM", end = "HH:MM" } or false, got true"#))
                } else {
                    Ok(QuietHoursConfig::Off)
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let w = Window::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(QuietHoursConfig::Window { start: w.start.0, end: w.end.0 })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// IANA zone names for serde.
mod tz_serde {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<chrono_tz::Tz>, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("not an IANA zone: {s:?}")))
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsappConfig {
    /// Meta's messaging limits apply per business portfolio: `[whatsapp.portfolios.<name>]`.
    /// The name is the `portfolio` label of the WhatsApp metrics and the admin API's key.
    pub portfolios: BTreeMap<String, WhatsappPortfolioConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappPortfolioConfig {
    /// Unique recipients reached outside a customer-service window per `window`: Meta's ladder
    /// is 250, 2000, 10000, 100000, `"unlimited"` (the older per-number ladder, 1000 / 10000 /
    /// 100000, is a portfolio with one number). Any other count is taken too, to keep headroom
    /// for another system sending through the same portfolio.
    pub tier: WhatsappTier,
    /// The phone number ids of this portfolio: a `whatsapp` job's `from`.
    pub numbers: Vec<String>,
    /// The moving window the tier counts recipients in.
    #[serde(default = "default_whatsapp_window", with = "humantime_serde")]
    pub window: Duration,
    /// Meta's pair rate limit: at most one message per this long from one number to one
    /// recipient; `"0s"` switches it off.
    #[serde(default = "default_pair_interval", with = "humantime_serde")]
    pub pair_interval: Duration,
}

/// A portfolio's messaging limit: a recipient count, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhatsappTier {
    Recipients(u64),
    Unlimited,
}

impl WhatsappTier {
    /// The cap, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        match self {
            Self::Recipients(n) => Some(n),
            Self::Unlimited => None,
        }
    }
}

impl<'de> Deserialize<'de> for WhatsappTier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Word(String),
        }
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("must be a recipient count (250, 2000, 10000, 100000) or \"unlimited\""))? {
            Raw::Count(n) => Ok(Self::Recipients(n)),
            Raw::Word(w) if w == "unlimited" => Ok(Self::Unlimited),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("must be a recipient count or \"unlimited\", got {w:?}"))),
        }
    }
}

fn default_whatsapp_window() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_pair_interval() -> Duration {
    Duration::from_secs(6)
}
/// `[rate_limits]`: speeds in SMS segments per second that hold across every instance (GCRA in
/// the store). A job is limited by each that applies to it: its provider, its sender (`from`,
/// else the provider's default sender), its tenant and its campaign.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Provider name → segments per second.
    pub providers: BTreeMap<String, f64>,
    /// Sender id (`from`) → segments per second.
    pub senders: BTreeMap<String, f64>,
    /// Tenant → segments per second.
    pub tenants: BTreeMap<String, f64>,
    /// `"campaign"` (that campaign of every tenant, each tenant's on its own) or
    /// `"tenant/campaign"` → segments per second. Speeds set at runtime through the store win.
    pub campaigns: BTreeMap<String, f64>,
    /// A job that would wait longer than this for its turn is deferred (`rate_limited`, with a
    /// `retry_at`) instead of waiting in memory.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// How much of a limit one store call leases at least: `rate × lease` tokens (at least one).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long a campaign speed read from the store is used before it is read again.
    #[serde(with = "humantime_serde")]
    pub campaign_refresh: Duration,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            senders: BTreeMap::new(),
            tenants: BTreeMap::new(),
            campaigns: BTreeMap::new(),
            max_wait: Duration::from_secs(2),
            lease: Duration::from_millis(100),
            campaign_refresh: Duration::from_secs(5),
        }
    }
}

/// `[campaigns."tenant/campaign"]`: smooth sending. A campaign with a `finish_by` (here, set
/// through the admin API, or carried by its first job) is paced so that what is pending goes
/// out evenly by then (`policy::pace`; docs/policies.md).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignConfig {
    /// RFC 3339 (a string, or a TOML offset date-time). One set through the admin API wins; this wins over a job's.
    /// A time already past is accepted (a restart after the deadline must not fail): the
    /// campaign is then simply not paced.
    #[serde(deserialize_with = "rfc3339_serde::deserialize")]
    pub finish_by: Option<chrono::DateTime<chrono::Utc>>,
    /// The zone of the campaign's recipients, for the quiet hours that do not count as
    /// sending time; default: the tenant's `tz`.
    #[serde(deserialize_with = "tz_serde::deserialize")]
    pub tz: Option<chrono_tz::Tz>,
}

/// RFC 3339 instants for serde, with an error that says what was expected.
mod rfc3339_serde {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<chrono::DateTime<chrono::Utc>>, D::Error> {
        let s = String::deserialize(d).map_err(|_| serde::de::Error::custom("must be an RFC 3339 time, like \"2026-11-27T20:00:00+03:00\""))?;
        chrono::DateTime::parse_from_rfc3339(&s).map(|t| Some(t.to_utc())).map_err(|_| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}
