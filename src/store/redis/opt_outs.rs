//! Opt-out lists in Redis: one sorted set per tenant and channel (`Keys::opt_out`).
//!
//! A sorted set with every score 0 rather than a plain set: members then sort by bytes, so
//! the admin API pages with `ZRANGE … BYLEX` after the last recipient seen, with an exact
//! page size and a cursor that stays valid while the list changes (SSCAN gives neither).
//! Membership for a batch is one `ZMSCORE` per list in one pipeline (Redis 6.2 or later).

use std::collections::HashMap;

use async_trait::async_trait;

use super::{corrupt, store_err, RedisStore};
use crate::store::{OptOutEntry, OptOutPage, OptOuts, StoreError};

#[async_trait]
impl OptOuts for RedisStore {
    async fn opted_out(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // A batch usually names one or two lists: group it so each list is one command.
        let mut lists: Vec<((&str, &str), Vec<usize>)> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, (tenant, channel, _)) in entries.iter().enumerate() {
            let slot = *index.entry((*tenant, *channel)).or_insert_with(|| {
                lists.push(((*tenant, *channel), Vec::new()));
                lists.len() - 1
            });
            lists[slot].1.push(i);
        }
        let mut pipe = redis::pipe();
        for ((tenant, channel), members) in &lists {
            pipe.cmd("ZMSCORE").arg(self.keys.opt_out(tenant, channel));
            for &i in members {
                pipe.arg(entries[i].2);
            }
        }
        let answers: Vec<Vec<Option<String>>> = pipe.query_async(&mut self.conn()).await.map_err(|e| store_err(e, "opt-out lookup"))?;
        let mut out = vec![false; entries.len()];
        for ((_, members), scores) in lists.iter().zip(answers) {
            if scores.len() != members.len() {
                return Err(corrupt("opt-out lookup", format!("{} answers for {} recipients", scores.len(), members.len())));
            }
            for (&i, score) in members.iter().zip(scores) {
                out[i] = score.is_some();
            }
        }
        Ok(out)
    }

    async fn add_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        self.opt_outs_change("ZADD", entries).await
    }

    async fn remove_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        self.opt_outs_change("ZREM", entries).await
    }

    async fn list_opt_outs(&self, tenant: &str, channel: &str, after: Option<&str>, limit: usize) -> Result<OptOutPage, StoreError> {
        let key = self.keys.opt_out(tenant, channel);
        if limit == 0 {
            return Ok(OptOutPage::default());
        }
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        // One more than asked: whether it comes back says if there is a next page.
        let recipients: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(min)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.saturating_add(1))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_err(e, &key))?;
        Ok(OptOutPage::from_overfetch(recipients, limit))
    }
}

impl RedisStore {
    /// `ZADD key 0 member` or `ZREM key member` per entry, as one MULTI/EXEC: a batch lands
    /// whole or not at all, and each answer says whether that entry changed its list.
    async fn opt_outs_change(&self, command: &'static str, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (tenant, channel, recipient) in entries {
            pipe.cmd(command).arg(self.keys.opt_out(tenant, channel));
            if command == "ZADD" {
                pipe.arg(0);
            }
            pipe.arg(*recipient);
        }
        let changed: Vec<i64> = pipe.query_async(&mut self.conn()).await.map_err(|e| store_err(e, "opt-out change"))?;
        Ok(changed.into_iter().map(|n| n > 0).collect())
    }
}
