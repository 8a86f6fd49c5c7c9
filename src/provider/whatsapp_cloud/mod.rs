//! `kind = "whatsapp_cloud"`: Meta's WhatsApp Cloud API.
//!
//! - `config`: the `[providers.NAME]` keys, their checks, building the provider.
//! - `client`: the pooled HTTPS client and reading an answer.
//! - `send`: a job as a Cloud API message (`text` inside the service window, `template`
//!   anywhere), the per-number pause after `130429`, the answer as [`SendError`].
//! - `status`: the one table of Meta's error codes.
//! - `webhook`: the signed webhook: statuses become receipts, messages inbound messages.
//!
//! A job goes `POST {base_url}/{version}/{from}/messages`, `from` being the phone number id.
//! Per number: `concurrency` requests in flight on this instance, a pause for everyone after
//! `130429`, and `number_tps` across instances through the shared rate limits
//! ([`Provider::sender_rate`]).

pub mod client;
pub mod config;
mod send;
pub mod status;
pub mod webhook;

pub use config::WhatsappCloudConfig;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::webhook::CloudWebhook;
use crate::clock::Clock;
use crate::job::Job;
use crate::provider::credential::{read_secret, Credential};
use crate::provider::{Accepted, BuildDeps, BuildError, OnWire, Provider, ProviderStatus, SendError, Webhook, EMBEDDED_SIM};
use crate::store::Store;

/// How many phone numbers' worth of connections (`concurrency` each) the pool keeps idle.
const IDLE_NUMBERS: usize = 64;

pub struct WhatsappCloudProvider {
    name: String,
    cfg: WhatsappCloudConfig,
    client: crate::provider::https_client::Https,
    /// `{base_url}/{version}`, without a trailing slash.
    api: String,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The bearer token, and whether Meta refused it.
    auth: Credential,
    /// Phone number id → what its sends share.
    numbers: Mutex<HashMap<String, Arc<Number>>>,
    webhook: Option<CloudWebhook>,
}

/// What every send from one phone number shares on this instance.
struct Number {
    /// `concurrency` requests in flight.
    slots: Semaphore,
    /// After `130429`: nothing goes out from this number before then.
    paused_until: Mutex<Option<Instant>>,
}

impl WhatsappCloudProvider {
    pub fn start(name: &str, cfg: WhatsappCloudConfig, deps: &BuildDeps) -> Result<Arc<Self>, BuildError> {
        let key = |k: &str| format!("providers.{name}.{k}");
        let channel = cfg.channels.first().cloned().unwrap_or_else(|| "whatsapp".into());
        // `embedded-sim` (dev): the simulator's address and its dev-only secrets, not files.
        let (base_url, auth, secret) = if cfg.base_url == EMBEDDED_SIM {
            let sim = deps
                .provider_sims
                .get(name)
                .ok_or_else(|| BuildError { key: key("base_url"), reason: format!("\"{EMBEDDED_SIM}\" works only in `sendgate dev`") })?;
            (sim.base_url.clone(), Credential::fixed(name, sim.token.clone(), cfg.auth_retry), Some(sim.app_secret.clone()))
        } else {
            let Some(token_file) = &cfg.token_file else {
                return Err(BuildError { key: key("token_file"), reason: "required".into() });
            };
            let auth = Credential::load(name, key("token_file"), token_file, cfg.auth_retry)?;
            let secret = cfg.app_secret_file.as_ref().map(|f| read_secret(key("app_secret_file"), f)).transpose()?;
            (cfg.base_url.clone(), auth, secret)
        };
        let webhook = secret.map(|s| CloudWebhook::new(s.as_bytes(), cfg.verify_token.clone(), channel));
        // Idle connections kept for reuse: `concurrency` is per phone number and every number
        // talks to the same host, so a pool capped at `concurrency` closed a connection after
        // most requests once several numbers sent at once, and opened a new one for the next
        // (the load test: 32 numbers x 8 in flight against a pool of 8).
        let max_idle = cfg.concurrency.saturating_mul(IDLE_NUMBERS);
        let client = crate::provider::https_client::build(cfg.tls_ca_file.as_deref(), cfg.connect_timeout, max_idle)
            .map_err(|reason| BuildError { key: key("tls_ca_file"), reason })?;
        let api = format!("{}/{}", base_url.trim_end_matches('/'), cfg.version);
        Ok(Arc::new(Self {
            name: name.to_owned(),
            client,
            api,
            store: deps.store.clone(),
            clock: deps.clock.clone(),
            auth,
            numbers: Mutex::new(HashMap::new()),
            webhook,
            cfg,
        }))
    }

    fn number(&self, id: &str) -> Arc<Number> {
        let mut numbers = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
        numbers.entry(id.to_owned()).or_insert_with(|| Arc::new(Number { slots: Semaphore::new(self.cfg.concurrency), paused_until: Mutex::new(None) })).clone()
    }
}

#[async_trait]
impl Provider for WhatsappCloudProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn channels(&self) -> &[String] {
        &self.cfg.channels
    }
    fn weight(&self) -> u32 {
        self.cfg.weight
    }
    fn receipt_timeout(&self) -> Duration {
        self.cfg.receipt_timeout
    }
    fn is_ready(&self) -> bool {
        self.auth.refusal().is_none()
    }
    fn status(&self) -> ProviderStatus {
        let error = self.auth.refusal();
        ProviderStatus { ready: error.is_none(), error, ..ProviderStatus::default() }
    }
    async fn send(&self, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
        send::send(self, job, wire).await
    }
    async fn shutdown(&self) {}
    fn sender<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        job.from.as_deref().or(self.cfg.phone_number_id.as_deref())
    }
    fn sender_rate(&self) -> Option<f64> {
        Some(f64::from(self.cfg.number_tps))
    }
    fn webhook(&self) -> Option<&dyn Webhook> {
        self.webhook.as_ref().map(|w| w as &dyn Webhook)
    }
    fn read_window(&self) -> Option<Duration> {
        Some(self.cfg.read_window).filter(|w| !w.is_zero() && self.webhook.is_some())
    }
}
