//! One SMPP connection to the simulator: the reader that answers PDUs and the writer task that
//! batches responses and receipts onto the socket.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{SinkExt, StreamExt};
use metrics::Counter;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use super::codec::{Frame, SimCodec};
use super::decode::decode_text;
use super::reassembly::{split_user_data, submit_user_data, Part};
use super::receipts::{lock, receipt_pdu, DateCache, PendingReceipt};
use super::{LogCmd, Shared, SimMessage};
use crate::telemetry::{SIM_MESSAGES_TOTAL, SIM_SUBMIT_SM_TOTAL};

/// Per-connection outbound queue. Bounded so a client that stops reading slows its own reader
/// down (TCP backpressure) instead of growing memory.
const OUTBOUND_CAPACITY: usize = 4096;
/// Most PDUs fed before a flush, so one busy connection's latency stays bounded.
const MAX_BATCH: usize = 256;
const SIM_SYSTEM_ID: &[u8] = b"sendgate-sim\0";
/// How long a closing session waits for its queued PDUs to reach the socket.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// What the writer task puts on the wire.
#[derive(Debug)]
pub(super) enum Outbound {
    Command(Command),
    /// Built into a deliver_sm by the writer, which owns the session's sequence numbers.
    Receipt(PendingReceipt),
    /// Flush and close the socket (after unbind_resp).
    Close,
}

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

/// Receipts written to this session and not yet acknowledged with `deliver_sm_resp`, by
/// sequence number. Like a real SMSC, the simulator delivers them again (to any bound session
/// of the account) when the session ends without acknowledging them.
type Unacked = Arc<std::sync::Mutex<std::collections::HashMap<u32, PendingReceipt>>>;

struct Session {
    id: u64,
    shared: Arc<Shared>,
    unacked: Unacked,
    tx: mpsc::Sender<Outbound>,
    bound: Option<(BindKind, Arc<str>)>,
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

    async fn handle(&mut self, cmd: Command) -> Flow {
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
                let resp = self.on_submit(seq, sm);
                self.reply(resp).await
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

    fn on_submit(&mut self, seq: u32, sm: &SubmitSm) -> Command {
        let shared = &*self.shared;
        shared.counters.submit_sm.fetch_add(1, Relaxed);
        self.submit_total.increment(1);
        let fail = |status| Command::new(status, seq, SubmitSmResp::default());
        let system_id = match &self.bound {
            Some((kind, system_id)) if kind.can_submit() => system_id.clone(),
            _ => return fail(CommandStatus::EsmeRinvbndsts),
        };
        let (user_data, sar) = submit_user_data(sm);
        let esm_class = u8::from(sm.esm_class);
        let Ok((concat, payload)) = split_user_data(esm_class, user_data, sar) else {
            return fail(CommandStatus::EsmeRinvesmclass);
        };
        let number = shared.next_message_id.fetch_add(1, Relaxed);
        let message_id = format!("{number:x}");
        let Ok(id_field) = COctetString::from_string(message_id.clone()) else {
            return fail(CommandStatus::EsmeRsyserr);
        };
        let data_coding = u8::from(sm.data_coding);
        let part = Part {
            source: sm.source_addr.as_str(),
            destination: sm.destination_addr.as_str(),
            concat,
            data_coding,
            message_id: message_id.clone(),
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
                });
            }
        }
        if outcome.wants_receipt(u8::from(sm.registered_delivery)) {
            shared.receipts.push(PendingReceipt {
                due: Instant::now() + shared.cfg.receipt_delay,
                session_id: self.id,
                system_id,
                message_id,
                outcome,
                submitted_at: SystemTime::now(),
                submit_source: (sm.source_addr_ton, sm.source_addr_npi, sm.source_addr.clone()),
                submit_destination: (sm.dest_addr_ton, sm.dest_addr_npi, sm.destination_addr.clone()),
                attempts: 0,
            });
        }
        Command::new(CommandStatus::EsmeRok, seq, SubmitSmResp::new(id_field, Vec::new()))
    }
}

fn sim_system_id() -> COctetString<1, 16> {
    COctetString::from_static_slice(SIM_SYSTEM_ID).unwrap_or_default()
}

type Sink = futures::stream::SplitSink<Framed<TcpStream, SimCodec>, Command>;

/// Feeds everything already queued, then flushes once: one write syscall per burst instead of
/// one per PDU.
async fn write_loop(mut sink: Sink, mut rx: mpsc::Receiver<Outbound>, unacked: Unacked) {
    write_all(&mut sink, &mut rx, &unacked).await;
    // Receipts still queued for this session never left: they go back for redelivery too.
    rx.close();
    while let Ok(out) = rx.try_recv() {
        if let Outbound::Receipt(r) = out {
            let key = u32::MAX - lock(&unacked).len() as u32;
            lock(&unacked).insert(key, r);
        }
    }
    let _ = sink.close().await;
}

async fn write_all(sink: &mut Sink, rx: &mut mpsc::Receiver<Outbound>, unacked: &Unacked) {
    let mut next_seq: u32 = 1;
    let mut dates = DateCache::default();
    'outer: while let Some(first) = rx.recv().await {
        let mut item = Some(first);
        let mut fed = 0;
        while let Some(out) = item.take() {
            let cmd = match out {
                Outbound::Command(cmd) => cmd,
                Outbound::Receipt(r) => {
                    let seq = next_seq;
                    // SMPP sequence numbers run 1..=0x7FFFFFFF.
                    next_seq = if next_seq >= 0x7FFF_FFFF { 1 } else { next_seq + 1 };
                    let pdu = receipt_pdu(&r, &mut dates, SystemTime::now());
                    lock(unacked).insert(seq, r);
                    Command::new(CommandStatus::EsmeRok, seq, pdu)
                }
                Outbound::Close => break 'outer,
            };
            if sink.feed(cmd).await.is_err() {
                return;
            }
            fed += 1;
            if fed < MAX_BATCH {
                item = rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
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
