//! One SMPP connection to the simulator: the reader that answers PDUs; the `writer` task puts
//! the answers on the socket.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use metrics::Counter;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use super::codec::{Frame, SimCodec};
use super::faults::AfterAccept;
use super::receipts::{lock, PendingReceipt};
use super::writer::{write_loop, Outbound, Unacked};
use super::{LogCmd, Shared, SimMessage};
use crate::sms::decode::decode_text;
use crate::sms::reassembly::{split_user_data, submit_user_data, Part};
use crate::telemetry::{SIM_MESSAGES_TOTAL, SIM_SUBMIT_SM_TOTAL};

/// Per-connection outbound queue. Bounded so a client that stops reading slows its own reader
/// down (TCP backpressure) instead of growing memory.
const OUTBOUND_CAPACITY: usize = 4096;
const SIM_SYSTEM_ID: &[u8] = b"sendgate-sim\0";
/// How long a closing session waits for its queued PDUs to reach the socket.
const WRITER_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    fn can_submit(self) -> bool {
        self != Self::Receiver
    }

    pub(super) fn can_receive(self) -> bool {
        self != Self::Transmitter
    }
}

/// Where the receipt router can reach a bound session.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) kind: BindKind,
    pub(super) system_id: Arc<str>,
    pub(super) tx: mpsc::Sender<Outbound>,
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    unacked: Unacked,
    tx: mpsc::Sender<Outbound>,
    bound: Option<(BindKind, Arc<str>)>,
    /// Set by `half_dead_after_submits`: from then on nothing read here is answered.
    half_dead: bool,
    submit_total: Counter,
    messages_total: Counter,
}

enum Flow {
    Continue,
    Close,
}

pub(super) async fn run(stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (sink, mut frames) = Framed::new(stream, SimCodec).split();
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let unacked: Unacked = Arc::default();
    let writer = tokio::spawn(write_loop(sink, rx, unacked.clone()));
    let mut session = Session {
        id: shared.next_session_id.fetch_add(1, Relaxed),
        shared,
        unacked: unacked.clone(),
        tx,
        bound: None,
        half_dead: false,
        // Handles are taken per connection so a recorder installed after `start` is still used.
        submit_total: metrics::counter!(SIM_SUBMIT_SM_TOTAL),
        messages_total: metrics::counter!(SIM_MESSAGES_TOTAL),
    };
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            frame = frames.next() => frame,
        };
        let flow = match frame {
            None => break,
            Some(Err(err)) => {
                tracing::debug!(?peer, %err, "smsc-sim connection closed on a framing error");
                break;
            }
            Some(Ok(Frame::Malformed { .. })) if session.half_dead => Flow::Continue,
            Some(Ok(Frame::Malformed { command_id, sequence_number })) => {
                tracing::debug!(?peer, command_id, "smsc-sim answered an undecodable PDU with generic_nack");
                session.reply(nack(sequence_number, CommandStatus::EsmeRinvcmdlen)).await
            }
            Some(Ok(Frame::Command(cmd))) => session.handle(cmd).await,
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
    session.unregister();
    let shared = session.shared.clone();
    drop(session);
    // A client that stopped reading would keep the writer stuck on a full socket forever.
    let abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_GRACE, writer).await.is_err() {
        abort.abort();
    }
    let again: Vec<PendingReceipt> = lock(&unacked).drain().map(|(_, r)| r).collect();
    if !again.is_empty() {
        tracing::debug!(?peer, receipts = again.len(), "smsc-sim will deliver unacknowledged receipts again");
        shared.receipts.retry_now(again);
    }
}

fn nack(sequence_number: u32, status: CommandStatus) -> Command {
    Command::new(status, sequence_number, Pdu::GenericNack)
}

impl Session {
    async fn reply(&self, cmd: Command) -> Flow {
        match self.tx.send(Outbound::Command(cmd)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    /// A submit_sm_resp, held back by `response_latency` when set.
    async fn reply_to_submit(&self, cmd: Command) -> Flow {
        let latency = self.shared.cfg.response_latency;
        let out = if latency.is_zero() { Outbound::Command(cmd) } else { Outbound::Later { at: Instant::now() + latency, cmd } };
        match self.tx.send(out).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn handle(&mut self, cmd: Command) -> Flow {
        if self.half_dead {
            return self.ignore(&cmd);
        }
        let seq = cmd.sequence_number();
        let Some(pdu) = cmd.pdu() else {
            // A known request id with an empty body, or an unknown id.
            return match cmd.id() {
                CommandId::Other(_) => self.reply(nack(seq, CommandStatus::EsmeRinvcmdid)).await,
                id if id.is_response() => Flow::Continue,
                _ => self.reply(nack(seq, CommandStatus::EsmeRinvcmdlen)).await,
            };
        };
        let counters = &self.shared.counters;
        match pdu {
            Pdu::SubmitSm(sm) => {
                counters.submit_sm.fetch_add(1, Relaxed);
                self.submit_total.increment(1);
                match self.on_submit(seq, sm) {
                    (resp, AfterAccept::Answer) => self.reply_to_submit(resp).await,
                    (_, AfterAccept::Drop) => {
                        // No resp and no unbind: the client cannot tell the message was taken.
                        counters.connections_dropped.fetch_add(1, Relaxed);
                        tracing::debug!(session = self.id, "smsc-sim dropping a connection (drop_after_submits)");
                        let _ = self.tx.send(Outbound::Close).await;
                        Flow::Close
                    }
                    (resp, AfterAccept::HalfDead) => {
                        let flow = self.reply_to_submit(resp).await;
                        self.go_half_dead();
                        flow
                    }
                }
            }
            Pdu::EnquireLink if self.shared.cfg.ignore_enquire_link => {
                counters.enquire_links.fetch_add(1, Relaxed);
                counters.enquire_links_ignored.fetch_add(1, Relaxed);
                Flow::Continue
            }
            Pdu::EnquireLink => {
                counters.enquire_links.fetch_add(1, Relaxed);
                self.reply(Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp)).await
            }
            Pdu::BindTransmitter(b) => {
                let status = self.on_bind(BindKind::Transmitter, b.system_id.as_str(), b.password.as_str());
                let resp = BindTransmitterResp::new(sim_system_id(), Some(b.interface_version));
                self.reply(Command::new(status, seq, resp)).await
            }
            Pdu::BindReceiver(b) => {
                let status = self.on_bind(BindKind::Receiver, b.system_id.as_str(), b.password.as_str());
                let resp = BindReceiverResp::new(sim_system_id(), Some(b.interface_version));
                self.reply(Command::new(status, seq, resp)).await
            }
            Pdu::BindTransceiver(b) => {
                let status = self.on_bind(BindKind::Transceiver, b.system_id.as_str(), b.password.as_str());
                let resp = BindTransceiverResp::new(sim_system_id(), Some(b.interface_version));
                self.reply(Command::new(status, seq, resp)).await
            }
            Pdu::Unbind => {
                counters.unbinds.fetch_add(1, Relaxed);
                self.unregister();
                let _ = self.reply(Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp)).await;
                let _ = self.tx.send(Outbound::Close).await;
                Flow::Close
            }
            Pdu::DeliverSmResp(_) => {
                lock(&self.unacked).remove(&cmd.sequence_number());
                if cmd.status() != CommandStatus::EsmeRok {
                    tracing::debug!(status = ?cmd.status(), "smsc-sim receipt refused by client");
                }
                Flow::Continue
            }
            // Other responses (enquire_link_resp, generic_nack, …) need no answer.
            _ if cmd.id().is_response() => Flow::Continue,
            _ => self.reply(nack(seq, CommandStatus::EsmeRinvcmdid)).await,
        }
    }

    /// A half-dead connection: requests vanish, but acknowledgements of receipts it was sent
    /// earlier still count, since the client did get those.
    fn ignore(&self, cmd: &Command) -> Flow {
        let counters = &self.shared.counters;
        match cmd.id() {
            CommandId::SubmitSm => {
                counters.submit_sm.fetch_add(1, Relaxed);
                self.submit_total.increment(1);
                counters.submits_ignored.fetch_add(1, Relaxed);
            }
            CommandId::EnquireLink => {
                counters.enquire_links.fetch_add(1, Relaxed);
                counters.enquire_links_ignored.fetch_add(1, Relaxed);
            }
            CommandId::DeliverSmResp => {
                lock(&self.unacked).remove(&cmd.sequence_number());
            }
            _ => {}
        }
        Flow::Continue
    }

    /// Stops answering and takes the session out of receipt routing (a dead link delivers
    /// nothing either); the socket stays open until the client gives up on it.
    fn go_half_dead(&mut self) {
        self.half_dead = true;
        self.shared.counters.half_dead_sessions.fetch_add(1, Relaxed);
        lock(&self.shared.sessions).remove(&self.id);
        tracing::debug!(session = self.id, "smsc-sim connection went half-dead (half_dead_after_submits)");
    }

    fn on_bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> CommandStatus {
        let cfg = &self.shared.cfg;
        if self.bound.is_some() {
            return CommandStatus::EsmeRalybnd;
        }
        if cfg.system_id.as_deref().is_some_and(|want| want != system_id) {
            return CommandStatus::EsmeRinvsysid;
        }
        if cfg.password.as_deref().is_some_and(|want| want != password) {
            return CommandStatus::EsmeRinvpaswd;
        }
        if cfg.refuse_binds {
            self.shared.counters.binds_refused.fetch_add(1, Relaxed);
            return CommandStatus::EsmeRbindfail;
        }
        let system_id: Arc<str> = system_id.into();
        self.bound = Some((kind, system_id.clone()));
        self.shared.counters.binds.fetch_add(1, Relaxed);
        self.shared.counters.bound_sessions.fetch_add(1, Relaxed);
        let route = Route { kind, system_id, tx: self.tx.clone() };
        lock(&self.shared.sessions).insert(self.id, route);
        CommandStatus::EsmeRok
    }

    /// Drops the session from receipt routing; receipts due later go to another bind of the
    /// same system_id or wait for one.
    fn unregister(&mut self) {
        if self.bound.take().is_some() {
            lock(&self.shared.sessions).remove(&self.id);
            self.shared.counters.bound_sessions.fetch_sub(1, Relaxed);
        }
    }

    /// Takes or refuses a submit; the resp, and what the connection does after taking it.
    fn on_submit(&self, seq: u32, sm: &SubmitSm) -> (Command, AfterAccept) {
        let shared = &*self.shared;
        let fail = |status| (Command::new(status, seq, SubmitSmResp::default()), AfterAccept::Answer);
        let system_id = match &self.bound {
            Some((kind, system_id)) if kind.can_submit() => system_id.clone(),
            _ => return fail(CommandStatus::EsmeRinvbndsts),
        };
        let now = Instant::now();
        if shared.faults.throttle(now) {
            shared.counters.throttled.fetch_add(1, Relaxed);
            return fail(CommandStatus::EsmeRthrottled);
        }
        let (user_data, sar) = submit_user_data(sm);
        let esm_class = u8::from(sm.esm_class);
        let Ok((concat, payload)) = split_user_data(esm_class, user_data, sar) else {
            return fail(CommandStatus::EsmeRinvesmclass);
        };
        let number = shared.next_message_id.fetch_add(1, Relaxed);
        let ids = shared.cfg.receipt_id_format.ids(number);
        let Ok(id_field) = COctetString::from_string(ids.resp.clone()) else {
            return fail(CommandStatus::EsmeRsyserr);
        };
        let data_coding = u8::from(sm.data_coding);
        let part = Part {
            source: sm.source_addr.as_str(),
            destination: sm.destination_addr.as_str(),
            concat,
            data_coding,
            message_id: ids.resp,
            payload: if shared.keep_text { payload } else { &[] },
        };
        let (outcome, whole) = lock(&shared.reassembler).push(part, || shared.mix.pick());
        if let Some(whole) = whole {
            shared.counters.messages.fetch_add(1, Relaxed);
            self.messages_total.increment(1);
            if shared.keep_text {
                shared.keep(SimMessage {
                    message_ids: whole.message_ids,
                    source: sm.source_addr.as_str().to_owned(),
                    destination: sm.destination_addr.as_str().to_owned(),
                    text: decode_text(whole.data_coding, &whole.payload),
                    parts: whole.parts,
                    data_coding: whole.data_coding,
                    received_at: chrono::Utc::now(),
                });
            }
        }
        if outcome.wants_receipt(u8::from(sm.registered_delivery)) {
            let receipt = PendingReceipt {
                due: shared.cfg.receipt_order.due(now, shared.cfg.receipt_delay),
                session_id: self.id,
                system_id,
                message_id: ids.receipt,
                outcome,
                submitted_at: SystemTime::now(),
                submit_source: (sm.source_addr_ton, sm.source_addr_npi, sm.source_addr.clone()),
                submit_destination: (sm.dest_addr_ton, sm.dest_addr_npi, sm.destination_addr.clone()),
                attempts: 0,
            };
            self.queue_receipt(receipt, now);
        }
        let resp = Command::new(CommandStatus::EsmeRok, seq, SubmitSmResp::new(id_field, Vec::new()));
        (resp, shared.faults.after_accept())
    }

    /// Queues a receipt for its due time, or (`receipt_before_resp_ratio`) routes it now, so it
    /// is on a transceiver's queue ahead of the resp the caller is about to send. Across a
    /// transmitter/receiver pair "ahead" is only likely: two sockets have no common order.
    fn queue_receipt(&self, mut receipt: PendingReceipt, now: Instant) {
        let shared = &*self.shared;
        let ratio = shared.cfg.receipt_before_resp_ratio;
        if ratio > 0.0 && rand::random::<f64>() < ratio {
            receipt.due = now;
            if shared.route_receipts(vec![receipt], now) == 1 {
                shared.counters.receipts_before_resp.fetch_add(1, Relaxed);
            }
        } else {
            shared.receipts.push(receipt);
        }
    }
}

fn sim_system_id() -> COctetString<1, 16> {
    COctetString::from_static_slice(SIM_SYSTEM_ID).unwrap_or_default()
}

impl Shared {
    /// Records and/or logs a reassembled message.
    fn keep(&self, msg: SimMessage) {
        if let Some(log) = &self.log {
            if let Ok(line) = serde_json::to_string(&msg) {
                let _ = log.send(LogCmd::Line(line));
            }
        }
        if self.cfg.record_messages {
            lock(&self.recorded).push(msg);
        }
    }
}
