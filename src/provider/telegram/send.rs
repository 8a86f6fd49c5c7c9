//! One job to Telegram: checked, queued behind its chat's earlier messages, paced with the
//! bot, sent, and its answer as [`SendError`] or [`Accepted`] plus the immediate `delivered`.
//!
//! Waits, in order: the chat's turn (FIFO) and interval, the bot's pause after a 429, a request
//! slot (`concurrency`), the bot's pace; then the [`OnWire`] gate and the write. A wait longer
//! than `max_wait` is not waited here: the job goes back to the pipeline, deferred, holding
//! nothing meanwhile.

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::api::{self, Answer};
use super::pace::is_group;
use super::status::{self, Action};
use super::TelegramProvider;
use crate::job::{masked, Content, Job};
use crate::provider::{Accepted, OnWire, SendError};
use crate::receipt::{InboundReceipt, ProviderEvent, ReceiptAck};
use crate::store::PartOutcome;
use crate::telemetry;

/// A chat id the Bot API takes: an integer (users positive, groups negative, supergroups and
/// channels `-100…`) or a public channel's `@username`.
pub fn is_chat_id(to: &str) -> bool {
    let digits = to.strip_prefix('-').unwrap_or(to);
    let numeric = (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let username = to.strip_prefix('@').is_some_and(|u| (1..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    numeric || username
}

pub(super) async fn send(p: &TelegramProvider, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
    let Content::Text(text) = &job.content else {
        return Err(SendError::Rejected { code: "unsupported_content".into(), message: "template: Telegram has no templates; send text".into() });
    };
    if !is_chat_id(&job.to) {
        return Err(SendError::Rejected { code: "invalid_chat_id".into(), message: "to: a Telegram chat id is an integer or a channel's @username".into() });
    }
    let interval = if is_group(&job.to) { p.cfg.group_interval } else { p.cfg.chat_interval };
    let chat = p.chats.get(&job.to);
    let backlog = chat.backlog(interval);
    if backlog > p.cfg.max_wait {
        debug!(provider = %p.name, chat = %masked(&job.to), wait = ?backlog, "chat's queue longer than max_wait; deferred");
        return Err(SendError::Throttled { retry_after: backlog });
    }
    let _place = chat.join();
    // Held to the answer: the chat's next message waits for this one, a retry after a 429
    // included, so the chat's order holds.
    let _turn = chat.turn.lock().await;
    let body = Bytes::from(api::body(&job.to, text, p.cfg.parse_mode.as_deref()).to_string());
    let mut entered = false;
    let mut throttled = 0;
    loop {
        chat.ready().await;
        if let Some(left) = p.bot.paused_for() {
            if left > p.cfg.max_wait {
                return Err(SendError::Throttled { retry_after: left });
            }
            tokio::time::sleep(left).await;
            continue;
        }
        let Some(token) = p.token.current() else {
            return Err(SendError::Unavailable(p.token.refusal().unwrap_or_else(|| "bot token refused".into())));
        };
        let _slot = p.slots.acquire().await.map_err(|_| SendError::Unavailable("provider shut down".into()))?;
        p.bot.slot().await;
        if p.bot.paused_for().is_some() {
            // A 429 came while this waited for its slot: wait out the pause first.
            continue;
        }
        if !entered {
            if !wire.enter().await {
                return Err(SendError::Fenced);
            }
            entered = true;
        }
        let uri =
            format!("{}/bot{token}/sendMessage", p.base).parse().map_err(|_| SendError::Unavailable("base_url and the token make no valid URI".into()))?;
        let answer = api::post(&p.client, uri, body.clone(), p.cfg.request_timeout).await;
        chat.sent(interval);
        let (code, description, retry_after, migrate_to_chat_id) = match answer {
            Answer::Sent { chat_id, message_id } => {
                // Message ids are unique within a chat only.
                let id = format!("{}:{message_id}", chat_id.map_or_else(|| job.to.clone(), |c| c.to_string()));
                delivered(p, &id).await;
                return Ok(Accepted { message_ids: vec![id], segments: 1 });
            }
            Answer::NotSent(e) => return Err(SendError::Transient { code: "connect".into(), message: p.token.scrub(&e) }),
            Answer::Silent { cause } => return Err(SendError::Ambiguous { after: p.cfg.request_timeout, cause }),
            Answer::Refused { code, description, retry_after, migrate_to_chat_id } => (code, p.token.scrub(&description), retry_after, migrate_to_chat_id),
        };
        match status::action(code) {
            Action::PauseBot => {
                let pause = retry_after.unwrap_or(p.cfg.throttle_backoff);
                p.bot.pause(pause);
                warn!(provider = %p.name, retry_after = ?pause, "bot throttled (429); every send paused");
                throttled += 1;
                if throttled <= p.cfg.max_retries {
                    continue;
                }
                return Err(status::error(code, &description, None, pause));
            }
            Action::AuthDown => {
                let e = status::error(code, &description, None, p.cfg.auth_retry);
                p.token.refused(&e.to_string());
                return Err(e);
            }
            Action::Reject => {
                if p.cfg.opt_out_on_blocked && status::is_blocked(code, &description) {
                    opt_out(p, job).await;
                }
                return Err(status::error(code, &description, migrate_to_chat_id, p.cfg.throttle_backoff));
            }
            Action::Retry => return Err(status::error(code, &description, None, p.cfg.throttle_backoff)),
        }
    }
}

/// Telegram's `ok` means the message is in the chat, and Telegram says nothing more later: the
/// job's `delivered` is this receipt, sent now down the one receipt path, so the store's
/// exactly-one-final and accepted-before-final rules hold as for any receipt (it usually
/// arrives before the mapping is stored, and is matched as an early receipt).
async fn delivered(p: &TelegramProvider, message_id: &str) {
    let receipt = InboundReceipt {
        provider: p.name.clone(),
        message_id: message_id.to_owned(),
        outcome: Some(PartOutcome::Delivered),
        error_code: None,
        read: false,
        stored: false,
        ack: ReceiptAck::default(),
    };
    if p.events.send(ProviderEvent::Receipt(receipt)).await.is_err() {
        warn!(provider = %p.name, "receipt path closed (shutting down); the job ends unknown at its receipt timeout");
    }
}

/// The user blocked the bot: the chat goes on the job's tenant's opt-out list for its channel.
/// Tried once: if the store fails, the next message's 403 tries again.
async fn opt_out(p: &TelegramProvider, job: &Job) {
    let entry = [(job.tenant.as_str(), job.channel.as_str(), job.to.as_str())];
    match p.store.add_opt_outs(&entry).await {
        Ok(added) => {
            let new = added.first().copied().unwrap_or(false);
            if new {
                metrics::counter!(telemetry::OPT_OUTS_TOTAL, "source" => "blocked").increment(1);
            }
            info!(provider = %p.name, tenant = %job.tenant, channel = %job.channel.as_str(), recipient = %masked(&job.to), already_listed = !new, "user blocked the bot; chat opted out");
        }
        Err(e) => warn!(provider = %p.name, recipient = %masked(&job.to), error = %e, "opt-out of a chat that blocked the bot not stored"),
    }
}

#[cfg(test)]
mod tests {
    use super::is_chat_id;

    #[test]
    fn chat_ids_are_integers_or_channel_names() {
        for (to, want) in [
            ("123456789", true),
            ("-123456789", true),
            ("-1001234567890", true),
            ("@acme_news", true),
            ("+79161234567", false),
            ("-", false),
            ("@", false),
            ("@acme news", false),
            ("123456789012345678901", false),
            ("acme", false),
        ] {
            assert_eq!(is_chat_id(to), want, "{to}");
        }
    }
}
