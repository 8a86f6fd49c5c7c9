//! `RedisStore`: the `Store` every instance shares, in Redis. Key names live in `keys.rs`, every
//! multi-step update is one Lua script in `scripts/`, and every batch costs one round trip.
//!
//! Claims carry their owner as `instance/incarnation`; an owner is alive while
//! `alive:{instance}` holds its incarnation, which its heartbeat task keeps refreshing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};
use tokio::task::JoinHandle;

use super::keys::Keys;
use super::{
    campaign_field, Claim, ClaimReq, ClaimedJob, DueKind, EarlyReceipt, Fenced, OptOutEntry, Overdue, OptOutPage, PartOutcome, RateGrant, RateLease, ScheduledJob, SentJob, Settled, Store,
    StoreError,
};
use crate::config::RedisConfig;
use crate::report::Report;

mod early;
mod opt_out;
mod whatsapp;

/// A lost reply makes the caller retry a script that may have run (a retried claim then finds
/// its own claim: `Duplicate`), so wait well past any normal latency before giving up.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Lua scripts, hashed once; `invoke_async` sends EVALSHA and loads on NOSCRIPT by itself
/// (after a Redis restart, say).
struct Scripts {
    claim: Script,
    mark_submitting: Script,
    begin_finals: Script,
    schedule: Script,
    claim_due: Script,
    finish_scheduled: Script,
    track_sent: Script,
    settle_part: Script,
    take_overdue: Script,
    finish_sent: Script,
    record_events: Script,
    release: Script,
    whatsapp_admit: Script,
    record_inbound: Script,
    rate_lease: Script,
    take_early: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            // Lua scripts cannot include each other: shared heads are prepended here.
            claim: Script::new(concat!(
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/owner_alive.lua"),
                include_str!("scripts/claim.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            mark_submitting: Script::new(include_str!("scripts/mark_submitting.lua")),
            // Replay-guarded: run twice, the second run would find its own `finishing` and say
            // fenced, and the finals would never be published.
            begin_finals: Script::new(concat!(
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/begin_finals.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            schedule: Script::new(include_str!("scripts/schedule.lua")),
            // Replay-guarded: a lost reply retried would lease the entries again under new
            // tokens and fence off the jobs the first run handed out.
            claim_due: Script::new(concat!(
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/owner_alive.lua"),
                include_str!("scripts/claim_due.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            finish_scheduled: Script::new(include_str!("scripts/finish_scheduled.lua")),
            track_sent: Script::new(concat!(
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/track_sent.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            settle_part: Script::new(concat!(
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/settle_part.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            take_overdue: Script::new(concat!(
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/owner_alive.lua"),
                include_str!("scripts/forget_sent.lua"),
                include_str!("scripts/take_overdue.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            finish_sent: Script::new(concat!(include_str!("scripts/forget_sent.lua"), include_str!("scripts/finish_sent.lua"))),
            record_events: Script::new(include_str!("scripts/record_events.lua")),
            release: Script::new(include_str!("scripts/release.lua")),
            whatsapp_admit: Script::new(include_str!("scripts/whatsapp_admit.lua")),
            record_inbound: Script::new(include_str!("scripts/record_inbound.lua")),
            rate_lease: Script::new(include_str!("scripts/rate_lease.lua")),
            take_early: Script::new(include_str!("scripts/take_early.lua")),
        }
    }
}

pub struct RedisStore {
    /// Cloned per call: clones share one multiplexed connection.
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    /// `instance/incarnation`: what this process writes into the claims it holds.
    owner: String,
    instance_id: String,
    /// Random per process, so a restart under the same instance id orphans the claims of the
    /// previous process at once instead of after a heartbeat TTL.
    incarnation: u64,
    /// Taken by `shutdown`, aborted on drop: a store nobody holds must stop claiming liveness.
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// Requests sent (one per store call: a script or a pipeline is one round trip).
    requests: std::sync::atomic::AtomicU64,
    requests_total: metrics::Counter,
}

impl RedisStore {
    /// Connects and starts the heartbeat task; this instance is alive when this returns.
    ///
    /// One `redis::aio::ConnectionManager`, no bb8 pool: a single multiplexed connection
    /// pipelines every caller's commands (concurrent batches share its round trips instead of
    /// each holding a connection), it reconnects by itself, and there is no per-checkout PING
    /// (bb8's default, which more than halves throughput).
    pub async fn connect(cfg: &RedisConfig) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::Unavailable(format!("redis url {:?}: {e}", cfg.url)))?;
        // Reconnect backoff capped at a second: a restarted Redis is back in use promptly.
        let conn_cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, conn_cfg).await.map_err(|e| store_err(e, "connect"))?;
        let instance_id = cfg.instance_id.clone().unwrap_or_else(host_name);
        let incarnation: u64 = rand::random();
        let store = Arc::new(Self {
            conn,
            keys: Keys::new(&cfg.prefix),
            scripts: Scripts::new(),
            owner: format!("{instance_id}/{incarnation}"),
            instance_id,
            incarnation,
            heartbeat: Mutex::new(None),
            requests: std::sync::atomic::AtomicU64::new(0),
            requests_total: metrics::counter!(crate::telemetry::REDIS_REQUESTS_TOTAL),
        });
        let beat = Heartbeat {
            conn: store.conn.clone(),
            key: store.keys.alive(&store.instance_id),
            incarnation: incarnation.to_string(),
            ttl_ms: millis(cfg.heartbeat_ttl),
        };
        // The first beat before returning: claims made right away must count as alive.
        beat.beat().await.map_err(|e| store_err(e, &beat.key))?;
        let every = (cfg.heartbeat_ttl / 4).max(Duration::from_millis(10));
        *store.lock_heartbeat() = Some(tokio::spawn(beat.run(every)));
        tracing::info!(owner = %store.owner, "redis store connected");
        Ok(store)
    }

    /// Stops the heartbeat and deletes this instance's alive key so others take over its
    /// claims at once.
    pub async fn shutdown(&self) {
        let task = self.lock_heartbeat().take();
        if let Some(task) = task {
            task.abort();
            // Wait it out so no beat can land after the delete below.
            let _ = task.await;
        }
        let key = self.keys.alive(&self.instance_id);
        // Only if still ours: a newer process with this instance id may own the key now.
        let res: Result<i64, _> =
            self.scripts.release.key(&key).arg(self.incarnation.to_string()).invoke_async(&mut self.conn.clone()).await;
        if let Err(e) = res {
            tracing::warn!(key = %key, error = %e, "could not release the alive key; it lapses with its TTL");
        }
    }

    /// `instance/incarnation`, as claims record it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn lock_heartbeat(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.heartbeat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection for one request: every store call takes it once per round trip, so
    /// this is where round trips are counted.
    fn conn(&self) -> ConnectionManager {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.requests_total.increment(1);
        self.conn.clone()
    }

    /// Requests this store has sent to Redis so far (the heartbeat's not included): a script
    /// or a pipeline is one, whatever it does inside.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        if let Some(task) = self.lock_heartbeat().take() {
            task.abort();
        }
    }
}

/// Keeps `alive:{instance}` = incarnation with a PX of the heartbeat TTL.
struct Heartbeat {
    conn: ConnectionManager,
    key: String,
    incarnation: String,
    ttl_ms: u64,
}

impl Heartbeat {
    async fn beat(&self) -> Result<(), RedisError> {
        redis::cmd("SET").arg(&self.key).arg(&self.incarnation).arg("PX").arg(self.ttl_ms).query_async(&mut self.conn.clone()).await
    }

    /// Four beats per TTL: three can be lost to a Redis hiccup before others take over.
    async fn run(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // immediate; `connect` already beat
        loop {
            tick.tick().await;
            if let Err(e) = self.beat().await {
                tracing::warn!(key = %self.key, error = %e, "heartbeat failed; other instances take over our claims if this lasts");
            }
        }
    }
}

fn host_name() -> String {
    let from_file = std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_owned());
    from_file
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "sendgate".to_owned())
}

/// Redis refuses PX/PEXPIRE 0; sub-millisecond durations round up.
fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// Data Redis or a script says is the wrong shape is corrupt (retrying cannot help);
/// everything else (I/O, timeouts, LOADING, READONLY, OOM) is the store being unavailable.
impl RedisStore {
    /// Runs a script that must not run twice (its effects cannot be repeated safely) until
    /// Redis answers: a connection error is retried with the same reply key, so a call that
    /// ran but whose reply was lost returns that reply instead of running again. Only an
    /// answer that is an error of the data itself is returned as an error.
    async fn invoke_replayable<T: redis::FromRedisValue>(
        &self,
        inv: &mut redis::ScriptInvocation<'_>,
        what: &str,
    ) -> Result<T, StoreError> {
        inv.arg(self.keys.reply(rand::random::<u64>()));
        let mut wait = Duration::from_millis(50);
        loop {
            match inv.invoke_async(&mut self.conn()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || e.is_unrecoverable_error() => {
                    tracing::warn!(error = %e, what, retry_in = ?wait, "redis unreachable; retrying the same call");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(store_err(e, what)),
            }
        }
    }
}

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

/// A scheduled entry's value: its recheck flag byte, its source record, a newline, then the
/// job's JSON (which holds no raw newline, nor does a topic name): one HGET brings back all.
fn encode_entry(j: &ScheduledJob) -> String {
    let flag = if j.recheck { '1' } else { '0' };
    format!("{flag}{}\n{}", j.src.as_deref().unwrap_or(""), j.payload)
}

/// `(recheck, source, payload)` of an entry's value.
fn decode_entry(v: &str) -> Option<(bool, Option<&str>, &str)> {
    let recheck = match v.as_bytes().first()? {
        b'0' => false,
        b'1' => true,
        _ => return None,
    };
    let (src, payload) = v[1..].split_once('\n')?;
    Some((recheck, (!src.is_empty()).then_some(src), payload))
}

fn store_err(e: RedisError, key: &str) -> StoreError {
    let script_error = matches!(e.kind(), ErrorKind::Server(redis::ServerErrorKind::ResponseError))
        && e.detail().is_some_and(|d| d.contains("script"));
    if matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType) || e.code() == Some("WRONGTYPE") || script_error {
        StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() }
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn corrupt(key: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt { key: key.into(), reason: reason.to_string() }
}

/// One row of take_overdue.lua's answer: SentJob JSON, outcome, report JSON, decided at (ms).
fn overdue(key: &str, row: &[String]) -> Result<Overdue, StoreError> {
    let [sent, outcome, report, at] = row else { return Err(corrupt(key, "a short overdue row")) };
    let sent = (!sent.is_empty()).then(|| parse_sent(key, sent)).transpose()?;
    let report = (!report.is_empty()).then(|| report.clone());
    let job_id = match (&sent, &report) {
        (Some(s), _) => s.job_id.clone(),
        (None, Some(r)) => serde_json::from_str::<Report>(r).map_err(|e| corrupt(key, e))?.job_id,
        (None, None) => return Err(corrupt(key, "an overdue job with neither a SentJob nor a report")),
    };
    let decided_at = at.parse::<i64>().ok().and_then(DateTime::<Utc>::from_timestamp_millis);
    Ok(Overdue { job_id, sent, outcome: PartOutcome::parse(outcome), report, decided_at })
}

fn parse_sent(key: &str, json: &str) -> Result<SentJob, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(key, e))
}

#[async_trait]
impl Store for RedisStore {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn claim_ids(&self, reqs: &[ClaimReq<'_>], ttl: Duration) -> Result<Vec<Claim>, StoreError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.claim.prepare_invoke();
        for r in reqs {
            inv.key(self.keys.job(r.id));
        }
        inv.arg(millis(ttl)).arg(self.keys.alive_prefix());
        for r in reqs {
            inv.arg(r.token).arg(r.src.unwrap_or(""));
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

    async fn schedule(&self, jobs: &[ScheduledJob], claim_ttl: Duration) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.schedule.key(self.keys.sched());
        inv.key(self.keys.sched_payload()).key(self.keys.sched_lease());
        inv.arg(self.keys.job_prefix()).arg(millis(claim_ttl));
        for j in jobs {
            inv.arg(j.entry()).arg(&j.id).arg(&j.token).arg(j.due.timestamp_millis()).arg(encode_entry(j));
        }
        let stored: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, &self.keys.sched()))?;
        if stored.len() != jobs.len() {
            return Err(corrupt(self.keys.sched(), format!("{} answers for {} entries", stored.len(), jobs.len())));
        }
        Ok(stored.into_iter().map(|v| v == 1).collect())
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration, claim_ttl: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = now.timestamp_millis();
        let mut inv = self.scripts.claim_due.key(self.keys.sched());
        inv.key(self.keys.sched_payload()).key(self.keys.sched_lease()).key(self.keys.sched_seq());
        inv.arg(now_ms).arg(limit).arg(now_ms.saturating_add(millis(lease) as i64));
        inv.arg(self.keys.job_prefix()).arg(self.keys.alive_prefix()).arg(&self.owner).arg(millis(claim_ttl));
        let rows: Vec<(String, String, u64, String, String)> = self.invoke_replayable(&mut inv, "claim_due").await?;
        let payload_key = self.keys.sched_payload();
        rows.into_iter()
            .map(|(entry, flagged, lease, token, kind)| {
                let bad = |why: &str| corrupt(format!("{payload_key}/{entry}"), why);
                let (_, src, payload) = decode_entry(&flagged).ok_or_else(|| bad("not flag, source and payload"))?;
                let kind = match kind.as_str() {
                    "r" => DueKind::Resumed,
                    "c" => DueKind::Recheck,
                    "o" => DueKind::Orphaned,
                    other => return Err(bad(&format!("unknown kind {other:?}"))),
                };
                let token = (!token.is_empty()).then_some(token);
                Ok(ClaimedJob { payload: payload.to_owned(), src: src.map(str::to_owned), entry, lease, token, kind })
            })
            .collect()
    }

    async fn finish_scheduled(&self, done: &[(String, u64)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut inv = self.scripts.finish_scheduled.key(self.keys.sched());
        inv.key(self.keys.sched_payload()).key(self.keys.sched_lease());
        for (id, lease) in done {
            inv.arg(id).arg(lease.to_string());
        }
        inv.invoke_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &self.keys.sched()))
    }

    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = Utc::now().timestamp_millis();
        let mut inv = self.scripts.track_sent.key(self.keys.deadlines());
        inv.arg(self.keys.job_prefix()).arg(self.keys.msg_prefix());
        for (job, deadline, token) in jobs {
            let json = serde_json::to_string(job).map_err(|e| corrupt(self.keys.job(&job.job_id), e))?;
            let deadline_ms = deadline.timestamp_millis();
            // Kept `ttl` past the deadline, so late receipts still match until then.
            let px = millis(ttl) + deadline_ms.saturating_sub(now_ms).max(0) as u64;
            inv.arg(&job.job_id).arg(token).arg(deadline_ms).arg(px).arg(json).arg(&job.provider).arg(job.message_ids.len());
            for id in &job.message_ids {
                inv.arg(id);
            }
        }
        // Replay-guarded: run twice, the second run would find the job `sent` and say fenced.
        let tracked: Vec<i64> = self.invoke_replayable(&mut inv, "track_sent").await?;
        if tracked.len() != jobs.len() {
            return Err(corrupt(self.keys.deadlines(), format!("{} answers for {} jobs", tracked.len(), jobs.len())));
        }
        Ok(tracked.into_iter().map(|v| v == 1).collect())
    }

    async fn settle_parts(
        &self,
        receipts: &[(&str, &str, PartOutcome)],
        confirm_by: DateTime<Utc>,
    ) -> Result<Vec<Settled>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.deadlines();
        let mut inv = self.scripts.settle_part.key(&key);
        inv.arg(self.keys.job_prefix()).arg(confirm_by.timestamp_millis()).arg(self.keys.msg_prefix());
        inv.arg(Utc::now().timestamp_millis()).arg(&self.owner);
        for (provider, message_id, outcome) in receipts {
            inv.arg(*provider).arg(*message_id).arg(outcome.as_str());
        }
        let reply: Vec<String> = self.invoke_replayable(&mut inv, &key).await?;
        if reply.len() != receipts.len() * 2 {
            return Err(corrupt(&key, format!("{} settle answers for {} receipts", reply.len() / 2, receipts.len())));
        }
        reply
            .chunks(2)
            .zip(receipts)
            .map(|(pair, (_, _, outcome))| match pair[0].as_str() {
                "u" => Ok(Settled::Unmatched),
                "p" => Ok(Settled::Pending),
                "e" => Ok(Settled::Held),
                "f" => Ok(Settled::Final { job: parse_sent(&key, &pair[1])?, outcome: *outcome }),
                other => Err(corrupt(&key, format!("unexpected settle answer {other:?}"))),
            })
            .collect()
    }

    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.deadlines();
        let mut inv = self.scripts.take_overdue.key(&key);
        inv.arg(now.timestamp_millis()).arg(limit.min(i64::MAX as usize)).arg(self.keys.job_prefix()).arg(lease_until.timestamp_millis());
        inv.arg(self.keys.alive_prefix()).arg(&self.owner);
        let rows: Vec<String> = self.invoke_replayable(&mut inv, &key).await?;
        // A bad entry is logged and skipped, not allowed to fail the batch around it.
        Ok(rows
            .chunks(4)
            .filter_map(|row| match overdue(&key, row) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable overdue job");
                    None
                }
            })
            .collect())
    }

    async fn checkpoint_offsets(&self, offsets: &[(i32, i64)], now: DateTime<Utc>) -> Result<(), StoreError> {
        if offsets.is_empty() {
            return Ok(());
        }
        // One pipeline: per partition the checkpoint, and those older than a day trimmed (a
        // decision is read back within minutes of its decider's death).
        let now_ms = now.timestamp_millis();
        let mut pipe = redis::pipe();
        for (p, offset) in offsets {
            let key = self.keys.offsets(*p);
            pipe.cmd("ZADD").arg(&key).arg(now_ms).arg(offset).ignore();
            pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now_ms - 86_400_000).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, "checkpoint_offsets"))
    }

    async fn offset_before(&self, partition: i32, at: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let key = self.keys.offsets(partition);
        let found: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&key)
            .arg(at.timestamp_millis())
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_err(e, &key))?;
        found.first().map(|o| o.parse().map_err(|e| corrupt(&key, e))).transpose()
    }

    async fn finish_sent(&self, job_ids: &[String]) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let mut inv = self.scripts.finish_sent.key(self.keys.deadlines());
        inv.arg(self.keys.job_prefix());
        for id in job_ids {
            inv.arg(id);
        }
        inv.invoke_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &self.keys.deadlines()))
    }

    async fn record_events(&self, reports: &[Report], ttl: Duration) -> Result<(), StoreError> {
        let json = reports
            .iter()
            .map(|r| serde_json::to_string(r).map_err(|e| corrupt(self.keys.hist(&r.job_id), e)))
            .collect::<Result<Vec<_>, _>>()?;
        self.record_events_json(reports, &json, ttl).await
    }

    fn takes_report_json(&self) -> bool {
        true
    }

    async fn record_events_json(&self, reports: &[Report], json: &[String], ttl: Duration) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        if json.len() != reports.len() {
            return Err(corrupt("record_events", format!("{} encodings for {} reports", json.len(), reports.len())));
        }
        // One script: each history and its final mark land together even if Redis dies mid-batch.
        let mut inv = self.scripts.record_events.prepare_invoke();
        inv.arg(self.keys.hist_prefix()).arg(self.keys.job_prefix()).arg(millis(ttl));
        for (r, json) in reports.iter().zip(json) {
            let kind = match r.event {
                _ if r.is_final => "1",
                crate::report::EventKind::Accepted => "a",
                _ => "0",
            };
            inv.arg(&r.job_id).arg(kind).arg(json);
        }
        inv.invoke_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, "record_events"))
    }

    async fn events(&self, job_id: &str) -> Result<Vec<Report>, StoreError> {
        let key = self.keys.hist(job_id);
        let rows: Vec<String> =
            redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        rows.iter().map(|json| serde_json::from_str(json).map_err(|e| corrupt(&key, e))).collect()
    }

    async fn opted_out(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        self.opt_outs_contain(entries).await
    }

    async fn add_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        self.opt_outs_change("ZADD", entries).await
    }

    async fn remove_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        self.opt_outs_change("ZREM", entries).await
    }

    async fn list_opt_outs(&self, tenant: &str, channel: &str, after: Option<&str>, limit: usize) -> Result<OptOutPage, StoreError> {
        self.opt_outs_page(tenant, channel, after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING").query_async::<String>(&mut self.conn()).await.map(drop).map_err(|e| store_err(e, "ping"))
    }

    async fn whatsapp_admit(
        &self,
        portfolios: &[super::whatsapp::Portfolio<'_>],
        attempts: &[super::whatsapp::Attempt<'_>],
        now: DateTime<Utc>,
    ) -> Result<super::whatsapp::Admission, StoreError> {
        self.wa_admit(portfolios, attempts, now).await
    }

    async fn record_inbound_contacts(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.wa_record_inbound(contacts).await
    }

    async fn whatsapp_usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Result<super::whatsapp::Usage, StoreError> {
        self.wa_usage(portfolio, window, now).await
    }

    /// One script for every limit of a batch. Not replay-guarded: a lease whose reply is lost
    /// is retried as a new lease, and the lost one's tokens go unused (never overspent).
    async fn rate_lease(&self, reqs: &[RateLease], _now: DateTime<Utc>) -> Result<Vec<RateGrant>, StoreError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.rate_lease.prepare_invoke();
        for r in reqs {
            inv.key(self.keys.rate(&r.limit));
            inv.arg(r.interval_us).arg(r.want).arg(r.horizon_us);
        }
        let flat: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, "rate_lease"))?;
        if flat.len() != reqs.len() * 4 {
            return Err(corrupt("rate_lease", format!("{} answers for {} limits", flat.len() / 4, reqs.len())));
        }
        let us = |v: i64| v.max(0) as u64;
        Ok(flat
            .chunks(4)
            .map(|c| RateGrant { granted: us(c[0]) as u32, first_us: us(c[1]), next_free_us: us(c[2]), first_at_us: us(c[3]) })
            .collect())
    }

    async fn set_campaign_rate(&self, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), StoreError> {
        let key = self.keys.campaign_rates();
        let field = campaign_field(tenant, campaign);
        let cmd = match rate {
            Some(r) => redis::cmd("HSET").arg(&key).arg(&field).arg(r.to_string()).to_owned(),
            None => redis::cmd("HDEL").arg(&key).arg(&field).to_owned(),
        };
        cmd.query_async::<i64>(&mut self.conn()).await.map(drop).map_err(|e| store_err(e, &key))
    }

    async fn campaign_rates(&self, campaigns: &[(&str, &str)]) -> Result<Vec<Option<f64>>, StoreError> {
        if campaigns.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.campaign_rates();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&key);
        for (t, c) in campaigns {
            cmd.arg(campaign_field(Some(t), c)).arg(campaign_field(None, c));
        }
        let values: Vec<Option<String>> = cmd.query_async(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        // A value that does not parse is logged and ignored rather than allowed to stall every
        // batch that names its campaign.
        let parse = |field: usize| {
            let v = values.get(field)?.as_deref()?;
            v.parse::<f64>().ok().filter(|r| r.is_finite() && *r > 0.0).or_else(|| {
                tracing::error!(key = %key, value = %v, "ignoring a campaign speed that is not a valid rate");
                None
            })
        };
        Ok((0..campaigns.len()).map(|i| parse(2 * i).or_else(|| parse(2 * i + 1))).collect())
    }

    async fn keep_early(&self, receipts: &[EarlyReceipt], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.early_keep(receipts, now).await
    }

    async fn take_early(&self, older_than: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Result<Vec<EarlyReceipt>, StoreError> {
        self.early_take(older_than, now, limit).await
    }

    async fn drop_early(&self, receipts: &[(&str, &str)]) -> Result<(), StoreError> {
        self.early_drop(receipts).await
    }
}
