//! # sendgate
//!
//! A send gateway: jobs flow **source → policies → route → provider → receipt → report**, with a
//! **store** beside the flow holding everything several instances must share.
//!
//! ## Layout
//! - [`job`], [`report`]: the wire contract's types; parsing validates once, here.
//! - [`config`]: typed TOML config and validation that names every bad key.
//! - [`api`]: the HTTP API: `POST /v1/jobs` ingest, job history, health, the `admin` API, provider
//!   webhooks; the `listener` (connection cap, header/idle/body timeouts); `/metrics`.
//! - [`source`]: the Kafka consumer, the other way jobs come in.
//! - [`pipeline`]: intake (bounded), the decision worker, the completer, the reporter.
//! - [`policy`]: the chain that decides whether and when a job may go (`dedup`, `expiry`, `opt_out`,
//!   `schedule`, `quiet_hours`, `whatsapp_tier`).
//! - [`cascade`]: a job tried on one channel after another (docs/cascades.md).
//! - [`scheduler`]: feeds deferred jobs back into the chain when they fall due.
//! - [`route`]: picks the provider for a job.
//! - [`provider`]: the `Provider` trait and its SMPP implementation.
//! - [`receipt`]: correlates receipts with jobs; receipt deadlines; STOP replies (MO) onto opt-out lists.
//! - [`sink`]: where report events go (JSONL stdout/file, or Kafka).
//! - [`store`]: the shared-state trait, in memory (`sendgate dev`) or in Redis.
//! - [`clock`]: time as a dependency, so tests control it.
//! - [`failpoint`]: named crash and error points for tests (cargo feature `failpoints`).
//! - [`retry`]: the one retry-with-backoff helper, for calls that guard a decision.
//! - [`telemetry`]: metric names, `/metrics`.
//! - [`sms`]: GSM-7/UCS-2/Latin-1 decoding and UDH/SAR concatenation, shared by the SMPP
//!   provider and the simulator.
//! - [`smsc_sim`]: the SMPP server behind `sendgate smsc-sim`.
//! - [`provider_sim`]: the HTTP provider simulator behind `sendgate provider-sim` (WhatsApp
//!   Cloud API); only `sendgate dev` and tests start it.
//! - [`weights`]: `name=weight,...` choices, the simulators' outcome mixes.
//! - [`app`]: builds everything from `Config`, spawns tasks, shuts down in order.
//! - `fuzz`: the fuzz targets (`tests/fuzz.rs`, `fuzz/`); not used by the daemon.

pub mod api;
pub mod app;
pub mod cascade;
pub mod clock;
pub mod config;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzz;
pub mod job;
pub mod pipeline;
pub mod policy;
pub mod provider;
pub mod provider_sim;
pub mod receipt;
pub mod report;
pub mod retry;
pub mod route;
pub mod scheduler;
pub mod sink;
pub mod sms;
pub mod smsc_sim;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod weights;
