//! `kind = "telegram"`: the Telegram Bot API.
//!
//! - `config`: the `[providers.NAME]` keys, their checks, building the provider.
//! - `api`: a job as a `sendMessage` request, and reading the answer.
//! - `send`: one job through the chat's queue, the bot's pace and pause, to its answer.
//! - `status`: the one table of Telegram's error codes.
//! - `pace`: the per-chat and bot-wide limits kept on this instance.
//!
//! A job goes `POST {base_url}/bot<token>/sendMessage` with `chat_id` = the job's `to`. The
//! token is in the path: the request's URI is never logged, and every error text is scrubbed
//! of it. Telegram has no delivery receipts: its `ok` means the message is in the chat, so the
//! provider reports it `delivered` at once, through the receipt path (see `send`).

pub mod api;
pub mod config;
mod pace;
mod send;
pub mod status;

pub use config::TelegramConfig;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};

use self::pace::{Bot, Chats};
use crate::job::Job;
use crate::provider::credential::Credential;
use crate::provider::{Accepted, BuildDeps, BuildError, OnWire, Provider, ProviderStatus, SendError, EMBEDDED_SIM};
use crate::receipt::ProviderEvent;
use crate::store::Store;

/// How long an accepted job waits for its (immediate, synthetic) receipt before it ends
/// `unknown`: only an instance dying between Telegram's `ok` and the receipt reaching the
/// store leaves one waiting. Longer than the store keeps an early receipt
/// (`store::EARLY_RECEIPT_KEEP`), so a receipt another instance picks up still finds its job.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

pub struct TelegramProvider {
    name: Arc<str>,
    cfg: TelegramConfig,
    client: crate::provider::https_client::Https,
    /// `{base_url}` without a trailing slash.
    base: String,
    /// `telegram:<bot id>`: the sender the shared rate limits count the bot under. The bot id
    /// (the token's part before `:`) is public; the rest of the token is not used here.
    sender: String,
    store: Arc<dyn Store>,
    /// The receipt path: where the immediate `delivered` goes.
    events: mpsc::Sender<ProviderEvent>,
    /// The bot token, and whether Telegram refused it (then the provider is down).
    token: Credential,
    /// Requests in flight on this instance (`concurrency`).
    slots: Semaphore,
    bot: Bot,
    chats: Chats,
}

/// A bot token's shape, `<bot id>:<secret>`; the bot id, or `None` when it is not one.
fn bot_id(token: &str) -> Option<&str> {
    let (id, secret) = token.split_once(':')?;
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let secret_ok = !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (id_ok && secret_ok).then_some(id)
}

impl TelegramProvider {
    pub fn start(name: &str, cfg: TelegramConfig, deps: &BuildDeps) -> Result<Arc<Self>, BuildError> {
        let key = |k: &str| format!("providers.{name}.{k}");
        // `embedded-sim` (dev): the simulator's address and the token dev made up, not a file.
        let (base_url, token, from) = if cfg.base_url == EMBEDDED_SIM {
            let sim = deps
                .provider_sims
                .get(name)
                .ok_or_else(|| BuildError { key: key("base_url"), reason: format!("\"{EMBEDDED_SIM}\" works only in `sendgate dev`") })?;
            (sim.base_url.clone(), Credential::fixed(name, sim.token.clone(), cfg.auth_retry), "the embedded simulator's token".to_owned())
        } else {
            let Some(file) = &cfg.token_file else {
                return Err(BuildError { key: key("token_file"), reason: "required".into() });
            };
            (cfg.base_url.clone(), Credential::load(name, key("token_file"), file, cfg.auth_retry)?, file.display().to_string())
        };
        // Only the shape is said, never the content.
        let Some(id) = token.current().as_deref().and_then(bot_id).map(str::to_owned) else {
            return Err(BuildError { key: key("token_file"), reason: format!("{from} does not hold a bot token (<bot id>:<secret>)") });
        };
        let sender = format!("telegram:{id}");
        let client = crate::provider::https_client::build(cfg.tls_ca_file.as_deref(), cfg.connect_timeout, cfg.concurrency)
            .map_err(|reason| BuildError { key: key("tls_ca_file"), reason })?;
        Ok(Arc::new(Self {
            name: name.into(),
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            sender,
            store: deps.store.clone(),
            events: deps.events.clone(),
            token,
            slots: Semaphore::new(cfg.concurrency),
            bot: Bot::new(cfg.bot_tps),
            chats: Chats::default(),
            cfg,
        }))
    }
}

#[async_trait]
impl Provider for TelegramProvider {
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
        RECEIPT_TIMEOUT
    }
    fn is_ready(&self) -> bool {
        self.token.refusal().is_none()
    }
    fn status(&self) -> ProviderStatus {
        let error = self.token.refusal();
        ProviderStatus { ready: error.is_none(), error, ..ProviderStatus::default() }
    }
    async fn send(&self, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
        send::send(self, job, wire).await
    }
    async fn shutdown(&self) {}
    /// Every job goes out from the bot, whatever its `from` says.
    fn sender<'a>(&'a self, _job: &'a Job) -> Option<&'a str> {
        Some(&self.sender)
    }
    fn sender_rate(&self) -> Option<f64> {
        Some(f64::from(self.cfg.bot_tps))
    }
}

#[cfg(test)]
mod tests {
    use super::bot_id;

    #[test]
    fn bot_tokens_have_their_shape() {
        for (token, want) in
            [("123456:ABC-def_ghi", Some("123456")), ("123456:", None), (":ABC", None), ("12a456:ABC", None), ("123456:AB/C", None), ("123456", None)]
        {
            assert_eq!(bot_id(token), want, "{token}");
        }
    }
}
