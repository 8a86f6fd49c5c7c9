//! `submit_sm` awaiting their `submit_sm_resp` on one link, matched by sequence number.
//!
//! Submits go out through rusmppc's `no_wait` path, whose answer says whether the PDU was
//! written; the response then comes back on the link's event stream and is matched here.
//! rusmppc's own request/response path cannot tell "never written" from "written, then the
//! connection died": both are `ConnectionClosed`, so every such submit would be ambiguous,
//! though a link closed with submits still queued in rusmppc never sent those at all.

use std::collections::HashMap;
use std::sync::Mutex;

use rusmpp::Command;
use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct InFlight {
    by_seq: Mutex<HashMap<u32, Entry>>,
}

enum Entry {
    Waiting(oneshot::Sender<Command>),
    /// The response beat its sender's registration (it can: the write completes, the SMSC
    /// answers and the bind loop routes the answer before the sender is scheduled again).
    Arrived(Command),
}

impl InFlight {
    /// Resolves with the response to `seq`; errs when the link ends first.
    pub(super) async fn response(&self, seq: u32) -> Result<Command, oneshot::error::RecvError> {
        let rx = {
            let mut map = self.by_seq.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(Entry::Arrived(cmd)) = map.remove(&seq) {
                return Ok(cmd);
            }
            let (tx, rx) = oneshot::channel();
            map.insert(seq, Entry::Waiting(tx));
            rx
        };
        rx.await
    }

    /// A response read from the link.
    pub(super) fn answer(&self, cmd: Command) {
        let seq = cmd.sequence_number();
        let mut map = self.by_seq.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(&seq) {
            Some(Entry::Waiting(tx)) => {
                let _ = tx.send(cmd);
            }
            // Late answers to submits that timed out land here too; they go with the link,
            // which a timeout always closes.
            _ => {
                map.insert(seq, Entry::Arrived(cmd));
            }
        }
    }

    /// The sender gave up waiting for `seq`.
    pub(super) fn forget(&self, seq: u32) {
        self.by_seq.lock().unwrap_or_else(|e| e.into_inner()).remove(&seq);
    }

    /// The link ended: every waiting submit learns that its answer will not come.
    pub(super) fn close(&self) {
        self.by_seq.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
        // The link ends under a waiting sender.
        let (got, ()) = tokio::join!(f.response(7), async {
            tokio::task::yield_now().await;
            f.close();
        });
        assert!(got.is_err());
        f.forget(9);
        assert!(f.by_seq.lock().unwrap().is_empty());
    }
}
