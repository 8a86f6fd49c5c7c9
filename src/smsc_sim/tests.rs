//! In-process tests of the simulator over real TCP, driven by the rusmppc client the gateway
//! uses (and by raw frames where a client would refuse to send something broken).

use std::collections::HashSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::extra::concatenation::{Concatenation, Concatenator, SubmitSmMultipartExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, RegisteredDelivery};
use rusmpp::{Command, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;

use super::*;
use crate::provider::smpp::receipt::{parse_deliver_sm, Inbound, Receipt, ReceiptState};

/// UTF-16BE split at even byte offsets regardless of surrogate pairs. rusmpp-extra's `Ucs2`
/// refuses characters outside the BMP, and emoji cut in half are the case under test.
struct Utf16AnySplit;

impl Concatenator for Utf16AnySplit {
    type Error = std::convert::Infallible;

    fn concatenate(&self, message: &str, max: usize, header: usize) -> Result<(Concatenation, DataCoding), Self::Error> {
        let bytes: Vec<u8> = message.encode_utf16().flat_map(u16::to_be_bytes).collect();
        if bytes.len() <= max {
            return Ok((Concatenation::Single(bytes), DataCoding::Ucs2));
        }
        let parts = bytes.chunks((max - header) & !1).map(<[u8]>::to_vec).collect();
        Ok((Concatenation::Concatenated(parts), DataCoding::Ucs2))
    }
}

pub(super) fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    COctetString::from_string(s.to_owned()).unwrap()
}

pub(super) fn submit_template(registered_delivery: u8) -> SubmitSm {
    SubmitSm::builder()
        .source_addr(cstr("ACME"))
        .destination_addr(cstr("4915112345678"))
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(registered_delivery))
        .build()
}

async fn connect(sim: &SimHandle) -> (Client, impl futures::Stream<Item = Event> + Unpin) {
    ConnectionBuilder::new().connect(format!("smpp://{}", sim.local_addr())).await.unwrap()
}

pub(super) fn bind_trx(system_id: &str, password: &str) -> BindTransceiver {
    BindTransceiver::builder().system_id(cstr(system_id)).password(cstr(password)).build()
}

/// Collects `n` receipts, answering each deliver_sm as the gateway does.
async fn receipts(client: &Client, events: &mut (impl futures::Stream<Item = Event> + Unpin), n: usize) -> Vec<Receipt> {
    let mut out = Vec::new();
    let collect = async {
        while out.len() < n {
            match events.next().await.expect("connection open") {
                Event::Incoming(cmd) => {
                    if let Some(Pdu::DeliverSm(d)) = cmd.pdu() {
                        match parse_deliver_sm(d).expect("receipt parses") {
                            Inbound::Receipt(r) => out.push(r),
                            mo => panic!("expected a receipt, got {mo:?}"),
                        }
                        client.deliver_sm_resp(cmd.sequence_number(), DeliverSmResp::default()).await.unwrap();
                    }
                }
                Event::Error(e) => panic!("client error: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), collect).await.expect("receipts within 5 s");
    out
}

#[tokio::test]
async fn three_part_ucs2_emoji_message_is_reassembled_and_receipted() {
    let cfg = SimConfig { receipt_delay: Duration::from_millis(20), ..recording() };
    let sim = SmscSim::start(cfg).await.unwrap();
    let (client, mut events) = connect(&sim).await;
    client.bind_transceiver(bind_trx("gw", "pw")).await.unwrap();

    // 67 UTF-16 units fit a part after the 6-byte UDH: both emoji straddle a part boundary.
    let text = format!("{}😀{}🎉{} ж€[]", "a".repeat(66), "b".repeat(65), "c".repeat(20));
    let parts = submit_template(1).multipart(&text).encoder(Utf16AnySplit).reference_u8(42).build().unwrap();
    assert_eq!(parts.len(), 3);
    let first: &[u8] = parts[0].short_message().as_ref();
    assert_eq!(&first[first.len() - 2..], &[0xD8, 0x3D], "part 1 ends on a high surrogate");

    let mut ids = Vec::new();
    for part in parts {
        ids.push(client.submit_sm(part).await.unwrap().message_id().as_str().to_owned());
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3, "unique ids: {ids:?}");

    let got = receipts(&client, &mut events, 3).await;
    assert!(got.iter().all(|r| r.state == ReceiptState::Delivered && r.error_code.as_deref() == Some("000")), "{got:?}");
    let receipted: HashSet<_> = got.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(receipted, ids.iter().cloned().collect());

    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.text, text);
    assert_eq!((m.parts, m.data_coding, m.message_ids.clone()), (3, 8, ids));
    assert_eq!((m.source.as_str(), m.destination.as_str()), ("ACME", "4915112345678"));

    let stats = sim.stats();
    assert_eq!((stats.submit_sm, stats.messages, stats.receipts_sent), (3, 1, 3));
    assert_eq!((stats.binds, stats.bound_sessions), (1, 1));

    client.unbind().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((sim.stats().unbinds, sim.stats().bound_sessions), (1, 0));
    sim.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn credentials_are_checked() {
    let cfg = SimConfig { system_id: Some("gw".into()), password: Some("pw".into()), ..recording() };
    let sim = SmscSim::start(cfg).await.unwrap();
    for (system_id, password, want) in [("other", "pw", CommandStatus::EsmeRinvsysid), ("gw", "nope", CommandStatus::EsmeRinvpaswd)] {
        let (client, _events) = connect(&sim).await;
        match client.bind_transceiver(bind_trx(system_id, password)).await {
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => assert_eq!(response.status(), want),
            other => panic!("{system_id}/{password}: {other:?}"),
        }
    }
    let (client, _events) = connect(&sim).await;
    client.bind_transceiver(bind_trx("gw", "pw")).await.unwrap();
    assert_eq!(sim.stats().binds, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn receipts_for_a_transmitter_go_to_a_receiver_and_follow_the_mix() {
    let cfg = SimConfig { receipt_delay: Duration::from_millis(10), outcome_mix: "rejected=1".into(), ..recording() };
    let sim = SmscSim::start(cfg).await.unwrap();
    let (tx_client, _tx_events) = connect(&sim).await;
    tx_client.bind_transmitter(BindTransmitter::builder().system_id(cstr("gw")).build()).await.unwrap();
    let (rx_client, mut rx_events) = connect(&sim).await;
    rx_client.bind_receiver(BindReceiver::builder().system_id(cstr("gw")).build()).await.unwrap();

    // A receiver may not submit.
    match rx_client.submit_sm(submit_template(1)).await {
        Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
            assert_eq!(response.status(), CommandStatus::EsmeRinvbndsts)
        }
        other => panic!("{other:?}"),
    }
    let sm = submit_template(1).with_short_message(OctetString::from_static_slice(b"Hi {there}").unwrap());
    let id = tx_client.submit_sm(sm).await.unwrap().message_id().as_str().to_owned();
    let got = receipts(&rx_client, &mut rx_events, 1).await;
    assert_eq!(got, [Receipt { message_id: id, state: ReceiptState::Rejected, error_code: Some("002".into()) }]);
    // Raw ASCII braces are 0x7B/0x7D, which GSM-7 reads as ä/ñ: a sender must escape them.
    assert_eq!(sim.messages()[0].text, "Hi äthereñ");
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_and_unknown_pdus_get_generic_nack_and_the_link_survives() {
    let sim = SmscSim::start(recording()).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    // submit_sm whose body is an unterminated C-string, then an unknown command id.
    stream.write_all(&[0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9, b'x', b'y', b'z', b'w']).await.unwrap();
    stream.write_all(&[0, 0, 0, 16, 0, 0, 0x0f, 0xff, 0, 0, 0, 0, 0, 0, 0, 10]).await.unwrap();
    let mut framed = Framed::new(stream, CommandCodec::new());
    framed.send(Command::new(CommandStatus::EsmeRok, 11, Pdu::EnquireLink)).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let cmd = tokio::time::timeout(Duration::from_secs(5), framed.next()).await.unwrap().unwrap().unwrap();
        answers.push((cmd.sequence_number(), cmd.id(), cmd.status()));
    }
    use rusmpp::CommandId::*;
    assert_eq!(
        answers,
        [(9, GenericNack, CommandStatus::EsmeRinvcmdlen), (10, GenericNack, CommandStatus::EsmeRinvcmdid), (11, EnquireLinkResp, CommandStatus::EsmeRok),]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn log_file_gets_one_json_line_per_message() {
    let path = std::env::temp_dir().join(format!("smsc-sim-{}-{}.jsonl", std::process::id(), rand::random::<u32>()));
    let cfg = SimConfig { log: Some(path.clone()), record_messages: false, ..recording() };
    let sim = SmscSim::start(cfg).await.unwrap();
    let (client, _events) = connect(&sim).await;
    client.bind_transceiver(bind_trx("gw", "")).await.unwrap();
    for text in ["one", "two €"] {
        for part in submit_template(0).multipart(text).build().unwrap() {
            client.submit_sm(part).await.unwrap();
        }
    }
    sim.shutdown().await;
    assert!(sim.messages().is_empty(), "record_messages is off");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let _ = std::fs::remove_file(&path);
    let texts: Vec<_> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two €"]);
    assert_eq!(lines[0]["parts"], 1);
    assert!(lines[0]["message_ids"].is_array() && lines[0]["data_coding"] == 0);
}

#[test]
fn bad_outcome_mix_is_refused_at_start() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cfg = SimConfig { outcome_mix: "delivered=1,lost=2".into(), ..recording() };
    let err = rt.block_on(SmscSim::start(cfg)).err().expect("refused");
    assert!(err.to_string().starts_with("smsc_sim.outcome_mix: `lost`"), "{err}");
}

/// The simulator's defaults with every reassembled message kept, which these tests read.
fn recording() -> SimConfig {
    SimConfig { record_messages: true, ..SimConfig::default() }
}
