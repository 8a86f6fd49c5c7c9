//! Recording MO messages (replies from recipients): published to Kafka's inbound topic in
//! production, so the CRM that sent the job sees the answer; logged by `sendgate dev`.
//!
//! The record, keyed by `from` so one sender's replies keep their order:
//! `{"provider","from","to","text","tenant","received_at"}`; `tenant` is the one owning `to`
//! (`opt_out.senders`, else `opt_out.default_tenant`), or null.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use super::opt_out::StopReplies;
use super::InboundMessage;
use crate::sink::kafka::{KafkaProducer, Record};

#[derive(Debug, Serialize)]
struct InboundRecord<'a> {
    provider: &'a str,
    from: &'a str,
    to: &'a str,
    text: &'a str,
    tenant: Option<&'a str>,
    received_at: DateTime<Utc>,
}

/// Where MO messages go.
pub enum InboundOut {
    Kafka { producer: Arc<KafkaProducer>, topic: String },
    /// `sendgate dev`: one log line each.
    Log,
}

impl InboundOut {
    /// Records a batch; resolves once it is durable (the broker confirmed every record, which
    /// `KafkaProducer::send_all` retries until it does). Each message's ack is left to the caller.
    pub async fn record(&self, messages: &[InboundMessage], owners: &StopReplies, received_at: DateTime<Utc>) {
        if messages.is_empty() {
            return;
        }
        let records: Vec<InboundRecord> = messages
            .iter()
            .map(|m| InboundRecord { provider: &m.provider, from: &m.from, to: &m.to, text: &m.text, tenant: owners.tenant_for(&m.to), received_at })
            .collect();
        match self {
            Self::Kafka { producer, topic } => {
                let payloads: Vec<Vec<u8>> = records.iter().map(|r| serde_json::to_vec(r).expect("an inbound record serializes")).collect();
                let out: Vec<Record> = records
                    .iter()
                    .zip(&payloads)
                    .map(|(r, payload)| Record { topic, key: r.from.as_bytes(), payload, headers: &[] })
                    .collect();
                producer.send_all(&out).await;
            }
            Self::Log => {
                for r in &records {
                    info!(provider = %r.provider, from = %r.from, to = %r.to, tenant = ?r.tenant, text = %r.text, "inbound message");
                }
            }
        }
    }
}
