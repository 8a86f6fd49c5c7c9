//! A secret an HTTP provider sends with every request (an access token, an API key), read from a
//! file, and what happens when the provider refuses it: the provider is down (`/readyz` says
//! why, never the secret) for a while, then the file is read again, since it may have been
//! rotated in the meantime.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info};

use super::BuildError;

/// A secret file's content, trimmed; the error names the key, never the content.
pub fn read_secret(key: String, path: &Path) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|e| BuildError { key: key.clone(), reason: format!("cannot read {}: {e}", path.display()) })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(BuildError { key, reason: format!("{} is empty", path.display()) });
    }
    Ok(text.to_owned())
}

pub struct Credential {
    /// The provider's name, for the log lines.
    provider: String,
    /// `None`: no secret (the provider authenticates otherwise); refusals still count.
    path: Option<PathBuf>,
    /// How long a refusal stands before the file is read again and the secret tried anew.
    retry: Duration,
    state: Mutex<State>,
}

struct State {
    secret: String,
    /// Since when and why the provider refused the secret.
    refused: Option<(Instant, String)>,
}

impl Credential {
    /// Reads `path` once; `key` names it in the error.
    pub fn load(provider: &str, key: String, path: &Path, retry: Duration) -> Result<Self, BuildError> {
        let secret = read_secret(key, path)?;
        Ok(Self { provider: provider.to_owned(), path: Some(path.to_owned()), retry, state: Mutex::new(State { secret, refused: None }) })
    }

    /// A secret given rather than read (`sendgate dev`'s simulators make theirs up): after a
    /// refusal the same secret is tried again.
    pub fn fixed(provider: &str, secret: String, retry: Duration) -> Self {
        Self { provider: provider.to_owned(), path: None, retry, state: Mutex::new(State { secret, refused: None }) }
    }

    /// For a provider with no secret file: `current` is empty, refusals still take it down.
    pub fn without_secret(provider: &str, retry: Duration) -> Self {
        Self { provider: provider.to_owned(), path: None, retry, state: Mutex::new(State { secret: String::new(), refused: None }) }
    }

    /// The secret to send with; after a refusal once `retry` passed, read again from the file.
    /// `None` while the refusal stands.
    pub fn current(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((since, _)) = &state.refused {
            if since.elapsed() < self.retry {
                return None;
            }
            match self.path.as_deref().map(|p| read_secret(String::new(), p)) {
                Some(Ok(s)) => state.secret = s,
                Some(Err(e)) => error!(provider = %self.provider, error = %e.reason, "secret file unreadable; trying the old secret"),
                None => {}
            }
            state.refused = None;
            info!(provider = %self.provider, "trying the credentials again");
        }
        Some(state.secret.clone())
    }

    /// The provider refused the secret: down with `why` until `retry` passes.
    pub fn refused(&self, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.refused.is_none() {
            error!(provider = %self.provider, reason = %why, retry_in = ?self.retry, "credentials refused; provider down");
        }
        state.refused = Some((Instant::now(), why.to_owned()));
    }

    /// Why the provider is down, while a refusal stands.
    pub fn refusal(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.refused.as_ref().filter(|(since, _)| since.elapsed() < self.retry).map(|(_, why)| why.clone())
    }

    /// `text` with the secret cut out, for anything that may reach a log, a report or
    /// `/readyz` (an error from the HTTP stack, a text a server sent back): a secret that
    /// travels in the request's path (Telegram's bot token) can come back in them. A secret of
    /// the form `<id>:<secret>` loses its secret half wherever that stands alone too, when it
    /// is long enough not to match ordinary words.
    pub fn scrub(&self, text: &str) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.secret.is_empty() {
            return text.to_owned();
        }
        let text = text.replace(&state.secret, "<token>");
        match state.secret.split_once(':') {
            Some((_, secret)) if secret.len() >= 16 => text.replace(secret, "<token>"),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refused_secret_is_read_again_after_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " old-token\n").unwrap();
        let t = Credential::load("p", "providers.p.token_file".into(), &path, Duration::from_secs(60)).unwrap();
        assert_eq!(t.current().as_deref(), Some("old-token"));
        t.refused("401 Unauthorized");
        assert_eq!((t.current(), t.refusal().as_deref()), (None, Some("401 Unauthorized")));
        std::fs::write(&path, "new-token").unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!((t.current().as_deref(), t.refusal()), (Some("new-token"), None));
        let e = Credential::load("p", "providers.p.token_file".into(), &dir.path().join("none"), Duration::ZERO).err().unwrap();
        assert!(e.to_string().starts_with("providers.p.token_file: cannot read"), "{e}");
    }

    #[test]
    fn scrubbing_cuts_the_secret_and_a_long_secret_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "7012345678:AAH-test_Secret0123456789abcdefghijkl").unwrap();
        let t = Credential::load("p", String::new(), &path, Duration::ZERO).unwrap();
        assert_eq!(t.scrub("GET /bot7012345678:AAH-test_Secret0123456789abcdefghijkl/sendMessage"), "GET /bot<token>/sendMessage");
        assert_eq!(t.scrub("secret AAH-test_Secret0123456789abcdefghijkl alone"), "secret <token> alone");
        std::fs::write(&path, "1:short").unwrap();
        let t = Credential::load("p", String::new(), &path, Duration::ZERO).unwrap();
        assert_eq!(t.scrub("a short story"), "a short story");
        assert_eq!(Credential::without_secret("p", Duration::ZERO).scrub("text"), "text");
    }
}
