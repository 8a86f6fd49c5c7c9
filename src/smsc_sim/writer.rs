//! The writer task of a simulator connection: the only place that touches the socket's write
//! half, so responses and receipts share one ordered queue and one sequence-number space.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::SinkExt;
use rusmpp::pdus::DeliverSm;
use rusmpp::{Command, CommandStatus};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use super::codec::SimCodec;
use super::receipts::{lock, receipt_pdu, DateCache, PendingReceipt};

/// Most PDUs fed before a flush, so one busy connection's latency stays bounded.
const MAX_BATCH: usize = 256;

/// What the writer task puts on the wire.
#[derive(Debug)]
pub(super) enum Outbound {
    Command(Command),
    /// A response held back until `at` (`response_latency`). Later PDUs wait behind it, which
    /// keeps the connection's order; the reader goes on taking PDUs meanwhile.
    Later {
        at: Instant,
        cmd: Command,
    },
    /// Built into a deliver_sm by the writer, which owns the session's sequence numbers.
    Receipt(PendingReceipt),
    /// A mobile-originated deliver_sm ([`super::SimHandle::send_mo`]); numbered here too.
    Mo(Box<DeliverSm>),
    /// Write what is queued before it, then close the socket (after unbind_resp, or with no
    /// goodbye at all when a fault drops the link).
    Close,
}

/// Receipts written to this session and not yet acknowledged with `deliver_sm_resp`, by
/// sequence number. Like a real SMSC, the simulator delivers them again (to any bound session
/// of the account) when the session ends without acknowledging them.
pub(super) type Unacked = Arc<std::sync::Mutex<std::collections::HashMap<u32, PendingReceipt>>>;

type Sink = futures::stream::SplitSink<Framed<TcpStream, SimCodec>, Command>;

/// Feeds everything already queued, then flushes once: one write syscall per burst instead of
/// one per PDU.
pub(super) async fn write_loop(mut sink: Sink, mut rx: mpsc::Receiver<Outbound>, unacked: Unacked) {
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
                Outbound::Later { at, cmd } => {
                    if at > Instant::now() {
                        // What is already fed must not wait out this response's latency.
                        if fed > 0 && sink.flush().await.is_err() {
                            return;
                        }
                        tokio::time::sleep_until(at.into()).await;
                    }
                    cmd
                }
                Outbound::Receipt(r) => {
                    let seq = next_seq;
                    // SMPP sequence numbers run 1..=0x7FFFFFFF.
                    next_seq = if next_seq >= 0x7FFF_FFFF { 1 } else { next_seq + 1 };
                    let pdu = receipt_pdu(&r, &mut dates, SystemTime::now());
                    lock(unacked).insert(seq, r);
                    Command::new(CommandStatus::EsmeRok, seq, pdu)
                }
                Outbound::Mo(pdu) => {
                    let seq = next_seq;
                    next_seq = if next_seq >= 0x7FFF_FFFF { 1 } else { next_seq + 1 };
                    Command::new(CommandStatus::EsmeRok, seq, *pdu)
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
