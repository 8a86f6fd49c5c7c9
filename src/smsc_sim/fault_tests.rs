//! The simulator's faults over real TCP, driven by raw frames: a client library would retry,
//! answer enquire_link timeouts or hide the order PDUs arrived in, which is what is under test.

use std::collections::HashSet;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{DeliverSm, DeliverSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::tests::{bind_trx, submit_template};
use super::*;
use crate::provider::smpp::receipt::{parse_deliver_sm, Inbound};

/// How long a test waits to conclude that nothing is coming. Only ever long enough to miss a
/// bug, never short enough to fail a correct simulator.
const SILENCE: Duration = Duration::from_millis(300);
/// How long anything that should come may take, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(5);

enum Read {
    Pdu(Box<Command>),
    Closed,
    Silent,
}

/// One connection speaking raw PDUs.
struct Raw {
    framed: Framed<TcpStream, CommandCodec>,
    next_seq: u32,
}

impl Raw {
    async fn connect(sim: &SimHandle) -> Self {
        let stream = TcpStream::connect(sim.local_addr()).await.unwrap();
        Self { framed: Framed::new(stream, CommandCodec::new()), next_seq: 1 }
    }

    /// Connects and binds as transceiver `gw`.
    async fn bound(sim: &SimHandle) -> Self {
        let mut c = Self::connect(sim).await;
        let status = c.bind("gw").await;
        assert_eq!(status, CommandStatus::EsmeRok);
        c
    }

    async fn bind(&mut self, system_id: &str) -> CommandStatus {
        self.send(bind_trx(system_id, "")).await;
        let resp = self.pdu().await;
        assert_eq!(resp.id(), CommandId::BindTransceiverResp);
        resp.status()
    }

    /// Sends a request; returns its sequence number.
    async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.framed.send(Command::new(CommandStatus::EsmeRok, seq, pdu)).await.unwrap();
        seq
    }

    async fn read(&mut self, within: Duration) -> Read {
        match tokio::time::timeout(within, self.framed.next()).await {
            Err(_) => Read::Silent,
            Ok(None) => Read::Closed,
            Ok(Some(cmd)) => Read::Pdu(Box::new(cmd.expect("a PDU that decodes"))),
        }
    }

    /// The next PDU, which must come.
    async fn pdu(&mut self) -> Command {
        match self.read(PATIENCE).await {
            Read::Pdu(cmd) => *cmd,
            Read::Closed => panic!("connection closed"),
            Read::Silent => panic!("nothing within {PATIENCE:?}"),
        }
    }

    async fn ack(&mut self, deliver_sm: &Command) {
        let resp = Command::new(CommandStatus::EsmeRok, deliver_sm.sequence_number(), DeliverSmResp::default());
        self.framed.send(resp).await.unwrap();
    }

    async fn assert_silent(&mut self) {
        match self.read(SILENCE).await {
            Read::Silent => {}
            Read::Closed => panic!("closed, expected an open and silent connection"),
            Read::Pdu(cmd) => panic!("expected silence, got {:?} seq {}", cmd.id(), cmd.sequence_number()),
        }
    }
}

async fn start(cfg: SimConfig) -> SimHandle {
    SmscSim::start(SimConfig { receipt_delay: Duration::from_millis(10), ..cfg }).await.unwrap()
}

fn resp_id(cmd: &Command) -> String {
    match cmd.pdu() {
        Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_owned(),
        other => panic!("expected submit_sm_resp, got {other:?}"),
    }
}

fn deliver_sm(cmd: &Command) -> &DeliverSm {
    match cmd.pdu() {
        Some(Pdu::DeliverSm(d)) => d,
        other => panic!("expected deliver_sm, got {other:?}"),
    }
}

/// The receipt's id as the gateway reads it (receipted_message_id TLV first).
fn receipt_id(cmd: &Command) -> String {
    match parse_deliver_sm(deliver_sm(cmd)) {
        Ok(Inbound::Receipt(r)) => r.message_id,
        other => panic!("expected a receipt, got {other:?}"),
    }
}

/// Reads until `resps` submit_sm_resp and `receipts` deliver_sm have come, acknowledging the
/// receipts; returns both in arrival order.
async fn collect(c: &mut Raw, resps: usize, receipts: usize) -> (Vec<Command>, Vec<Command>) {
    let (mut rs, mut ds) = (Vec::new(), Vec::new());
    while rs.len() < resps || ds.len() < receipts {
        let cmd = c.pdu().await;
        match cmd.id() {
            CommandId::SubmitSmResp => rs.push(cmd),
            CommandId::DeliverSm => {
                c.ack(&cmd).await;
                ds.push(cmd);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (rs, ds)
}

#[tokio::test]
async fn throttle_every_third_submit_is_throttled_not_taken_and_not_receipted() {
    let sim = start(SimConfig { throttle_every: NonZeroU64::new(3), ..recording() }).await;
    let mut c = Raw::bound(&sim).await;
    for _ in 0..9 {
        c.send(submit_template(1)).await;
    }
    let (mut resps, receipts) = collect(&mut c, 9, 6).await;
    resps.sort_by_key(Command::sequence_number);
    let statuses: Vec<_> = resps.iter().map(Command::status).collect();
    let (ok, thr) = (CommandStatus::EsmeRok, CommandStatus::EsmeRthrottled);
    assert_eq!(statuses, [ok, ok, thr, ok, ok, thr, ok, ok, thr]);
    assert_eq!(u32::from(thr), 0x58);

    let taken: HashSet<String> = resps.iter().filter(|r| r.status() == ok).map(resp_id).collect();
    let receipted: HashSet<String> = receipts.iter().map(receipt_id).collect();
    assert_eq!(receipted, taken);
    c.assert_silent().await;
    let s = sim.stats();
    assert_eq!((s.submit_sm, s.throttled, s.messages, s.receipts_sent), (9, 3, 6, 6));
    sim.shutdown().await;
}

#[tokio::test]
async fn throttle_above_tps_refuses_the_excess_of_a_second() {
    let sim = start(SimConfig { throttle_above_tps: NonZeroU32::new(4), ..recording() }).await;
    let mut c = Raw::bound(&sim).await;
    for _ in 0..6 {
        c.send(submit_template(0)).await;
    }
    let (resps, _) = collect(&mut c, 6, 0).await;
    let statuses: Vec<_> = resps.iter().map(Command::status).collect();
    let (ok, thr) = (CommandStatus::EsmeRok, CommandStatus::EsmeRthrottled);
    assert_eq!(statuses, [ok, ok, ok, ok, thr, thr]);
    assert_eq!((sim.stats().throttled, sim.stats().messages), (2, 4));
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_after_submits_closes_before_the_resp_of_a_message_it_took() {
    for repeat in [false, true] {
        let cfg = SimConfig { drop_after_submits: NonZeroU64::new(2), drop_repeat: repeat, ..recording() };
        let sim = start(cfg).await;
        // Bound first, so the receipt of the dropped message has somewhere to go at once.
        let mut other = Raw::bound(&sim).await;
        let mut c = Raw::bound(&sim).await;

        c.send(submit_template(0)).await;
        let first = resp_id(&c.pdu().await);
        c.send(submit_template(1)).await;
        assert!(matches!(c.read(PATIENCE).await, Read::Closed), "2nd accepted submit: closed without a resp");

        // The nasty part: the message was taken. Its receipt names an id the client never saw.
        let dropped = sim.messages()[1].message_ids[0].clone();
        assert_ne!(dropped, first);
        let (_, receipts) = collect(&mut other, 0, 1).await;
        assert_eq!(receipt_id(&receipts[0]), dropped);
        let s = sim.stats();
        assert_eq!((s.messages, s.connections_dropped), (2, 1), "repeat {repeat}");

        // Submits 3 and 4 go through `other`: the 4th drops it only when repeating.
        other.send(submit_template(0)).await;
        assert_eq!(other.pdu().await.status(), CommandStatus::EsmeRok);
        other.send(submit_template(0)).await;
        match (repeat, other.read(PATIENCE).await) {
            (true, Read::Closed) => {}
            (false, Read::Pdu(resp)) => assert_eq!(resp.status(), CommandStatus::EsmeRok),
            (_, _) => panic!("repeat {repeat}: wrong end for the 4th submit"),
        }
        let s = sim.stats();
        assert_eq!((s.messages, s.connections_dropped), (4, 1 + u64::from(repeat)));
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn half_dead_after_submits_goes_silent_but_stays_open() {
    let sim = start(SimConfig { half_dead_after_submits: NonZeroU64::new(1), ..recording() }).await;
    let mut dead = Raw::bound(&sim).await;
    dead.send(submit_template(0)).await;
    assert_eq!(dead.pdu().await.status(), CommandStatus::EsmeRok, "the Nth submit is still answered");

    dead.send(Pdu::EnquireLink).await;
    dead.send(submit_template(0)).await;
    dead.assert_silent().await;

    let mut fresh = Raw::bound(&sim).await;
    let seq = fresh.send(Pdu::EnquireLink).await;
    let resp = fresh.pdu().await;
    assert_eq!((resp.id(), resp.sequence_number()), (CommandId::EnquireLinkResp, seq));
    fresh.send(submit_template(0)).await;
    assert_eq!(fresh.pdu().await.status(), CommandStatus::EsmeRok);

    let s = sim.stats();
    assert_eq!((s.half_dead_sessions, s.enquire_links_ignored, s.submits_ignored), (1, 1, 1));
    assert_eq!((s.submit_sm, s.messages), (3, 2), "the ignored submit was not taken");
    sim.shutdown().await;
}

#[tokio::test]
async fn ignore_enquire_link_leaves_it_unanswered_but_answers_submits() {
    let sim = start(SimConfig { ignore_enquire_link: true, ..recording() }).await;
    let mut c = Raw::bound(&sim).await;
    c.send(Pdu::EnquireLink).await;
    let submit = c.send(submit_template(0)).await;
    // Answers go out in order, so the submit's resp coming first means the enquire_link got none.
    let resp = c.pdu().await;
    assert_eq!((resp.id(), resp.sequence_number()), (CommandId::SubmitSmResp, submit));
    c.assert_silent().await;
    let s = sim.stats();
    assert_eq!((s.enquire_links, s.enquire_links_ignored), (1, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn refuse_binds_fails_binds_that_pass_the_credential_checks() {
    let cfg = SimConfig { refuse_binds: true, system_id: Some("gw".into()), ..recording() };
    let sim = start(cfg).await;
    assert_eq!(Raw::connect(&sim).await.bind("other").await, CommandStatus::EsmeRinvsysid);
    let refused = Raw::connect(&sim).await.bind("gw").await;
    assert_eq!((refused, u32::from(refused)), (CommandStatus::EsmeRbindfail, 0x0D));
    let s = sim.stats();
    assert_eq!((s.binds, s.binds_refused, s.bound_sessions), (0, 1, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn receipt_id_formats_spell_one_number_two_ways() {
    let is_dec = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let is_upper_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    for format in [ReceiptIdFormat::AsIssued, ReceiptIdFormat::Hex, ReceiptIdFormat::Decimal] {
        let sim = start(SimConfig { receipt_id_format: format, ..recording() }).await;
        let mut c = Raw::bound(&sim).await;
        c.send(submit_template(1)).await;
        let (resps, receipts) = collect(&mut c, 1, 1).await;
        let (resp, receipt) = (resp_id(&resps[0]), receipt_id(&receipts[0]));
        let text = String::from_utf8_lossy(deliver_sm(&receipts[0]).short_message().as_ref()).into_owned();
        assert!(text.starts_with(&format!("id:{receipt} ")), "TLV and text agree: {text}");
        let (resp_n, receipt_n) = match format {
            ReceiptIdFormat::Hex => {
                assert!(is_dec(&resp) && is_upper_hex(&receipt) && resp != receipt, "{resp} / {receipt}");
                (resp.parse().ok(), u64::from_str_radix(&receipt, 16).ok())
            }
            ReceiptIdFormat::Decimal => {
                assert!(is_upper_hex(&resp) && is_dec(&receipt) && receipt.len() == 10, "{resp} / {receipt}");
                (u64::from_str_radix(&resp, 16).ok(), receipt.parse().ok())
            }
            _ => {
                assert_eq!(resp, receipt);
                (u64::from_str_radix(&resp, 16).ok(), u64::from_str_radix(&receipt, 16).ok())
            }
        };
        assert!(resp_n.is_some() && resp_n == receipt_n, "{format:?}: {resp} / {receipt}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn receipt_before_resp_ratio_one_sends_every_receipt_first() {
    // A receipt_delay no test waits for: the receipt can only come by the early path.
    let cfg = SimConfig { receipt_before_resp_ratio: 1.0, ..recording() };
    let sim = SmscSim::start(SimConfig { receipt_delay: Duration::from_secs(60), ..cfg }).await.unwrap();
    let mut c = Raw::bound(&sim).await;
    for _ in 0..3 {
        c.send(submit_template(1)).await;
        let receipt = c.pdu().await;
        c.ack(&receipt).await;
        let resp = c.pdu().await;
        assert_eq!(receipt_id(&receipt), resp_id(&resp), "deliver_sm first, then its submit_sm_resp");
    }
    let s = sim.stats();
    assert_eq!((s.receipts_sent, s.receipts_before_resp, s.messages), (3, 3, 3));
    sim.shutdown().await;
}

#[tokio::test]
async fn response_latency_delays_resps_without_serialising_them() {
    let latency = Duration::from_millis(200);
    let sim = start(SimConfig { response_latency: latency, ..recording() }).await;
    let mut c = Raw::bound(&sim).await;
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(c.send(submit_template(0)).await);
    }
    let (resps, _) = collect(&mut c, 5, 0).await;
    let elapsed = t0.elapsed();
    assert_eq!(resps.iter().map(Command::sequence_number).collect::<Vec<_>>(), sent, "in order");
    // One latency for the lot, not five: the reader kept taking submits while resps waited.
    assert!(elapsed >= latency && elapsed < latency * 4, "{elapsed:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn shuffled_receipts_leave_submit_order() {
    let cfg = SimConfig { receipt_order: ReceiptOrder::Shuffled, ..recording() };
    let sim = SmscSim::start(SimConfig { receipt_delay: Duration::from_millis(50), ..cfg }).await.unwrap();
    let mut c = Raw::bound(&sim).await;
    for _ in 0..20 {
        c.send(submit_template(1)).await;
    }
    let (resps, receipts) = collect(&mut c, 20, 20).await;
    let submitted: Vec<String> = resps.iter().map(resp_id).collect();
    let receipted: Vec<String> = receipts.iter().map(receipt_id).collect();
    // 20 receipts spread over 50 ms of jitter come back in submit order with odds far below
    // one in a million.
    assert_ne!(receipted, submitted);
    assert_eq!(receipted.iter().collect::<HashSet<_>>(), submitted.iter().collect::<HashSet<_>>());
    sim.shutdown().await;
}

#[test]
fn receipt_before_resp_ratio_outside_zero_to_one_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for bad in [1.5, -0.1, f64::NAN] {
        let cfg = SimConfig { receipt_before_resp_ratio: bad, ..recording() };
        let err = rt.block_on(SmscSim::start(cfg)).err().expect("refused");
        assert!(err.to_string().starts_with("smsc_sim.receipt_before_resp_ratio: must be between 0 and 1"), "{err}");
    }
}

/// The simulator's defaults with every reassembled message kept, which these tests read.
fn recording() -> SimConfig {
    SimConfig { record_messages: true, ..SimConfig::default() }
}
