//! WhatsApp messaging limits in Redis: one `whatsapp_admit.lua` call per batch decides and
//! records every attempt atomically, so instances sharing a portfolio never exceed its tier
//! together. Keys: `Keys::wa_window`, `wa_inbound`, `wa_pair`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, store_err, RedisStore};
use crate::store::whatsapp::{dur_ms, from_ms, ms, window_open, Admission, Attempt, Decision, Portfolio, Usage, Whatsapp, SERVICE_WINDOW};
use crate::store::StoreError;

/// Kept past the window's end so that instances whose clocks run a little behind still see
/// an inbound contact; the stored time, not the TTL, decides.
const INBOUND_KEY_SLACK: Duration = Duration::from_secs(3600);

#[async_trait]
impl Whatsapp for RedisStore {
    /// A retry after a lost reply decides the same: the recipients it counted are counted
    /// already (free), and the pair keys it set name the same jobs (not held back).
    async fn whatsapp_admit(&self, portfolios: &[Portfolio<'_>], attempts: &[Attempt<'_>], now: DateTime<Utc>) -> Result<Admission, StoreError> {
        if attempts.is_empty() {
            return Ok(Admission { decisions: Vec::new(), used: vec![0; portfolios.len()] });
        }
        let mut inv = self.scripts.whatsapp_admit.prepare_invoke();
        for p in portfolios {
            inv.key(self.keys.wa_window(p.name));
        }
        for a in attempts {
            inv.key(self.keys.wa_inbound(a.number, a.recipient)).key(self.keys.wa_pair(a.number, a.recipient));
        }
        inv.arg(ms(now)).arg(dur_ms(SERVICE_WINDOW)).arg(portfolios.len());
        for p in portfolios {
            let tier = p.tier.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX));
            inv.arg(tier).arg(dur_ms(p.window)).arg(dur_ms(p.pair_interval));
        }
        for a in attempts {
            inv.arg(a.portfolio + 1).arg(a.recipient).arg(a.job_id);
        }
        let reply: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, "whatsapp_admit"))?;
        if reply.len() != attempts.len() * 2 + portfolios.len() {
            return Err(corrupt("whatsapp_admit", format!("{} answers for {} attempts", reply.len(), attempts.len())));
        }
        let (rows, used) = reply.split_at(attempts.len() * 2);
        let decisions = rows
            .chunks(2)
            .map(|r| match r[0] {
                0 => Ok(Decision::Allow),
                1 => Ok(Decision::TierCap { until: from_ms(r[1]) }),
                2 => Ok(Decision::PairLimit { until: from_ms(r[1]) }),
                other => Err(corrupt("whatsapp_admit", format!("unknown decision code {other}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Admission { decisions, used: used.iter().map(|&n| n.max(0) as u64).collect() })
    }

    async fn record_inbound_contacts(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), StoreError> {
        if contacts.is_empty() {
            return Ok(());
        }
        let mut inv = self.scripts.record_inbound.prepare_invoke();
        inv.arg(dur_ms(SERVICE_WINDOW + INBOUND_KEY_SLACK));
        for (number, recipient, at) in contacts {
            inv.key(self.keys.wa_inbound(number, recipient)).arg(ms(*at));
        }
        inv.invoke_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, "record_inbound"))
    }

    async fn service_windows_open(&self, pairs: &[(&str, &str)], now: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        // One GET per key in one pipeline: the keys live in different slots under Cluster.
        let mut pipe = redis::pipe();
        for (number, recipient) in pairs {
            pipe.cmd("GET").arg(self.keys.wa_inbound(number, recipient));
        }
        let last: Vec<Option<i64>> = pipe.query_async(&mut self.conn()).await.map_err(|e| store_err(e, "service_windows_open"))?;
        Ok(last.into_iter().map(|l| window_open(l, now)).collect())
    }

    /// Read only: counts what is in the window at `now` without trimming what is not.
    async fn whatsapp_usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Result<Usage, StoreError> {
        let key = self.keys.wa_window(portfolio);
        let after = format!("({}", ms(now).saturating_sub(dur_ms(window)));
        let (used, oldest): (u64, Vec<String>) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(&key)
            .arg(&after)
            .arg("+inf")
            .cmd("ZRANGE")
            .arg(&key)
            .arg(&after)
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_err(e, &key))?;
        let oldest = match oldest.get(1) {
            Some(score) => Some(from_ms(score.parse::<f64>().map_err(|e| corrupt(&key, e))? as i64)),
            None => None,
        };
        Ok(Usage { used, oldest })
    }
}
