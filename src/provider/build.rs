//! What every provider kind's config section offers the rest of the daemon, and building all
//! configured providers in one call.
//!
//! A kind's section (`[providers.NAME] kind = "..."`) is a type in `provider/<kind>/config.rs`
//! implementing [`KindConfig`]: its channels, its checks, its construction. `config` only
//! names the kinds (`ProviderConfig`); `app.rs` calls [`build_all`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::metered::Metered;
use super::Provider;
use crate::clock::Clock;
use crate::config::ProviderConfig;
use crate::receipt::ProviderEvent;
use crate::store::Store;

/// The kind-specific half of a `[providers.NAME]` section.
pub trait KindConfig: Send + Sync {
    /// Channels the provider serves (the neutral checks want at least one).
    fn channels(&self) -> &[String];

    /// Checks beyond what the types say, each pushed as `{path}.{key}: reason`, where `path`
    /// is `providers.NAME`. Collects every error; never stops at the first.
    fn validate(&self, path: &str, errors: &mut Vec<String>);

    /// Whether `sendgate dev` must start its embedded SMSC simulator for this provider.
    fn wants_embedded_sim(&self) -> bool {
        false
    }

    /// The mode of `sendgate dev`'s embedded provider simulator this provider talks to (its
    /// `base_url` is [`EMBEDDED_SIM`]): `"whatsapp"`; `None` (the default): none. Dev starts
    /// one per such provider and hands its address and secrets over in
    /// [`BuildDeps::provider_sims`].
    fn wants_provider_sim(&self) -> Option<&'static str> {
        None
    }

    /// Starts the provider (its connections come up in the background).
    fn build(&self, name: &str, deps: &BuildDeps) -> Result<Arc<dyn Provider>, BuildError>;
}

/// What a provider may need from the daemon to start.
#[derive(Clone)]
pub struct BuildDeps {
    /// Where receipts and inbound messages go: the correlator, the one receipt path.
    pub events: mpsc::Sender<ProviderEvent>,
    /// The pipeline's clock.
    pub clock: Arc<dyn Clock>,
    /// The shared state (WhatsApp's customer-service windows).
    pub store: Arc<dyn Store>,
    /// Where `sendgate dev`'s embedded SMSC simulator listens; `None` outside dev mode.
    pub embedded_sim: Option<SocketAddr>,
    /// Provider name → the embedded provider simulator started for it (dev mode only).
    pub provider_sims: BTreeMap<String, EmbeddedApi>,
}

/// The address or `base_url` that means "the simulator `sendgate dev` embeds".
pub const EMBEDDED_SIM: &str = "embedded-sim";

/// An embedded provider simulator as the provider it serves sees it: where to send, and the
/// dev-only secrets to send and check webhooks with (generated per run; never in a config).
#[derive(Clone)]
pub struct EmbeddedApi {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// The bearer token it wants.
    pub token: String,
    /// The secret it signs status webhooks with.
    pub app_secret: String,
}

/// A provider that cannot be started from its (valid) config, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct BuildError {
    pub key: String,
    pub reason: String,
}

/// Starts every configured provider, each wrapped in the provider-neutral request metrics.
pub fn build_all(providers: &BTreeMap<String, ProviderConfig>, deps: &BuildDeps) -> Result<Vec<Arc<dyn Provider>>, BuildError> {
    providers.iter().map(|(name, cfg)| Ok(Metered::wrap(cfg.kind().build(name, deps)?))).collect()
}
