//! Issue 10's model-based test of the claim / lease / settle state machine, on the real Redis
//! scripts: random interleavings of two or three instances against a small reference model.
//!
//! Each case is a sequence of operations (proptest: generated, then shrunk to a minimal case
//! on failure) over up to six job ids, each with two records (the record that carries it and
//! a second record with the same id):
//!
//! - an instance reads a record (`claim_ids` under a fresh token: a new job's, one read
//!   before, or a second record; or every record read so far, as after a rebalance) and its
//!   pipeline steps
//!   through the job: park it (`schedule`), stop it with a final (`begin_finals`), or submit
//!   it (`mark_submitting`, which is the write); the provider answers accepted (`track_sent`,
//!   then `accepted` published and recorded), throttled (parked again), rejected, or not at
//!   all (`unknown`); a claim step is retried under the same token;
//! - the provider sends receipts to any instance (`settle_parts`); the scheduler of any
//!   instance claims due entries (`claim_due`, `finish_scheduled`); the deadline sweep of any
//!   instance takes overdue jobs (`take_overdue`), reading the reports topic back for finals
//!   whose decider died; finals are published, then recorded (`record_events`, which
//!   forgets the job's receipt state), each a step of its own; a receipt's final decided
//!   before its job's `accepted` was recorded is handed to the tracker, whose recording of
//!   `accepted` returns it to publish;
//! - an instance crashes anywhere (`shutdown`: its alive key is gone), either for good (its
//!   work in memory is lost) or stalled: a process the others take for dead whose store calls
//!   still land (each must be fenced off where another instance took the job over); it
//!   restarts under the same instance id (a new incarnation); the clock moves on (leases,
//!   confirmation graces and receipt deadlines lapse);
//! - a step's store call loses its reply (two steps in five): `mark_submitting`, `track_sent`,
//!   `schedule` and `record_events` are run again as they are by `retry::until_ok` (no reply
//!   key), so the call is made again and both answers must agree. (A handed final's recording
//!   that answered nothing when run again lost the final in session 9; this catches that
//!   mutation with the default seed and 128 cases, where one step in five did not.)
//!
//! Every store answer is compared with the reference model's (a mirror of the job hash, the
//! scheduled set, the deadlines and the receipt mappings, written from the `Store` trait's
//! documentation), and after every operation the model is compared with what Redis holds.
//! On what the instances would have published (the reports topic, modelled exactly: a final
//! is "in the topic" from its publish step on, whatever happens after) and written to the
//! provider, the contract's promises are checked as they happen:
//!
//! 1. fencing: a step under a token that no longer holds its job changes nothing (`false`);
//! 2. a job is written to the provider at most once (a refused write aside), and never marked
//!    `submitting` again under another token while a write may be out;
//! 3. at most one final per job id in the topic; `accepted` before a receipt's final, and
//!    nothing but `duplicate` after a final; `unknown` only for a job that was written;
//! 4. a second record of a claimed id is `Duplicate` when it is first read; read again while
//!    its event is not recorded, `DuplicateBusy` if its decider lives and `DuplicateUnsure`
//!    (read the topic back) if it died, nothing (`Replay`) once recorded; the same record is
//!    never any of those; no second record ever has two `duplicate` events in the topic;
//!
//! and after the case, once every instance is up and the model has run the pipeline, the
//! receipts, redeliveries of every record read, the scheduler and the sweep to quiescence:
//! 5. every claimed id has exactly one final in the topic, its claim is `final`, every second
//!    record read has exactly one `duplicate` in the topic, and the scheduled set and the
//!    deadlines are empty.
//!
//! It found two orderings where a non-final report still on its way let the store end the job
//! elsewhere, so that the report landed after the final (`accepted` after the deadline sweep's
//! `unknown`; a parking's `deferred` after the final of the job the scheduler resumed). Both
//! are holds now, mirrored here: a job whose `accepted` (track_sent.lua's `hold`) or whose
//! parking's `deferred` (schedule.lua's `dhold`) is not recorded yet stays with the instance
//! that holds that report while it lives (the sweep leases it again; the scheduler looks at
//! it again after `HELD_RETRY`); a dead holder's hold is void. Regression tests:
//! `the_sweep_leaves_a_job_whose_accepted_is_not_recorded_to_its_live_tracker` and
//! `a_parked_job_is_not_resumed_before_its_deferred_is_recorded_while_its_parker_lives`.
//!
//! `SENDGATE_MODEL_CASES` (default 128), `SENDGATE_MODEL_OPS` (at most, per case; at least
//! half as many; default 40) and `SENDGATE_MODEL_SEED` (a number, or `random`; a fixed default
//! keeps CI repeatable) size a run, whose figures it prints (run with `--nocapture`);
//! `SENDGATE_MODEL_STALLED_PUBLISH=1` lets a stalled process publish too (see
//! `Task::Publish`); `SENDGATE_MODEL_DUMP=1` prints every case's steps.

use std::cell::RefCell;
use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use sendgate::store::{ClaimedJob, Overdue, HELD_RETRY};

use super::*;

/// Job ids per case, `j0..j5`: each carried by its record `jobs/0/<k>` and, as a second
/// record with the same id, `jobs/1/<k>`.
const IDS: u8 = 6;
const PROVIDER: &str = "p";
/// `FINAL_CONFIRM_GRACE`: `confirm_by` of a decided final and the sweep's lease (ms).
const GRACE: i64 = 30_000;
/// The scheduler's lease.
const SCHED_LEASE: Duration = Duration::from_secs(30);
/// The provider's receipt timeout (ms): short, so that deadlines lapse within a case.
const RECEIPT_TIMEOUT: i64 = 60_000;
/// How long a `Busy` record waits before its claim is looked at again (ms).
const RECHECK: i64 = 10_000;
/// Claims and mappings outlive any case.
const CLAIM_TTL: Duration = Duration::from_secs(3600);
/// A receipt the store cannot take yet (`Unmatched`) is tried this many times, then
/// dropped (the correlator's early-receipt grace).
const RECEIPT_TRIES: u8 = 3;

// ------------------------------------------------------------------------------------ ops

#[derive(Clone, Debug, PartialEq)]
enum Op {
    /// Nothing: what shrinking turns an operation into when it cannot remove it (the case
    /// has a minimum length, so that most cases are long enough for crashes to meet work).
    Nop,
    /// An instance reads a record: `pick` chooses a new job's record, a record read before
    /// (a redelivery after a crash or rebalance) or a second record of a known id.
    Read { inst: u8, pick: u8 },
    /// A rebalance: the instance reads again every record read so far (the partitions' new
    /// owner starts from the last committed offset).
    Redeliver { inst: u8 },
    /// One job in some up instance's hands takes one step; `choice` picks what the pipeline
    /// and the provider do where they have a choice; `lose`: the reply of its store call is
    /// lost, so the call runs again (`retry::until_ok`) and only the second answer is seen.
    Step { task: u8, choice: u8, lose: bool },
    /// A stalled process (dead to the others) takes one step.
    Stalled { task: u8, choice: u8, lose: bool },
    /// A chain step retried after a store error: its claim asked again under the same token.
    Retry { inst: u8, task: u8 },
    /// The scheduler's tick.
    Sched { inst: u8 },
    /// The deadline sweep's tick.
    Sweep { inst: u8 },
    /// The provider sends a receipt to an instance.
    Receipt { inst: u8, k: u8 },
    /// The instance dies (`stall`: its process keeps running, unseen).
    Crash { inst: u8, stall: bool },
    /// The instance starts again under the same id.
    Restart { inst: u8 },
    /// The clock moves on.
    Tick { secs: u8 },
}

/// Two steps in five lose their store call's reply.
fn lose() -> impl Strategy<Value = bool> {
    proptest::bool::weighted(0.4)
}

fn op() -> impl Strategy<Value = Op> {
    // 0..6 reduces evenly to 2 and 3 instances.
    let inst = || 0..6u8;
    prop_oneof![
        1 => Just(Op::Nop),
        8 => (inst(), any::<u8>()).prop_map(|(inst, pick)| Op::Read { inst, pick }),
        6 => inst().prop_map(|inst| Op::Redeliver { inst }),
        16 => (any::<u8>(), any::<u8>(), lose()).prop_map(|(task, choice, lose)| Op::Step { task, choice, lose }),
        10 => (any::<u8>(), any::<u8>(), lose()).prop_map(|(task, choice, lose)| Op::Stalled { task, choice, lose }),
        1 => (inst(), any::<u8>()).prop_map(|(inst, task)| Op::Retry { inst, task }),
        3 => inst().prop_map(|inst| Op::Sched { inst }),
        3 => inst().prop_map(|inst| Op::Sweep { inst }),
        4 => (inst(), any::<u8>()).prop_map(|(inst, k)| Op::Receipt { inst, k }),
        5 => (inst(), prop_oneof![1 => Just(false), 2 => Just(true)]).prop_map(|(inst, stall)| Op::Crash { inst, stall }),
        3 => inst().prop_map(|inst| Op::Restart { inst }),
        3 => prop_oneof![1..=15u8, 25..=45u8, 55..=70u8].prop_map(|secs| Op::Tick { secs }),
    ]
}

/// What the pipeline does with a claimed job, by `choice % 8`.
fn chain_choice(choice: u8) -> &'static str {
    match choice % 8 {
        0 | 1 => "park",
        2 => "stop",
        _ => "submit",
    }
}

/// What the provider answers a write, by `choice % 8`.
fn wire_choice(choice: u8) -> &'static str {
    match choice % 8 {
        4 => "throttled",
        5 => "rejected",
        6 => "no answer",
        _ => "accepted",
    }
}

/// The choice quiescence makes everywhere: submit, accepted, one part, delivered.
const QUIET: u8 = 3;

// ---------------------------------------------------------------------- reference model

/// A job hash's `st`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Claimed,
    Submitting,
    Orphaned,
    Deferred,
    Sent,
    Finishing,
    Final,
}

impl St {
    fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Submitting => "submitting",
            Self::Orphaned => "orphaned",
            Self::Deferred => "deferred",
            Self::Sent => "sent",
            Self::Finishing => "finishing",
            Self::Final => "final",
        }
    }
}

/// A second record's `duplicate` (claim.lua's `d:<record>`): decided under a token (taken over
/// from a dead decider: `taken`) until its event is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dup {
    Pending { tok: String, taken: bool },
    Done,
}

/// Claims compared without a `DuplicateUnsure`'s time (the store's clock, not the model's).
fn shape(c: Claim) -> Claim {
    match c {
        Claim::DuplicateUnsure { .. } => Claim::DuplicateUnsure { decided_at: chrono::DateTime::UNIX_EPOCH },
        c => c,
    }
}

/// One job as the model sees it: the fields of its hash the state machine reads, and what the
/// provider saw of it.
#[derive(Clone, Debug)]
struct JobM {
    /// The record that claimed it first, and the second records read so far (`d:<record>`:
    /// each is a `duplicate` once, nothing when read again once that is recorded).
    src: String,
    dups: BTreeMap<String, Dup>,
    st: St,
    /// The token holding it.
    own: String,
    /// Tracked as sent (`j`), parts not yet delivered (`left`), `accepted` not yet recorded.
    j: bool,
    left: Option<i64>,
    hold: bool,
    /// Decided by a receipt while `hold` was on: handed to the tracker (`fo`), which publishes
    /// it after recording its `accepted` (`ho`: 1 handed, 2 and its `accepted` recorded).
    ho: u8,
    /// Decided: the outcome (`pipeline` for a pipeline final), by whom (`instance/incarnation`),
    /// and a pipeline final's event.
    fin: Option<String>,
    fo: Option<String>,
    fr: Option<EventKind>,
    /// Writes to the provider, those it refused, and the token of the last write that may be
    /// out (not known to be refused and parked).
    writes: u32,
    refused: u32,
    out_by: Option<String>,
    /// Parked, and the `deferred` of that parking not recorded yet (`dhold`).
    dhold: bool,
}

impl JobM {
    fn forget(&mut self) {
        self.j = false;
        self.left = None;
        self.hold = false;
        self.ho = 0;
        self.fin = None;
        self.fo = None;
        self.fr = None;
    }
}

/// A scheduled entry: its job, record, kind, score (due, or the end of its lease) and lease.
#[derive(Clone, Debug)]
struct EntryM {
    id: String,
    src: String,
    recheck: bool,
    score: i64,
    lease: Option<u64>,
}

/// A receipt the provider still has to send.
#[derive(Clone, Debug)]
struct Rcpt {
    msg: String,
    outcome: PartOutcome,
    tries: u8,
}

/// An overdue job as the model compares it: (id, tracked, decided outcome, pipeline final,
/// decided by an instance that died).
type OverdueShape = (String, bool, Option<PartOutcome>, Option<EventKind>, bool);

/// A scheduled entry's claim held by a job in flight: `(entry, lease)`.
type Sched = Option<(String, u64)>;

/// What follows recording a report: the entry's lease given back (pipeline), or nothing more
/// (receipts and the sweep: recording a final forgets its job's receipt state).
#[derive(Clone, Debug)]
enum Then {
    Ack(Sched),
    Forgotten,
}

/// Work an instance holds in memory (lost when it dies for good).
#[derive(Clone, Debug)]
enum Task {
    /// A claimed job at the start of the chain.
    Chain {
        id: String,
        src: String,
        token: String,
        sched: Sched,
    },
    /// Written to the provider (marked `submitting`): waiting for its answer.
    Wire {
        id: String,
        src: String,
        token: String,
        sched: Sched,
    },
    /// Claimed to end `unknown` (its claimer died mid-submit).
    Orphan {
        id: String,
        src: String,
        token: String,
        sched: Sched,
    },
    /// A record found `Busy`: park it to be looked at again.
    Recheck {
        id: String,
        src: String,
        token: String,
        sched: Sched,
    },
    /// A recheck entry back from the scheduled set: claim its record again.
    Reclaim {
        id: String,
        src: String,
        sched: Sched,
    },
    /// A final handed out by the sweep, decided by an instance that died: read the topic back.
    ReadBack {
        id: String,
        ev: EventKind,
    },
    /// A second record's `duplicate`: publish it; a dead decider's: read the topic back first;
    /// a live decider's: ask again under the same token (the dedup policy's wait).
    DupPublish {
        id: String,
        src: String,
        sched: Sched,
    },
    DupReadBack {
        id: String,
        src: String,
        sched: Sched,
    },
    DupAgain {
        id: String,
        src: String,
        token: String,
        sched: Sched,
    },
    /// Record a published `duplicate` (`record_events` with its record).
    DupRecord {
        id: String,
        src: String,
        sched: Sched,
    },
    /// Publish one report (the broker confirms it: it is in the topic). A stalled process does
    /// not reach the broker unless `SENDGATE_MODEL_STALLED_PUBLISH=1`: the design fences store
    /// steps, and a publish is not one. A decider stalled past its heartbeat and the
    /// confirmation grace whose final the sweep hands out, reads back (not there yet) and
    /// publishes, then publishing it too, makes two finals: a window only fenced publishes
    /// (Kafka transactions) would close.
    Publish {
        id: String,
        ev: EventKind,
        then: Then,
    },
    /// Record a published report (`record_events`).
    Record {
        id: String,
        ev: EventKind,
        then: Then,
    },
    /// Give the scheduled entry's lease back (`finish_scheduled`).
    Ack {
        entry: String,
        lease: u64,
    },
}

fn ack(sched: Sched) -> Vec<Task> {
    sched.map(|(entry, lease)| Task::Ack { entry, lease }).into_iter().collect()
}

struct Proc {
    store: Arc<RedisStore>,
    tasks: Vec<Task>,
}

/// Coverage, summed over the cases run.
#[derive(Default, Debug)]
struct Stats {
    cases: u64,
    ops: u64,
    calls: u64,
    claims: BTreeMap<String, u64>,
    due: BTreeMap<String, u64>,
    settled: BTreeMap<String, u64>,
    overdue: BTreeMap<String, u64>,
    finals: BTreeMap<String, u64>,
    /// Claims of a dead owner's job taken over by reading its record again.
    takeovers: u64,
    fenced: u64,
    fenced_stalled: u64,
    /// Parkings the scheduler and jobs the sweep left to the live holder of their report.
    held: BTreeMap<String, u64>,
    crashes: u64,
    stalls: u64,
    writes: u64,
    /// Store calls run again after a lost reply.
    replays: u64,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.cases += o.cases;
        self.ops += o.ops;
        self.calls += o.calls;
        for (mine, theirs) in [
            (&mut self.claims, o.claims),
            (&mut self.due, o.due),
            (&mut self.settled, o.settled),
            (&mut self.overdue, o.overdue),
            (&mut self.finals, o.finals),
            (&mut self.held, o.held),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
        self.takeovers += o.takeovers;
        self.fenced += o.fenced;
        self.fenced_stalled += o.fenced_stalled;
        self.crashes += o.crashes;
        self.stalls += o.stalls;
        self.writes += o.writes;
        self.replays += o.replays;
    }
}

fn bump(m: &mut BTreeMap<String, u64>, k: impl ToString) {
    *m.entry(k.to_string()).or_default() += 1;
}

type R<T> = Result<T, String>;

macro_rules! ensure {
    ($w:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($w.fail(format!($($fmt)+)));
        }
    };
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// `instance/incarnation` of a token `instance/incarnation/n`.
fn owner_of(token: &str) -> &str {
    token.rsplit_once('/').map_or("", |(o, _)| o)
}

fn payload(id: &str) -> String {
    format!(r#"{{"id":"{id}"}}"#)
}

/// A scheduled entry for job `id` (of record `src`, under `token`) due at `due` (ms).
fn entry_for(id: &str, src: &str, token: &str, due: i64, recheck: bool) -> ScheduledJob {
    ScheduledJob { id: id.into(), token: token.into(), src: Some(src.into()), due: at(due), payload: payload(id), recheck }
}

/// Job `k`'s record: its first (`second` false) or a second one with the same id.
fn record((k, second): (u8, bool)) -> (String, String) {
    (format!("j{k}"), format!("jobs/{}/{k}", u8::from(second)))
}

fn final_of(outcome: PartOutcome) -> EventKind {
    match outcome {
        PartOutcome::Delivered => EventKind::Delivered,
        PartOutcome::Undelivered => EventKind::Undelivered,
        PartOutcome::Expired => EventKind::Expired,
        PartOutcome::Rejected => EventKind::Rejected,
        PartOutcome::Unknown => EventKind::Unknown,
    }
}

struct World {
    s: Space,
    n: usize,
    stalled_publish: bool,
    /// The model's clock (unix ms): what `claim_due` and `take_overdue` are told, and what
    /// due times, deadlines and `confirm_by` count from.
    now: i64,
    up: Vec<Option<Proc>>,
    stalled: Vec<Proc>,
    jobs: BTreeMap<String, JobM>,
    sched: BTreeMap<String, EntryM>,
    /// `sched:seq`: the last lease handed out.
    seq: u64,
    deadlines: BTreeMap<String, i64>,
    /// Receipt mappings (`msgs:p` message id → job id) as Redis holds them, and every one ever made.
    maps: BTreeMap<String, String>,
    msgs: Vec<String>,
    receipts: Vec<Rcpt>,
    /// The reports topic: each job's events, in publish order.
    topic: BTreeMap<String, Vec<EventKind>>,
    /// `duplicate` events in the topic per second record (job id, record).
    dup_topic: BTreeMap<(String, String), u32>,
    /// Records read so far (redelivered at quiescence).
    read: BTreeSet<(u8, bool)>,
    /// Job ids read so far: `j0..j<ids>`.
    ids: u8,
    written: u64,
    /// The step being taken loses the reply of its store call (`mark_submitting`,
    /// `track_sent`, `schedule`, `record_events`: the calls that are run again as they are,
    /// without a reply key, so they must answer the same): it is made again, and both answers
    /// must agree.
    lose: bool,
    log: Vec<String>,
    stats: Stats,
}

impl World {
    async fn new(n: usize, stalled_publish: bool) -> Self {
        let s = Space::new().await;
        // Ahead of the wall clock and moving only forward: a claim's PEXPIREAT (due plus the
        // claim TTL) is never in the past.
        let now = (Utc::now().timestamp_millis() / 1000 + 1) * 1000;
        let mut w = Self {
            s,
            n,
            stalled_publish,
            now,
            up: (0..n).map(|_| None).collect(),
            stalled: Vec::new(),
            jobs: BTreeMap::new(),
            sched: BTreeMap::new(),
            seq: 0,
            deadlines: BTreeMap::new(),
            maps: BTreeMap::new(),
            msgs: Vec::new(),
            receipts: Vec::new(),
            topic: BTreeMap::new(),
            dup_topic: BTreeMap::new(),
            read: BTreeSet::new(),
            ids: 0,
            written: 0,
            lose: false,
            log: Vec::new(),
            stats: Stats { cases: 1, ..Stats::default() },
        };
        for i in 0..n {
            w.start(i).await;
        }
        w
    }

    /// Whether this step's store call is made again (its first reply lost); once per step.
    fn replay(&mut self, call: &str) -> bool {
        if !std::mem::take(&mut self.lose) {
            return false;
        }
        self.stats.calls += 1;
        self.stats.replays += 1;
        self.note(format!("  (reply lost: {call} runs again)"));
        true
    }

    fn name(i: usize) -> &'static str {
        ["a", "b", "c"][i]
    }

    async fn start(&mut self, i: usize) {
        let store = self.s.instance(Self::name(i), Duration::from_secs(30)).await;
        self.note(format!("start {}", store.owner()));
        self.up[i] = Some(Proc { store, tasks: Vec::new() });
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    fn fail(&self, msg: String) -> String {
        let mut out = format!("{msg}\n--- what happened ({} steps) ---\n", self.log.len());
        for l in &self.log {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    fn alive(&self, owner: &str) -> bool {
        self.up.iter().flatten().any(|p| p.store.owner() == owner)
    }

    fn job(&self, id: &str) -> &JobM {
        self.jobs.get(id).expect("a job the model knows")
    }

    fn job_mut(&mut self, id: &str) -> &mut JobM {
        self.jobs.get_mut(id).expect("a job the model knows")
    }

    fn who(store: &RedisStore, stalled: bool) -> String {
        if stalled {
            format!("{} (stalled)", store.owner())
        } else {
            store.owner().to_owned()
        }
    }

    fn fenced(&mut self, stalled: bool) {
        self.stats.fenced += 1;
        if stalled {
            self.stats.fenced_stalled += 1;
        }
    }

    // ------------------------------------------------------------------ store calls

    /// `claim_ids` of one record, under `token` (a retry) or a fresh one; the job's next tasks.
    async fn claim(&mut self, store: &Arc<RedisStore>, stalled: bool, id: String, src: String, token: Option<String>, sched: Sched) -> R<Vec<Task>> {
        let retry = token.is_some();
        let token = token.unwrap_or_else(|| mint_token(store.owner()));
        let want = match self.jobs.get(&id) {
            None => Claim::New,
            Some(m) if m.own == token => match m.st {
                St::Claimed => Claim::New,
                St::Orphaned => Claim::Orphaned,
                _ => Claim::Replay,
            },
            Some(m) if m.src != src => match m.dups.get(&src) {
                None => Claim::Duplicate,
                Some(Dup::Done) => Claim::Replay,
                Some(Dup::Pending { tok, taken }) if *tok == token => {
                    if *taken {
                        Claim::DuplicateUnsure { decided_at: chrono::DateTime::UNIX_EPOCH }
                    } else {
                        Claim::Duplicate
                    }
                }
                Some(Dup::Pending { tok, .. }) if self.alive(owner_of(tok)) => Claim::DuplicateBusy,
                Some(_) => Claim::DuplicateUnsure { decided_at: chrono::DateTime::UNIX_EPOCH },
            },
            Some(m) if !matches!(m.st, St::Claimed | St::Submitting | St::Orphaned) => Claim::Replay,
            Some(m) if self.alive(owner_of(&m.own)) => Claim::Busy,
            Some(m) if m.st == St::Claimed => Claim::New,
            Some(_) => Claim::Orphaned,
        };
        self.stats.calls += 1;
        let got = store
            .claim_ids(&[ClaimReq { id: &id, token: &token, src: Some(&src), plan: None }], CLAIM_TTL)
            .await
            .map_err(|e| self.fail(format!("claim_ids: {e}")))?;
        let retried = if retry { " (retried)" } else { "" };
        self.note(format!("{} claim {id} record {src} token {token}{retried} -> {got:?}", Self::who(store, stalled)));
        ensure!(self, got.len() == 1, "claim_ids answered {} claims for one", got.len());
        let got = got[0];
        bump(&mut self.stats.claims, format!("{got:?}").split_whitespace().next().unwrap_or_default().to_owned());
        // Rule 4, stated apart from the model: a second record is a duplicate when it is first
        // read, nothing once its event is recorded; the same record never is.
        if let Some((first, seen)) = self.jobs.get(&id).map(|m| (m.src.clone(), m.dups.get(&src).cloned())) {
            let second = first != src;
            let dup = matches!(got, Claim::Duplicate | Claim::DuplicateBusy | Claim::DuplicateUnsure { .. });
            ensure!(
                self,
                (!dup || second) && (!second || seen.is_some() || got == Claim::Duplicate) && (got != Claim::Replay || !second || seen == Some(Dup::Done)),
                "DUPLICATE RULE: record {src} of {id} (first claimed by {first}, read before: {seen:?}) got {got:?}"
            );
        }
        ensure!(self, shape(got) == want, "claim of {id} by record {src} under {token}: store {got:?}, model {want:?} ({:?})", self.jobs.get(&id));
        match (got, self.jobs.get_mut(&id)) {
            (Claim::New, None) => {
                let m = JobM {
                    src: src.clone(),
                    dups: BTreeMap::new(),
                    st: St::Claimed,
                    own: token.clone(),
                    j: false,
                    left: None,
                    hold: false,
                    ho: 0,
                    fin: None,
                    fo: None,
                    fr: None,
                    writes: 0,
                    refused: 0,
                    out_by: None,
                    dhold: false,
                };
                self.jobs.insert(id.clone(), m);
            }
            (Claim::New, Some(m)) if m.own != token => {
                m.own = token.clone();
                self.stats.takeovers += 1;
            }
            (Claim::Orphaned, Some(m)) => {
                m.st = St::Orphaned;
                m.own = token.clone();
            }
            (Claim::Duplicate, Some(m)) => {
                m.dups.insert(src.clone(), Dup::Pending { tok: token.clone(), taken: false });
            }
            (Claim::DuplicateUnsure { .. }, Some(m)) => {
                m.dups.insert(src.clone(), Dup::Pending { tok: token.clone(), taken: true });
            }
            _ => {}
        }
        Ok(match got {
            Claim::New => vec![Task::Chain { id, src, token, sched }],
            Claim::Orphaned => vec![Task::Orphan { id, src, token, sched }],
            Claim::Busy => vec![Task::Recheck { id, src, token, sched }],
            Claim::Duplicate => vec![Task::DupPublish { id, src, sched }],
            Claim::DuplicateUnsure { .. } => vec![Task::DupReadBack { id, src, sched }],
            Claim::DuplicateBusy => vec![Task::DupAgain { id, src, token, sched }],
            Claim::Replay => ack(sched),
        })
    }

    async fn mark(&mut self, store: &Arc<RedisStore>, stalled: bool, id: &str, token: &str) -> R<bool> {
        let (want, out_by) = {
            let m = self.job(id);
            (m.own == token && matches!(m.st, St::Claimed | St::Submitting), m.out_by.clone())
        };
        self.stats.calls += 1;
        let mut got = store.mark_submitting(&[(id, token)]).await.map_err(|e| self.fail(format!("mark_submitting: {e}")))?;
        if self.replay("mark_submitting") {
            let again = store.mark_submitting(&[(id, token)]).await.map_err(|e| self.fail(format!("mark_submitting: {e}")))?;
            ensure!(self, again == got, "LOST REPLY: mark_submitting of {id} under {token} answered {got:?}, run again {again:?}");
            got = again;
        }
        let got = got.first().copied().unwrap_or(false);
        self.note(format!("{} mark_submitting {id} {token} -> {got}", Self::who(store, stalled)));
        ensure!(self, !got || self.job(id).own == token, "FENCING: mark_submitting of {id} under {token} held, but {} holds it", self.job(id).own);
        ensure!(self, got == want, "mark_submitting of {id} under {token}: store {got}, model {want} ({:?})", self.job(id));
        if !got {
            self.fenced(stalled);
            return Ok(false);
        }
        if let Some(prev) = out_by.filter(|p| p != token) {
            return Err(self.fail(format!("SENT TWICE: {id} marked submitting under {token} while the write under {prev} may be out")));
        }
        self.written += 1;
        self.stats.writes += 1;
        let m = self.job_mut(id);
        m.st = St::Submitting;
        m.writes += 1;
        m.out_by = Some(token.to_owned());
        let (writes, refused) = (m.writes, m.refused);
        ensure!(self, writes - refused <= 1, "SENT TWICE: {id} written {writes} times, {refused} refused");
        Ok(true)
    }

    /// An owner's deferral (`recheck` false) or a `Busy` record's recheck, of the job's record
    /// `src` under `token`, due at `due`.
    async fn schedule(&mut self, store: &Arc<RedisStore>, stalled: bool, job: ScheduledJob) -> R<bool> {
        let (id, token, recheck, due) = (job.id.clone(), job.token.clone(), job.recheck, job.due.timestamp_millis());
        let src = job.src.clone().expect("records carry a source");
        let want = recheck || {
            let m = self.job(&id);
            // Parked under this token already: the same call run again (a lost reply).
            m.own == token && matches!(m.st, St::Claimed | St::Submitting | St::Deferred)
        };
        let entry = job.entry();
        self.stats.calls += 1;
        let jobs = [job];
        let mut got = store.schedule(&jobs, CLAIM_TTL).await.map_err(|e| self.fail(format!("schedule: {e}")))?;
        if self.replay("schedule") {
            let again = store.schedule(&jobs, CLAIM_TTL).await.map_err(|e| self.fail(format!("schedule: {e}")))?;
            ensure!(self, again == got, "LOST REPLY: schedule of {entry} under {token} answered {got:?}, run again {again:?}");
            got = again;
        }
        let got = got.first().copied().unwrap_or(false);
        self.note(format!("{} schedule {entry} ({id} {token}) due +{}s -> {got}", Self::who(store, stalled), (due - self.now) / 1000));
        ensure!(self, recheck || !got || self.job(&id).own == token, "FENCING: schedule of {id} under {token} held, but {} holds it", self.job(&id).own);
        ensure!(self, got == want, "schedule of {entry} under {token}: store {got}, model {want} ({:?})", self.jobs.get(&id));
        if !got {
            self.fenced(stalled);
            return Ok(false);
        }
        if !recheck {
            let m = self.job_mut(&id);
            // Run again under its token, the parking changes nothing on the claim.
            if m.st != St::Deferred {
                m.st = St::Deferred;
                m.dhold = true;
            }
        }
        self.sched.insert(entry, EntryM { id, src, recheck, score: due, lease: None });
        Ok(true)
    }

    async fn claim_due(&mut self, i: usize) -> R<Vec<Task>> {
        let store = self.up[i].as_ref().expect("up").store.clone();
        let me = store.owner().to_owned();
        let now = self.now;
        let mut due: Vec<(i64, String)> = self.sched.iter().filter(|(_, e)| e.score <= now).map(|(k, e)| (e.score, k.clone())).collect();
        due.sort();
        let mut want = Vec::new();
        for (_, member) in due.into_iter().take(100) {
            self.seq += 1;
            let lease = self.seq;
            let e = self.sched[&member].clone();
            let kind = if e.recheck {
                Some((DueKind::Recheck, None))
            } else {
                let m = self.job(&e.id);
                let holder = owner_of(&m.own);
                let dead = !self.alive(holder);
                let (st, dhold) = (m.st, m.dhold);
                let tok = format!("{me}/s{lease}");
                if st == St::Deferred && dhold && (holder == me || !dead) {
                    // Its `deferred` is still in its live parker's hands: looked at again
                    // shortly, unleased.
                    self.sched.get_mut(&member).expect("kept").score = now + HELD_RETRY.as_millis() as i64;
                    bump(&mut self.stats.held, "parking");
                    continue;
                } else if st == St::Deferred || (st == St::Claimed && dead) {
                    let m = self.job_mut(&e.id);
                    m.st = St::Claimed;
                    m.own = tok.clone();
                    m.dhold = false;
                    Some((DueKind::Resumed, Some(tok)))
                } else if matches!(st, St::Submitting | St::Orphaned) && dead {
                    let m = self.job_mut(&e.id);
                    m.st = St::Orphaned;
                    m.own = tok.clone();
                    Some((DueKind::Orphaned, Some(tok)))
                } else if matches!(st, St::Claimed | St::Submitting | St::Orphaned) {
                    None
                } else {
                    self.sched.remove(&member);
                    continue;
                }
            };
            let entry = self.sched.get_mut(&member).expect("kept");
            entry.lease = Some(lease);
            entry.score = now + SCHED_LEASE.as_millis() as i64;
            if let Some((kind, token)) = kind {
                want.push(ClaimedJob { entry: member.clone(), payload: payload(&e.id), lease, token, src: Some(e.src.clone()), kind });
            }
        }
        self.stats.calls += 1;
        let got = store.claim_due(at(now), 100, SCHED_LEASE, CLAIM_TTL).await.map_err(|e| self.fail(format!("claim_due: {e}")))?;
        let shown: Vec<String> = got.iter().map(|c| format!("{}:{:?}@{}", c.entry, c.kind, c.lease)).collect();
        self.note(format!("{me} claim_due -> [{}]", shown.join(", ")));
        ensure!(self, got == want, "claim_due: store {got:?}\nmodel {want:?}");
        let mut tasks = Vec::new();
        for c in got {
            bump(&mut self.stats.due, format!("{:?}", c.kind));
            let id = self.sched[&c.entry].id.clone();
            let src = c.src.expect("entries carry their record");
            let sched = Some((c.entry, c.lease));
            tasks.push(match (c.kind, c.token) {
                (DueKind::Resumed, Some(token)) => Task::Chain { id, src, token, sched },
                (DueKind::Orphaned, Some(token)) => Task::Orphan { id, src, token, sched },
                _ => Task::Reclaim { id, src, sched },
            });
        }
        Ok(tasks)
    }

    async fn finish_scheduled(&mut self, store: &Arc<RedisStore>, stalled: bool, entry: String, lease: u64) -> R<()> {
        let removes = self.sched.get(&entry).is_some_and(|e| e.lease == Some(lease));
        self.stats.calls += 1;
        store.finish_scheduled(&[(entry.clone(), lease)]).await.map_err(|e| self.fail(format!("finish_scheduled: {e}")))?;
        self.note(format!("{} finish_scheduled {entry}@{lease} (removes: {removes})", Self::who(store, stalled)));
        if removes {
            self.sched.remove(&entry);
        }
        Ok(())
    }

    async fn track(&mut self, store: &Arc<RedisStore>, stalled: bool, id: &str, token: &str, msgs: &[String]) -> R<bool> {
        let want = {
            let m = self.job(id);
            m.own == token && matches!(m.st, St::Claimed | St::Submitting)
        };
        let parts: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let deadline = self.now + RECEIPT_TIMEOUT;
        self.stats.calls += 1;
        let rows = [(sent(id, &parts), at(deadline), token.to_owned())];
        let mut got = store.track_sent(&rows, CLAIM_TTL).await.map_err(|e| self.fail(format!("track_sent: {e}")))?;
        if self.replay("track_sent") {
            let again = store.track_sent(&rows, CLAIM_TTL).await.map_err(|e| self.fail(format!("track_sent: {e}")))?;
            ensure!(self, again == got, "LOST REPLY: track_sent of {id} under {token} answered {got:?}, run again {again:?}");
            got = again;
        }
        let got = got.first().copied().unwrap_or(false);
        self.note(format!("{} track_sent {id} {token} parts {msgs:?} -> {got}", Self::who(store, stalled)));
        ensure!(self, !got || self.job(id).own == token, "FENCING: track_sent of {id} under {token} held, but {} holds it", self.job(id).own);
        ensure!(self, got == want, "track_sent of {id} under {token}: store {got}, model {want} ({:?})", self.job(id));
        if !got {
            self.fenced(stalled);
            return Ok(false);
        }
        let m = self.job_mut(id);
        m.st = St::Sent;
        m.j = true;
        m.left = Some(msgs.len() as i64);
        m.hold = true;
        for msg in msgs {
            self.maps.insert(msg.clone(), id.to_owned());
        }
        self.deadlines.insert(id.to_owned(), deadline);
        Ok(true)
    }

    /// `begin_finals` of one pipeline final; its next tasks.
    async fn begin_final(&mut self, store: &Arc<RedisStore>, stalled: bool, id: String, token: String, ev: EventKind, sched: Sched) -> R<Vec<Task>> {
        let want = {
            let m = self.job(&id);
            m.own == token && !matches!(m.st, St::Final | St::Finishing)
        };
        let json = serde_json::to_string(&report(&id, ev)).expect("reports serialize");
        let confirm_by = self.now + GRACE;
        self.stats.calls += 1;
        let got = store.begin_finals(&[(&id, &token, &json)], at(confirm_by)).await.map_err(|e| self.fail(format!("begin_finals: {e}")))?;
        let got = got.first().copied().unwrap_or(false);
        self.note(format!("{} begin_finals {id} {token} {} -> {got}", Self::who(store, stalled), ev.as_str()));
        ensure!(self, !got || self.job(&id).own == token, "FENCING: begin_finals of {id} under {token} held, but {} holds it", self.job(&id).own);
        ensure!(self, got == want, "begin_finals of {id} under {token}: store {got}, model {want} ({:?})", self.job(&id));
        if !got {
            self.fenced(stalled);
            return Ok(ack(sched));
        }
        let me = store.owner().to_owned();
        let m = self.job_mut(&id);
        m.st = St::Finishing;
        m.fin = Some("pipeline".into());
        m.fo = Some(me);
        m.fr = Some(ev);
        self.deadlines.insert(id.clone(), confirm_by);
        Ok(vec![Task::Publish { id, ev, then: Then::Ack(sched) }])
    }

    /// The provider's receipt `k` to instance `i`: `settle_parts`, and the final to publish.
    async fn receipt(&mut self, i: usize, k: usize) -> R<Vec<Task>> {
        if self.receipts.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.up[i].as_ref().expect("up").store.clone();
        let me = store.owner().to_owned();
        let k = k % self.receipts.len();
        let Rcpt { msg, outcome, .. } = self.receipts[k].clone();
        let confirm_by = self.now + GRACE;
        // What settle_part.lua does, as its documentation says: each part's mapping is used
        // once; a delivered part counts its job's parts down, the last one (or any part that
        // failed) decides the job, unless it is decided already; if its `accepted` is not
        // recorded yet, the decision is handed to its tracker (`HandedOff`).
        let want = match self.maps.remove(&msg) {
            None => Settled::Unmatched,
            Some(id) => {
                let m = self.jobs.get_mut(&id).expect("mapped jobs are known");
                let counted = outcome == PartOutcome::Delivered;
                let last = if !counted {
                    true
                } else {
                    match m.left {
                        Some(l) => {
                            m.left = Some(l - 1);
                            l - 1 == 0
                        }
                        // Finished (forgotten): nothing to count down, nothing to match.
                        None => false,
                    }
                };
                if counted && m.left.is_some_and(|l| l > 0) {
                    Settled::Pending
                } else if counted && m.left.is_some_and(|l| l < 0) {
                    return Err(self.fail(format!("model: {id} counted below zero parts")));
                } else if !m.j {
                    Settled::Unmatched
                } else if !last {
                    return Err(self.fail(format!("model: {id} tracked without a part count")));
                } else if m.fin.is_some() {
                    Settled::Pending
                } else if m.hold {
                    m.fin = Some(outcome.as_str().into());
                    m.fo = Some(owner_of(&m.own).to_owned());
                    m.hold = false;
                    m.ho = 1;
                    self.deadlines.insert(id.clone(), confirm_by);
                    Settled::HandedOff
                } else {
                    m.fin = Some(outcome.as_str().into());
                    m.fo = Some(me.clone());
                    self.deadlines.insert(id.clone(), confirm_by);
                    Settled::Final { job: Box::new(sent(&id, &[])), outcome }
                }
            }
        };
        self.stats.calls += 1;
        let got = store.settle_part(PROVIDER, &msg, outcome, at(confirm_by)).await.map_err(|e| self.fail(format!("settle_part: {e}")))?;
        let shown = match &got {
            Settled::Final { job, outcome } => format!("Final({} {})", job.job_id, outcome.as_str()),
            other => format!("{other:?}"),
        };
        self.note(format!("{me} receipt {msg} {} -> {shown}", outcome.as_str()));
        let same = match (&got, &want) {
            (Settled::Final { job, outcome: o }, Settled::Final { job: w, outcome: wo }) => job.job_id == w.job_id && o == wo,
            (g, w) => g == w,
        };
        ensure!(self, same, "receipt {msg}: store {shown}, model {want:?}");
        bump(&mut self.stats.settled, shown.split('(').next().unwrap_or(""));
        Ok(match got {
            Settled::Final { job, outcome } => {
                self.receipts.remove(k);
                vec![Task::Publish { id: job.job_id, ev: final_of(outcome), then: Then::Forgotten }]
            }
            Settled::Pending | Settled::HandedOff => {
                self.receipts.remove(k);
                Vec::new()
            }
            Settled::Unmatched => {
                self.receipts[k].tries += 1;
                if self.receipts[k].tries >= RECEIPT_TRIES {
                    self.receipts.remove(k);
                }
                Vec::new()
            }
        })
    }

    async fn take_overdue(&mut self, i: usize) -> R<Vec<Task>> {
        let store = self.up[i].as_ref().expect("up").store.clone();
        let me = store.owner().to_owned();
        let (now, until) = (self.now, self.now + GRACE);
        let mut due: Vec<(i64, String)> = self.deadlines.iter().filter(|(_, d)| **d <= now).map(|(id, d)| (*d, id.clone())).collect();
        due.sort();
        let mut want: Vec<OverdueShape> = Vec::new();
        for (_, id) in due.into_iter().take(100) {
            let m = self.job(&id).clone();
            let decider_on = m.fo.as_deref().is_some_and(|fo| fo == me || self.alive(fo));
            if !m.j && m.fr.is_none() {
                self.deadlines.remove(&id);
            } else if m.fin.is_some() && m.st == St::Final {
                if m.j {
                    self.maps.retain(|_, job| *job != id);
                }
                self.job_mut(&id).forget();
                self.deadlines.remove(&id);
            } else if m.fin.is_some() && decider_on {
                self.deadlines.insert(id, until);
            } else if let Some(fin) = &m.fin {
                // Handed to a tracker that died before recording `accepted`: `unknown`.
                let fin = if m.ho == 1 { "unknown".to_owned() } else { fin.clone() };
                let j = self.job_mut(&id);
                j.fo = Some(me.clone());
                j.fin = Some(fin.clone());
                self.deadlines.insert(id.clone(), until);
                want.push((id, m.j, PartOutcome::parse(&fin), m.fr, true));
            } else if m.hold && (owner_of(&m.own) == me || self.alive(owner_of(&m.own))) {
                // Its `accepted` is still in its live tracker's hands: leased again, undecided.
                self.deadlines.insert(id, until);
                bump(&mut self.stats.held, "overdue");
            } else {
                let j = self.job_mut(&id);
                j.fin = Some("unknown".into());
                j.fo = Some(me.clone());
                self.deadlines.insert(id.clone(), until);
                want.push((id, true, None, None, false));
            }
        }
        self.stats.calls += 1;
        let got = store.take_overdue(at(now), 100, at(until)).await.map_err(|e| self.fail(format!("take_overdue: {e}")))?;
        let got: Vec<_> = got
            .into_iter()
            .map(|o: Overdue| {
                let fr = o.report.as_deref().and_then(|r| serde_json::from_str::<Report>(r).ok()).map(|r| r.event);
                (o.job_id, o.sent.is_some(), o.outcome, fr, o.decided_at.is_some())
            })
            .collect();
        self.note(format!("{me} take_overdue -> {got:?}"));
        ensure!(self, got == want, "take_overdue: store {got:?}, model {want:?}");
        Ok(got
            .into_iter()
            .map(|(id, _, outcome, fr, decided)| {
                let ev = fr.or(outcome.map(final_of)).unwrap_or(EventKind::Unknown);
                bump(&mut self.stats.overdue, if decided { "decided by the dead" } else { "no receipt" });
                if decided {
                    Task::ReadBack { id, ev }
                } else {
                    Task::Publish { id, ev, then: Then::Forgotten }
                }
            })
            .collect())
    }

    /// The broker confirms a report: it is in the topic. The contract's rules on what the
    /// topic holds are checked here, as it happens.
    fn publish(&mut self, who: &str, id: &str, ev: EventKind) -> R<()> {
        self.note(format!("{who} PUBLISH {id} {}", ev.as_str()));
        let events = self.topic.get(id).cloned().unwrap_or_default();
        let has_final = events.iter().any(|e| e.is_final());
        ensure!(self, !(ev.is_final() && has_final), "TWO FINALS for {id}: {events:?} then {ev:?}");
        ensure!(self, ev == EventKind::Duplicate || !has_final, "AFTER THE FINAL: {ev:?} for {id} after {events:?}");
        ensure!(self, ev != EventKind::Accepted || !events.contains(&EventKind::Accepted), "ACCEPTED TWICE for {id}");
        if matches!(ev, EventKind::Delivered | EventKind::Undelivered) {
            ensure!(self, events.contains(&EventKind::Accepted), "FINAL BEFORE ACCEPTED: {ev:?} for {id} after {events:?}");
        }
        if ev == EventKind::Unknown {
            ensure!(self, self.job(id).writes > 0, "UNKNOWN BUT NEVER WRITTEN: {id}");
        }
        if ev.is_final() {
            bump(&mut self.stats.finals, ev.as_str());
        }
        self.topic.entry(id.to_owned()).or_default().push(ev);
        Ok(())
    }

    /// Records one report; a final receipts decided meanwhile, handed to this recorder of its
    /// `accepted`, comes back as the task to publish it.
    async fn record(&mut self, store: &Arc<RedisStore>, stalled: bool, id: &str, ev: EventKind) -> R<Vec<Task>> {
        let me = store.owner().to_owned();
        let want: Vec<(String, PartOutcome)> = {
            let m = self.job(id);
            let handed = ev == EventKind::Accepted && !m.hold && m.ho > 0 && m.fo.as_deref() == Some(me.as_str()) && m.st != St::Final && m.j;
            match (handed, m.fin.as_deref().and_then(PartOutcome::parse)) {
                (true, Some(outcome)) => vec![(id.to_owned(), outcome)],
                (true, None) => return Err(self.fail(format!("model: {id} handed off without an outcome"))),
                _ => Vec::new(),
            }
        };
        self.stats.calls += 1;
        let reports = [report(id, ev)];
        let mut got = store.record_events(&reports, CLAIM_TTL).await.map_err(|e| self.fail(format!("record_events: {e}")))?;
        if self.replay("record_events") {
            let again = store.record_events(&reports, CLAIM_TTL).await.map_err(|e| self.fail(format!("record_events: {e}")))?;
            ensure!(self, again == got, "LOST REPLY: record_events of {id} {} handed {got:?}, run again {again:?}", ev.as_str());
            got = again;
        }
        let got: Vec<(String, PartOutcome)> = got.into_iter().map(|h| (h.job.job_id, h.outcome)).collect();
        self.note(format!("{} record {id} {} -> handed {got:?}", Self::who(store, stalled), ev.as_str()));
        ensure!(self, got == want, "record_events of {id} {}: store handed {got:?}, model {want:?}", ev.as_str());
        if ev.is_final() {
            // A final that is not `delivered` drops the mappings no receipt took (mappings.lua
            // `unmap`, from the job's `m`, which is there while `j` is).
            if ev != EventKind::Delivered && self.job(id).j {
                self.maps.retain(|_, job| job != id);
            }
            // Recording a final forgets its receipt state (forget_sent) in the same step.
            let m = self.job_mut(id);
            m.st = St::Final;
            m.forget();
            self.deadlines.remove(id);
        } else if ev == EventKind::Accepted {
            let m = self.job_mut(id);
            m.hold = false;
            if !want.is_empty() {
                m.ho = 2;
            }
        } else if ev == EventKind::Deferred {
            self.job_mut(id).dhold = false;
        }
        if !got.is_empty() {
            bump(&mut self.stats.settled, "handed over");
        }
        Ok(got.into_iter().map(|(id, outcome)| Task::Publish { id, ev: final_of(outcome), then: Then::Forgotten }).collect())
    }

    // ------------------------------------------------------------------- the pipeline

    /// One step of one job in an instance's hands; the job's next tasks.
    async fn step(&mut self, store: &Arc<RedisStore>, stalled: bool, task: Task, choice: u8) -> R<Vec<Task>> {
        Ok(match task {
            Task::Chain { id, src, token, sched } => match chain_choice(choice) {
                "park" => {
                    let due = self.now + 5_000 * (1 + i64::from(choice / 8 % 4));
                    if self.schedule(store, stalled, entry_for(&id, &src, &token, due, false)).await? {
                        vec![Task::Publish { id, ev: EventKind::Deferred, then: Then::Ack(sched) }]
                    } else {
                        ack(sched)
                    }
                }
                "stop" => self.begin_final(store, stalled, id, token, EventKind::Expired, sched).await?,
                _ => {
                    if self.mark(store, stalled, &id, &token).await? {
                        vec![Task::Wire { id, src, token, sched }]
                    } else {
                        ack(sched)
                    }
                }
            },
            Task::Wire { id, src, token, sched } => match wire_choice(choice) {
                "throttled" => {
                    self.job_mut(&id).refused += 1;
                    let due = self.now + 5_000;
                    if self.schedule(store, stalled, entry_for(&id, &src, &token, due, false)).await? {
                        // Parked: the store knows nothing is out.
                        self.job_mut(&id).out_by = None;
                        vec![Task::Publish { id, ev: EventKind::Deferred, then: Then::Ack(sched) }]
                    } else {
                        ack(sched)
                    }
                }
                "rejected" => {
                    self.job_mut(&id).refused += 1;
                    self.begin_final(store, stalled, id, token, EventKind::Rejected, sched).await?
                }
                "no answer" => self.begin_final(store, stalled, id, token, EventKind::Unknown, sched).await?,
                _ => {
                    let parts = 1 + usize::from(choice / 8 % 2);
                    let msgs: Vec<String> = (0..parts).map(|k| format!("{id}.{}.{k}", self.written)).collect();
                    for (k, msg) in msgs.iter().enumerate() {
                        let undelivered = (usize::from(choice / 16) + k) % 4 == 3;
                        let outcome = if undelivered { PartOutcome::Undelivered } else { PartOutcome::Delivered };
                        // The provider has it: its receipt may come before the mapping is stored.
                        self.receipts.push(Rcpt { msg: msg.clone(), outcome, tries: 0 });
                        self.msgs.push(msg.clone());
                    }
                    if self.track(store, stalled, &id, &token, &msgs).await? {
                        vec![Task::Publish { id, ev: EventKind::Accepted, then: Then::Ack(sched) }]
                    } else {
                        ack(sched)
                    }
                }
            },
            Task::Orphan { id, token, sched, .. } => self.begin_final(store, stalled, id, token, EventKind::Unknown, sched).await?,
            Task::Recheck { id, src, token, sched } => {
                let due = self.now + RECHECK;
                self.schedule(store, stalled, entry_for(&id, &src, &token, due, true)).await?;
                ack(sched)
            }
            Task::Reclaim { id, src, sched } => self.claim(store, stalled, id, src, None, sched).await?,
            Task::ReadBack { id, ev } => {
                let found = self.topic.get(&id).and_then(|evs| evs.iter().copied().find(|e| e.is_final()));
                self.note(format!("{} read back {id}: {found:?}", Self::who(store, stalled)));
                match found {
                    Some(f) => vec![Task::Record { id, ev: f, then: Then::Forgotten }],
                    None => vec![Task::Publish { id, ev, then: Then::Forgotten }],
                }
            }
            Task::DupAgain { id, src, token, sched } => self.claim(store, stalled, id, src, Some(token), sched).await?,
            Task::DupReadBack { id, src, sched } => {
                let found = self.dup_topic.get(&(id.clone(), src.clone())).copied().unwrap_or(0) > 0;
                self.note(format!("{} read back the duplicate of {id} record {src}: {found}", Self::who(store, stalled)));
                if found {
                    self.stats.calls += 1;
                    store.duplicate_done(&id, &src).await.map_err(|e| self.fail(format!("duplicate_done: {e}")))?;
                    if let Some(d) = self.jobs.get_mut(&id).and_then(|m| m.dups.get_mut(&src)) {
                        *d = Dup::Done;
                    }
                    ack(sched)
                } else {
                    vec![Task::DupPublish { id, src, sched }]
                }
            }
            Task::DupPublish { id, src, sched } => {
                if stalled && !self.stalled_publish {
                    self.note(format!("{} cannot reach the broker: {id}'s duplicate for {src} dropped", Self::who(store, stalled)));
                    return Ok(Vec::new());
                }
                self.publish(&Self::who(store, stalled), &id, EventKind::Duplicate)?;
                let n = self.dup_topic.entry((id.clone(), src.clone())).or_default();
                *n += 1;
                let n = *n;
                ensure!(self, n == 1, "TWO DUPLICATES for record {src} of {id}");
                vec![Task::DupRecord { id, src, sched }]
            }
            Task::DupRecord { id, src, sched } => {
                self.stats.calls += 1;
                let mut r = report(&id, EventKind::Duplicate);
                r.record = Some(src.clone());
                let reports = [r];
                store.record_events(&reports, CLAIM_TTL).await.map_err(|e| self.fail(format!("record_events: {e}")))?;
                if self.replay("record_events") {
                    store.record_events(&reports, CLAIM_TTL).await.map_err(|e| self.fail(format!("record_events: {e}")))?;
                }
                self.note(format!("{} record {id}'s duplicate for {src}", Self::who(store, stalled)));
                if let Some(d) = self.jobs.get_mut(&id).and_then(|m| m.dups.get_mut(&src)) {
                    *d = Dup::Done;
                }
                ack(sched)
            }
            Task::Publish { id, ev, then } => {
                if stalled && !self.stalled_publish {
                    self.note(format!("{} cannot reach the broker: {id} {} dropped", Self::who(store, stalled), ev.as_str()));
                    return Ok(Vec::new());
                }
                self.publish(&Self::who(store, stalled), &id, ev)?;
                vec![Task::Record { id, ev, then }]
            }
            Task::Record { id, ev, then } => {
                let mut next = self.record(store, stalled, &id, ev).await?;
                if let Then::Ack(sched) = then {
                    next.extend(ack(sched));
                }
                next
            }
            Task::Ack { entry, lease } => {
                self.finish_scheduled(store, stalled, entry, lease).await?;
                Vec::new()
            }
        })
    }

    async fn step_up(&mut self, i: usize, k: usize, choice: u8) -> R<()> {
        let Some(p) = self.up[i].as_mut() else { return Ok(()) };
        if p.tasks.is_empty() {
            return Ok(());
        }
        let task = p.tasks.remove(k % p.tasks.len());
        let store = p.store.clone();
        let next = self.step(&store, false, task, choice).await?;
        if let Some(p) = self.up[i].as_mut() {
            p.tasks.extend(next);
        }
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> R<()> {
        self.stats.ops += 1;
        self.lose = false;
        let n = self.n;
        // An instance that can take the operation: one that is up (one that is down, for a
        // restart), so that few operations are lost to an instance in the wrong state.
        let (ups, downs): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| self.up[i].is_some());
        let pick = |from: &[usize], i: u8| from.get(usize::from(i) % from.len().max(1)).copied().unwrap_or(usize::MAX);
        let up = |i: u8| pick(&ups, i);
        let down = |i: u8| pick(&downs, i);
        if ups.is_empty() && !matches!(op, Op::Restart { .. } | Op::Stalled { .. } | Op::Tick { .. }) {
            return self.compare().await;
        }
        match *op {
            Op::Nop => return Ok(()),
            Op::Read { inst, pick } => {
                let i = up(inst);
                let Some(p) = &self.up[i] else { return Ok(()) };
                let store = p.store.clone();
                let known = pick / 4 % self.ids.max(1);
                let rec = match pick % 4 {
                    // A new job (now and then carried first by what is otherwise its second record).
                    _ if self.ids == 0 => {
                        self.ids = 1;
                        (0, false)
                    }
                    0 | 1 if self.ids < IDS => {
                        self.ids += 1;
                        (self.ids - 1, pick / 4 % 8 == 7)
                    }
                    3 => (known, true),
                    _ => (known, false),
                };
                self.read.insert(rec);
                let (id, src) = record(rec);
                let next = self.claim(&store, false, id, src, None, None).await?;
                self.up[i].as_mut().expect("up").tasks.extend(next);
            }
            Op::Redeliver { inst } => {
                let i = up(inst);
                let Some(p) = &self.up[i] else { return Ok(()) };
                let store = p.store.clone();
                for rec in self.read.clone() {
                    let (id, src) = record(rec);
                    let next = self.claim(&store, false, id, src, None, None).await?;
                    self.up[i].as_mut().expect("up").tasks.extend(next);
                }
            }
            Op::Step { task, choice, lose } => {
                self.lose = lose;
                let total: usize = self.up.iter().flatten().map(|p| p.tasks.len()).sum();
                if total == 0 {
                    return Ok(());
                }
                let mut k = usize::from(task) % total;
                for i in 0..n {
                    let held = self.up[i].as_ref().map_or(0, |p| p.tasks.len());
                    if k < held {
                        self.step_up(i, k, choice).await?;
                        break;
                    }
                    k -= held;
                }
            }
            Op::Stalled { task, choice, lose } => {
                self.lose = lose;
                let total: usize = self.stalled.iter().map(|p| p.tasks.len()).sum();
                if total == 0 {
                    return Ok(());
                }
                let mut k = usize::from(task) % total;
                let z = self.stalled.iter().position(|p| {
                    if k < p.tasks.len() {
                        true
                    } else {
                        k -= p.tasks.len();
                        false
                    }
                });
                let z = z.expect("k < total");
                let task = self.stalled[z].tasks.remove(k);
                let store = self.stalled[z].store.clone();
                let next = self.step(&store, true, task, choice).await?;
                self.stalled[z].tasks.extend(next);
            }
            Op::Retry { inst, task } => {
                let i = up(inst);
                let Some(p) = self.up[i].as_mut() else { return Ok(()) };
                // Only a job still at its claim: a chain step retried runs its claim again.
                let at_claim: Vec<usize> = (0..p.tasks.len()).filter(|&k| matches!(p.tasks[k], Task::Chain { .. } | Task::Orphan { .. })).collect();
                if at_claim.is_empty() {
                    return Ok(());
                }
                let (Task::Chain { id, src, token, sched } | Task::Orphan { id, src, token, sched }) =
                    p.tasks.remove(at_claim[usize::from(task) % at_claim.len()])
                else {
                    unreachable!("filtered")
                };
                let store = p.store.clone();
                let next = self.claim(&store, false, id, src, Some(token), sched).await?;
                self.up[i].as_mut().expect("up").tasks.extend(next);
            }
            Op::Sched { inst } => {
                let i = up(inst);
                if self.up[i].is_some() {
                    let next = self.claim_due(i).await?;
                    self.up[i].as_mut().expect("up").tasks.extend(next);
                }
            }
            Op::Sweep { inst } => {
                let i = up(inst);
                if self.up[i].is_some() {
                    let next = self.take_overdue(i).await?;
                    self.up[i].as_mut().expect("up").tasks.extend(next);
                }
            }
            Op::Receipt { inst, k } => {
                let i = up(inst);
                if self.up[i].is_some() {
                    let next = self.receipt(i, usize::from(k)).await?;
                    self.up[i].as_mut().expect("up").tasks.extend(next);
                }
            }
            Op::Crash { inst, stall } => {
                let i = up(inst);
                if let Some(p) = self.up[i].take() {
                    p.store.shutdown().await;
                    self.stats.crashes += 1;
                    let lost: Vec<String> = p.tasks.iter().map(|t| format!("{t:?}")).collect();
                    if stall {
                        self.stats.stalls += 1;
                        self.note(format!("{} STALLS (dead to the others), holding {lost:?}", p.store.owner()));
                        self.stalled.push(p);
                    } else {
                        self.note(format!("{} DIES, losing {lost:?}", p.store.owner()));
                    }
                }
            }
            Op::Restart { inst } => {
                let i = down(inst);
                if i != usize::MAX {
                    self.start(i).await;
                }
            }
            Op::Tick { secs } => {
                self.now += i64::from(secs) * 1000;
                self.note(format!("clock +{secs}s"));
            }
        }
        self.compare().await
    }

    // ------------------------------------------------------------- model vs. Redis

    /// What Redis holds must be what the model holds: every job hash's state-machine fields,
    /// the scheduled set with its leases, the deadlines, the receipt mappings.
    async fn compare(&self) -> R<()> {
        let mut pipe = redis::pipe();
        for id in self.jobs.keys() {
            pipe.cmd("HGETALL").arg(self.s.key(&format!("job:{id}")));
        }
        pipe.cmd("ZRANGE").arg(self.s.key("sched")).arg(0).arg(-1).arg("WITHSCORES");
        pipe.cmd("HGETALL").arg(self.s.key("sched:lease"));
        pipe.cmd("HKEYS").arg(self.s.key("sched:payload"));
        pipe.cmd("ZRANGE").arg(self.s.key("deadlines")).arg(0).arg(-1).arg("WITHSCORES");
        // Which of the case's possible job hashes exist (not `KEYS`, which walks the whole
        // keyspace: with other tests' keys in the same Redis it blocked it for 50-80 ms a call).
        pipe.cmd("EXISTS");
        for k in 0..IDS {
            pipe.arg(self.s.key(&format!("job:j{k}")));
        }
        if !self.msgs.is_empty() {
            pipe.cmd("HMGET").arg(self.s.key(&format!("msgs:{PROVIDER}")));
            for m in &self.msgs {
                pipe.arg(m);
            }
        }
        let mut vals: std::collections::VecDeque<redis::Value> =
            pipe.query_async::<Vec<redis::Value>>(&mut self.s.raw.clone()).await.map_err(|e| self.fail(format!("reading Redis back: {e}")))?.into();
        fn next<T: redis::FromRedisValue>(v: &mut std::collections::VecDeque<redis::Value>) -> T {
            redis::from_redis_value(v.pop_front().expect("one reply per command")).expect("reply shape")
        }
        for (id, m) in &self.jobs {
            let h: BTreeMap<String, String> = next(&mut vals);
            // How the scripts write the model's `hold` and `ho` (settle_part.lua, record_events.lua):
            // `hold` 1 = `accepted` not recorded; a handed-over final (`ho` present) with `hold` -1 =
            // its `accepted` not recorded, counted down below -1 = recorded.
            let hold_n = h.get("hold").map(|v| v.parse::<i64>().expect("hold is a count"));
            let (hold, ho) = match h.get("ho").map(|v| v.parse::<u8>().expect("ho is a number")) {
                None => (hold_n == Some(1), 0),
                Some(_) if hold_n == Some(-1) => (false, 1),
                Some(_) => (false, 2),
            };
            let have = (
                h.get("st").cloned(),
                h.get("own").cloned(),
                h.get("src").cloned(),
                h.contains_key("j"),
                h.get("left").and_then(|l| l.parse::<i64>().ok()),
                hold,
                ho,
                h.contains_key("dhold"),
                h.get("fin").cloned(),
                h.get("fo").cloned(),
                h.contains_key("fr"),
                h.iter()
                    .filter_map(|(k, v)| {
                        let dup = match v.split(' ').collect::<Vec<_>>()[..] {
                            ["1"] => Dup::Done,
                            [tok, _] => Dup::Pending { tok: tok.to_owned(), taken: false },
                            [tok, _, "u"] => Dup::Pending { tok: tok.to_owned(), taken: true },
                            _ => Dup::Pending { tok: format!("unreadable {v:?}"), taken: false },
                        };
                        Some((k.strip_prefix("d:")?.to_owned(), dup))
                    })
                    .collect::<BTreeMap<String, Dup>>(),
            );
            let want = (
                Some(m.st.as_str().to_owned()),
                Some(m.own.clone()),
                Some(m.src.clone()),
                m.j,
                m.left,
                m.hold,
                m.ho,
                m.dhold,
                m.fin.clone(),
                m.fo.clone(),
                m.fr.is_some(),
                m.dups.clone(),
            );
            ensure!(self, have == want, "job:{id} in Redis {have:?}\nmodel (st, own, src, j, left, hold, ho, dhold, fin, fo, fr, d:*) {want:?}");
        }
        let sched: Vec<(String, f64)> = next(&mut vals);
        let leases: BTreeMap<String, u64> = next(&mut vals);
        let mut payloads: Vec<String> = next(&mut vals);
        let deadlines: Vec<(String, f64)> = next(&mut vals);
        let job_keys: usize = next(&mut vals);
        let sched: BTreeMap<String, i64> = sched.into_iter().map(|(k, s)| (k, s as i64)).collect();
        let want: BTreeMap<String, i64> = self.sched.iter().map(|(k, e)| (k.clone(), e.score)).collect();
        ensure!(self, sched == want, "the scheduled set: Redis {sched:?}, model {want:?}");
        let want: BTreeMap<String, u64> = self.sched.iter().filter_map(|(k, e)| Some((k.clone(), e.lease?))).collect();
        ensure!(self, leases == want, "scheduled leases: Redis {leases:?}, model {want:?}");
        payloads.sort();
        let want: Vec<String> = self.sched.keys().cloned().collect();
        ensure!(self, payloads == want, "scheduled payloads: Redis {payloads:?}, model {want:?}");
        let deadlines: BTreeMap<String, i64> = deadlines.into_iter().map(|(k, s)| (k, s as i64)).collect();
        ensure!(self, deadlines == self.deadlines, "deadlines: Redis {deadlines:?}, model {:?}", self.deadlines);
        ensure!(self, job_keys == self.jobs.len(), "job hashes in Redis: {job_keys}, model {:?}", self.jobs.keys());
        if !self.msgs.is_empty() {
            let maps: Vec<Option<String>> = next(&mut vals);
            let have: BTreeMap<String, String> = self.msgs.iter().cloned().zip(maps).filter_map(|(m, id)| Some((m, id?))).collect();
            ensure!(self, have == self.maps, "receipt mappings: Redis {have:?}, model {:?}", self.maps);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ quiescence

    /// Every instance up and working off what it holds; the provider's receipts, Kafka's
    /// redeliveries, the scheduler and the sweep until nothing is left: then every job must
    /// have exactly one final.
    async fn quiesce(&mut self) -> R<()> {
        self.note("--- quiescence: stalled processes are gone, every instance starts ---".into());
        self.stalled.clear();
        for i in 0..self.n {
            if self.up[i].is_none() {
                self.start(i).await;
            }
        }
        for round in 0..40usize {
            self.calm(round).await?;
            if round == 0 {
                // The scheduler and the sweep first (then the redeliveries): a parked job whose
                // claimer died comes back through its entry, not its record.
                self.apply(&Op::Tick { secs: 61 }).await?;
                self.apply(&Op::Sched { inst: 0 }).await?;
                self.calm(round).await?;
                self.apply(&Op::Sweep { inst: 1 }).await?;
                self.calm(round).await?;
            }
            self.apply(&Op::Redeliver { inst: ((round + 1) % self.n) as u8 }).await?;
            self.calm(round).await?;
            self.apply(&Op::Tick { secs: 61 }).await?;
            self.apply(&Op::Sched { inst: (round % self.n) as u8 }).await?;
            self.calm(round).await?;
            self.apply(&Op::Sweep { inst: ((round + 1) % self.n) as u8 }).await?;
            self.calm(round).await?;
            if self.receipts.is_empty() && self.sched.is_empty() && self.deadlines.is_empty() && self.jobs.values().all(|m| m.st == St::Final) {
                break;
            }
        }
        for (id, m) in &self.jobs {
            let events = self.topic.get(id).cloned().unwrap_or_default();
            let finals = events.iter().filter(|e| e.is_final()).count();
            ensure!(self, finals == 1, "NOT EXACTLY ONE FINAL: {id} ended with {events:?} ({m:?})");
            ensure!(self, m.st == St::Final, "{id} has its final in the topic but its claim is {:?}", m.st);
        }
        for &rec in &self.read {
            let (id, src) = record(rec);
            let Some(m) = self.jobs.get(&id) else { continue };
            if m.src != src {
                let n = self.dup_topic.get(&(id.clone(), src.clone())).copied().unwrap_or(0);
                ensure!(self, n == 1, "NOT EXACTLY ONE DUPLICATE: record {src} of {id} has {n} in the topic ({m:?})");
            }
        }
        ensure!(self, self.sched.is_empty(), "entries left in the scheduled set: {:?}", self.sched);
        ensure!(self, self.deadlines.is_empty(), "deadlines left: {:?}", self.deadlines);
        Ok(())
    }

    /// The instances' work and the provider's receipts (each to instance `round % n`), until
    /// neither is left.
    async fn calm(&mut self, round: usize) -> R<()> {
        self.drain().await?;
        while !self.receipts.is_empty() {
            let i = round % self.n;
            let next = self.receipt(i, 0).await?;
            self.up[i].as_mut().expect("up").tasks.extend(next);
            self.compare().await?;
            self.drain().await?;
        }
        Ok(())
    }

    /// Steps every up instance's tasks, oldest first, until none is left.
    async fn drain(&mut self) -> R<()> {
        // Round the instances, one step each: one that waits on another (a second record whose
        // `duplicate` another live instance decided asks again) must not starve it.
        for step in 0..1000 {
            let Some(i) = (0..self.n).map(|k| (step + k) % self.n).find(|&i| self.up[i].as_ref().is_some_and(|p| !p.tasks.is_empty())) else {
                return Ok(());
            };
            self.step_up(i, 0, QUIET).await?;
            self.compare().await?;
        }
        Err(self.fail("the instances' work never ran out".into()))
    }

    async fn close(self) -> Stats {
        for p in self.up.iter().flatten() {
            p.store.shutdown().await;
        }
        let World { s, stats, .. } = self;
        s.cleanup().await;
        stats
    }
}

async fn run_case(n: usize, ops: &[Op], stalled_publish: bool) -> R<Stats> {
    let mut w = World::new(n, stalled_publish).await;
    let mut outcome = Ok(());
    for op in ops {
        outcome = w.apply(op).await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = w.quiesce().await;
    }
    if std::env::var("SENDGATE_MODEL_DUMP").is_ok_and(|v| v == "1") {
        eprintln!("=== case: {n} instances, {} ops\n{}", ops.len(), w.log.join("\n"));
    }
    let stats = w.close().await;
    outcome.map(|()| stats)
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn model_two_or_three_instances_claiming_leasing_and_settling_keep_one_final_per_job() {
    let cases: u32 = env("SENDGATE_MODEL_CASES", 128);
    let ops: usize = env("SENDGATE_MODEL_OPS", 40);
    let seed = match std::env::var("SENDGATE_MODEL_SEED").ok().as_deref() {
        Some("random") => rand::random(),
        Some(s) => s.parse().expect("SENDGATE_MODEL_SEED: a number or `random`"),
        None => 0x5e4d_6a7e,
    };
    let stalled_publish = std::env::var("SENDGATE_MODEL_STALLED_PUBLISH").is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let config = Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(seed), max_shrink_iters: 4096, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let total = RefCell::new(Stats::default());
    let started = std::time::Instant::now();
    let strategy = (prop_oneof![3 => Just(2usize), 1 => Just(3usize)], proptest::collection::vec(op(), ops / 2..=ops));
    let result = runner.run(&strategy, |(n, case)| match rt.block_on(run_case(n, &case, stalled_publish)) {
        Ok(stats) => {
            total.borrow_mut().add(stats);
            Ok(())
        }
        Err(why) => Err(TestCaseError::fail(why)),
    });
    let t = total.into_inner();
    eprintln!(
        "model: seed {seed}, {cases} cases of up to {ops} ops in {:.1?}: {} runs (shrinking included), {} ops, {} store calls, {} writes, \
         {} crashes ({} stalled), {} takeovers, {} calls run again after a lost reply, {} fenced steps ({} by stalled processes)\n  held for a live holder {:?}\n  claims {:?}\n  due {:?}\n  receipts {:?}\n  overdue {:?}\n  finals {:?}",
        started.elapsed(),
        t.cases,
        t.ops,
        t.calls,
        t.writes,
        t.crashes,
        t.stalls,
        t.takeovers,
        t.replays,
        t.fenced,
        t.fenced_stalled,
        t.held,
        t.claims,
        t.due,
        t.settled,
        t.overdue,
        t.finals
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, (n, case))) => {
            let case: Vec<Op> = case.into_iter().filter(|op| *op != Op::Nop).collect();
            panic!("{why}\n\nminimal case (seed {seed}): {n} instances, ops {case:?}")
        }
        Err(e) => panic!("{e}"),
    }
}
