//! Secrets HTTP provider kinds read from files: [`read_secret`], and a [`Token`] the provider's
//! API may refuse, after which the provider is down for a while and then reads the file again
//! (it may have been replaced). Neither ever puts a secret in an error or a log line.

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

/// An API token from `path`, and whether the API refused it (then since when and why).
pub struct Token {
    /// The provider's name, for the log lines.
    provider: String,
    path: PathBuf,
    /// How long a refusal stands before the file is read again and the token tried again.
    retry: Duration,
    state: Mutex<State>,
}

struct State {
    token: String,
    refused: Option<(Instant, String)>,
}

impl Token {
    /// Reads `path` (`key` names it in the error).
    pub fn load(provider: &str, key: String, path: &Path, retry: Duration) -> Result<Self, BuildError> {
        let token = read_secret(key, path)?;
        Ok(Self { provider: provider.to_owned(), path: path.to_owned(), retry, state: Mutex::new(State { token, refused: None }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token to send with; once a refusal is `retry` old, read again from the file.
    /// `None` while the refusal stands.
    pub fn current(&self) -> Option<String> {
        let mut state = self.lock();
        if let Some((since, _)) = &state.refused {
            if since.elapsed() < self.retry {
                return None;
            }
            match read_secret(String::new(), &self.path) {
                Ok(t) => state.token = t,
                Err(e) => error!(provider = %self.provider, error = %e.reason, "token file unreadable; trying the old token"),
            }
            state.refused = None;
            info!(provider = %self.provider, "trying the token again");
        }
        Some(state.token.clone())
    }

    /// The API refused the token: the provider is down with `why` until `retry` passes.
    pub fn refused(&self, why: &str) {
        let mut state = self.lock();
        if state.refused.is_none() {
            error!(provider = %self.provider, reason = %why, retry_in = ?self.retry, "token refused; provider down");
        }
        state.refused = Some((Instant::now(), why.to_owned()));
    }

    /// Why the provider is down, while a refusal stands.
    pub fn refusal(&self) -> Option<String> {
        self.lock().refused.as_ref().filter(|(since, _)| since.elapsed() < self.retry).map(|(_, why)| why.clone())
    }

    /// `text` with the token cut out, for anything that may reach a log, a report or
    /// `/readyz` (an error from the HTTP stack, a text a server sent back). A token of the
    /// form `<id>:<secret>` (Telegram's) loses its secret half wherever that stands alone too,
    /// when it is long enough not to match ordinary words.
    pub fn scrub(&self, text: &str) -> String {
        let state = self.lock();
        let text = text.replace(&state.token, "<token>");
        match state.token.split_once(':') {
            Some((_, secret)) if secret.len() >= 16 => text.replace(secret, "<token>"),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_read_again_after_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " old-token\n").unwrap();
        let t = Token::load("p", "providers.p.token_file".into(), &path, Duration::from_secs(60)).unwrap();
        assert_eq!(t.current().as_deref(), Some("old-token"));
        t.refused("401 Unauthorized");
        assert_eq!((t.current(), t.refusal().as_deref()), (None, Some("401 Unauthorized")));
        std::fs::write(&path, "new-token").unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!((t.current().as_deref(), t.refusal()), (Some("new-token"), None));
        let e = Token::load("p", "providers.p.token_file".into(), &dir.path().join("none"), Duration::ZERO).err().unwrap();
        assert!(e.to_string().starts_with("providers.p.token_file: cannot read"), "{e}");
    }

    #[test]
    fn scrubbing_cuts_the_token_and_a_long_secret_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "7012345678:AAH-test_Secret0123456789abcdefghijkl").unwrap();
        let t = Token::load("p", String::new(), &path, Duration::ZERO).unwrap();
        assert_eq!(t.scrub("GET /bot7012345678:AAH-test_Secret0123456789abcdefghijkl/sendMessage"), "GET /bot<token>/sendMessage");
        assert_eq!(t.scrub("secret AAH-test_Secret0123456789abcdefghijkl alone"), "secret <token> alone");
        std::fs::write(&path, "1:short").unwrap();
        let t = Token::load("p", String::new(), &path, Duration::ZERO).unwrap();
        assert_eq!(t.scrub("a short story"), "a short story");
    }
}
