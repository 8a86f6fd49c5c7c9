//! `submit_sm` awaiting their `submit_sm_resp` on one link, matched by sequence number.
//!
//! Submits go out through rusmppc's `no_wait` path; the response comes back on the link's
//! event stream and is matched here, so a link declared dead can be cut at once (see
//! `killswitch`) and every submit still waiting learns it will get no answer.

use std::collections::HashMap;
use std::sync::Mutex;

use rusmpp::Command;
use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct InFlight {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_seq: HashMap<u32, Entry>,
    /// The link ended: no answer is coming for anything not yet arrived.
    closed: bool,
}

enum Entry {
    Waiting(oneshot::Sender<Command>),
    /// The response beat its sender's registration (it can: the write completes, the SMSC
    /// answers and the bind loop routes the answer before the sender is scheduled again).
    Arrived(Box<Command>),
}

impl InFlight {
    /// Resolves with the response to `seq`; errs when the link ends first.
    pub(super) async fn response(&self, seq: u32) -> Result<Command, oneshot::error::RecvError> {
        let rx = {
            let mut state = self.lock();
            if let Some(Entry::Arrived(cmd)) = state.by_seq.remove(&seq) {
                return Ok(*cmd);
            }
            let (tx, rx) = oneshot::channel();
            // Once closed, the sender is dropped here and the wait ends at once.
            if !state.closed {
                state.by_seq.insert(seq, Entry::Waiting(tx));
            }
            rx
        };
        rx.await
    }

    /// A response read from the link.
    pub(super) fn answer(&self, cmd: Command) {
        let seq = cmd.sequence_number();
        let map = &mut self.lock().by_seq;
        match map.remove(&seq) {
            Some(Entry::Waiting(tx)) => {
                let _ = tx.send(cmd);
            }
            // Late answers to submits that timed out land here too; they go with the link,
            // which a timeout always closes.
            _ => {
                map.insert(seq, Entry::Arrived(Box::new(cmd)));
            }
        }
    }

    /// The sender gave up waiting for `seq`.
    pub(super) fn forget(&self, seq: u32) {
        self.lock().by_seq.remove(&seq);
    }

    /// The link ended: every waiting submit learns that its answer will not come. Answers
    /// that did arrive stay to be claimed.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.by_seq.retain(|_, e| matches!(e, Entry::Arrived(_)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use rusmpp::pdus::SubmitSmResp;
    use rusmpp::CommandStatus;

    use super::*;

    fn resp(seq: u32) -> Command {
        Command::new(CommandStatus::EsmeRok, seq, SubmitSmResp::default())
    }

    #[tokio::test]
    async fn answers_meet_their_senders_in_either_order() {
        let f = InFlight::default();
        // Answer first, sender second.
        f.answer(resp(3));
        assert_eq!(f.response(3).await.unwrap().sequence_number(), 3);
        // Sender first.
        let (got, ()) = tokio::join!(f.response(5), async {
            tokio::task::yield_now().await;
            f.answer(resp(5));
        });
        assert_eq!(got.unwrap().sequence_number(), 5);
        // The link ends under a waiting sender; an answer that arrived first is still claimed,
        // and a sender coming after the end learns at once.
        f.answer(resp(8));
        let (got, ()) = tokio::join!(f.response(7), async {
            tokio::task::yield_now().await;
            f.close();
        });
        assert!(got.is_err());
        assert_eq!(f.response(8).await.unwrap().sequence_number(), 8);
        assert!(f.response(9).await.is_err());
        f.forget(9);
        assert!(f.lock().by_seq.is_empty());
    }
}
