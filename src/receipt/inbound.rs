//! Recording MO messages (replies from recipients): published to Kafka's inbound topic in
//! production, so the CRM that sent the job sees the answer; logged by `sendgate dev`, with the
//! sender masked and without the text.
//!
//! The record, keyed by `from` so one sender's replies keep their order:
//! `{"provider","channel","from","to","text","tenant","received_at"}`; `tenant` is the one owning `to`
//! (`opt_out.senders`, else `opt_out.default_tenant`), or null.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{error, info};

use super::opt_out::StopReplies;
use super::InboundMessage;
use crate::job::{is_e164, masked};
use crate::sink::kafka::{KafkaProducer, Record};
use crate::store::Store;
use crate::telemetry;

#[derive(Debug, Serialize)]
struct InboundRecord<'a> {
    provider: &'a str,
    channel: &'a str,
    from: &'a str,
    to: &'a str,
    text: &'a str,
    tenant: Option<&'a str>,
    received_at: DateTime<Utc>,
}

/// WhatsApp messages open their sender's customer-service window with the number they were
/// sent to (`to`, the phone number id), from when they were sent: free-form text may go back
/// for 24 h, and replies there do not count against the tier. Retried until the store takes
/// it: the webhook is answered only after.
pub async fn open_service_windows(store: &dyn Store, messages: &[InboundMessage], now: DateTime<Utc>) {
    let contacts: Vec<(&str, &str, DateTime<Utc>)> = messages
        .iter()
        .filter(|m| m.channel == "whatsapp" && !m.to.is_empty() && is_e164(&m.from))
        .map(|m| (m.to.as_str(), m.from.as_str(), m.at.map_or(now, |at| at.min(now))))
        .collect();
    if !contacts.is_empty() {
        crate::retry::until_ok("record_inbound_contacts", contacts.len(), || store.record_inbound_contacts(&contacts)).await;
    }
}

/// Where MO messages go.
pub enum InboundOut {
    /// Offered to the broker for at most `timeout`, then dropped: counted, and logged without
    /// the sender's number or the text.
    Kafka { producer: Arc<KafkaProducer>, topic: String, timeout: Duration },
    /// `sendgate dev`: one log line each.
    Log,
}

impl InboundOut {
    /// Records a batch; resolves once the broker confirmed every record, or once `timeout`
    /// passed and they were dropped (counted, logged masked): MO messages share the
    /// correlator with receipts, and a topic that does not exist must not stall every receipt
    /// behind them. Each message's ack is left to the caller.
    pub async fn record(&self, messages: &[InboundMessage], owners: &StopReplies, received_at: DateTime<Utc>) {
        if messages.is_empty() {
            return;
        }
        let records: Vec<InboundRecord> = messages
            .iter()
            .map(|m| InboundRecord {
                provider: &m.provider,
                channel: &m.channel,
                from: &m.from,
                to: &m.to,
                text: &m.text,
                tenant: owners.tenant_for(&m.to),
                received_at,
            })
            .collect();
        match self {
            Self::Kafka { producer, topic, timeout } => {
                let payloads: Vec<Vec<u8>> = records.iter().map(|r| serde_json::to_vec(r).expect("an inbound record serializes")).collect();
                let out: Vec<Record> = records
                    .iter()
                    .zip(&payloads)
                    .map(|(r, payload)| Record { topic, partition: None, key: r.from.as_bytes(), payload, headers: &[] })
                    .collect();
                if tokio::time::timeout(*timeout, producer.send_all(&out)).await.is_err() {
                    metrics::counter!(telemetry::INBOUND_UNPUBLISHED_TOTAL).increment(records.len() as u64);
                    // Counted and described, never shown: a sender's number and what they wrote
                    // are personal data, and logs travel further than the inbound topic does.
                    for r in &records {
                        error!(topic = %topic, provider = %r.provider, from = %masked(r.from), to = %r.to, tenant = ?r.tenant, text_chars = r.text.chars().count(), "inbound message not published in time; dropped");
                    }
                }
            }
            Self::Log => {
                // The sender masked and the text's length only (STYLE.md): dev logs get pasted
                // into tickets and chats.
                for r in &records {
                    info!(provider = %r.provider, from = %masked(r.from), to = %r.to, tenant = ?r.tenant, text_chars = r.text.chars().count(), "inbound message");
                }
            }
        }
    }
}
