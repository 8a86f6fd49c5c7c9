//! Early receipts in Redis: kept before they are acknowledged, taken again by any instance
//! once the one that held them gave up or died, forgotten once they match.

use chrono::{DateTime, Utc};

use super::{store_err, RedisStore};
use crate::store::{EarlyReceipt, PartOutcome, StoreError, EARLY_RECEIPT_KEEP};

impl RedisStore {
    pub(super) async fn early_keep(&self, receipts: &[EarlyReceipt], now: DateTime<Utc>) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let index = self.keys.early_index();
        for r in receipts {
            let value = format!("{}\n{}", r.outcome.as_str(), r.error_code.as_deref().unwrap_or(""));
            pipe.cmd("SET").arg(self.keys.early(&r.provider, &r.message_id)).arg(value).arg("PX").arg(EARLY_RECEIPT_KEEP.as_millis() as u64).ignore();
            pipe.cmd("ZADD").arg(&index).arg(now.timestamp_millis()).arg(format!("{}:{}", r.provider, r.message_id)).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &index))
    }

    pub(super) async fn early_take(&self, older_than: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Result<Vec<EarlyReceipt>, StoreError> {
        let index = self.keys.early_index();
        let mut inv = self.scripts.take_early.key(&index);
        inv.arg(older_than.timestamp_millis()).arg(limit).arg(now.timestamp_millis()).arg(self.keys.early_prefix());
        let rows: Vec<String> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, &index))?;
        Ok(rows
            .chunks(2)
            .filter_map(|pair| {
                // Provider names hold no ':' (config keys); message ids may.
                let (provider, message_id) = pair[0].split_once(':')?;
                let (outcome, code) = pair.get(1)?.split_once('\n')?;
                Some(EarlyReceipt {
                    provider: provider.to_owned(),
                    message_id: message_id.to_owned(),
                    outcome: PartOutcome::parse(outcome)?,
                    error_code: (!code.is_empty()).then(|| code.to_owned()),
                })
            })
            .collect())
    }

    pub(super) async fn early_drop(&self, receipts: &[(&str, &str)]) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let index = self.keys.early_index();
        for (provider, message_id) in receipts {
            pipe.cmd("DEL").arg(self.keys.early(provider, message_id)).ignore();
            pipe.cmd("ZREM").arg(&index).arg(format!("{provider}:{message_id}")).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &index))
    }
}
