//! The provider against a scripted fake SMSC, for what the simulator never does: answer a
//! submit with ESME_RSYSERR or ESME_RMSGQFUL, send an MO message or an unreadable deliver_sm.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use super::link_tests::{job, provider, smpp_config};
use super::SmppProvider;
use crate::clock::SystemClock;
use crate::provider::{Provider, SendError};
use crate::receipt::ProviderEvent;

/// A one-connection SMSC that binds anyone and answers the i-th submit_sm with `statuses[i]`
/// (ESME_ROK once the script runs out). Returns its address and the statuses it sent.
pub(super) async fn scripted_smsc(statuses: Vec<CommandStatus>) -> (String, tokio::task::JoinHandle<Vec<CommandStatus>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, CommandCodec::new());
        let mut script = statuses.into_iter();
        let mut sent = Vec::new();
        let mut next_id = 1u32;
        while let Some(Ok(cmd)) = framed.next().await {
            let seq = cmd.sequence_number();
            let reply = match cmd.pdu() {
                Some(Pdu::BindTransceiver(_)) => {
                    Command::new(CommandStatus::EsmeRok, seq, BindTransceiverResp::new(COctetString::from_str_lossy("fake"), None))
                }
                Some(Pdu::SubmitSm(_)) => {
                    let status = script.next().unwrap_or(CommandStatus::EsmeRok);
                    sent.push(status);
                    next_id += 1;
                    let id = COctetString::from_str_lossy(&next_id.to_string());
                    Command::new(status, seq, SubmitSmResp::new(id, Vec::new()))
                }
                Some(Pdu::EnquireLink) => Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp),
                Some(Pdu::Unbind) => {
                    let _ = framed.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp)).await;
                    break;
                }
                _ => continue,
            };
            if framed.send(reply).await.is_err() {
                break;
            }
        }
        sent
    });
    (addr, task)
}

trait Lossy {
    fn from_str_lossy(s: &str) -> Self;
}

impl<const MIN: usize, const MAX: usize> Lossy for COctetString<MIN, MAX> {
    fn from_str_lossy(s: &str) -> Self {
        COctetString::from_string(s.to_owned()).expect("a short ASCII literal")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_table_drives_retries() {
    use CommandStatus::*;
    let cases: Vec<(Vec<CommandStatus>, Result<(), &str>, usize)> = vec![
        // Passing errors: resent in place, taken on the third try.
        (vec![EsmeRsyserr, EsmeRsyserr], Ok(()), 3),
        // More than max_retries (2 here): back to the pipeline as transient.
        (vec![EsmeRsyserr, EsmeRxTAppn, EsmeRsyserr], Err("transient"), 3),
        // Queue full: the bind pauses, then the same PDU goes again.
        (vec![EsmeRmsgqful], Ok(()), 2),
        // The message's own fault: rejected at once, never resent.
        (vec![EsmeRinvdstadr], Err("rejected"), 1),
        (vec![EsmeRinvmsglen], Err("rejected"), 1),
    ];
    for (script, want, submits) in cases {
        let (addr, smsc) = scripted_smsc(script.clone()).await;
        let (p, _rx) = provider(&addr, "max_retries = 2\nretry_delay = \"10ms\"\nqueue_full_backoff = \"50ms\"").await;
        let got = p.send(&job(1, serde_json::json!({})), &crate::provider::Unclaimed).await;
        let kind = match &got {
            Ok(_) => Ok(()),
            Err(SendError::Transient { .. }) => Err("transient"),
            Err(SendError::Rejected { .. }) => Err("rejected"),
            Err(e) => panic!("{script:?}: {e:?}"),
        };
        assert_eq!(kind, want, "{script:?}: {got:?}");
        p.shutdown().await;
        let sent = smsc.await.unwrap();
        assert_eq!(sent.len(), submits, "{script:?}: {sent:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_part_failing_for_now_ends_failed_not_resent() {
    use CommandStatus::*;
    // Part 1 taken; part 2 keeps failing: resending the job would send part 1 twice.
    let (addr, smsc) = scripted_smsc(vec![EsmeRok, EsmeRsyserr, EsmeRsyserr]).await;
    let (p, _rx) = provider(&addr, "max_retries = 1\nretry_delay = \"10ms\"").await;
    let err = p.send(&job(1, serde_json::json!({"text": "a".repeat(200)})), &crate::provider::Unclaimed).await.unwrap_err();
    assert!(matches!(&err, SendError::Failed { code, .. } if code == "partly_sent"), "{err:?}");
    p.shutdown().await;
    assert_eq!(smsc.await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_messages_and_unreadable_deliver_sm_are_acknowledged() {
    use rusmpp::pdus::DeliverSm;
    use rusmpp::types::OctetString;
    use rusmpp::values::EsmClass;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let smsc = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, CommandCodec::new());
        let deliver = |esm: u8, text: &[u8]| {
            DeliverSm::builder()
                .source_addr(COctetString::from_str_lossy("4915100000001"))
                .destination_addr(COctetString::from_str_lossy("ACME"))
                .esm_class(EsmClass::from(esm))
                .short_message(OctetString::from_vec(text.to_vec()).unwrap())
                .build()
        };
        let mut acked = Vec::new();
        while let Some(Ok(cmd)) = framed.next().await {
            let seq = cmd.sequence_number();
            match cmd.pdu() {
                Some(Pdu::BindTransceiver(_)) => {
                    let resp = BindTransceiverResp::new(COctetString::from_str_lossy("fake"), None);
                    framed.send(Command::new(CommandStatus::EsmeRok, seq, resp)).await.unwrap();
                    // An MO message, then a receipt with no id anywhere: both must be answered.
                    framed.send(Command::new(CommandStatus::EsmeRok, 1001, deliver(0x00, b"STOP"))).await.unwrap();
                    framed.send(Command::new(CommandStatus::EsmeRok, 1002, deliver(0x04, b"stat:DELIVRD"))).await.unwrap();
                }
                Some(Pdu::EnquireLink) => framed.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp)).await.unwrap(),
                Some(Pdu::DeliverSmResp(_)) => {
                    acked.push((seq, cmd.status()));
                    if acked.len() == 2 {
                        return acked;
                    }
                }
                _ => {}
            }
        }
        acked
    });
    let (tx, mut rx) = mpsc::channel(16);
    let p = SmppProvider::start("p", smpp_config(&addr, ""), addr.clone(), tx, Arc::new(SystemClock));
    let m = match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the MO is handed on") {
        Some(ProviderEvent::Inbound(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!((m.from.as_str(), m.to.as_str(), m.text.as_str()), ("4915100000001", "ACME", "STOP"));
    // Not recorded yet: nothing is acknowledged (acks go in arrival order, the MO first).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!smsc.is_finished(), "acknowledged before it was recorded");
    m.ack.done();
    let acked = tokio::time::timeout(Duration::from_secs(5), smsc).await.expect("both acknowledged").unwrap();
    assert_eq!(acked, [(1001, CommandStatus::EsmeRok), (1002, CommandStatus::EsmeRok)]);
    assert!(rx.try_recv().is_err(), "the unreadable receipt is dropped, not passed on");
    p.shutdown().await;
}
