//! Claims in Redis: one hash per job id (`Keys::job`), changed only by `claim.lua`,
//! `mark_submitting.lua` and `begin_finals.lua`, each a compare-and-set on the fencing token.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::Script;

use super::{corrupt, millis, store_err, RedisStore};
use crate::store::{Claim, ClaimReq, Claims, Fenced, StoreError};

impl RedisStore {
    /// One compare-and-set script over `(job id, token)` pairs: `true` where the token holds.
    async fn fenced(&self, script: &Script, jobs: &[Fenced<'_>], what: &str) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = script.prepare_invoke();
        for (id, token) in jobs {
            inv.key(self.keys.job(id)).arg(*token);
        }
        let held: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, what))?;
        if held.len() != jobs.len() {
            return Err(corrupt(what, format!("{} answers for {} jobs", held.len(), jobs.len())));
        }
        Ok(held.into_iter().map(|v| v == 1).collect())
    }
}

#[async_trait]
impl Claims for RedisStore {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING").query_async::<String>(&mut self.conn()).await.map(drop).map_err(|e| store_err(e, "ping"))
    }

    async fn claim_ids(&self, reqs: &[ClaimReq<'_>], ttl: Duration) -> Result<Vec<Claim>, StoreError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.claim.prepare_invoke();
        for r in reqs {
            inv.key(self.keys.job(r.id));
        }
        inv.arg(millis(ttl)).arg(self.keys.alive_prefix()).arg(Utc::now().timestamp_millis());
        for r in reqs {
            inv.arg(r.token).arg(r.src.unwrap_or("")).arg(r.plan.unwrap_or(""));
        }
        let codes: Vec<i64> = self.invoke_replayable(&mut inv, "claim").await?;
        if codes.len() != reqs.len() {
            return Err(corrupt("claim", format!("{} answers for {} ids", codes.len(), reqs.len())));
        }
        codes
            .into_iter()
            .map(|c| match c {
                0 => Ok(Claim::New),
                1 => Ok(Claim::Duplicate),
                2 => Ok(Claim::Busy),
                3 => Ok(Claim::Orphaned),
                4 => Ok(Claim::Replay),
                5 => Ok(Claim::DuplicateBusy),
                ms if ms < 0 => DateTime::from_timestamp_millis(-ms)
                    .map(|decided_at| Claim::DuplicateUnsure { decided_at })
                    .ok_or_else(|| corrupt("claim", format!("duplicate decided at {ms} ms"))),
                other => Err(corrupt("claim", format!("unknown claim code {other}"))),
            })
            .collect()
    }

    async fn mark_submitting(&self, jobs: &[Fenced<'_>]) -> Result<Vec<bool>, StoreError> {
        self.fenced(&self.scripts.mark_submitting, jobs, "mark_submitting").await
    }

    async fn begin_finals(&self, finals: &[(&str, &str, &str)], confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        if finals.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.begin_finals.key(self.keys.deadlines());
        inv.arg(Utc::now().timestamp_millis()).arg(confirm_by.timestamp_millis()).arg(&self.owner);
        for (id, token, report) in finals {
            inv.key(self.keys.job(id));
            inv.arg(*id).arg(*token).arg(*report);
        }
        let begun: Vec<i64> = self.invoke_replayable(&mut inv, "begin_finals").await?;
        if begun.len() != finals.len() {
            return Err(corrupt("begin_finals", format!("{} answers for {} jobs", begun.len(), finals.len())));
        }
        Ok(begun.into_iter().map(|v| v == 1).collect())
    }

    async fn duplicate_done(&self, id: &str, src: &str) -> Result<(), StoreError> {
        let key = self.keys.job(id);
        let field = format!("d:{src}");
        // Only where the decision is kept: an HSET on a hash gone by now would make one with
        // no TTL. A rare path (after a crash), so two round trips.
        let kept: bool = redis::cmd("HEXISTS").arg(&key).arg(&field).query_async(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        if kept {
            redis::cmd("HSET").arg(&key).arg(&field).arg(1).query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        }
        Ok(())
    }
}
