//! The one table that says what a Bot API refusal means. Telegram's `error_code` is an HTTP
//! status; its `description` is free text, read only to tell a blocked bot from the other 403s.
//!
//! Decided here, written down in docs/providers.md:
//! - 401 and 404 to `sendMessage` mean the token is wrong or revoked (the path holds it), not
//!   that the chat is unknown (that is `400 Bad Request: chat not found`): the provider is down.
//! - Every 403 is final for the job (blocked by the user, kicked from the group, deactivated
//!   user, a user who never started the bot); only "blocked" may feed the opt-out list, as it
//!   alone is the recipient saying no. A user who never started the bot has not said no: on
//!   the list they could never be reached after they do.

use std::time::Duration;

use crate::provider::SendError;

/// What the provider does with a request Telegram refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 429: flood control. The whole bot pauses for `retry_after` (every send waits), then the
    /// same message goes again in place, keeping its order.
    PauseBot,
    /// 401, 404: the token was refused. The provider is down in `/readyz` with the reason;
    /// jobs go elsewhere or wait.
    AuthDown,
    /// 5xx: Telegram's side; the job is retried later.
    Retry,
    /// Any other 4xx (400 chat not found, message too long, can't parse entities; 403): the
    /// message or the chat is at fault for good, `rejected` with the code.
    Reject,
}

/// The table, by Telegram's `error_code`.
pub fn action(code: u16) -> Action {
    match code {
        429 => Action::PauseBot,
        401 | 404 => Action::AuthDown,
        500.. => Action::Retry,
        _ => Action::Reject,
    }
}

/// A 403 that says the user blocked the bot: the answer that may put the chat on the opt-out
/// list (`opt_out_on_blocked`).
pub fn is_blocked(code: u16, description: &str) -> bool {
    code == 403 && description.to_ascii_lowercase().contains("blocked by the user")
}

/// What the pipeline gets for an answer the provider stops acting on itself. `description`
/// has had the token scrubbed out already.
pub fn error(code: u16, description: &str, migrate_to_chat_id: Option<i64>, retry_after: Duration) -> SendError {
    let mut message = format!("Telegram {code}: {description}");
    if let Some(id) = migrate_to_chat_id {
        // What the CRM needs to send to the group again: its new chat id.
        message.push_str(&format!(" (migrate_to_chat_id {id})"));
    }
    let code_s = code.to_string();
    match action(code) {
        Action::PauseBot => SendError::Throttled { retry_after },
        Action::AuthDown => SendError::Unavailable(format!("bot token refused ({message})")),
        Action::Retry => SendError::Transient { code: code_s, message },
        Action::Reject => SendError::Rejected { code: code_s, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        for (code, want, retryable, label) in [
            (429, Action::PauseBot, true, "throttled"),
            (401, Action::AuthDown, true, "retry"),
            (404, Action::AuthDown, true, "retry"),
            (500, Action::Retry, true, "retry"),
            (502, Action::Retry, true, "retry"),
            (400, Action::Reject, false, "rejected"),
            (403, Action::Reject, false, "rejected"),
            (409, Action::Reject, false, "rejected"),
            (413, Action::Reject, false, "rejected"),
        ] {
            assert_eq!(action(code), want, "{code}");
            let e = error(code, "x", None, Duration::from_secs(1));
            assert_eq!((e.is_retryable(), e.outcome_label()), (retryable, label), "{code}");
        }
        assert_eq!(
            error(400, "Bad Request: chat not found", None, Duration::ZERO),
            SendError::Rejected { code: "400".into(), message: "Telegram 400: Bad Request: chat not found".into() }
        );
        assert_eq!(
            error(400, "Bad Request: group chat was upgraded to a supergroup chat", Some(-1009876543210), Duration::ZERO),
            SendError::Rejected {
                code: "400".into(),
                message: "Telegram 400: Bad Request: group chat was upgraded to a supergroup chat (migrate_to_chat_id -1009876543210)".into()
            }
        );
        assert_eq!(error(429, "Too Many Requests: retry after 7", None, Duration::from_secs(7)), SendError::Throttled { retry_after: Duration::from_secs(7) });
    }

    #[test]
    fn only_a_block_by_the_user_may_opt_out() {
        for (code, description, want) in [
            (403, "Forbidden: bot was blocked by the user", true),
            (403, "Forbidden: bot was kicked from the group chat", false),
            (403, "Forbidden: user is deactivated", false),
            (403, "Forbidden: bot can't initiate conversation with a user", false),
            (400, "Bad Request: chat not found", false),
        ] {
            assert_eq!(is_blocked(code, description), want, "{code} {description}");
        }
    }
}
