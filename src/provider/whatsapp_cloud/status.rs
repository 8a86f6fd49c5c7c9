//! The one table that says what a Cloud API answer means: Meta's error codes (the `error.code`
//! of a refused request, and the `errors[].code` of a `failed` status) and HTTP classes.
//!
//! Codes from Meta's "Error codes" reference (Cloud API, 2025–2026). Two of them are policy
//! verdicts rather than faults, decided here and written down in docs/providers.md:
//! - `131048` (spam rate limit: the *number* sends more than its quality allows) is
//!   **rejected**: Meta lifts it only after hours and only if the number sends less; retrying
//!   within a job's validity burns requests and lowers the quality further. The CRM sees the
//!   code and can move the traffic to another number.
//! - `131049` (Meta held a marketing message back "to maintain healthy ecosystem
//!   engagement": a per-user limit) is **rejected**: Meta says not to retry soon, the hold
//!   lasts about a day, longer than most jobs' validity; the code lets the CRM re-send later.

use std::time::Duration;

use crate::provider::SendError;

/// What the provider does with a request Meta refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `130429`/`80007`/`4`: the number's throughput is exceeded. That number pauses
    /// (`throttle_backoff`), then the same message is sent again in place, keeping its order.
    PauseNumber,
    /// `131056`: too many messages to this recipient from this number (pair limit): this job
    /// is deferred (`pair_backoff`); other recipients go on.
    DeferRecipient,
    /// The token expired or was revoked (`190`, HTTP 401): the provider is down in `/readyz`
    /// with the reason; jobs go elsewhere or wait.
    AuthDown,
    /// A failure that may pass (Meta's side, 5xx): the job is retried later.
    Retry,
    /// The message or recipient is at fault for good: `rejected` with the code.
    Reject,
}

/// The table. `http` is the response's status, `code` Meta's `error.code` when the body had
/// one. A code not named here follows its HTTP class: 5xx and 429 retry, other 4xx reject.
pub fn action(http: u16, code: Option<i64>) -> Action {
    match code {
        Some(130429 | 80007 | 4) => Action::PauseNumber,
        Some(131056) => Action::DeferRecipient,
        Some(190) => Action::AuthDown,
        // Temporary on Meta's side: "unknown"/"service" errors, service unavailable, server
        // temporarily unavailable, business account in maintenance.
        Some(1 | 2 | 131000 | 131016 | 133004 | 131057) => Action::Retry,
        // Undeliverable, re-engagement (24 h window closed), unsupported type, spam rate
        // limit and marketing limit (see above), bad parameters, unknown or paused template,
        // recipient not a WhatsApp user, recipient opted out of marketing, and the rest.
        Some(_) if http < 500 && http != 401 => Action::Reject,
        _ => match http {
            401 => Action::AuthDown,
            429 => Action::PauseNumber,
            500.. => Action::Retry,
            _ => Action::Reject,
        },
    }
}

/// The `code` a report carries: Meta's code, else `http_<status>`.
pub fn code(http: u16, code: Option<i64>) -> String {
    code.map_or_else(|| format!("http_{http}"), |c| c.to_string())
}

/// What the pipeline gets for an answer the provider stops acting on itself.
pub fn error(http: u16, meta_code: Option<i64>, message: &str, retry_after: Duration) -> SendError {
    let (code, message) = (code(http, meta_code), format!("Cloud API HTTP {http}: {message}"));
    match action(http, meta_code) {
        Action::PauseNumber | Action::DeferRecipient => SendError::Throttled { retry_after },
        Action::AuthDown => SendError::Unavailable(format!("access token refused ({code}): {message}")),
        Action::Retry => SendError::Transient { code, message },
        Action::Reject => SendError::Rejected { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        for (http, code, want, retryable, label) in [
            (429, Some(130429), Action::PauseNumber, true, "throttled"),
            (400, Some(130429), Action::PauseNumber, true, "throttled"),
            (400, Some(80007), Action::PauseNumber, true, "throttled"),
            (400, Some(131056), Action::DeferRecipient, true, "throttled"),
            (401, Some(190), Action::AuthDown, true, "retry"),
            (401, None, Action::AuthDown, true, "retry"),
            (400, Some(190), Action::AuthDown, true, "retry"),
            (500, Some(131000), Action::Retry, true, "retry"),
            (503, Some(131016), Action::Retry, true, "retry"),
            (502, None, Action::Retry, true, "retry"),
            (500, Some(131026), Action::Retry, true, "retry"),
            (429, None, Action::PauseNumber, true, "throttled"),
            (400, Some(131026), Action::Reject, false, "rejected"),
            (400, Some(131047), Action::Reject, false, "rejected"),
            (400, Some(131051), Action::Reject, false, "rejected"),
            (400, Some(131048), Action::Reject, false, "rejected"),
            (400, Some(131049), Action::Reject, false, "rejected"),
            (404, Some(132001), Action::Reject, false, "rejected"),
            (400, Some(100), Action::Reject, false, "rejected"),
            (400, None, Action::Reject, false, "rejected"),
            (404, None, Action::Reject, false, "rejected"),
        ] {
            assert_eq!(action(http, code), want, "{http} {code:?}");
            let e = error(http, code, "x", Duration::from_secs(1));
            assert_eq!((e.is_retryable(), e.outcome_label()), (retryable, label), "{http} {code:?}");
        }
        assert_eq!(
            error(400, Some(131047), "Re-engagement message", Duration::ZERO),
            SendError::Rejected { code: "131047".into(), message: "Cloud API HTTP 400: Re-engagement message".into() }
        );
        assert_eq!(code(502, None), "http_502");
    }
}
