//! Sending one job's PDUs: which bind, when (pauses, window), and what each answer leads to —
//! the next part, the same PDU again after a pause or a backoff, or an answer for the pipeline.

use std::time::Duration;

use rusmpp::pdus::SubmitSm;
use rusmpp::{CommandStatus, Pdu};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::bind::{BindSlot, Link};
use super::config::SmppOnTimeout;
use super::status::{self, Action};
use super::{ids, rate, submit, SmppProvider};
use crate::job::Job;
use crate::provider::{Accepted, OnWire, SendError};
use crate::telemetry;

/// A submit_sm that got no answer: the SMSC may or may not have the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// No submit_sm_resp within `response_timeout`.
    ResponseTimeout,
    /// The connection went away with the submit written or about to be; rusmppc cannot say which.
    ConnectionClosed,
}

impl Lost {
    fn label(self) -> &'static str {
        match self {
            Self::ResponseTimeout => "response_timeout",
            Self::ConnectionClosed => "connection_closed",
        }
    }
}

/// What one `submit_sm` came back with.
enum Answer {
    Id(String),
    Status(CommandStatus),
    Lost(Lost),
    Other(String),
}

async fn submit_once(link: &Link, pdu: SubmitSm, timeout: Duration) -> Answer {
    use rusmppc::error::Error as E;
    // `no_wait` resolves once the PDU is written to the socket. When it errs (ConnectionClosed,
    // Io) the PDU may or may not have gone out: it was meant to be safe to resend, but a test
    // with links cut by enquire_link timeouts (tests/smpp.rs) caught the simulator taking such
    // a PDU, so the resend doubled it. It is ambiguous like any unanswered submit: the only
    // submits moved to another bind are those found a closed link before being handed over.
    let seq = match link.client.no_wait().submit_sm(pdu).await {
        Ok(seq) => seq,
        Err(E::ConnectionClosed | E::Io(_)) => return Answer::Lost(Lost::ConnectionClosed),
        Err(other) => return Answer::Other(other.to_string()),
    };
    match tokio::time::timeout(timeout, link.inflight.response(seq)).await {
        Err(_) => {
            link.inflight.forget(seq);
            Answer::Lost(Lost::ResponseTimeout)
        }
        Ok(Err(_)) => Answer::Lost(Lost::ConnectionClosed),
        Ok(Ok(cmd)) => match (cmd.status(), cmd.pdu()) {
            (CommandStatus::EsmeRok, Some(Pdu::SubmitSmResp(resp))) => Answer::Id(resp.message_id().as_str().to_owned()),
            (CommandStatus::EsmeRok, _) => Answer::Other(format!("unexpected answer to submit_sm: {:?}", cmd.id())),
            (status, _) => Answer::Status(status),
        },
    }
}

/// The bind a job's PDUs go on, with the window permit held for the whole job: its parts go
/// one after another, so the bind never has more than `window` PDUs awaiting a response.
struct Seat {
    slot: std::sync::Arc<BindSlot>,
    link: Link,
    permit: OwnedSemaphorePermit,
}

impl SmppProvider {
    async fn seat(&self) -> Result<Seat, SendError> {
        let (slot, link) = self.pick().await?;
        let permit = slot.window.clone().acquire_owned().await.map_err(|_| SendError::Unavailable("bind closed".into()))?;
        Ok(Seat { slot, link, permit })
    }

    /// Until when the provider may keep trying this job itself: its `expires_at`, read on the
    /// pipeline's clock and turned into a monotonic instant here.
    fn deadline(&self, job: &Job) -> Option<Instant> {
        let expires = job.expires_at?;
        let left = (expires - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        Some(Instant::now() + left)
    }

    pub(super) async fn submit(&self, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
        let default_from = self.cfg.default_from.as_deref().unwrap_or("sendgate");
        let reference = self.reference.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let opts: submit::Options = (&self.cfg).into();
        let submit::Submission { pdus, segments } = submit::build(job, default_from, reference, &opts)?;
        let cells = rate::cells_per_pdu(segments, pdus.len());
        let deadline = self.deadline(job);
        let mut seat = self.seat().await?;
        let mut message_ids = Vec::with_capacity(pdus.len());
        // `on_response_timeout = "retry"` resends one lost PDU per job, once.
        let mut resent = false;
        // The job is marked `submitting` once, right before its first write.
        let mut entered = false;
        for (index, pdu) in pdus.into_iter().enumerate() {
            // Moved into its first write, not cloned for it (a clone and its drop per PDU
            // showed in profiles of the load test). A resend, which is rare, builds the job's
            // PDUs again (the same reference: the same bytes) and takes this one.
            let mut pdu = Some(pdu);
            let mut retries = 0u32;
            loop {
                if seat.link.dead.is_cancelled() || seat.link.client.is_closed() {
                    // Nothing was written on it yet: moving to another bind is safe.
                    debug!(provider = %self.name, job = %job.id, "link gone before the submit; moving to another bind");
                    drop(seat);
                    seat = self.seat().await.map_err(|e| give_up(e, &message_ids))?;
                }
                self.wait_unpaused(&seat.slot, deadline, &message_ids).await?;
                // Every submit_sm costs, resends too: the SMSC counts what it receives.
                seat.slot.rate.take(cells).await;
                self.rate.take(cells).await;
                self.wait_unpaused(&seat.slot, deadline, &message_ids).await?;
                // Looked at again right before the write: the waits above take time, and a
                // submit handed to a link that died meanwhile could only end ambiguous.
                if seat.link.dead.is_cancelled() || seat.link.client.is_closed() {
                    continue;
                }
                if !entered {
                    if !wire.enter().await {
                        return Err(SendError::Fenced);
                    }
                    entered = true;
                    // The mark took a store round trip: the link may have gone meanwhile.
                    if seat.link.dead.is_cancelled() || seat.link.client.is_closed() {
                        continue;
                    }
                }
                // Boxed: inline, its state (a PDU and rusmppc's request) was 60% of this
                // future's size, which every job in flight carries from its first poll.
                let this = match pdu.take() {
                    Some(p) => p,
                    None => {
                        let again = submit::build(job, default_from, reference, &opts).map_err(|e| give_up(e, &message_ids))?;
                        again.pdus.into_iter().nth(index).ok_or_else(|| {
                            give_up(SendError::Failed { code: "internal".into(), message: "a job's PDUs built again came out fewer".into() }, &message_ids)
                        })?
                    }
                };
                match Box::pin(submit_once(&seat.link, this, self.cfg.response_timeout)).await {
                    Answer::Id(id) => {
                        // Stored as the mapping's key: in the form receipts are read into.
                        message_ids.push(ids::from_resp(self.cfg.receipt_id_format, &id));
                        break;
                    }
                    Answer::Status(st) => match status::action(st) {
                        Action::PauseLink | Action::PauseLinkLonger => self.on_throttled(&seat.slot, st),
                        Action::Retry => {
                            retries += 1;
                            if retries > self.cfg.max_retries {
                                return Err(give_up(status::error(st), &message_ids));
                            }
                            let wait = self.cfg.retry_delay.saturating_mul(1 << (retries - 1).min(16));
                            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                                return Err(expired(&status::code(st)));
                            }
                            debug!(provider = %self.name, status = ?st, retry = retries, "submit_sm failed; sending it again in place");
                            tokio::time::sleep(wait).await;
                        }
                        Action::Reject => return Err(status::error(st)),
                    },
                    Answer::Lost(lost) => {
                        // Whatever the cause, this link is not to be trusted with more submits.
                        seat.link.dead.cancel();
                        if self.cfg.on_response_timeout == SmppOnTimeout::Retry && !resent {
                            resent = true;
                            metrics::counter!(telemetry::SMPP_SUBMITS_RESENT_TOTAL, "provider" => self.name.to_string(), "cause" => lost.label()).increment(1);
                            warn!(provider = %self.name, cause = lost.label(), "submit_sm outcome unknown; sending it again (on_response_timeout = \"retry\")");
                            // The old seat's permit goes back before a new one is taken.
                            drop(seat);
                            seat = self.seat().await.map_err(|e| give_up(e, &message_ids))?;
                            continue;
                        }
                        debug!(provider = %self.name, cause = lost.label(), "submit_sm outcome unknown");
                        return Err(SendError::Ambiguous { after: self.cfg.response_timeout, cause: lost.label() });
                    }
                    Answer::Other(message) => {
                        debug!(provider = %self.name, job = %job.id, %message, "submit_sm failed");
                        return Err(give_up(SendError::Transient { code: "connection".into(), message }, &message_ids));
                    }
                }
            }
        }
        // The window slot goes with the answer: freed once the pipeline recorded it.
        wire.keep(Box::new(seat.permit));
        Ok(Accepted { message_ids, segments })
    }

    /// ESME_RTHROTTLED / ESME_RMSGQFUL: the whole bind pauses; the PDU goes again after it.
    fn on_throttled(&self, slot: &BindSlot, st: CommandStatus) {
        let by = match status::action(st) {
            Action::PauseLinkLonger => self.cfg.queue_full_backoff,
            _ => self.cfg.throttle_backoff,
        };
        let provider = self.name.to_string();
        metrics::counter!(telemetry::SMPP_THROTTLED_TOTAL, "provider" => provider.clone(), "status" => status::code(st)).increment(1);
        let added = slot.pause(by);
        if !added.is_zero() {
            metrics::histogram!(telemetry::SMPP_LINK_PAUSE_SECONDS, "provider" => provider).record(added.as_secs_f64());
            debug!(provider = %self.name, bind = slot.index, status = ?st, pause = ?by, "SMPP bind paused");
        }
    }

    /// Waits out the bind's pause, unless it ends after the job's validity.
    async fn wait_unpaused(&self, slot: &BindSlot, deadline: Option<Instant>, taken: &[String]) -> Result<(), SendError> {
        while let Some(until) = slot.paused_until() {
            if deadline.is_some_and(|d| until > d) {
                return Err(expired("throttled"));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.stop.cancelled() => {
                    return Err(give_up(SendError::Throttled { retry_after: until - Instant::now() }, taken));
                }
            }
        }
        Ok(())
    }
}

/// A job whose earlier parts the SMSC already took cannot go back to the pipeline to be sent
/// again: that would send those parts twice. Such a retryable failure becomes final.
fn give_up(e: SendError, taken: &[String]) -> SendError {
    if taken.is_empty() || !e.is_retryable() {
        return e;
    }
    let message = format!("{e}; {} of the message's parts were already taken, so it is not sent again", taken.len());
    SendError::Failed { code: "partly_sent".into(), message }
}

fn expired(code: &str) -> SendError {
    SendError::Failed { code: code.into(), message: "the SMSC kept refusing for now, and waiting longer would outlive the job's expires_at".into() }
}
