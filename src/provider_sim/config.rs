//! `ProviderSimConfig`: the `sendgate provider-sim <mode>` flags, also built from code or read
//! from `[dev.provider_sim]` in TOML. The same keys for every mode; a mode ignores what it has
//! no use for (Telegram has no statuses to push).

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use serde::Deserialize;

use crate::config::humantime_serde;

/// How the simulator listens, answers, and pushes statuses back.
#[derive(Debug, Clone, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSimConfig {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8790")]
    pub listen: SocketAddr,

    /// The access token requests must carry (`Authorization: Bearer …`); others are refused
    /// as the provider refuses a bad token (Cloud API: HTTP 401, code 190). Unset: any token.
    #[arg(long)]
    pub token: Option<String>,

    /// The secret status webhooks are signed with (Cloud API: the app secret behind
    /// `X-Hub-Signature-256`).
    #[arg(long, default_value = "provider-sim-app-secret")]
    pub app_secret: String,

    /// Where statuses are pushed (`http://host:port/v1/webhooks/<provider>`); unset: none are.
    #[arg(long)]
    pub webhook_url: Option<String>,

    /// Delay from taking a message to its first status, and between one status and the next
    /// (each next status is scheduled once the previous one was taken), e.g. `100ms`.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub status_delay: Duration,

    /// Relative weights of how messages end: `read` (sent, delivered, read), `delivered` (sent,
    /// delivered), `failed` (sent, failed with `failed_code`), e.g. `read=80,delivered=15,failed=5`.
    #[arg(long, default_value = "read=100")]
    pub outcome_mix: String,

    /// The error code a `failed` status carries (Cloud API: 131026, message undeliverable).
    #[arg(long, default_value_t = 131026)]
    pub failed_code: i64,

    /// Statuses per webhook POST at most (Meta batches several); statuses due together for
    /// one phone number go in one POST.
    #[arg(long, default_value_t = 1)]
    pub webhook_batch: usize,

    /// Webhook POSTs in flight at once.
    #[arg(long, default_value_t = 8)]
    pub push_concurrency: usize,

    /// Messages taken whose statuses are not all pushed yet, at most; beyond it a send is
    /// answered as the provider answers when it is overloaded (Cloud API: HTTP 503, code
    /// 131016), so memory stays bounded when the webhook receiver is slow or down.
    #[arg(long, default_value_t = 200_000)]
    pub queue_capacity: usize,

    /// A webhook POST not answered 2xx is sent again this many times (Meta retries too), the
    /// wait doubling from `push_retry_backoff`; then its statuses are dropped (counted).
    #[arg(long, default_value_t = 5)]
    pub push_retries: u32,

    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub push_retry_backoff: Duration,

    /// Keep every message taken in memory (for tests; grows without bound).
    #[arg(long)]
    pub record_messages: bool,

    // Faults, all off by default; counted simulator-wide over send requests (retries
    // included), checked in this order. docs/providers.md ("The provider simulator") says what
    // each does to a gateway.
    /// Answer every Nth send request with the number's throughput exceeded (Cloud API 130429).
    #[arg(long)]
    pub throttle_every: Option<NonZeroU64>,

    /// Answer every Nth send request with the pair limit hit (Cloud API 131056: too many
    /// messages to one recipient).
    #[arg(long)]
    pub pair_limit_every: Option<NonZeroU64>,

    /// Answer every Nth send request with a server error (Cloud API: HTTP 500, code 131000).
    #[arg(long)]
    pub server_error_every: Option<NonZeroU64>,

    /// Answer every Nth send request with the recipient having blocked the sender (Telegram:
    /// HTTP 403 "Forbidden: bot was blocked by the user"; Cloud API: code 131050).
    #[arg(long)]
    pub blocked_every: Option<NonZeroU64>,

    /// Answer every Nth send request with no such recipient (Telegram: HTTP 400 "Bad Request:
    /// chat not found"; Cloud API: code 131026, undeliverable).
    #[arg(long)]
    pub unknown_recipient_every: Option<NonZeroU64>,

    /// Take every Nth send request but answer it only after `slow_answer`.
    #[arg(long)]
    pub slow_every: Option<NonZeroU64>,

    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub slow_answer: Duration,

    /// After every Nth webhook POST, also send a forged one: its statuses say `failed`, and it
    /// is signed with a wrong secret. A gateway must refuse it (401) and act on nothing in it.
    #[arg(long)]
    pub forge_every: Option<NonZeroU64>,
}

impl Default for ProviderSimConfig {
    /// In-process defaults (`sendgate dev`, tests): an ephemeral port, nothing recorded.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            app_secret: "provider-sim-app-secret".into(),
            webhook_url: None,
            status_delay: Duration::from_millis(100),
            outcome_mix: "read=100".into(),
            failed_code: 131026,
            webhook_batch: 1,
            push_concurrency: 8,
            queue_capacity: 200_000,
            push_retries: 5,
            push_retry_backoff: Duration::from_millis(100),
            record_messages: false,
            throttle_every: None,
            pair_limit_every: None,
            server_error_every: None,
            blocked_every: None,
            unknown_recipient_every: None,
            slow_every: None,
            slow_answer: Duration::from_secs(5),
            forge_every: None,
        }
    }
}

impl ProviderSimConfig {
    /// Checks beyond the types; each error names its key (`provider_sim.<key>: …`).
    pub fn check(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, key: &str, msg: &str| {
            if !ok {
                errors.push(format!("provider_sim.{key}: {msg}"));
            }
        };
        check(self.webhook_batch > 0, "webhook_batch", "must be > 0");
        check(self.push_concurrency > 0, "push_concurrency", "must be > 0");
        check(self.queue_capacity > 0, "queue_capacity", "must be > 0");
        check(!self.status_delay.is_zero(), "status_delay", "must be > 0");
        check(!self.push_retry_backoff.is_zero(), "push_retry_backoff", "must be > 0");
        check(!self.app_secret.is_empty(), "app_secret", "must not be empty");
        if let Some(url) = &self.webhook_url {
            check(url.starts_with("http://") || url.starts_with("https://"), "webhook_url", "must be an http:// or https:// URL");
        }
        if let Err(e) = self.outcome_mix.parse::<super::statuses::EndMix>() {
            errors.push(format!("provider_sim.outcome_mix: {e}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: ProviderSimConfig,
    }

    #[test]
    fn flags_defaults_and_checks() {
        let d = Cli::parse_from(["sim"]).sim;
        assert_eq!((d.listen, d.status_delay, d.outcome_mix.as_str()), ("127.0.0.1:8790".parse().unwrap(), Duration::from_millis(100), "read=100"));
        let c = Cli::parse_from(["sim", "--throttle-every", "5", "--status-delay", "2s", "--webhook-batch", "10"]).sim;
        assert_eq!((c.throttle_every.map(NonZeroU64::get), c.status_delay, c.webhook_batch), (Some(5), Duration::from_secs(2), 10));
        let bad = ProviderSimConfig { webhook_batch: 0, outcome_mix: "seen=1".into(), webhook_url: Some("ftp://x".into()), ..Default::default() };
        let e = bad.check().unwrap_err();
        for key in ["provider_sim.webhook_batch: must be > 0", "provider_sim.outcome_mix: `seen`: unknown", "provider_sim.webhook_url: must be"] {
            assert!(e.contains(key), "{key} in {e}");
        }
        let toml: ProviderSimConfig = toml::from_str("status_delay = \"20ms\"\nforge_every = 3\n").unwrap();
        assert_eq!((toml.status_delay, toml.forge_every.map(NonZeroU64::get)), (Duration::from_millis(20), Some(3)));
    }
}
