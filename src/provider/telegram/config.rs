//! `[providers.NAME]` with `kind = "telegram"`: every key, its default and unit, the checks
//! beyond what the types say (errors name the key), and building the provider from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::TelegramProvider;
use crate::config::humantime_serde;
use crate::provider::{BuildDeps, BuildError, KindConfig, Provider, EMBEDDED_SIM};

/// Telegram's documented bot-wide limit: "not more than 30 messages per second or so".
pub const DEFAULT_BOT_TPS: u32 = 30;
/// Paid broadcasts (`allow_paid_broadcast`) lift a bot to 1,000 messages per second.
pub const MAX_BOT_TPS: u32 = 1000;
/// The `parse_mode` values the Bot API knows.
pub const PARSE_MODES: [&str; 3] = ["HTML", "MarkdownV2", "Markdown"];

/// No secret is held here (the token stays in its file), so Debug can be derived.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The Bot API's origin; a local Bot API server's or a test server's instead. `http://`
    /// only for tests and local servers. `embedded-sim` in `sendgate dev`: the Bot API
    /// simulator dev starts for this provider, with a bot token made up per run.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A file holding the bot token (`<bot id>:<secret>`, from @BotFather), surrounding
    /// whitespace ignored; read at start-up and again after Telegram refuses it. Never inline:
    /// the token is part of every request's path. Required unless `base_url = "embedded-sim"`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How Telegram reads markup in `text` (`HTML`, `MarkdownV2`, `Markdown`); none: plain text.
    #[serde(default)]
    pub parse_mode: Option<String>,
    /// Channels this provider serves; a job's `to` on them is a chat id.
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    /// Share of a channel's traffic when several providers serve it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Messages per second for the whole bot, across every instance (the shared rate limits,
    /// as a sender limit named `telegram:<bot id>`), and paced locally too.
    #[serde(default = "default_bot_tps")]
    pub bot_tps: u32,
    /// Least time between two messages to one private chat (Telegram: about one a second).
    #[serde(default = "default_chat_interval", with = "humantime_serde")]
    pub chat_interval: Duration,
    /// Least time between two messages to one group or channel (a chat id starting with `-`,
    /// or an `@channel`): Telegram allows 20 a minute.
    #[serde(default = "default_group_interval", with = "humantime_serde")]
    pub group_interval: Duration,
    /// Longest a message waits in place, behind its chat's earlier messages or for the bot's
    /// pause after a 429; a longer wait sends it back to the pipeline, deferred.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// Requests in flight at once on this instance.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Connecting (TCP and TLS) may take this long; then the send is retried later.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A request with no answer by then may have been taken: the job ends `unknown`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The bot's pause after a 429 that names no `retry_after`.
    #[serde(default = "default_throttle_backoff", with = "humantime_serde")]
    pub throttle_backoff: Duration,
    /// Times a message answered 429 is sent again in place before it goes back to the
    /// pipeline (deferred, `rate_limited`).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// After Telegram refuses the token (401, 404), the provider is down (`/readyz` says why)
    /// for this long, then re-reads `token_file` and tries again.
    #[serde(default = "default_auth_retry", with = "humantime_serde")]
    pub auth_retry: Duration,
    /// A 403 saying the user blocked the bot puts the chat on the job's tenant's opt-out list
    /// for the job's channel.
    #[serde(default)]
    pub opt_out_on_blocked: bool,
    /// PEM file of extra CAs the API's certificate may chain to (tests, a local Bot API server
    /// behind a private CA); Mozilla's roots are always trusted.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

fn default_base_url() -> String {
    "https://api.telegram.org".into()
}
fn default_channels() -> Vec<String> {
    vec!["telegram".into()]
}
fn default_weight() -> u32 {
    1
}
fn default_bot_tps() -> u32 {
    DEFAULT_BOT_TPS
}
fn default_chat_interval() -> Duration {
    Duration::from_secs(1)
}
/// 20 messages a minute.
fn default_group_interval() -> Duration {
    Duration::from_secs(3)
}
fn default_max_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_concurrency() -> usize {
    32
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_throttle_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_retries() -> u32 {
    3
}
fn default_auth_retry() -> Duration {
    Duration::from_secs(60)
}

impl KindConfig for TelegramConfig {
    fn channels(&self) -> &[String] {
        &self.channels
    }

    fn validate(&self, path: &str, errors: &mut Vec<String>) {
        let s = self;
        let mut check = |ok: bool, k: &str, msg: String| {
            if !ok {
                errors.push(format!("{path}.{k}: {msg}"));
            }
        };
        let embedded = s.base_url == EMBEDDED_SIM;
        let scheme_ok = s.base_url.starts_with("https://") || s.base_url.starts_with("http://");
        check(
            embedded || (scheme_ok && s.base_url.parse::<hyper::Uri>().is_ok()),
            "base_url",
            format!("must be an https:// URL (or \"{EMBEDDED_SIM}\" in `sendgate dev`), got {:?}", s.base_url),
        );
        if let Some(m) = &s.parse_mode {
            check(PARSE_MODES.contains(&m.as_str()), "parse_mode", format!("must be one of {PARSE_MODES:?}, got {m:?}"));
        }
        check(s.weight > 0, "weight", format!("must be > 0, got {}", s.weight));
        check((1..=MAX_BOT_TPS).contains(&s.bot_tps), "bot_tps", format!("must be between 1 and {MAX_BOT_TPS} messages per second, got {}", s.bot_tps));
        check(!s.chat_interval.is_zero(), "chat_interval", "must be > 0".into());
        check(!s.group_interval.is_zero(), "group_interval", "must be > 0".into());
        check(!s.max_wait.is_zero(), "max_wait", "must be > 0".into());
        check(s.concurrency > 0, "concurrency", format!("must be > 0, got {}", s.concurrency));
        check(!s.connect_timeout.is_zero(), "connect_timeout", "must be > 0".into());
        check(!s.request_timeout.is_zero(), "request_timeout", "must be > 0".into());
        check(!s.throttle_backoff.is_zero(), "throttle_backoff", "must be > 0".into());
        check(s.max_retries <= 100, "max_retries", format!("must be <= 100, got {}", s.max_retries));
        match &s.token_file {
            Some(f) => check(f.is_file(), "token_file", format!("not a readable file: {}", f.display())),
            None => check(embedded, "token_file", format!("required (a file holding the bot token), unless base_url = \"{EMBEDDED_SIM}\"")),
        }
        if let Some(f) = &s.tls_ca_file {
            check(f.is_file(), "tls_ca_file", format!("not a readable file: {}", f.display()));
        }
    }

    fn wants_provider_sim(&self) -> Option<&'static str> {
        (self.base_url == EMBEDDED_SIM).then_some("telegram")
    }

    fn build(&self, name: &str, deps: &BuildDeps) -> Result<Arc<dyn Provider>, BuildError> {
        TelegramProvider::start(name, self.clone(), deps).map(|p| p as Arc<dyn Provider>)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ProviderConfig};

    #[test]
    fn telegram_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "123456:ABC-def_ghi\n").unwrap();
        let base = format!("[providers.tg]\nkind = \"telegram\"\ntoken_file = {:?}\n", token.display().to_string());
        let ok = parse(&format!("{base}parse_mode = \"HTML\"\nopt_out_on_blocked = true\n")).unwrap();
        let ProviderConfig::Telegram(c) = &ok.providers["tg"] else { panic!("kind") };
        assert_eq!(
            (c.base_url.as_str(), c.bot_tps, c.chat_interval.as_secs(), c.group_interval.as_secs(), c.channels.as_slice()),
            ("https://api.telegram.org", 30, 1, 3, &["telegram".to_owned()][..])
        );
        assert!(c.opt_out_on_blocked);
        for (extra, want) in [
            ("bot_tps = 0", "providers.tg.bot_tps: must be between 1 and 1000"),
            ("bot_tps = 1001", "providers.tg.bot_tps: must be between 1 and 1000"),
            ("base_url = \"api.telegram.org\"", "providers.tg.base_url: must be an https:// URL"),
            ("parse_mode = \"markdown\"", "providers.tg.parse_mode: must be one of"),
            ("chat_interval = \"0s\"", "providers.tg.chat_interval: must be > 0"),
            ("group_interval = \"0s\"", "providers.tg.group_interval: must be > 0"),
            ("max_wait = \"0s\"", "providers.tg.max_wait: must be > 0"),
            ("concurrency = 0", "providers.tg.concurrency: must be > 0"),
            ("request_timeout = \"0s\"", "providers.tg.request_timeout: must be > 0"),
            ("max_retries = 101", "providers.tg.max_retries: must be <= 100"),
            ("tls_ca_file = \"/nonexistent/ca.pem\"", "providers.tg.tls_ca_file: not a readable file"),
            ("token = \"123:abc\"", "providers.tg.token: unknown field"),
        ] {
            let errs = parse(&format!("{base}{extra}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{extra}: {errs:?}");
        }
        let errs = parse("[providers.tg]\nkind = \"telegram\"\ntoken_file = \"/nonexistent/token\"\n").unwrap_err().0;
        assert!(errs[0].starts_with("providers.tg.token_file: not a readable file"), "{errs:?}");
        let errs = parse("[providers.tg]\nkind = \"telegram\"\n").unwrap_err().0;
        assert!(errs[0].starts_with("providers.tg.token_file: required"), "{errs:?}");
        let dev = parse("[providers.tg]\nkind = \"telegram\"\nbase_url = \"embedded-sim\"\n").unwrap();
        assert_eq!(dev.providers["tg"].kind().wants_provider_sim(), Some("telegram"));
    }
}
