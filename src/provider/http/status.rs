//! The one table that says what an answer means: the configured code tables first
//! (`permanent_codes`, `transient_codes`, `throttle_codes`, `down_codes`), then the HTTP status.
//!
//! A code found in a table decides, whatever the HTTP status, so an API that answers `200`
//! with an error code in the body (Viber's REST API, Infobip's per-message `status`) and one
//! that answers `4xx` both work. A code not in any table (or no code) follows the HTTP status:
//! a success status (`answer.success_status`) is taken; `429` throttles; `answer.down_status`
//! (`401` by default) marks the provider down; `5xx` and `408` are transient; **any other
//! status is rejected**: a 4xx says the request was at fault, and sending the same request
//! again would be refused again, so the job ends `rejected` with the code at once rather than
//! `failed` after its whole validity.

use std::collections::HashMap;
use std::time::Duration;

use crate::provider::SendError;

/// What the provider does with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Taken.
    Accept,
    /// Slow down: the provider pauses (`Retry-After`, else `throttle_backoff`); the job is
    /// deferred until then.
    Throttle,
    /// A failure that may pass: the job is retried after `pipeline.retry_backoff`.
    Retry,
    /// The message is at fault for good: `rejected` with the code.
    Reject,
    /// Our account is at fault (credentials refused, no credit): the provider is down for
    /// `down_for`, then tries again; the job is deferred.
    Down,
}

/// The configured code tables, code → action; a code is in at most one table.
#[derive(Debug, Clone, Default)]
pub struct Codes(HashMap<String, Action>);

impl Codes {
    pub fn new(permanent: &[String], transient: &[String], throttle: &[String], down: &[String]) -> Self {
        let mut map = HashMap::new();
        for (codes, action) in [(permanent, Action::Reject), (transient, Action::Retry), (throttle, Action::Throttle), (down, Action::Down)] {
            for c in codes {
                map.insert(c.clone(), action);
            }
        }
        Self(map)
    }

    fn get(&self, code: &str) -> Option<Action> {
        self.0.get(code).copied()
    }
}

/// Which HTTP statuses mean what, besides the code tables.
#[derive(Debug, Clone)]
pub struct Statuses {
    /// `2xx`-style classes and exact statuses that mean "taken".
    pub success: Vec<StatusMatch>,
    /// Statuses that mean "our credentials": `401` by default.
    pub down: Vec<u16>,
}

/// `"2xx"` (a class) or `"201"` (one status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Class(u16),
    Exact(u16),
}

impl StatusMatch {
    pub fn parse(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Some(Self::Class(u16::from(d - b'0'))),
            _ => s.parse::<u16>().ok().filter(|n| (100..600).contains(n)).map(Self::Exact),
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            Self::Class(c) => status / 100 == c,
            Self::Exact(s) => status == s,
        }
    }
}

/// The table: the answer's HTTP `status` and the provider's `code` (when the body had one).
pub fn action(codes: &Codes, statuses: &Statuses, status: u16, code: Option<&str>) -> Action {
    if let Some(a) = code.and_then(|c| codes.get(c)) {
        return a;
    }
    if statuses.success.iter().any(|m| m.matches(status)) {
        return Action::Accept;
    }
    match status {
        429 => Action::Throttle,
        s if statuses.down.contains(&s) => Action::Down,
        408 | 500.. => Action::Retry,
        _ => Action::Reject,
    }
}

/// The `code` a report carries: the provider's code, else `http_<status>`.
pub fn code(status: u16, code: Option<&str>) -> String {
    code.map_or_else(|| format!("http_{status}"), str::to_owned)
}

/// What the pipeline gets for a refusal (`action` anything but `Accept`).
pub fn error(action: Action, status: u16, provider_code: Option<&str>, message: &str, retry_after: Duration) -> SendError {
    let (code, message) = (code(status, provider_code), format!("HTTP {status}: {message}"));
    match action {
        Action::Throttle => SendError::Throttled { retry_after },
        Action::Down => SendError::Unavailable(format!("credentials or account refused ({code}): {message}")),
        Action::Retry => SendError::Transient { code, message },
        Action::Accept | Action::Reject => SendError::Rejected { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_table() {
        let codes = Codes::new(&strings(&["40001", "REJECTED_DESTINATION"]), &strings(&["50000"]), &strings(&["E429", "12"]), &strings(&["40004", "2"]));
        let statuses = Statuses { success: vec![StatusMatch::Class(2)], down: vec![401] };
        for (status, code, want, retryable, label) in [
            (200, None, Action::Accept, false, ""),
            (201, Some("0"), Action::Accept, false, ""),
            (200, Some("REJECTED_DESTINATION"), Action::Reject, false, "rejected"),
            (200, Some("12"), Action::Throttle, true, "throttled"),
            (200, Some("2"), Action::Down, true, "retry"),
            (400, Some("40001"), Action::Reject, false, "rejected"),
            (400, Some("40004"), Action::Down, true, "retry"),
            (503, Some("40001"), Action::Reject, false, "rejected"),
            (429, Some("E429"), Action::Throttle, true, "throttled"),
            (429, None, Action::Throttle, true, "throttled"),
            (401, None, Action::Down, true, "retry"),
            (401, Some("E401"), Action::Down, true, "retry"),
            (500, Some("50000"), Action::Retry, true, "retry"),
            (502, None, Action::Retry, true, "retry"),
            (408, None, Action::Retry, true, "retry"),
            (400, None, Action::Reject, false, "rejected"),
            (403, Some("E403"), Action::Reject, false, "rejected"),
            (404, None, Action::Reject, false, "rejected"),
            (302, None, Action::Reject, false, "rejected"),
        ] {
            assert_eq!(action(&codes, &statuses, status, code), want, "{status} {code:?}");
            if want != Action::Accept {
                let e = error(want, status, code, "x", Duration::from_secs(1));
                assert_eq!((e.is_retryable(), e.outcome_label()), (retryable, label), "{status} {code:?}");
            }
        }
        let exact = Statuses { success: vec![StatusMatch::Exact(201)], down: vec![401, 403] };
        assert_eq!(action(&codes, &exact, 200, None), Action::Reject);
        assert_eq!(action(&codes, &exact, 403, None), Action::Down);
        assert_eq!(error(Action::Reject, 400, None, "bad", Duration::ZERO), SendError::Rejected { code: "http_400".into(), message: "HTTP 400: bad".into() });
    }

    #[test]
    fn status_matches_parse() {
        assert_eq!(StatusMatch::parse("2xx"), Some(StatusMatch::Class(2)));
        assert_eq!(StatusMatch::parse("201"), Some(StatusMatch::Exact(201)));
        for bad in ["6xx", "2x", "99", "600", "ok", ""] {
            assert_eq!(StatusMatch::parse(bad), None, "{bad}");
        }
    }
}
