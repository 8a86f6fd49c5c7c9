//! The kill -9 loop of issue 10 ("How it is proven"), shared by the CI-sized test
//! (tests/crash.rs) and the full load test (loadtest/kill_loop.rs, `loadtest/run_kill_loop.sh`).
//!
//! Two `sendgate run` processes (one Redis prefix, one consumer group, one reports topic) read
//! jobs produced at a steady rate — a share of them scheduled a few seconds ahead, and some
//! real second records (an id already used) — and send them to the SMPP simulator, which
//! throttles every Nth submit and records every message (the job id is in the text). Every
//! `kill_every`, one instance (alternating) gets SIGKILL and is started again at once. Then the
//! loop waits for every job's final, gives late events time to show up, stops both instances
//! with SIGTERM and audits what the reports topic and the SMSC saw (support/audit.rs): one
//! final per job, nothing at the SMSC twice, `unknown` only within `binds × window` per kill,
//! `duplicate` only for second records, nothing after a final but `read`, `accepted` before it.
//!
//! Only the wire contract, the simulator and the binary are used, so the loop does not
//! depend on the daemon's internals.

#![allow(dead_code)]

#[path = "audit.rs"]
pub mod audit;
#[path = "offsets.rs"]
pub mod offsets;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sendgate::smsc_sim::{SimConfig, SmscSim};
use serde_json::{json, Value};

use audit::{Audit, Event};

#[derive(Debug, Clone)]
pub struct Params {
    /// The `sendgate` binary.
    pub bin: PathBuf,
    pub brokers: String,
    pub redis_url: String,
    /// Tansu's binary, to create topics.
    pub tansu: String,
    pub jobs: usize,
    /// Jobs produced per second.
    pub rate: f64,
    /// Every Nth job is scheduled 3–8 s ahead (20: 5%).
    pub scheduled_every: usize,
    /// Second records carrying an id already used, spread over the run, each produced
    /// `duplicate_lag` after its first.
    pub duplicates: usize,
    pub duplicate_lag: Duration,
    pub kills: usize,
    pub first_kill_after: Duration,
    pub kill_every: Duration,
    pub partitions: u32,
    pub binds: usize,
    pub window: usize,
    /// The simulator answers every Nth submit_sm with ESME_RTHROTTLED.
    pub throttle_every: u64,
    pub receipt_delay: Duration,
    pub receipt_timeout: Duration,
    /// After the last job and the last kill: give up waiting for finals after this long, or
    /// once no report came for `stall`.
    pub final_wait: Duration,
    pub stall: Duration,
    /// After every job has a final: how long to keep reading for late (second) finals.
    pub settle: Duration,
    /// Configs and daemon logs.
    pub out_dir: PathBuf,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl Params {
    /// Issue 10's full run: 30,000 jobs at 1,500/s, 5% scheduled, 300 second records, 20 kills.
    pub fn full(bin: PathBuf, out_dir: PathBuf) -> Self {
        Self {
            bin,
            brokers: env("SENDGATE_TEST_KAFKA_BROKERS"),
            redis_url: env("SENDGATE_TEST_REDIS_URL"),
            tansu: env("SENDGATE_TEST_TANSU_BIN"),
            jobs: 30_000,
            rate: 1_500.0,
            scheduled_every: 20,
            duplicates: 300,
            duplicate_lag: Duration::from_secs(2),
            kills: 20,
            first_kill_after: Duration::from_secs(2),
            kill_every: Duration::from_secs(3),
            partitions: 6,
            binds: 2,
            window: 128,
            throttle_every: 50,
            receipt_delay: Duration::from_millis(500),
            receipt_timeout: Duration::from_secs(30),
            final_wait: Duration::from_secs(300),
            stall: Duration::from_secs(60),
            settle: Duration::from_secs(10),
            out_dir,
            verbose: true,
        }
    }

    /// Sized for CI (under a minute on a 2-core machine with debug builds): 4,000 jobs at
    /// 250/s, 6 kills 2.5 s apart. A window of 16 (binds × window = 32 jobs on the wire per
    /// instance) keeps the `unknown` bound as tight as the rate is low.
    pub fn ci(bin: PathBuf, out_dir: PathBuf) -> Self {
        Self {
            jobs: 4_000,
            rate: 250.0,
            duplicates: 40,
            kills: 6,
            kill_every: Duration::from_millis(2500),
            window: 16,
            receipt_timeout: Duration::from_secs(20),
            final_wait: Duration::from_secs(90),
            stall: Duration::from_secs(35),
            settle: Duration::from_secs(5),
            verbose: std::env::var_os("SENDGATE_TEST_VERBOSE").is_some(),
            ..Self::full(bin, out_dir)
        }
    }
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: start the services with `scripts/services start` and `eval \"$(scripts/services env)\"`"))
}

fn unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros() as i64
}

macro_rules! say {
    ($p:expr, $($t:tt)*) => {{
        if $p.verbose {
            eprintln!("[kill_loop] {}", format!($($t)*));
        }
    }};
}

// ------------------------------------------------------------------------------------------
// daemons

struct Proc {
    name: String,
    child: Child,
    pid: u32,
}

fn spawn(p: &Params, name: &str, config: &Path, log: &Path) -> Proc {
    let mut child = Command::new(&p.bin)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", p.bin.display()));
    let stderr = child.stderr.take().expect("piped");
    let pid = child.id();
    let log = log.to_owned();
    let tag = format!("[{name} pid {pid}] ");
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(f, "{tag}{line}");
        }
    });
    Proc { name: name.to_owned(), child, pid }
}

fn write_config(p: &Params, dir: &Path, instance: &str, run: &str, topics: &Topics, smsc: std::net::SocketAddr) -> PathBuf {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
drain_timeout = "20s"

[pipeline]
max_in_flight = 5000
scheduler_tick = "100ms"
scheduler_lease = "5s"
retry_backoff = "1s"

[reports]
stdout = false

[providers.smsc-a]
kind = "smpp"
address = "{smsc}"
system_id = "sendgate"
password = "kill"
binds = {binds}
window = {window}
receipt_timeout = "{receipt_timeout}ms"
response_timeout = "5s"
reconnect_min = "100ms"
reconnect_max = "1s"

[kafka]
brokers = "{brokers}"
group_id = "{run}-gw"
jobs_topic = "{jobs}"
reports_topic = "{reports}"
dlq_topic = "{dlq}"
inbound_topic = "{inbound}"
session_timeout = "6s"
commit_interval = "200ms"

[opt_out]
default_tenant = "acme"

[redis]
url = "{redis}"
prefix = "{run}:"
instance_id = "{instance}"
heartbeat_ttl = "3s"
"#,
        binds = p.binds,
        window = p.window,
        receipt_timeout = p.receipt_timeout.as_millis(),
        brokers = p.brokers,
        jobs = topics.jobs,
        reports = topics.reports,
        dlq = topics.dlq,
        inbound = topics.inbound,
        redis = p.redis_url,
    );
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, text).expect("config written");
    path
}

struct Topics {
    jobs: String,
    reports: String,
    dlq: String,
    inbound: String,
}

fn create_topic(p: &Params, name: &str, partitions: u32) {
    let out = Command::new(&p.tansu)
        .args(["topic", "create", "--broker", &format!("tcp://{}", p.brokers), "--partitions", &partitions.to_string(), name])
        .output()
        .expect("tansu runs");
    assert!(out.status.success(), "topic create {name}: {}", String::from_utf8_lossy(&out.stderr));
}

// ------------------------------------------------------------------------------------------
// reports

/// What the reports reader saw, in the order of each partition (a job's events share one).
#[derive(Default)]
struct Seen {
    events: Vec<Event>,
    /// When this process read each event (unix µs), parallel to `events`.
    read_us: Vec<i64>,
    /// Where each event was read from (partition, offset), parallel to `events`.
    at: Vec<(i32, i64)>,
    /// Times the reader went back for a batch the broker's fetch skipped, and gaps it gave up
    /// on (partition, first missing offset, records missing): offsets.rs.
    seeks: u64,
    gaps_accepted: Vec<(i32, i64, i64)>,
    finals: HashSet<String>,
    unparsable: u64,
}

struct Reader {
    seen: Arc<Mutex<Seen>>,
    records: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl Reader {
    fn start(p: &Params, topic: &str, group: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &p.brokers)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "50")
            .create()
            .expect("reports consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let records = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (seen.clone(), records.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            // Tansu's fetch can skip a batch being written (offsets.rs): read it again.
            let mut gaps = offsets::Gaps::default();
            while !st.load(Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
                match gaps.step(m.partition(), m.offset()) {
                    offsets::Step::Take => {}
                    offsets::Step::Seen => continue,
                    offsets::Step::SeekBack(o) => {
                        let (topic, partition) = (m.topic().to_owned(), m.partition());
                        drop(m);
                        if let Err(e) = consumer.seek(&topic, partition, rdkafka::Offset::Offset(o), Duration::from_secs(5)) {
                            eprintln!("[kill_loop] reports reader: seeking {topic}/{partition} back to {o}: {e}");
                        }
                        continue;
                    }
                }
                let now = unix_us();
                r.fetch_add(1, Relaxed);
                let ev = serde_json::from_slice::<Value>(m.payload().unwrap_or_default()).ok().and_then(|v| Event::from_json(&v));
                let mut s = s.lock().unwrap();
                match ev {
                    Some(ev) => {
                        if ev.is_final {
                            s.finals.insert(ev.job_id.clone());
                        }
                        s.events.push(ev);
                        s.read_us.push(now);
                        s.at.push((m.partition(), m.offset()));
                    }
                    None => s.unparsable += 1,
                }
            }
            consumer.unsubscribe();
            let mut s = s.lock().unwrap();
            s.seeks = gaps.seeks;
            s.gaps_accepted = gaps.accepted;
        });
        Self { seen, records, stop, handle }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Relaxed);
        let _ = self.handle.join();
        Arc::try_unwrap(self.seen).map(|m| m.into_inner().unwrap()).unwrap_or_else(|a| std::mem::take(&mut *a.lock().unwrap()))
    }
}

// ------------------------------------------------------------------------------------------
// the run

/// One SIGKILL.
#[derive(Debug, Clone)]
pub struct Kill {
    pub n: usize,
    /// Seconds since the first job was produced.
    pub at_s: f64,
    pub at_us: i64,
    pub instance: String,
    pub pid: u32,
    /// `unknown` finals decided after this kill and before the next (by the report's `at`).
    pub unknown: usize,
    /// Of those, how many never reached the SMSC.
    pub unknown_never_sent: usize,
    /// `unknown` finals this kill explains in the assignment below (at most binds × window).
    pub assigned: usize,
}

pub struct Outcome {
    pub params: Params,
    pub run: String,
    pub audit: Audit,
    pub kills: Vec<Kill>,
    /// `unknown` finals decided before the first kill.
    pub unknown_before_kills: usize,
    /// `unknown` finals no kill explains: none happened between the job's first record and its
    /// `unknown`, or every kill that could explain it already explains binds × window others.
    pub unknown_unexplained: usize,
    pub produced_records: usize,
    pub produce_s: f64,
    /// Produce → first final read, ms: (p50, p99, max) over jobs not scheduled, and over all.
    pub latency_unscheduled_ms: Option<(f64, f64, f64)>,
    pub latency_all_ms: Option<(f64, f64, f64)>,
    pub sim: sendgate::smsc_sim::SimStats,
    pub exit_codes: Vec<(String, Option<i32>)>,
    pub waited_for_finals_s: f64,
    pub total_s: f64,
    pub unparsable_reports: u64,
    /// The live read against the read after the run.
    pub read: Reads,
    /// For a failed run, per id a check names: what the first read, a second read of the topic
    /// and Redis hold about it ([`evidence`]).
    pub evidence: Vec<String>,
}

impl Outcome {
    /// `binds × window`: the most jobs one instance can have on the wire.
    pub fn per_kill_bound(&self) -> usize {
        self.params.binds * self.params.window
    }

    /// One line per broken requirement; empty when the run kept the contract.
    pub fn failures(&self) -> Vec<String> {
        let mut f = self.audit.problems();
        let bound = self.per_kill_bound();
        let total_bound = bound * self.kills.len();
        if self.audit.unknown.len() > total_bound {
            f.push(format!("{} `unknown` finals: more than kills × binds × window = {total_bound}", self.audit.unknown.len()));
        }
        if !self.read.vanished.is_empty() {
            f.push(format!(
                "{} report records read live are not in the topic after the run (the broker lost them), e.g. {:?}",
                self.read.vanished.len(),
                &self.read.vanished[..self.read.vanished.len().min(5)]
            ));
        }
        if let Some(e) = &self.read.error {
            f.push(format!("the reports topic could not be read after the run: {e}"));
        }
        if self.unknown_unexplained > 0 {
            f.push(format!(
                "{} `unknown` finals not explained by a kill: with at most binds × window = {bound} per kill, each to a kill between \
                 the job's record and its `unknown`, {} are left over",
                self.unknown_unexplained, self.unknown_unexplained
            ));
        }
        f
    }

    pub fn report(&self) -> String {
        let p = &self.params;
        let mut out = format!(
            "kill -9 loop, run {}: {} jobs ({} records, {} of them second records; every {}th job scheduled 3-8 s ahead) at {}/s over {:.1} s; \
             2 instances, {} partitions, binds {} x window {}; SMSC throttles every {}th submit, receipts after {:?}, receipt timeout {:?}; \
             {} kills every {:?} from {:?}; finals waited {:.1} s; whole run {:.1} s\n",
            self.run,
            p.jobs,
            self.produced_records,
            self.produced_records - p.jobs,
            p.scheduled_every,
            p.rate,
            self.produce_s,
            p.partitions,
            p.binds,
            p.window,
            p.throttle_every,
            p.receipt_delay,
            p.receipt_timeout,
            self.kills.len(),
            p.kill_every,
            p.first_kill_after,
            self.waited_for_finals_s,
            self.total_s,
        );
        let mut rows = self.audit.rows();
        let bound = self.per_kill_bound();
        let worst = self.kills.iter().map(|k| k.unknown).max().unwrap_or(0);
        rows.insert(8, ("  not explained by a kill (<= binds x window each)".into(), self.unknown_unexplained.to_string(), "0".into()));
        rows.insert(8, ("  most decided between two kills".into(), worst.to_string(), String::new()));
        rows.insert(8, ("  decided before the first kill".into(), self.unknown_before_kills.to_string(), "0".into()));
        rows.insert(8, ("  allowed: kills x binds x window".into(), (bound * self.kills.len()).to_string(), String::new()));
        // After "report events read" (the read after the run).
        rows.insert(2, ("  read live, gone from the topic after the run".into(), self.read.vanished.len().to_string(), "0".into()));
        rows.insert(2, ("  in the topic, never read live (broker's fetch race)".into(), self.read.missed_live.to_string(), String::new()));
        rows.insert(2, ("  times it went back for a batch the broker's fetch skipped".into(), self.read.seeks.to_string(), String::new()));
        rows.insert(2, ("  read live, as they came".into(), self.read.live.to_string(), String::new()));
        let fmt = |l: &Option<(f64, f64, f64)>| l.map_or("-".to_string(), |(a, b, c)| format!("{a:.0} / {b:.0} / {c:.0}"));
        rows.push(("produce -> final ms p50/p99/max (not scheduled)".into(), fmt(&self.latency_unscheduled_ms), String::new()));
        rows.push(("produce -> final ms p50/p99/max (all)".into(), fmt(&self.latency_all_ms), String::new()));
        out += &audit::table(&rows);
        out += &format!("  finals by kind: {:?}\n", self.audit.finals_by_kind);
        out += &format!("  events by kind: {:?}\n", self.audit.events_by_kind);
        out += "  unknown finals by error message:\n";
        for (why, n) in &self.audit.unknown_by_error {
            out += &format!("    {n:>6}  {why}\n");
        }
        out +=
            &format!("  SMSC: {} submit_sm, {} messages, {} throttled, {} binds\n", self.sim.submit_sm, self.sim.messages, self.sim.throttled, self.sim.binds);
        out += &format!("  exit codes after the final SIGTERM: {:?}\n", self.exit_codes);
        if let Some(e) = &self.read.error {
            out += &format!("  the read after the run failed, so this audits the live read: {e}\n");
        }
        out += &format!("  reports topic after the run, per partition (records, offsets skipped): {:?}\n", self.read.partitions);
        if !self.read.gaps_accepted.is_empty() {
            out += &format!("  gaps the live reader gave up on (partition, first missing offset, records): {:?}\n", self.read.gaps_accepted);
        }
        if self.read.missed_live > 0 {
            out += &format!("  never read live, e.g. (job, partition, offset, event): {:?}\n", self.read.missed_examples);
        }
        if self.unparsable_reports > 0 {
            out += &format!("  unparsable report records: {}\n", self.unparsable_reports);
        }
        out += &format!("  per kill: n | at s | instance | unknown decided before the next kill (never reached the SMSC) | explained by it (<= {bound})\n");
        for k in &self.kills {
            out += &format!("    {:>2} | {:>6.1} | {} | {:>5} ({:>5}) | {:>5}\n", k.n, k.at_s, k.instance, k.unknown, k.unknown_never_sent, k.assigned);
        }
        let failures = self.failures();
        if failures.is_empty() {
            out += "  VERDICT: PASS\n";
        } else {
            out += "  VERDICT: FAIL\n";
            for f in failures {
                out += &format!("    - {f}\n");
            }
            out += "  evidence for the ids named above (the live read; the read after the run; Redis):\n";
            for line in &self.evidence {
                out += &format!("    {line}\n");
            }
        }
        out
    }
}

fn percentiles(v: &mut [i64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0;
    Some((at(0.5), at(0.99), v[v.len() - 1] as f64 / 1000.0))
}

/// One record to produce: job `idx`, `dup` for its second record.
struct Planned {
    due_us: i64,
    idx: usize,
    dup: bool,
}

pub async fn run(p: Params) -> Outcome {
    let started = Instant::now();
    let run = format!("kl{:08x}", rand::random::<u32>());
    std::fs::create_dir_all(&p.out_dir).expect("out dir");
    let topics = Topics { jobs: format!("{run}.jobs"), reports: format!("{run}.reports"), dlq: format!("{run}.dlq"), inbound: format!("{run}.inbound") };
    create_topic(&p, &topics.jobs, p.partitions);
    create_topic(&p, &topics.reports, 6);
    create_topic(&p, &topics.dlq, 1);
    create_topic(&p, &topics.inbound, 1);
    say!(p, "run {run}: configs and logs in {}", p.out_dir.display());

    let sim = SmscSim::start(SimConfig {
        receipt_delay: p.receipt_delay,
        record_messages: true,
        throttle_every: std::num::NonZeroU64::new(p.throttle_every),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");

    let reader = Reader::start(&p, &topics.reports, &format!("{run}-reader"));
    let log = p.out_dir.join(format!("{run}.daemons.log"));
    let names = ["gw-a", "gw-b"];
    let configs: Vec<PathBuf> = names.iter().map(|n| write_config(&p, &p.out_dir, n, &run, &topics, sim.local_addr())).collect();
    let mut procs: Vec<Proc> = names.iter().zip(&configs).map(|(n, c)| spawn(&p, n, c, &log)).collect();
    // Both in the group with partitions of their own before the first job.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let assigned =
            procs.iter().filter(|d| text.lines().any(|l| l.starts_with(&format!("[{} pid {}]", d.name, d.pid)) && l.contains("partitions assigned"))).count();
        if assigned == procs.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the instances never both joined the group; log {}", log.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say!(p, "both instances in the group after {:.1} s", started.elapsed().as_secs_f64());

    // The producer, warmed up (a cold idempotent producer's first acks come late).
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .create()
        .expect("producer");
    producer.send(BaseRecord::to(&topics.inbound).key("warm-up").payload("{}")).map_err(|(e, _)| e).expect("warm-up record");
    producer.flush(Duration::from_secs(30)).expect("warm-up flushed");

    // The plan: job i at i / rate; its second record (if any) `duplicate_lag` later.
    let step_us = 1e6 / p.rate;
    let mut plan: Vec<Planned> = (0..p.jobs).map(|i| Planned { due_us: (i as f64 * step_us) as i64, idx: i, dup: false }).collect();
    let dup_every = p.jobs.checked_div(p.duplicates).map_or(usize::MAX, |n| n.max(1));
    for i in (dup_every / 2..p.jobs).step_by(dup_every.max(1)).take(p.duplicates) {
        plan.push(Planned { due_us: (i as f64 * step_us) as i64 + p.duplicate_lag.as_micros() as i64, idx: i, dup: true });
    }
    plan.sort_by_key(|r| r.due_us);
    let produced_records = plan.len();
    let ids: Vec<String> = (0..p.jobs).map(|i| format!("{run}-{i}")).collect();
    let mut records: HashMap<String, u32> = ids.iter().map(|id| (id.clone(), 0)).collect();
    for r in &plan {
        *records.get_mut(&ids[r.idx]).unwrap() += 1;
    }
    let scheduled = |i: usize| is_scheduled(p.scheduled_every, i);

    let t_start_us = unix_us();
    let produce_start = Instant::now();
    let producer = Arc::new(producer);
    let prod = {
        let (producer, topic, run, p) = (producer.clone(), topics.jobs.clone(), run.clone(), p.clone());
        std::thread::spawn(move || {
            let mut first_t0: HashMap<usize, i64> = HashMap::new();
            for r in plan {
                let due = t_start_us + r.due_us;
                loop {
                    let now = unix_us();
                    if now >= due {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros((due - now).min(2_000) as u64));
                }
                let t0 = unix_us();
                let i = r.idx;
                let id = format!("{run}-{i}");
                let to = format!("+4479{i:08}");
                let mut job = json!({
                    "id": id, "tenant": "acme", "channel": "sms", "to": to,
                    "text": format!("kill loop job {id}: hello"), "quiet_hours": false,
                    "meta": {"t0": t0.to_string(), "record": if r.dup { "second" } else { "first" }},
                });
                if is_scheduled(p.scheduled_every, i) {
                    let ahead = 3 + (i / p.scheduled_every) % 6;
                    job["send_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(ahead as i64)).to_rfc3339());
                }
                let key = if r.dup && i % 2 == 1 { format!("second-{i}") } else { to };
                let payload = job.to_string();
                let mut rec = BaseRecord::to(&topic).key(&key).payload(&payload);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            rec = back;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                first_t0.entry(i).or_insert(t0);
            }
            producer.flush(Duration::from_secs(120)).expect("every job acknowledged");
            (first_t0, Instant::now())
        })
    };

    // The kills: alternating instances, each started again at once.
    let mut kills = Vec::new();
    for n in 0..p.kills {
        let at = produce_start + p.first_kill_after + p.kill_every * n as u32;
        tokio::time::sleep_until(at.into()).await;
        let k = n % procs.len();
        let victim = &mut procs[k];
        let pid = victim.pid;
        // Child::kill is SIGKILL.
        victim.child.kill().expect("SIGKILL");
        let _ = victim.child.wait();
        let at_us = unix_us();
        let name = victim.name.clone();
        procs[k] = spawn(&p, &name, &configs[k], &log);
        say!(p, "kill {} at {:.1} s: {name} (pid {pid}) SIGKILLed, restarted as pid {}", n + 1, produce_start.elapsed().as_secs_f64(), procs[k].pid);
        kills.push(Kill { n: n + 1, at_s: (at_us - t_start_us) as f64 / 1e6, at_us, instance: name, pid, unknown: 0, unknown_never_sent: 0, assigned: 0 });
    }
    let (first_t0, produced_at) = tokio::task::spawn_blocking(move || prod.join().expect("producer thread")).await.expect("join");
    let produce_s = produced_at.duration_since(produce_start).as_secs_f64();
    say!(p, "{} records produced and acknowledged in {produce_s:.1} s", produced_records);

    // Every job's final, or give up.
    let wait_start = Instant::now();
    let (mut last_records, mut last_change, mut last_print) = (0, Instant::now(), Instant::now());
    loop {
        let done = reader.seen.lock().unwrap().finals.iter().filter(|id| records.contains_key(*id)).count();
        if done == p.jobs {
            break;
        }
        let n = reader.records.load(Relaxed);
        if n != last_records {
            (last_records, last_change) = (n, Instant::now());
        }
        if last_change.elapsed() > p.stall || wait_start.elapsed() > p.final_wait {
            say!(
                p,
                "giving up: {done} of {} jobs final after {:.0} s, no report for {:.0} s",
                p.jobs,
                wait_start.elapsed().as_secs_f64(),
                last_change.elapsed().as_secs_f64()
            );
            break;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            say!(p, "{done} of {} jobs final ({n} report records)", p.jobs);
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited_for_finals_s = wait_start.elapsed().as_secs_f64();
    // Late events (a second final, an `accepted` after the final) would come now.
    tokio::time::sleep(p.settle).await;

    // SIGTERM one after another (Tansu can wedge a group whose members all leave at once).
    let mut exit_codes = Vec::new();
    for d in procs.iter_mut() {
        let _ = Command::new("kill").args(["-TERM", &d.pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        let code = loop {
            match d.child.try_wait() {
                Ok(Some(st)) => break st.code(),
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => {
                    let _ = d.child.kill();
                    let _ = d.child.wait();
                    break None;
                }
            }
        };
        exit_codes.push((format!("{} (pid {})", d.name, d.pid), code));
    }
    let seen = reader.finish();
    let sim_stats = sim.stats();
    let messages = sim.messages();
    sim.shutdown().await;

    // The audit reads the topic as it stands once nothing writes it: every partition from its
    // start. The live reader (progress, latency) can miss a batch for good: Tansu reserves a
    // batch's offsets before it writes the batch, and a fetch at the head in between returns
    // the batches after it and moves past it (a broker race two producers writing one
    // partition can meet; Kafka moves its high-water mark only after the write).
    let (brokers, topic) = (p.brokers.clone(), topics.reports.clone());
    let full = tokio::task::spawn_blocking(move || read_topic(&brokers, &topic)).await.expect("read after the run");
    let smsc = audit::smsc_counts(messages.iter().map(|m| m.text.as_str()), "kill loop job ");
    let (audit, read) = match &full {
        Ok(full) => (audit::audit(&full.events, &records, &smsc), compare_reads(&seen, full)),
        Err(e) => (
            audit::audit(&seen.events, &records, &smsc),
            Reads { error: Some(e.clone()), seeks: seen.seeks, gaps_accepted: seen.gaps_accepted.clone(), ..Reads::default() },
        ),
    };
    let mut named: Vec<String> = audit.receipt_final_without_accepted.clone();
    named.extend(audit.no_final.iter().cloned());
    named.extend(audit.many_finals.iter().map(|(id, _)| id.clone()));
    named.extend(audit.accepted_twice.iter().cloned());
    named.extend(audit.after_final.iter().map(|(id, _)| id.clone()));
    named.extend(read.vanished.iter().map(|(id, ..)| id.clone()));
    named.dedup();
    let evidence = if named.is_empty() { Vec::new() } else { evidence(&p, &run, &named, &seen, full.as_ref().ok()).await };

    // `unknown` finals per kill, by when they were decided.
    let mut unknown_before_kills = 0;
    for (_, at_us, at_smsc) in &audit.unknown {
        match kills.iter().rposition(|k| k.at_us <= *at_us) {
            Some(i) => {
                kills[i].unknown += 1;
                if !at_smsc {
                    kills[i].unknown_never_sent += 1;
                }
            }
            None => unknown_before_kills += 1,
        }
    }

    // Which kill explains each `unknown`: one between the job's first record and its
    // `unknown`, at most binds × window per kill. Kills in time order, each taking the jobs
    // whose window closes first (earliest deadline first finds an assignment when one exists).
    let t0_of: HashMap<&str, i64> = first_t0.iter().map(|(i, t0)| (ids[*i].as_str(), *t0)).collect();
    let mut windows: Vec<(i64, i64)> = audit.unknown.iter().map(|(id, at, _)| (t0_of.get(id.as_str()).copied().unwrap_or(i64::MAX), *at)).collect();
    windows.sort_by_key(|w| w.1);
    let mut taken = vec![false; windows.len()];
    let cap = p.binds * p.window;
    for k in kills.iter_mut() {
        for (w, t) in windows.iter().zip(taken.iter_mut()) {
            if k.assigned == cap {
                break;
            }
            if !*t && w.0 <= k.at_us && k.at_us <= w.1 {
                *t = true;
                k.assigned += 1;
            }
        }
    }
    let unknown_unexplained = taken.iter().filter(|t| !**t).count();

    // Produce → first final, as read here.
    let mut first_final: HashMap<&str, i64> = HashMap::new();
    for (e, read) in seen.events.iter().zip(&seen.read_us) {
        if e.is_final {
            first_final.entry(e.job_id.as_str()).or_insert(*read);
        }
    }
    let (mut lat_all, mut lat_plain) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        if let (Some(t0), Some(fin)) = (first_t0.get(&i), first_final.get(id.as_str())) {
            lat_all.push(fin - t0);
            if !scheduled(i) {
                lat_plain.push(fin - t0);
            }
        }
    }

    Outcome {
        run,
        audit,
        kills,
        unknown_before_kills,
        unknown_unexplained,
        produced_records,
        produce_s,
        latency_unscheduled_ms: percentiles(&mut lat_plain),
        latency_all_ms: percentiles(&mut lat_all),
        sim: sim_stats,
        exit_codes,
        waited_for_finals_s,
        total_s: started.elapsed().as_secs_f64(),
        unparsable_reports: full.as_ref().map_or(seen.unparsable, |f| f.unparsable),
        read,
        evidence,
        params: p,
    }
}

/// The live read against the read after the run.
#[derive(Debug, Default, Clone)]
pub struct Reads {
    /// Records the live reader got.
    pub live: usize,
    /// Records in the topic after the run that the live reader never got (Tansu's fetch race,
    /// see `run`), and a few of them: job id, partition, offset, event.
    pub missed_live: usize,
    pub missed_examples: Vec<(String, i32, i64, String)>,
    /// Records the live reader got that are not in the topic after the run: a broker that
    /// lost what it had served. A failure.
    pub vanished: Vec<(String, i32, i64, String)>,
    /// Per partition: records after the run, offsets skipped between two of them.
    pub partitions: std::collections::BTreeMap<i32, (u64, u64)>,
    /// The read after the run failed: the audit is of the live read.
    pub error: Option<String>,
    /// Times the live reader went back for a skipped batch; gaps it gave up on.
    pub seeks: u64,
    pub gaps_accepted: Vec<(i32, i64, i64)>,
}

fn compare_reads(live: &Seen, full: &Topic) -> Reads {
    let live_at: HashSet<(i32, i64)> = live.at.iter().copied().collect();
    let full_at: HashSet<(i32, i64)> = full.at.iter().copied().collect();
    let mut r = Reads {
        live: live.events.len(),
        partitions: full.partitions.clone(),
        seeks: live.seeks,
        gaps_accepted: live.gaps_accepted.clone(),
        ..Reads::default()
    };
    for (e, at) in full.events.iter().zip(&full.at) {
        if !live_at.contains(at) {
            r.missed_live += 1;
            if r.missed_examples.len() < 10 {
                r.missed_examples.push((e.job_id.clone(), at.0, at.1, e.event.clone()));
            }
        }
    }
    for (e, at) in live.events.iter().zip(&live.at) {
        if !full_at.contains(at) && r.vanished.len() < 1000 {
            r.vanished.push((e.job_id.clone(), at.0, at.1, e.event.clone()));
        }
    }
    r
}

/// What tells a rare failure's causes apart, per id: the events the live reader saw and those
/// the read after the run found (with partition and offset), and what Redis recorded (the job's
/// history, written only after the broker confirmed each report, and what is left of its claim
/// hash).
async fn evidence(p: &Params, run: &str, ids: &[String], live: &Seen, full: Option<&Topic>) -> Vec<String> {
    let mut out = Vec::new();
    let redis = async { redis::Client::open(p.redis_url.as_str())?.get_multiplexed_async_connection().await }.await;
    let at = |t: i64| chrono::DateTime::from_timestamp_micros(t).map_or(t.to_string(), |t| t.to_rfc3339());
    let events = |events: &[Event], pos: &[(i32, i64)], id: &str| -> Vec<String> {
        events.iter().zip(pos).filter(|(e, _)| e.job_id == id).map(|(e, (part, off))| format!("p{part}@{off} {} at {}", e.event, at(e.at_us))).collect()
    };
    for id in ids.iter().take(20) {
        out.push(format!("{id}:"));
        out.push(format!("  live read:        {:?}", events(&live.events, &live.at, id)));
        if let Some(full) = full {
            out.push(format!("  read after run:   {:?}", events(&full.events, &full.at, id)));
        }
        match &redis {
            Ok(conn) => {
                let mut conn = conn.clone();
                let history: Option<String> =
                    redis::cmd("GET").arg(format!("{run}:history:{id}")).query_async(&mut conn).await.unwrap_or_else(|e| Some(format!("GET failed: {e}")));
                let kinds: Vec<String> = history
                    .unwrap_or_default()
                    .lines()
                    .map(|l| match serde_json::from_str::<Value>(l) {
                        Ok(v) => format!("{} at {}", v["event"].as_str().unwrap_or("?"), v["at"].as_str().unwrap_or("?")),
                        Err(_) => l.chars().take(80).collect(),
                    })
                    .collect();
                out.push(format!("  redis history:    {kinds:?}"));
                let hash: Vec<(String, String)> = redis::cmd("HGETALL").arg(format!("{run}:job:{id}")).query_async(&mut conn).await.unwrap_or_default();
                let hash: Vec<String> = hash.into_iter().map(|(k, v)| format!("{k}={}", v.chars().take(60).collect::<String>())).collect();
                out.push(format!("  redis claim hash: {hash:?}"));
            }
            Err(e) => out.push(format!("  redis: {e}")),
        }
    }
    out
}

/// A topic read whole: its events in each partition's order, where each was.
struct Topic {
    events: Vec<Event>,
    at: Vec<(i32, i64)>,
    unparsable: u64,
    /// Per partition: records, offsets skipped between two of them.
    partitions: std::collections::BTreeMap<i32, (u64, u64)>,
}

/// Every partition of `topic` from its start to its end, assigned (no group, so nothing a group
/// committed moves it). The end is where a fetch answer's high-water mark says it is
/// (`partition.eof`); Tansu's ListOffsets answer is wrong (RECIPES.md).
fn read_topic(brokers: &str, topic: &str) -> Result<Topic, String> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-after-run"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| e.to_string())?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if parts.is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    let mut tpl = TopicPartitionList::new();
    for &part in &parts {
        tpl.add_partition_offset(topic, part, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut t = Topic { events: Vec::new(), at: Vec::new(), unparsable: 0, partitions: Default::default() };
    // Per partition, the next offset to read; partitions read to their end.
    let mut next: HashMap<i32, i64> = parts.iter().map(|p| (*p, 0)).collect();
    let mut at_end: HashSet<i32> = HashSet::new();
    let started = Instant::now();
    while at_end.len() < parts.len() {
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("not at every partition's end after 120 s (next offsets {next:?})"));
        }
        let m = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(part))) => {
                at_end.insert(part);
                continue;
            }
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(m)) => m,
        };
        at_end.remove(&m.partition());
        let (part, off) = (m.partition(), m.offset());
        let n = next.entry(part).or_insert(0);
        let e = t.partitions.entry(part).or_default();
        e.0 += 1;
        if off != *n {
            e.1 += 1;
        }
        *n = off + 1;
        match serde_json::from_slice::<Value>(m.payload().unwrap_or_default()).ok().and_then(|v| Event::from_json(&v)) {
            Some(ev) => {
                t.events.push(ev);
                t.at.push((part, off));
            }
            None => t.unparsable += 1,
        }
    }
    Ok(t)
}

/// Every `every`th job (offset so that job 0 is not one) is scheduled ahead.
fn is_scheduled(every: usize, i: usize) -> bool {
    every > 0 && i % every == 7 % every
}
