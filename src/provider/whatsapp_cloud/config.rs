//! `[providers.NAME]` with `kind = "whatsapp_cloud"`: every key, its default and unit, the
//! checks beyond what the types say (errors name the key), and building the provider from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::WhatsappCloudProvider;
use crate::config::humantime_serde;
use crate::provider::{BuildDeps, BuildError, KindConfig, Provider, EMBEDDED_SIM};

/// Meta's default throughput per business phone number, in messages per second.
pub const DEFAULT_NUMBER_TPS: u32 = 80;
/// The most Meta grants a number after an upgrade.
pub const MAX_NUMBER_TPS: u32 = 1000;

/// Debug is written by hand: the verify token is a secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappCloudConfig {
    /// The Graph API's origin; a BSP's or a test server's instead. `http://` only for tests
    /// and the simulator; `embedded-sim` in `sendgate dev`: the simulator dev starts for this
    /// provider, with its own token and app secret (the files are then not needed).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Graph API version in the path (`v23.0`).
    #[serde(default = "default_version")]
    pub version: String,
    /// The phone number id a job without `from` goes out from.
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// A file holding the access token (a system user's token), surrounding whitespace
    /// ignored; read at start-up and again after Meta refuses it (code 190 / HTTP 401).
    /// Required unless `base_url = "embedded-sim"`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A file holding the app secret that signs webhooks (`X-Hub-Signature-256`). Without it
    /// the provider has no webhook: statuses and inbound messages cannot be taken.
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// What Meta's subscription check (`GET ...?hub.verify_token=`) must carry; without it
    /// every check is refused.
    #[serde(default)]
    pub verify_token: Option<String>,
    /// Channels this provider serves.
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    /// Share of a channel's traffic when several providers serve it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Messages per second per phone number, across every instance (the shared rate-limit
    /// machinery, as a sender limit): Meta's 80 by default, at most 1,000. A number named in
    /// `[rate_limits.senders]` takes that value instead.
    #[serde(default = "default_tps")]
    pub number_tps: u32,
    /// Requests in flight at once per phone number on this instance.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Connecting (TCP and TLS) may take this long; then the send is retried later.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A request with no answer by then may have been taken: the job ends `unknown`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After `130429` (the number's throughput exceeded) the number sends nothing for this
    /// long, then the same message again.
    #[serde(default = "default_throttle_backoff", with = "humantime_serde")]
    pub throttle_backoff: Duration,
    /// Times a message answered `130429` is sent again in place before it goes back to the
    /// pipeline (deferred, `rate_limited`).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// After `131056` (pair limit: too many messages to one recipient) that recipient's job
    /// is deferred this long.
    #[serde(default = "default_pair_backoff", with = "humantime_serde")]
    pub pair_backoff: Duration,
    /// After Meta refuses the token, the provider is down (`/readyz` says why) for this long,
    /// then re-reads `token_file` and tries again.
    #[serde(default = "default_auth_retry", with = "humantime_serde")]
    pub auth_retry: Duration,
    /// A `read` status this long after the job's final `delivered` is still reported (the
    /// non-final `read` event; the store keeps the job that long); a later one is dropped.
    /// `0s`: no `read` after `delivered` (a `read` that comes first is still reported).
    #[serde(default = "default_read_window", with = "humantime_serde")]
    pub read_window: Duration,
    /// A job whose `delivered`/`failed` status has not come by then ends `unknown`.
    #[serde(default = "default_receipt_timeout", with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// PEM file of extra CAs the API's certificate may chain to (a BSP's private CA, tests);
    /// Mozilla's roots are always trusted.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for WhatsappCloudConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsappCloudConfig")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .field("phone_number_id", &self.phone_number_id)
            .field("token_file", &self.token_file)
            .field("app_secret_file", &self.app_secret_file)
            .field("verify_token", &self.verify_token.as_ref().map(|_| "<redacted>"))
            .field("channels", &self.channels)
            .field("number_tps", &self.number_tps)
            .finish_non_exhaustive()
    }
}

fn default_base_url() -> String {
    "https://graph.facebook.com".into()
}
fn default_version() -> String {
    "v23.0".into()
}
fn default_channels() -> Vec<String> {
    vec!["whatsapp".into()]
}
fn default_weight() -> u32 {
    1
}
fn default_tps() -> u32 {
    DEFAULT_NUMBER_TPS
}
fn default_concurrency() -> usize {
    64
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
/// Meta's pair limit is about one message per 6 s to one user.
fn default_pair_backoff() -> Duration {
    Duration::from_secs(6)
}
/// Most reads come within minutes of delivery; an hour keeps them without holding every
/// delivered job for as long as a read may come (days).
fn default_read_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_auth_retry() -> Duration {
    Duration::from_secs(60)
}
/// Meta keeps trying an offline phone for up to 30 days, but nearly every status comes
/// within a day.
fn default_receipt_timeout() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl KindConfig for WhatsappCloudConfig {
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
        check(
            !s.version.is_empty() && s.version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'),
            "version",
            format!("must look like \"v23.0\", got {:?}", s.version),
        );
        if let Some(id) = &s.phone_number_id {
            check(!id.is_empty() && id.chars().all(|c| c.is_ascii_digit()), "phone_number_id", format!("must be digits (Meta's phone number id), got {id:?}"));
        }
        check(s.weight > 0, "weight", format!("must be > 0, got {}", s.weight));
        check(
            (1..=MAX_NUMBER_TPS).contains(&s.number_tps),
            "number_tps",
            format!("must be between 1 and {MAX_NUMBER_TPS} (Meta's most per number), got {}", s.number_tps),
        );
        check(s.concurrency > 0, "concurrency", format!("must be > 0, got {}", s.concurrency));
        check(!s.connect_timeout.is_zero(), "connect_timeout", "must be > 0".into());
        check(!s.request_timeout.is_zero(), "request_timeout", "must be > 0".into());
        check(!s.throttle_backoff.is_zero(), "throttle_backoff", "must be > 0".into());
        check(!s.pair_backoff.is_zero(), "pair_backoff", "must be > 0".into());
        check(s.max_retries <= 100, "max_retries", format!("must be <= 100, got {}", s.max_retries));
        match &s.token_file {
            Some(f) => check(f.is_file(), "token_file", format!("not a readable file: {}", f.display())),
            None => check(embedded, "token_file", format!("required (a file holding the access token), unless base_url = \"{EMBEDDED_SIM}\"")),
        }
        if let Some(f) = &s.app_secret_file {
            check(f.is_file(), "app_secret_file", format!("not a readable file: {}", f.display()));
        }
        if let Some(f) = &s.tls_ca_file {
            check(f.is_file(), "tls_ca_file", format!("not a readable file: {}", f.display()));
        }
        if let Some(t) = &s.verify_token {
            check(t.len() >= 8, "verify_token", "at least 8 characters".into());
        }
    }

    fn wants_provider_sim(&self) -> Option<&'static str> {
        (self.base_url == EMBEDDED_SIM).then_some("whatsapp")
    }

    fn build(&self, name: &str, deps: &BuildDeps) -> Result<Arc<dyn Provider>, BuildError> {
        WhatsappCloudProvider::start(name, self.clone(), deps).map(|p| p as Arc<dyn Provider>)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ProviderConfig};

    #[test]
    fn whatsapp_cloud_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "EAAG...\n").unwrap();
        let base = format!("[providers.wa]\nkind = \"whatsapp_cloud\"\ntoken_file = {:?}\n", token.display().to_string());
        let ok = parse(&format!("{base}phone_number_id = \"106540352242922\"\nnumber_tps = 1000\n")).unwrap();
        let ProviderConfig::WhatsappCloud(c) = &ok.providers["wa"] else { panic!("kind") };
        assert_eq!(
            (c.base_url.as_str(), c.version.as_str(), c.number_tps, c.channels.as_slice()),
            ("https://graph.facebook.com", "v23.0", 1000, &["whatsapp".to_owned()][..])
        );
        for (extra, want) in [
            ("number_tps = 0", "providers.wa.number_tps: must be between 1 and 1000"),
            ("number_tps = 1001", "providers.wa.number_tps: must be between 1 and 1000"),
            ("base_url = \"graph.facebook.com\"", "providers.wa.base_url: must be an https:// URL"),
            ("phone_number_id = \"+4915100000000\"", "providers.wa.phone_number_id: must be digits"),
            ("version = \"v23/0\"", "providers.wa.version: must look like"),
            ("concurrency = 0", "providers.wa.concurrency: must be > 0"),
            ("app_secret_file = \"/nonexistent/secret\"", "providers.wa.app_secret_file: not a readable file"),
            ("verify_token = \"short\"", "providers.wa.verify_token: at least 8 characters"),
            ("request_timeout = \"0s\"", "providers.wa.request_timeout: must be > 0"),
            ("tokn_file = \"x\"", "providers.wa.tokn_file: unknown field"),
        ] {
            let errs = parse(&format!("{base}{extra}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{extra}: {errs:?}");
        }
        let errs = parse("[providers.wa]\nkind = \"whatsapp_cloud\"\ntoken_file = \"/nonexistent/token\"\n").unwrap_err().0;
        assert!(errs[0].starts_with("providers.wa.token_file: not a readable file"), "{errs:?}");
        let errs = parse("[providers.wa]\nkind = \"whatsapp_cloud\"\n").unwrap_err().0;
        assert!(errs[0].starts_with("providers.wa.token_file: required"), "{errs:?}");
        let dev = parse("[providers.wa]\nkind = \"whatsapp_cloud\"\nbase_url = \"embedded-sim\"\n").unwrap();
        assert_eq!(dev.providers["wa"].kind().wants_provider_sim(), Some("whatsapp"));
    }
}
