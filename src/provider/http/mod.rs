//! `kind = "http"`: a provider that is "an HTTP call per message plus a status callback",
//! configured rather than coded (Viber Business Messages, voice-call APIs, SMS aggregators
//! with REST APIs).
//!
//! - `config`: the `[providers.NAME]` keys, their checks, building the provider.
//! - `template`: the URL, headers and body with the job's fields (`{{to}}`, `{{meta.x}}`),
//!   parsed at load, escaped as they are rendered.
//! - `send`: one job as one request, and its answer as [`SendError`].
//! - `answer`: values at JSON pointers in an answer or a callback.
//! - `status`: the one table of what an answer means (the configured codes, then HTTP).
//! - `webhook`: the authenticated status callback, mapped through the `statuses` table.
//!
//! Per provider and instance: `concurrency` requests in flight, and a pause for every send
//! after a throttling answer. A job counts one segment.

pub mod answer;
pub mod config;
mod send;
pub mod status;
pub mod template;
pub mod webhook;

pub use config::HttpConfig;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hyper::Method;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::config::WebhookAuth;
use self::status::{Codes, StatusMatch, Statuses};
use self::webhook::HttpWebhook;
use crate::job::Job;
use crate::provider::credential::{read_secret, Credential};
use crate::provider::https_client::{self, Https};
use crate::provider::{Accepted, BuildDeps, BuildError, OnWire, Provider, ProviderStatus, SendError, Webhook};

pub struct HttpProvider {
    name: String,
    cfg: HttpConfig,
    client: Https,
    method: Method,
    codes: Codes,
    statuses: Statuses,
    /// `token_file`'s secret (`{{secret}}`), and whether the provider refused our account.
    credential: Credential,
    /// `{{webhook_token}}`: the webhook's shared token, for callback URLs sent per request.
    webhook_token: Option<String>,
    /// `concurrency` requests in flight.
    slots: Semaphore,
    /// After a throttling answer: nothing goes out before then.
    paused_until: Mutex<Option<Instant>>,
    webhook: Option<HttpWebhook>,
}

impl HttpProvider {
    pub fn start(name: &str, cfg: HttpConfig, _deps: &BuildDeps) -> Result<Arc<Self>, BuildError> {
        let key = |k: &str| format!("providers.{name}.{k}");
        let credential = match &cfg.token_file {
            Some(f) => Credential::load(name, key("token_file"), f, cfg.down_for)?,
            None => Credential::without_secret(name, cfg.down_for),
        };
        let (webhook, webhook_token) = match &cfg.webhook {
            Some(w) => {
                let secret = read_secret(key("webhook.secret_file"), &w.secret_file)?;
                let token = (w.auth == WebhookAuth::Token).then(|| secret.clone());
                let url_safe = |t: &str| t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
                if token.as_deref().is_some_and(|t| !url_safe(t)) && cfg.uses(&template::Field::WebhookToken) {
                    let reason = "the token goes into a callback URL ({{webhook_token}}): use only letters, digits and - . _ ~".into();
                    return Err(BuildError { key: key("webhook.secret_file"), reason });
                }
                (Some(HttpWebhook::new(name, w.clone(), &secret)), token)
            }
            None => (None, None),
        };
        let client = https_client::build(cfg.tls_ca_file.as_deref(), cfg.connect_timeout, cfg.concurrency)
            .map_err(|reason| BuildError { key: key("tls_ca_file"), reason })?;
        let a = &cfg.answer;
        let codes = Codes::new(&a.permanent_codes, &a.transient_codes, &a.throttle_codes, &a.down_codes);
        let statuses = Statuses { success: a.success_status.iter().filter_map(|s| StatusMatch::parse(s)).collect(), down: a.down_status.clone() };
        let method = cfg.method.parse::<Method>().map_err(|e| BuildError { key: key("method"), reason: e.to_string() })?;
        Ok(Arc::new(Self {
            name: name.to_owned(),
            client,
            method,
            codes,
            statuses,
            credential,
            webhook_token,
            slots: Semaphore::new(cfg.concurrency),
            paused_until: Mutex::new(None),
            webhook,
            cfg,
        }))
    }

    /// How long sends still wait after a throttling answer; `None` when they may go.
    fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|t| t < until) {
            *paused = Some(until);
        }
    }
}

#[async_trait]
impl Provider for HttpProvider {
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
        self.credential.refusal().is_none()
    }
    fn status(&self) -> ProviderStatus {
        let error = self.credential.refusal();
        ProviderStatus { ready: error.is_none(), error, ..ProviderStatus::default() }
    }
    async fn send(&self, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
        send::send(self, job, wire).await
    }
    async fn shutdown(&self) {}
    fn sender<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        job.from.as_deref().or(self.cfg.default_from.as_deref())
    }
    fn webhook(&self) -> Option<&dyn Webhook> {
        self.webhook.as_ref().map(|w| w as &dyn Webhook)
    }
}
