//! `RedisStore`: the store every instance shares, in Redis. Key names live in `keys.rs`, every
//! multi-step update is one Lua script in `scripts/`, and every batch costs one round trip.
//!
//! This file holds the connection, the heartbeat, the scripts and the helpers every concern
//! shares; each store concern's impl is a file beside it (`claims.rs`, `schedule.rs`,
//! `receipts.rs`, `history.rs`, `opt_outs.rs`, `whatsapp.rs`, `rates.rs`, `pacing.rs`).
//!
//! Claims carry their owner as `instance/incarnation`; an owner is alive while
//! `alive:{instance}` holds its incarnation, which its heartbeat task keeps refreshing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};
use tokio::task::JoinHandle;

use super::keys::Keys;
use super::StoreError;
use crate::config::RedisConfig;

mod claims;
mod early;
mod history;
mod opt_outs;
mod pacing;
mod rates;
mod receipts;
mod schedule;
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
    record_events: Script,
    release: Script,
    whatsapp_admit: Script,
    record_inbound: Script,
    rate_lease: Script,
    pace: Script,
    take_early: Script,
    cancel_step: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            // Lua scripts cannot include each other: shared heads are prepended here.
            claim: Script::new(concat!(
                include_str!("scripts/replay_plain.lua"),
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/owner_alive.lua"),
                include_str!("scripts/claim.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            mark_submitting: Script::new(include_str!("scripts/mark_submitting.lua")),
            // Replay-guarded: run twice, the second run would find its own `finishing` and say
            // fenced, and the finals would never be published.
            begin_finals: Script::new(concat!(
                include_str!("scripts/zbatch.lua"),
                include_str!("scripts/decide_final.lua"),
                include_str!("scripts/replay_plain.lua"),
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/begin_finals.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            schedule: Script::new(include_str!("scripts/schedule.lua")),
            // Replay-guarded: a lost reply retried would lease the entries again under new
            // tokens and fence off the jobs the first run handed out.
            claim_due: Script::new(concat!(
                include_str!("scripts/replay_plain.lua"),
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/owner_alive.lua"),
                include_str!("scripts/claim_due.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            finish_scheduled: Script::new(include_str!("scripts/finish_scheduled.lua")),
            track_sent: Script::new(concat!(include_str!("scripts/zbatch.lua"), include_str!("scripts/mappings.lua"), include_str!("scripts/track_sent.lua"))),
            settle_part: Script::new(concat!(
                include_str!("scripts/zbatch.lua"),
                include_str!("scripts/mappings.lua"),
                include_str!("scripts/settle_replay.lua"),
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/settle_part.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            take_overdue: Script::new(concat!(
                include_str!("scripts/replay_plain.lua"),
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/owner_alive.lua"),
                include_str!("scripts/mappings.lua"),
                include_str!("scripts/forget_sent.lua"),
                include_str!("scripts/take_overdue.lua"),
                include_str!("scripts/replay_close.lua")
            )),
            record_events: Script::new(concat!(
                include_str!("scripts/zbatch.lua"),
                include_str!("scripts/mappings.lua"),
                include_str!("scripts/forget_sent.lua"),
                include_str!("scripts/record_events.lua")
            )),
            release: Script::new(include_str!("scripts/release.lua")),
            whatsapp_admit: Script::new(include_str!("scripts/whatsapp_admit.lua")),
            record_inbound: Script::new(include_str!("scripts/record_inbound.lua")),
            rate_lease: Script::new(include_str!("scripts/rate_lease.lua")),
            pace: Script::new(include_str!("scripts/pace.lua")),
            take_early: Script::new(include_str!("scripts/take_early.lua")),
            // Replay-guarded: run twice, the second run would find the step `finishing` and
            // answer 0, and the decided final would never be published.
            cancel_step: Script::new(concat!(
                include_str!("scripts/zbatch.lua"),
                include_str!("scripts/decide_final.lua"),
                include_str!("scripts/replay_plain.lua"),
                include_str!("scripts/replay_open.lua"),
                include_str!("scripts/cancel_step.lua"),
                include_str!("scripts/replay_close.lua")
            )),
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
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| StoreError::Unavailable(format!("redis url {:?}: {e}", cfg.url)))?;
        // Reconnect backoff capped at a second: a restarted Redis is back in use promptly.
        let conn_cfg = ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT)).set_max_delay(Duration::from_secs(1));
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
        let res: Result<i64, _> = self.scripts.release.key(&key).arg(self.incarnation.to_string()).invoke_async(&mut self.conn.clone()).await;
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

impl RedisStore {
    /// Runs a script that must not run twice (its effects cannot be repeated safely) until
    /// Redis answers: a connection error is retried with the same reply key, so a call that
    /// ran but whose reply was lost returns that reply instead of running again. Only an
    /// answer that is an error of the data itself is returned as an error.
    async fn invoke_replayable<T: redis::FromRedisValue>(&self, inv: &mut redis::ScriptInvocation<'_>, what: &str) -> Result<T, StoreError> {
        inv.arg(self.keys.reply(rand::random::<u64>()));
        // Redis is back within a second of a restart: look again at least that often.
        let mut attempts = crate::retry::Attempts::new("redis_replayable", 1).max_wait(Duration::from_secs(1));
        loop {
            match inv.invoke_async(&mut self.conn()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || e.is_unrecoverable_error() => {
                    let wait = attempts.failed(&format_args!("{what}: redis unreachable: {e}"));
                    wait.await;
                }
                Err(e) => return Err(store_err(e, what)),
            }
        }
    }
}

/// Data Redis or a script says is the wrong shape is corrupt (retrying cannot help);
/// everything else (I/O, timeouts, LOADING, READONLY, OOM) is the store being unavailable.
fn store_err(e: RedisError, key: &str) -> StoreError {
    let script_error = matches!(e.kind(), ErrorKind::Server(redis::ServerErrorKind::ResponseError)) && e.detail().is_some_and(|d| d.contains("script"));
    if matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType) || e.code() == Some("WRONGTYPE") || script_error {
        StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() }
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn corrupt(key: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt { key: key.into(), reason: reason.to_string() }
}
