//! The DLQ writer: records that are not jobs go to the DLQ topic in the order they were read.
//! One task takes them in that order and produces each batch whole before the next, so a DLQ
//! replayed later sees its records as its partition held them (spawning a producer task per
//! record, as before, let a later record overtake an earlier one).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::sink::kafka::{KafkaProducer, Record};

/// Most records produced at once.
const MAX_BATCH: usize = 256;

/// One bad record: its bytes, why it is not a job, where it was read, and what to do once
/// the broker has it (acknowledge its offset, give its in-flight permit back).
pub struct DlqItem {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub error: String,
    pub source: String,
    pub done: Box<dyn FnOnce() + Send>,
}

#[derive(Clone)]
pub struct DlqWriter {
    tx: mpsc::UnboundedSender<DlqItem>,
}

impl DlqWriter {
    /// Starts the writer; it ends when the last handle is dropped and its queue is empty.
    /// Unbounded: every item holds an in-flight permit, which bounds the queue.
    pub fn spawn(producer: Arc<KafkaProducer>, topic: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<DlqItem>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let headers: Vec<[(&str, String); 2]> =
                    batch.iter().map(|i| [("sendgate-error", i.error.clone()), ("sendgate-source", i.source.clone())]).collect();
                let records: Vec<Record> =
                    batch.iter().zip(&headers).map(|(i, h)| Record { topic: &topic, partition: None, key: &i.key, payload: &i.payload, headers: h }).collect();
                producer.send_all(&records).await;
                drop(records);
                for item in batch.drain(..) {
                    (item.done)();
                }
            }
        });
        Self { tx }
    }

    pub fn send(&self, item: DlqItem) {
        // The writer ends only once every handle is gone: sending cannot fail before.
        let _ = self.tx.send(item);
    }
}
