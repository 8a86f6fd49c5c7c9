//! How a provider's binds stand, for `/readyz`, the bind gauges and one clear log line when the
//! SMSC refuses us.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tracing::{debug, error, info};

use crate::provider::ProviderStatus;
use crate::telemetry;

pub(super) struct Health {
    provider: Arc<str>,
    /// Connections configured: `binds`, or twice that for transmitter/receiver pairs.
    total: usize,
    up: AtomicUsize,
    /// Set when the SMSC refused a bind (credentials, or it will not take us): why.
    refused: Mutex<Option<String>>,
}

impl Health {
    pub(super) fn new(provider: Arc<str>, total: usize) -> Self {
        let h = Self { provider, total, up: AtomicUsize::new(0), refused: Mutex::new(None) };
        h.publish(0);
        h
    }

    fn publish(&self, up: usize) {
        let provider = self.provider.to_string();
        metrics::gauge!(telemetry::SMPP_BINDS_BOUND, "provider" => provider.clone()).set(up as f64);
        metrics::gauge!(telemetry::SMPP_BINDS_DOWN, "provider" => provider).set(self.total.saturating_sub(up) as f64);
    }

    pub(super) fn bound(&self) {
        let up = self.up.fetch_add(1, Relaxed) + 1;
        self.publish(up);
        if self.refused.lock().unwrap_or_else(|e| e.into_inner()).take().is_some() {
            info!(provider = %self.provider, "SMSC accepts our binds again; provider up");
        }
    }

    pub(super) fn unbound(&self) {
        let up = self.up.fetch_sub(1, Relaxed).saturating_sub(1);
        self.publish(up);
    }

    /// Records a refused bind; logs at error level only when the provider was not already
    /// known to be refused, so N binds retrying make one line, not N per attempt.
    pub(super) fn refused(&self, why: String, retry_every: std::time::Duration) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.is_none() {
            error!(provider = %self.provider, reason = %why, ?retry_every, "SMSC refused the bind; provider down until it accepts one (check system_id, password, system_type)");
        } else {
            debug!(provider = %self.provider, reason = %why, "bind refused again");
        }
        *refused = Some(why);
    }

    /// Why the SMSC refuses us, while it does.
    pub(super) fn refusal(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn status(&self, ready: bool) -> ProviderStatus {
        let up = self.up.load(Relaxed).min(self.total);
        ProviderStatus { ready, binds_up: up, binds_down: self.total - up, error: self.refusal() }
    }
}
