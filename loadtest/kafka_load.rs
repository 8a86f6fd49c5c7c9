//! End-to-end load test of `sendgate run` (Kafka mode) against the real services: Tansu as
//! the Kafka broker, Redis, and the SMPP simulator (`sendgate::smsc_sim::SmscSim`) hosted in
//! this process.
//!
//! Start the services first (`loadtest/run_kafka.sh` does everything):
//!
//! ```text
//! scripts/services start --dir .tmp/loadtest-services
//! eval "$(scripts/services env --dir .tmp/loadtest-services)"
//! cargo build --release --bin sendgate --example kafka_load
//! target/release/examples/kafka_load --jobs 200000
//! target/release/examples/kafka_load --jobs 1000000 --backlog
//! ```
//!
//! What it does: creates unique topics (jobs, reports, DLQ), a unique consumer group and Redis
//! key prefix; starts the simulator and K `target/release/sendgate run` children with
//! generated configs; waits for their banners and `/readyz`; warms up with 1,000 jobs; then
//! produces N jobs (mixed 1-3 segment texts, each with its produce time in `meta.t0`, unix
//! microseconds) from their own thread while a consumer reads the reports topic until every
//! job has a final event. It prints jobs/s end to end, produce-to-final latency (and its two
//! halves: produce → `accepted`, `accepted` → final), peak RSS of every process, CPU per
//! process and per thread over the measured window, Redis commands per job, a once-a-second
//! timeline (daemon RSS, `sendgate_jobs_in_flight`, jobs accepted, jobs final, Redis PING
//! time), and whether every job got exactly one final event; then SIGTERMs the daemons one
//! after another and reports their exit codes. Jobs left without a final are looked up in the
//! daemons' `GET /v1/jobs/{id}` and in a second full read of the reports topic.
//!
//! `--backlog` produces all N jobs before any daemon starts and measures how fast the
//! backlog drains and how much memory the daemons need meanwhile (bounded by
//! `pipeline.max_in_flight`, not by the backlog).
//!
//! Exit status: 0 when every job got exactly one final and every daemon exited 0 after
//! SIGTERM; 1 otherwise; 2 when the setup failed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use sendgate::smsc_sim::{SimConfig, SimHandle, SmscSim};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Parser, Debug, Clone)]
#[command(name = "kafka_load", about = "End-to-end load test of `sendgate run` against Tansu, Redis and the SMPP simulator")]
struct Args {
    /// Jobs in the measured run.
    #[arg(long, default_value_t = 200_000)]
    jobs: usize,
    /// `sendgate run` processes sharing the consumer group.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Partitions of the jobs topic.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// `providers.smsc-a.binds`.
    #[arg(long, default_value_t = 2)]
    binds: usize,
    /// `providers.smsc-a.window`.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// `pipeline.max_in_flight`.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// `pipeline.batch_size`.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// The simulator's delay between submit_sm and its delivery receipt.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    receipt_delay: Duration,
    /// `providers.smsc-a.receipt_timeout`: long, so that a receipt that waits inside the daemon
    /// behind a backlog still finds its job (a short one turns late receipts into `unknown`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    receipt_timeout: Duration,
    /// Message texts: `mixed` (1, 2, 3 GSM-7 segments and 2 UCS-2 segments, round robin;
    /// 2 segments on average), `short` (all 1 segment) or `long` (all 3 segments).
    #[arg(long, default_value = "mixed", value_parser = ["mixed", "short", "long"])]
    texts: String,
    /// Jobs in the warm-up (not measured; skipped with --backlog).
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Produce all jobs before the daemons start, then measure the drain.
    #[arg(long)]
    backlog: bool,
    /// Give every job a two-step cascade (SMS, then SMS again `until = "accepted"`) and make
    /// the simulator answer every message `undelivered`: each job falls back once, so it costs
    /// two messages, two claims and a step event (docs/cascades.md).
    #[arg(long)]
    cascade: bool,
    /// Print one JSON object on stdout instead of the text summary.
    #[arg(long)]
    json: bool,
    /// Any other config key, e.g. `--set kafka.commit_interval='"500ms"'`,
    /// `--set kafka.producer.batch.num.messages=20000` (values are TOML; bare words are strings).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    /// The daemon binary (default: `sendgate` next to this example's directory, i.e.
    /// target/release/sendgate).
    #[arg(long)]
    sendgate: Option<PathBuf>,
    /// Where configs and daemon logs go (default: loadtest/out/kafka-RUN).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Before starting, wait up to this long for the machine to be quiet (other processes using
    /// under a third of a core), so that the numbers measure sendgate, not a neighbour.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    wait_quiet: Duration,
    /// Give up when no report arrived for this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    stall_timeout: Duration,
}

// ------------------------------------------------------------------------------------------
// small helpers

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros() as u64
}

fn env_var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!("{name} is not set: start the services (`scripts/services start`) and `eval \"$(scripts/services env)\"`, or use loadtest/run_kafka.sh")
    })
}

macro_rules! say {
    ($($t:tt)*) => {{
        eprintln!("[kafka_load] {}", format!($($t)*));
    }};
}

fn mb(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// `VmHWM`/`VmRSS` of a process in kB.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.trim_start_matches(':').split_whitespace().next()?.parse().ok())
}

/// utime+stime (clock ticks) and the name of one thread or process from its `stat` file.
fn stat_ticks(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((comm, ticks))
}

fn clk_tck() -> f64 {
    Command::new("getconf").arg("CLK_TCK").output().ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

/// Busy and total jiffies of the whole machine (`/proc/stat`).
fn machine_ticks() -> (u64, u64) {
    let (busy, total, _) = machine_ticks_irq();
    (busy, total)
}

/// Busy, total and interrupt (irq + softirq: loopback TCP is processed there, and no process
/// is charged for it) jiffies of the whole machine.
fn machine_ticks_irq() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let irq = v.get(5).copied().unwrap_or(0) + v.get(6).copied().unwrap_or(0);
    (total - idle, total, irq)
}

/// Cores busy over 2 s (whole machine); waits up to `limit` for it to drop under a third.
fn wait_quiet(limit: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let (b0, t0) = machine_ticks();
        std::thread::sleep(Duration::from_secs(2));
        let (b1, t1) = machine_ticks();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cpus;
        if busy < 0.33 || start.elapsed() >= limit {
            say!("machine load before the run: {busy:.2} cores busy");
            return busy;
        }
    }
}

/// Processes whose CPU and memory are watched, by label.
#[derive(Clone, Default)]
struct Watched(Arc<Mutex<Vec<(String, u32)>>>);

impl Watched {
    fn add(&self, label: &str, pid: u32) {
        self.0.lock().unwrap().push((label.to_owned(), pid));
    }
    fn list(&self) -> Vec<(String, u32)> {
        self.0.lock().unwrap().clone()
    }
}

/// Per-thread CPU ticks of every watched process at one instant.
struct CpuSnap {
    at: Instant,
    threads: HashMap<(u32, u32), (String, String, u64)>, // (pid, tid) -> (label, comm, ticks)
    machine: (u64, u64, u64),
}

fn cpu_snap(w: &Watched) -> CpuSnap {
    let mut threads = HashMap::new();
    for (label, pid) in w.list() {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some((comm, ticks)) = stat_ticks(&format!("/proc/{pid}/task/{tid}/stat")) {
                threads.insert((pid, tid), (label.clone(), comm, ticks));
            }
        }
    }
    CpuSnap { at: Instant::now(), threads, machine: machine_ticks_irq() }
}

/// CPU seconds per process and per thread name between two snapshots.
fn cpu_report(a: &CpuSnap, b: &CpuSnap, tck: f64, jobs: usize) -> Value {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let mut per_proc: BTreeMap<String, (f64, BTreeMap<String, f64>)> = BTreeMap::new();
    for (key, (label, comm, ticks)) in &b.threads {
        let before = a.threads.get(key).map(|t| t.2).unwrap_or(0);
        let s = ticks.saturating_sub(before) as f64 / tck;
        let e = per_proc.entry(label.clone()).or_default();
        e.0 += s;
        *e.1.entry(comm.clone()).or_default() += s;
    }
    let (busy, total) = (b.machine.0 - a.machine.0, (b.machine.1 - a.machine.1).max(1));
    let tracked: f64 = per_proc.values().map(|(s, _)| *s).sum();
    // /proc/stat counts every CPU: total jiffies / wall / tck is the number of CPUs.
    let cpus = (total as f64 / tck / wall).round().max(1.0);
    let busy_cores = busy as f64 / total as f64 * cpus;
    let procs: Vec<Value> = per_proc
        .into_iter()
        .map(|(label, (s, threads))| {
            let mut t: Vec<(String, f64)> = threads.into_iter().collect();
            t.sort_by(|x, y| y.1.total_cmp(&x.1));
            let top: Vec<Value> = t.iter().filter(|(_, s)| *s >= 0.05).take(10).map(|(c, s)| json!({"thread": c, "cpu_s": round(*s, 2)})).collect();
            json!({"process": label, "cpu_s": round(s, 2), "cores": round(s / wall, 2), "cpu_us_per_job": round(s * 1e6 / jobs.max(1) as f64, 1), "threads": top})
        })
        .collect();
    json!({
        "wall_s": round(wall, 2),
        "cpus": cpus,
        "machine_busy_pct": round(busy as f64 * 100.0 / total as f64, 1),
        "machine_busy_cores": round(busy_cores, 2),
        "irq_softirq_cores": round((b.machine.2 - a.machine.2) as f64 / total as f64 * cpus, 2),
        "other_processes_cores": round((busy_cores - tracked / wall - (b.machine.2 - a.machine.2) as f64 / total as f64 * cpus).max(0.0), 2),
        "listed_cpu_us_per_job": round(tracked * 1e6 / jobs.max(1) as f64, 1),
        "cpu_bound_ceiling_jobs_per_s": round(cpus * jobs as f64 / tracked.max(1e-9), 0),
        "processes": procs,
    })
}

/// Samples VmRSS of every watched process every 250 ms until stopped; keeps the maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<HashMap<String, u64>>,
}

impl RssSampler {
    fn start(w: Watched) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut out: HashMap<String, u64> = HashMap::new();
                while !s.load(Relaxed) {
                    for (label, pid) in w.list() {
                        if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                            let e = out.entry(label).or_default();
                            *e = (*e).max(kb);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                out
            })
            .expect("thread");
        Self { stop, handle }
    }

    fn finish(self) -> HashMap<String, u64> {
        self.stop.store(true, Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// A connection to Redis that measures PING round trips: how long any request waits in
/// Redis's queue right now.
struct RedisPing(BufReader<TcpStream>);

impl RedisPing {
    fn connect(url: &str) -> Option<Self> {
        let hostport = url.strip_prefix("redis://")?.split('/').next()?;
        let hostport = hostport.rsplit('@').next()?;
        let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport).ok()?.next()?;
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.set_nodelay(true).ok()?;
        Some(Self(BufReader::new(s)))
    }

    /// Mean PING round trip over `n` sequential PINGs, in ms.
    fn mean_ms(&mut self, n: u32) -> Option<f64> {
        let t = Instant::now();
        for _ in 0..n {
            self.0.get_mut().write_all(b"PING\r\n").ok()?;
            let mut line = String::new();
            self.0.read_line(&mut line).ok()?;
            if !line.starts_with("+PONG") {
                return None;
            }
        }
        Some(t.elapsed().as_secs_f64() * 1000.0 / f64::from(n))
    }
}

/// Once a second: every daemon's RSS and `sendgate_jobs_in_flight`, and how many measured jobs
/// the reader has seen `accepted` and final. RSS that follows accepted-minus-final rather than
/// in-flight is memory held for jobs past their in-flight permit (receipts waiting).
/// Per daemon the in-flight samples, and the timeline rows.
type TimelineData = (Vec<Vec<f64>>, Vec<Vec<f64>>);

struct Timeline {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<TimelineData>,
    names: Vec<String>,
}

impl Timeline {
    fn start(daemons: Vec<(String, u32, SocketAddr)>, progress: Arc<Progress>, redis_url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let names = daemons.iter().map(|d| d.0.clone()).collect();
        let handle = std::thread::Builder::new()
            .name("timeline".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut redis = RedisPing::connect(&redis_url);
                let mut in_flight: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
                let mut rows: Vec<Vec<f64>> = Vec::new();
                while !s.load(Relaxed) {
                    let mut row = vec![round(t0.elapsed().as_secs_f64(), 1)];
                    for (k, (_, pid, addr)) in daemons.iter().enumerate() {
                        let g = http_get(*addr, "/metrics").filter(|(st, _)| *st == 200).map(|(_, b)| metric_sum(&b, "sendgate_jobs_in_flight"));
                        if let Some(g) = g {
                            in_flight[k].push(g);
                        }
                        row.push(mb(proc_status_kb(*pid, "VmRSS").unwrap_or(0)));
                        row.push(g.unwrap_or(-1.0));
                    }
                    row.push(progress.accepted.load(Relaxed) as f64);
                    row.push(progress.meas_done.load(Relaxed) as f64);
                    row.push(redis.as_mut().and_then(|r| r.mean_ms(5)).map(|ms| round(ms, 2)).unwrap_or(-1.0));
                    rows.push(row);
                    for _ in 0..10 {
                        if s.load(Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                (in_flight, rows)
            })
            .expect("thread");
        Self { stop, handle, names }
    }

    /// (`jobs_in_flight` summary per daemon, the timeline table)
    fn finish(self) -> (Value, Value) {
        self.stop.store(true, Relaxed);
        let (in_flight, rows) = self.handle.join().unwrap_or_default();
        let summary = self
            .names
            .iter()
            .zip(in_flight)
            .map(|(name, v)| {
                let max = v.iter().copied().fold(0.0, f64::max);
                let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
                (name.clone(), json!({"max": max, "mean": round(mean, 0)}))
            })
            .collect::<serde_json::Map<_, _>>();
        let mut columns = vec!["t_s".to_string()];
        for n in &self.names {
            columns.push(format!("{n}_rss_mb"));
            columns.push(format!("{n}_in_flight"));
        }
        columns.push("accepted".into());
        columns.push("final".into());
        columns.push("redis_ping_ms".into());
        (Value::Object(summary), json!({"columns": columns, "rows": rows}))
    }
}

/// One plain HTTP/1.1 GET: status and body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// `INFO commandstats` of the Redis at `url` (`redis://host:port/...`): calls and µs per command.
fn redis_cmdstats(url: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Some(hostport) = url.strip_prefix("redis://").and_then(|r| r.split('/').next()) else { return out };
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(hostport).ok().and_then(|mut a| a.next()) else { return out };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return out };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"INFO commandstats\r\n").is_err() {
        return out;
    }
    let mut r = BufReader::new(s);
    let mut head = String::new();
    if r.read_line(&mut head).is_err() {
        return out;
    }
    let Some(len) = head.trim().strip_prefix('$').and_then(|l| l.parse::<usize>().ok()) else { return out };
    let mut body = vec![0u8; len];
    if r.read_exact(&mut body).is_err() {
        return out;
    }
    for line in String::from_utf8_lossy(&body).lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let field = |k: &str| rest.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse::<u64>().ok()).unwrap_or(0);
        out.insert(name.to_owned(), (field("calls"), field("usec")));
    }
    out
}

/// Redis commands per job between two `INFO commandstats` snapshots.
fn redis_report(a: &BTreeMap<String, (u64, u64)>, b: &BTreeMap<String, (u64, u64)>, jobs: usize) -> Value {
    let mut rows: Vec<(String, u64, u64)> = b
        .iter()
        .map(|(k, (c, u))| {
            let (c0, u0) = a.get(k).copied().unwrap_or((0, 0));
            (k.clone(), c - c0.min(*c), u - u0.min(*u))
        })
        .filter(|(_, c, _)| *c > 0)
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    let jobs = jobs.max(1) as f64;
    let total_calls: u64 = rows.iter().map(|r| r.1).sum();
    let total_us: u64 = rows.iter().map(|r| r.2).sum();
    json!({
        "calls_per_job": round(total_calls as f64 / jobs, 2),
        "usec_per_job_nested_counted_twice": round(total_us as f64 / jobs, 1),
        "commands": rows.iter().map(|(k, c, u)| json!({"cmd": k, "calls": c, "per_job": round(*c as f64 / jobs, 2), "usec": u, "us_per_call": round(*u as f64 / (*c).max(1) as f64, 1)})).collect::<Vec<_>>(),
    })
}

/// One metric summed over its series (0 when absent).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ------------------------------------------------------------------------------------------
// topics, config, daemons

fn create_topic(tansu: &str, brokers: &str, name: &str, partitions: u32) -> Result<(), String> {
    let out = Command::new(tansu)
        .args(["topic", "create", "--broker", &format!("tcp://{brokers}"), "--partitions", &partitions.to_string(), name])
        .output()
        .map_err(|e| format!("running {tansu}: {e}"))?;
    if !out.status.success() {
        return Err(format!("topic create {name}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

struct Topics {
    jobs: String,
    reports: String,
    dlq: String,
}

struct Names {
    topics: Topics,
    group: String,
    prefix: String,
}

/// `section.key=value` into the config table; values are TOML, bare words are strings.
fn apply_set(table: &mut toml::Table, spec: &str) -> Result<(), String> {
    let (path, raw) = spec.split_once('=').ok_or_else(|| format!("--set {spec}: expected SECTION.KEY=VALUE"))?;
    let parts: Vec<&str> = path.trim().split('.').collect();
    // librdkafka properties have dots in their names: everything after kafka.producer. is one key.
    let parts: Vec<String> = if parts.len() > 3 && parts[0] == "kafka" && (parts[1] == "producer" || parts[1] == "consumer") {
        vec![parts[0].into(), parts[1].into(), parts[2..].join(".")]
    } else {
        parts.iter().map(|s| s.to_string()).collect()
    };
    let value =
        toml::from_str::<toml::Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, dirs) = parts.split_last().ok_or_else(|| format!("--set {spec}: empty key"))?;
    let mut t = table;
    for d in dirs {
        t = t
            .entry(d.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("--set {spec}: {d} is not a table"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

fn write_config(dir: &Path, instance: &str, a: &Args, n: &Names, brokers: &str, redis_url: &str, smsc: SocketAddr) -> Result<PathBuf, String> {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
drain_timeout = "30s"

[pipeline]
max_in_flight = {mif}
batch_size = {batch}
scheduler_tick = "100ms"
scheduler_lease = "5s"
retry_backoff = "1s"

[reports]
stdout = false

[providers.smsc-a]
kind = "smpp"
address = "{smsc}"
system_id = "sendgate"
password = "load"
binds = {binds}
window = {window}
receipt_timeout = "{receipt_timeout}s"
response_timeout = "10s"
reconnect_min = "100ms"
reconnect_max = "1s"

[kafka]
brokers = "{brokers}"
group_id = "{group}"
jobs_topic = "{jobs}"
reports_topic = "{reports}"
dlq_topic = "{dlq}"
session_timeout = "6s"
commit_interval = "200ms"

[redis]
url = "{redis_url}"
prefix = "{prefix}"
instance_id = "{instance}"
heartbeat_ttl = "3s"
"#,
        mif = a.max_in_flight,
        batch = a.batch_size,
        binds = a.binds,
        window = a.window,
        receipt_timeout = a.receipt_timeout.as_secs().max(1),
        group = n.group,
        jobs = n.topics.jobs,
        reports = n.topics.reports,
        dlq = n.topics.dlq,
        prefix = n.prefix,
    );
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("generated config: {e}"))?;
    for s in &a.set {
        apply_set(&mut table, s)?;
    }
    let text = toml::to_string(&table).map_err(|e| format!("config: {e}"))?;
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Pids of the running daemons, for the interrupt handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT/SIGTERM: SIGTERM the daemons, SIGKILL what is left after 10 s, exit 130.
fn on_interrupt(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else { return };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let pids = CHILDREN.lock().unwrap().clone();
        say!("interrupted: stopping {} daemon(s)", pids.len());
        for pid in &pids {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in &pids {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        std::process::exit(130);
    });
}

struct Daemon {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    addrs: mpsc::Receiver<(String, String)>,
    api: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

impl Daemon {
    fn spawn(bin: &Path, config: &Path, name: &str, log: PathBuf) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let log_path = log.clone();
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .spawn(move || {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
                let (mut api, mut metrics) = (None, None);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = writeln!(f, "{line}");
                    if let Some(rest) = line.split("curl -X POST http://").nth(1) {
                        api = rest.split('/').next().map(str::to_owned);
                    }
                    if let Some(rest) = line.split("metrics:      http://").nth(1) {
                        metrics = rest.split('/').next().map(str::to_owned);
                    }
                    if let (Some(a), Some(m)) = (&api, &metrics) {
                        let _ = tx.send((a.clone(), m.clone()));
                        api = None;
                    }
                }
            })
            .expect("thread");
        let pid = child.id();
        CHILDREN.lock().unwrap().push(pid);
        Ok(Self { name: name.to_owned(), child, pid, log, addrs: rx, api: None, metrics: None })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Banner, then `/readyz` 200.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let (api, metrics) = loop {
            match self.addrs.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => break a,
                Err(_) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        return Err(format!("{} exited ({st}) before its banner:\n{}", self.name, self.log_tail()));
                    }
                    if Instant::now() > deadline {
                        return Err(format!("{} printed no banner within {limit:?}:\n{}", self.name, self.log_tail()));
                    }
                }
            }
        };
        let api: SocketAddr = api.parse().map_err(|e| format!("banner address {api}: {e}"))?;
        self.api = Some(api);
        self.metrics = metrics.parse().ok();
        loop {
            if http_get(api, "/readyz").is_some_and(|(s, _)| s == 200) {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("{} exited ({st}) before it was ready:\n{}", self.name, self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!("{} not ready within {limit:?}:\n{}", self.name, self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metrics_text(&self) -> String {
        self.metrics.and_then(|m| http_get(m, "/metrics")).map(|(_, b)| b).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (None: killed after `limit`, or died by a signal).
    fn terminate(&mut self, limit: Duration) -> (Option<i32>, f64) {
        let t = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return (st.code(), t.elapsed().as_secs_f64()),
                Ok(None) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    say!("{} did not exit within {limit:?} of SIGTERM: killing it", self.name);
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return (None, t.elapsed().as_secs_f64());
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// jobs

/// Texts of 1, 2, 3 (GSM-7) and 2 (UCS-2) segments; `#` becomes the job's number.
const TEXTS: [&str; 4] = [
    "Your code is #. Do not share it with anyone.",
    "Order # has shipped and is on its way to you. Track it at acme.example/t/# - delivery is expected within 2 to 3 working days. If you are not at home, the courier leaves it at the nearest pickup point. Thanks for shopping with ACME!",
    "Dear customer, your monthly statement # is ready. Total due: 129.90 EUR, payable within 14 days by card at acme.example/pay or by bank transfer quoting reference #. Your new tariff starts on the first of next month and includes unlimited calls, 20 GB of data and free roaming in the EU. Questions? Call us on +44 20 7946 0000, Monday to Friday 9:00-17:00, or reply HELP. Reply STOP to opt out.",
    "Ваш заказ # отправлен. Трек-номер появится в личном кабинете в течение часа. Спасибо, что выбрали нас!",
];

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Delivery(Arc<Counts>);

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.0.ok.fetch_add(1, Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Relaxed);
                *self.0.last_error.lock().unwrap() = Some(e.to_string());
            }
        }
    }
}

type JobProducer = ThreadedProducer<Delivery>;

fn job_producer(brokers: &str, counts: Arc<Counts>) -> Result<JobProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // A bounded queue: in --backlog mode a million queued jobs would otherwise sit in this
        // process (~500 MB) and hide the simulator's own memory in its peak RSS.
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "600000")
        .create_with_context(Delivery(counts))
        .map_err(|e| format!("producer: {e}"))
}

#[derive(Debug, Clone, Copy, Default)]
struct Produced {
    first_us: u64,
    last_us: u64,
    acked_us: u64,
    n: usize,
}

/// Produces jobs `tag0..tag{n-1}` as fast as the producer queue takes them; recipients are
/// unique per run (`seq_base + i`). Waits for every acknowledgement.
/// Which jobs to produce: ids `RUN-TAG0..`, recipients numbered from `seq_base`.
struct Batch<'a> {
    topic: &'a str,
    run: &'a str,
    tag: char,
    n: usize,
    seq_base: usize,
    texts: &'a str,
    cascade: bool,
}

fn produce_jobs(p: &JobProducer, counts: &Counts, b: Batch<'_>) -> Produced {
    let Batch { topic, run, tag, n, seq_base, texts: kinds, cascade } = b;
    let steps = if cascade { r#","cascade":[{"channel":"sms"},{"channel":"sms","until":"accepted"}]"# } else { "" };
    let pick: &[usize] = match kinds {
        "short" => &[0],
        "long" => &[2],
        _ => &[0, 1, 2, 3],
    };
    let texts: Vec<(String, String)> = pick
        .iter()
        .map(|&k| TEXTS[k])
        .map(|t| {
            let j = serde_json::to_string(t).expect("string");
            let (a, b) = j.split_once('#').expect("marker");
            (a.to_owned(), b.to_owned())
        })
        .collect();
    let acked_before = counts.ok.load(Relaxed) + counts.failed.load(Relaxed);
    let mut out = Produced { n, ..Produced::default() };
    let mut payload = String::with_capacity(1024);
    for i in 0..n {
        let seq = seq_base + i;
        let to = format!("+447{seq:09}");
        let (a, b) = &texts[i % texts.len()];
        let b = b.replace('#', &seq.to_string());
        let t0 = unix_us();
        if i == 0 {
            out.first_us = t0;
        }
        payload.clear();
        use std::fmt::Write as _;
        let _ = write!(
            payload,
            r#"{{"id":"{run}-{tag}{i}","tenant":"acme","channel":"sms","to":"{to}","text":{a}{seq}{b},"quiet_hours":false,"meta":{{"t0":"{t0}","seq":"{seq}"}}{steps}}}"#
        );
        let mut rec = BaseRecord::to(topic).key(to.as_str()).payload(payload.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    out.last_us = unix_us();
    let _ = p.flush(Duration::from_secs(600));
    while counts.ok.load(Relaxed) + counts.failed.load(Relaxed) < acked_before + n as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    out.acked_us = unix_us();
    out
}

// ------------------------------------------------------------------------------------------
// reports

#[derive(Deserialize)]
struct Ev<'a> {
    #[serde(borrow)]
    job_id: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "final")]
    is_final: bool,
    #[serde(borrow)]
    at: Cow<'a, str>,
    #[serde(default, borrow)]
    meta: Option<MetaT0<'a>>,
}

#[derive(Deserialize)]
struct MetaT0<'a> {
    #[serde(default, borrow)]
    t0: Option<Cow<'a, str>>,
}

#[derive(Default)]
struct Progress {
    /// Per measured job: has a final been seen (readable while the reader runs).
    meas_seen: Vec<AtomicBool>,
    warm_done: AtomicU64,
    meas_done: AtomicU64,
    accepted: AtomicU64,
    records: AtomicU64,
    last_record_us: AtomicU64,
    stop: AtomicBool,
}

/// What the reports consumer saw.
#[derive(Default)]
struct Tally {
    warm: Vec<u8>,
    meas: Vec<u8>,
    /// Produce-to-final latency (µs) of each measured job's first final: consume time − t0.
    lat_consume: Vec<i64>,
    /// The same with the report's own `at` instead of the consume time.
    lat_at: Vec<i64>,
    /// Per measured job: meta.t0, the `at` of its first `accepted` and of its first final (µs).
    t0: Vec<i64>,
    acc_at: Vec<i64>,
    fin_at: Vec<i64>,
    accepted: u64,
    last_accepted_us: u64,
    first_final_us: u64,
    last_final_us: u64,
    events: BTreeMap<String, u64>,
    records: u64,
    foreign: u64,
    unparsable: u64,
    consumer_errors: u64,
    last_error: Option<String>,
}

fn start_consumer(brokers: &str, topic: &str, group: &str, run: &str, warm: usize, meas: usize, progress: Arc<Progress>) -> Result<JoinHandle<Tally>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer.subscribe(&[topic]).map_err(|e| format!("subscribe: {e}"))?;
    let prefix = format!("{run}-");
    let handle = std::thread::Builder::new()
        .name("reports-reader".into())
        .spawn(move || {
            let mut t = Tally { warm: vec![0; warm], meas: vec![0; meas], t0: vec![0; meas], acc_at: vec![0; meas], fin_at: vec![0; meas], ..Tally::default() };
            t.lat_consume.reserve(meas);
            t.lat_at.reserve(meas);
            while !progress.stop.load(Relaxed) {
                let m = match consumer.poll(Duration::from_millis(100)) {
                    None => continue,
                    Some(Err(e)) => {
                        t.consumer_errors += 1;
                        t.last_error = Some(e.to_string());
                        continue;
                    }
                    Some(Ok(m)) => m,
                };
                let now = unix_us();
                t.records += 1;
                progress.records.store(t.records, Relaxed);
                progress.last_record_us.store(now, Relaxed);
                let Ok(ev) = serde_json::from_slice::<Ev>(m.payload().unwrap_or_default()) else {
                    t.unparsable += 1;
                    continue;
                };
                match t.events.get_mut(ev.event.as_ref()) {
                    Some(c) => *c += 1,
                    None => {
                        t.events.insert(ev.event.to_string(), 1);
                    }
                }
                let Some(rest) = ev.job_id.strip_prefix(prefix.as_str()) else {
                    t.foreign += 1;
                    continue;
                };
                let (kind, num) = rest.split_at(1.min(rest.len()));
                let Ok(i) = num.parse::<usize>() else {
                    t.foreign += 1;
                    continue;
                };
                let at_us = || chrono::DateTime::parse_from_rfc3339(&ev.at).map(|a| a.timestamp_micros()).unwrap_or(0);
                if !ev.is_final {
                    if kind == "m" && i < t.meas.len() && ev.event == "accepted" && t.acc_at[i] == 0 {
                        t.acc_at[i] = at_us();
                        t.accepted += 1;
                        progress.accepted.fetch_add(1, Relaxed);
                        t.last_accepted_us = now;
                    }
                    continue;
                }
                match kind {
                    "w" if i < t.warm.len() => {
                        t.warm[i] = t.warm[i].saturating_add(1);
                        if t.warm[i] == 1 {
                            progress.warm_done.fetch_add(1, Relaxed);
                        }
                    }
                    "m" if i < t.meas.len() => {
                        t.meas[i] = t.meas[i].saturating_add(1);
                        if t.meas[i] == 1 {
                            progress.meas_seen[i].store(true, Relaxed);
                            if t.first_final_us == 0 {
                                t.first_final_us = now;
                            }
                            t.last_final_us = now;
                            let fin_at = at_us();
                            t.fin_at[i] = fin_at;
                            if let Some(t0) = ev.meta.as_ref().and_then(|m| m.t0.as_ref()).and_then(|s| s.parse::<i64>().ok()) {
                                t.t0[i] = t0;
                                t.lat_consume.push(now as i64 - t0);
                                if fin_at != 0 {
                                    t.lat_at.push(fin_at - t0);
                                }
                            }
                            progress.meas_done.fetch_add(1, Relaxed);
                        }
                    }
                    _ => t.foreign += 1,
                }
            }
            // Leave the group now (one member, unique group: nothing to wedge).
            consumer.unsubscribe();
            drop(consumer);
            t
        })
        .map_err(|e| format!("thread: {e}"))?;
    Ok(handle)
}

/// Reads the reports topic from the start with a new group until it is idle for 10 s; counts
/// finals of the given measured jobs.
fn reread_finals(brokers: &str, topic: &str, run: &str, jobs: &[usize]) -> Value {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{run}-reread-{:08x}", rand::random::<u32>()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "50")
        .create()
    {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    if let Err(e) = consumer.subscribe(&[topic]) {
        return json!({"error": e.to_string()});
    }
    let wanted: HashMap<String, usize> = jobs.iter().map(|i| (format!("{run}-m{i}"), *i)).collect();
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut records, mut last) = (0u64, Instant::now());
    let started = Instant::now();
    while last.elapsed() < Duration::from_secs(10) && started.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            records += 1;
            last = Instant::now();
            if let Ok(ev) = serde_json::from_slice::<Ev>(m.payload().unwrap_or_default()) {
                if wanted.contains_key(ev.job_id.as_ref()) {
                    found.entry(ev.job_id.to_string()).or_default().push(format!("{}@{}/{}", ev.event, m.partition(), m.offset()));
                }
            }
        }
    }
    consumer.unsubscribe();
    json!({"records_read": records, "events_of_missing_jobs": found})
}

/// Waits until `target` distinct jobs have a final (`which` picks the counter).
fn wait_finals(progress: &Progress, which: fn(&Progress) -> u64, target: u64, limit: Duration, stall: Duration, label: &str) -> Result<Instant, String> {
    let start = Instant::now();
    let mut last_print = Instant::now();
    let mut last_records = progress.records.load(Relaxed);
    let mut last_change = Instant::now();
    loop {
        let done = which(progress);
        if done >= target {
            return Ok(Instant::now());
        }
        let records = progress.records.load(Relaxed);
        if records != last_records {
            last_records = records;
            last_change = Instant::now();
        }
        if start.elapsed() > limit {
            return Err(format!("{label}: only {done} of {target} jobs final after {limit:?}"));
        }
        if last_change.elapsed() > stall {
            return Err(format!("{label}: {done} of {target} jobs final and no report for {stall:?}"));
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            let secs = start.elapsed().as_secs_f64();
            say!("{label}: {done}/{target} final after {secs:.0} s ({:.0} jobs/s), {records} report records", done as f64 / secs);
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn percentiles_ms(v: &mut [i64]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_unstable();
    let at = |q: f64| -> f64 {
        let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        round(v[idx] as f64 / 1000.0, 1)
    };
    json!({"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(v[v.len() - 1] as f64 / 1000.0, 1), "n": v.len()})
}

// ------------------------------------------------------------------------------------------
// main

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            say!("setup failed: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> Result<bool, String> {
    if a.jobs == 0 || a.instances == 0 || a.partitions == 0 {
        return Err("--jobs, --instances and --partitions must be positive".into());
    }
    let brokers = env_var("SENDGATE_TEST_KAFKA_BROKERS")?;
    let redis_url = env_var("SENDGATE_TEST_REDIS_URL")?;
    let tansu = env_var("SENDGATE_TEST_TANSU_BIN")?;
    let bin = match &a.sendgate {
        Some(b) => b.clone(),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            exe.parent().and_then(Path::parent).map(|d| d.join("sendgate")).ok_or("cannot locate target dir")?
        }
    };
    if !bin.exists() {
        return Err(format!("{} does not exist: cargo build --release --bin sendgate", bin.display()));
    }
    let tck = clk_tck();
    let busy = wait_quiet(a.wait_quiet);
    if busy > 0.33 {
        say!("warning: other processes keep {busy:.2} cores busy; the numbers will be lower than on a quiet machine");
    }

    let run = format!("kl{:08x}", rand::random::<u32>());
    let names = Names {
        topics: Topics { jobs: format!("{run}.jobs"), reports: format!("{run}.reports"), dlq: format!("{run}.dlq") },
        group: format!("{run}-gw"),
        prefix: format!("{run}:"),
    };
    let out_dir = a.out_dir.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/out").join(format!("kafka-{run}")));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    say!("run {run}: logs and configs in {}", out_dir.display());

    create_topic(&tansu, &brokers, &names.topics.jobs, a.partitions)?;
    create_topic(&tansu, &brokers, &names.topics.reports, 6)?;
    create_topic(&tansu, &brokers, &names.topics.dlq, 1)?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("smsc-sim").enable_all().build().map_err(|e| e.to_string())?;
    on_interrupt(&rt);
    let sim: SimHandle = rt
        .block_on(SmscSim::start(SimConfig {
            receipt_delay: a.receipt_delay,
            record_messages: false,
            outcome_mix: if a.cascade { "undelivered=100".into() } else { "delivered=100".into() },
            ..SimConfig::default()
        }))
        .map_err(|e| format!("simulator: {e}"))?;

    let watched = Watched::default();
    watched.add("loadtest (sim + producer + reader)", std::process::id());
    if let Ok(dir) = std::env::var("SENDGATE_TEST_SERVICES_DIR") {
        let pid = |p: &str| std::fs::read_to_string(Path::new(&dir).join(p)).ok().and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(p) = pid("tansu.pid") {
            watched.add("tansu", p);
        }
        if let Some(p) = pid("redis/redis.pid") {
            watched.add("redis", p);
        }
    }
    let sampler = RssSampler::start(watched.clone());

    let warm_n = if a.backlog { 0 } else { a.warmup };
    let progress = Arc::new(Progress { meas_seen: (0..a.jobs).map(|_| AtomicBool::new(false)).collect(), ..Progress::default() });
    let reader = start_consumer(&brokers, &names.topics.reports, &format!("{run}-reader"), &run, warm_n, a.jobs, progress.clone())?;
    let counts = Arc::new(Counts::default());
    let producer = Arc::new(job_producer(&brokers, counts.clone())?);

    let mut backlog_produced = None;
    if a.backlog {
        say!("backlog: producing {} jobs before any daemon starts", a.jobs);
        let p = produce_jobs(
            &producer,
            &counts,
            Batch { topic: &names.topics.jobs, run: &run, tag: 'm', n: a.jobs, seq_base: warm_n, texts: &a.texts, cascade: a.cascade },
        );
        let secs = (p.acked_us - p.first_us) as f64 / 1e6;
        say!("backlog: {} jobs acknowledged in {secs:.1} s ({:.0}/s)", p.n, p.n as f64 / secs);
        backlog_produced = Some(p);
    }

    // Daemons.
    let cpu_before_start = cpu_snap(&watched);
    let redis_before_start = redis_cmdstats(&redis_url);
    let daemons_spawned_us = unix_us();
    let daemons_spawned = Instant::now();
    let mut daemons = Vec::new();
    for k in 0..a.instances {
        let name = format!("gw-{k}");
        let cfg = write_config(&out_dir, &name, &a, &names, &brokers, &redis_url, sim.local_addr())?;
        let d = Daemon::spawn(&bin, &cfg, &name, out_dir.join(format!("{name}.log")))?;
        watched.add(&format!("sendgate {name}"), d.pid);
        daemons.push(d);
    }
    for d in daemons.iter_mut() {
        d.wait_ready(Duration::from_secs(60))?;
    }
    let ready_s = daemons_spawned.elapsed().as_secs_f64();
    say!(
        "{} daemon(s) ready after {ready_s:.1} s: {}",
        daemons.len(),
        daemons.iter().map(|d| format!("{} pid {} api {}", d.name, d.pid, d.api.unwrap())).collect::<Vec<_>>().join(", ")
    );

    let timeline = Timeline::start(daemons.iter().filter_map(|d| Some((d.name.clone(), d.pid, d.metrics?))).collect(), progress.clone(), redis_url.clone());
    let mut failure: Option<String> = None;
    let limit = Duration::from_secs(120) + Duration::from_millis(2 * a.jobs as u64);

    // Warm-up, then the measured run.
    let (cpu_a, redis_a, produced, all_final_at) = if a.backlog {
        let r = wait_finals(&progress, |p| p.meas_done.load(Relaxed), a.jobs as u64, limit, a.stall_timeout, "backlog drain");
        (cpu_before_start, redis_before_start, backlog_produced.expect("produced"), r)
    } else {
        if warm_n > 0 {
            say!("warm-up: {warm_n} jobs");
            let t = Instant::now();
            produce_jobs(
                &producer,
                &counts,
                Batch { topic: &names.topics.jobs, run: &run, tag: 'w', n: warm_n, seq_base: 0, texts: &a.texts, cascade: a.cascade },
            );
            wait_finals(&progress, |p| p.warm_done.load(Relaxed), warm_n as u64, Duration::from_secs(180), a.stall_timeout, "warm-up")?;
            say!("warm-up done in {:.1} s", t.elapsed().as_secs_f64());
        }
        let cpu_a = cpu_snap(&watched);
        let redis_a = redis_cmdstats(&redis_url);
        say!("measured run: {} jobs", a.jobs);
        let (p, c, topic, r) = (producer.clone(), counts.clone(), names.topics.jobs.clone(), run.clone());
        let (jobs, base, kinds, cascade) = (a.jobs, warm_n, a.texts.clone(), a.cascade);
        let prod = std::thread::Builder::new()
            .name("jobs-producer".into())
            .spawn(move || produce_jobs(&p, &c, Batch { topic: &topic, run: &r, tag: 'm', n: jobs, seq_base: base, texts: &kinds, cascade }))
            .map_err(|e| e.to_string())?;
        let r = wait_finals(&progress, |p| p.meas_done.load(Relaxed), a.jobs as u64, limit, a.stall_timeout, "measured");
        let produced = prod.join().map_err(|_| "producer thread panicked".to_string())?;
        (cpu_a, redis_a, produced, r)
    };
    let cpu_b = cpu_snap(&watched);
    let (in_flight, timeline) = timeline.finish();
    let redis_b = redis_cmdstats(&redis_url);
    if let Err(e) = &all_final_at {
        say!("{e}");
        failure = Some(e.clone());
    }
    // Late duplicates would show up now.
    std::thread::sleep(Duration::from_secs(3));

    // Memory and metrics while the daemons still run.
    let mut daemon_json = Vec::new();
    let mut metrics_sum: BTreeMap<&str, f64> = BTreeMap::new();
    for d in &daemons {
        let hwm = proc_status_kb(d.pid, "VmHWM").unwrap_or(0);
        let text = d.metrics_text();
        for m in [
            "sendgate_jobs_consumed_total",
            "sendgate_reports_total",
            "sendgate_provider_requests_total",
            "sendgate_receipts_total",
            "sendgate_submits_ambiguous_total",
            "sendgate_jobs_rejected_at_ingest_total",
        ] {
            *metrics_sum.entry(m).or_default() += metric_sum(&text, m);
        }
        daemon_json.push(json!({"instance": d.name, "pid": d.pid, "peak_rss_mb": mb(hwm), "log": d.log.display().to_string()}));
    }
    let loadtest_hwm = proc_status_kb(std::process::id(), "VmHWM").unwrap_or(0);
    let services_rss: Vec<Value> = watched
        .list()
        .iter()
        .filter(|(l, _)| l == "tansu" || l == "redis")
        .map(
            |(l, p)| json!({"process": l, "rss_mb": mb(proc_status_kb(*p, "VmRSS").unwrap_or(0)), "peak_rss_mb": mb(proc_status_kb(*p, "VmHWM").unwrap_or(0))}),
        )
        .collect();

    // Jobs still without a final: what does the daemon's own history (GET /v1/jobs/{id}) say?
    let missing: Vec<usize> = progress.meas_seen.iter().enumerate().filter(|(_, s)| !s.load(Relaxed)).map(|(i, _)| i).collect();
    let mut missing_history = serde_json::Map::new();
    for &i in missing.iter().take(10) {
        let id = format!("{run}-m{i}");
        let events: Vec<Value> = daemons
            .iter()
            .filter_map(|d| http_get(d.api?, &format!("/v1/jobs/{id}")))
            .filter(|(st, _)| *st == 200)
            .filter_map(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .flat_map(|v| {
                let list = v.get("events").cloned().unwrap_or(v);
                list.as_array().cloned().unwrap_or_default()
            })
            .map(|e| json!(format!("{}{}", e["event"].as_str().unwrap_or("?"), if e["final"] == json!(true) { " (final)" } else { "" })))
            .collect();
        missing_history.insert(id, json!(events));
    }
    if !missing.is_empty() {
        say!("{} jobs have no final yet; the daemons' GET /v1/jobs/{{id}} says: {}", missing.len(), Value::Object(missing_history.clone()));
    }

    // SIGTERM one after another (Tansu can wedge a group whose members all leave at once).
    let mut clean = true;
    for (d, j) in daemons.iter_mut().zip(daemon_json.iter_mut()) {
        let (code, secs) = d.terminate(Duration::from_secs(60));
        say!("{} exited with {code:?} {secs:.1} s after SIGTERM", d.name);
        clean &= code == Some(0);
        j["exit_code"] = json!(code);
        j["exit_after_sigterm_s"] = json!(round(secs, 2));
    }
    progress.stop.store(true, Relaxed);
    let mut tally = reader.join().map_err(|_| "reader thread panicked".to_string())?;
    let rss = sampler.finish();
    // Reports missing at the end: read the whole topic again with a fresh group, to tell a
    // record the reader missed from one the topic does not have.
    let still_missing: Vec<usize> = tally.meas.iter().enumerate().filter(|(_, c)| **c == 0).map(|(i, _)| i).collect();
    let reread = if still_missing.is_empty() {
        Value::Null
    } else {
        say!("re-reading {} to look for the {} missing finals", names.topics.reports, still_missing.len());
        reread_finals(&brokers, &names.topics.reports, &run, &still_missing)
    };
    let sim_stats = sim.stats();
    rt.block_on(sim.shutdown());

    // Verdict.
    let zero = tally.meas.iter().filter(|&&c| c == 0).count();
    let many = tally.meas.iter().filter(|&&c| c > 1).count();
    let warm_bad = tally.warm.iter().filter(|&&c| c != 1).count();
    let examples_zero: Vec<String> = tally.meas.iter().enumerate().filter(|(_, c)| **c == 0).take(5).map(|(i, _)| format!("{run}-m{i}")).collect();
    let examples_many: Vec<String> = tally.meas.iter().enumerate().filter(|(_, c)| **c > 1).take(5).map(|(i, _)| format!("{run}-m{i}")).collect();
    let pass = zero == 0 && many == 0 && warm_bad == 0 && failure.is_none();

    let end_us = if tally.last_final_us > 0 { tally.last_final_us } else { unix_us() };
    let mut result = json!({
        "mode": if a.backlog { "backlog" } else { "live" },
        "run": run,
        "jobs": a.jobs,
        "warmup_jobs": warm_n,
        "knobs": {
            "instances": a.instances, "partitions": a.partitions, "binds": a.binds, "window": a.window,
            "max_in_flight": a.max_in_flight, "batch_size": a.batch_size, "texts": a.texts,
            "receipt_delay_ms": a.receipt_delay.as_millis() as u64,
            "receipt_timeout_s": a.receipt_timeout.as_secs(), "set": a.set,
        },
        "daemons_ready_s": round(ready_s, 2),
        "machine_busy_cores_before": round(busy, 2),
        "produce": {
            "seconds": round((produced.last_us - produced.first_us) as f64 / 1e6, 2),
            "rate_per_s": round(produced.n as f64 / ((produced.acked_us.max(produced.first_us + 1) - produced.first_us) as f64 / 1e6), 0),
            "acked_after_s": round((produced.acked_us - produced.first_us) as f64 / 1e6, 2),
            "delivery_failures": counts.failed.load(Relaxed),
            "last_error": counts.last_error.lock().unwrap().clone(),
        },
        "finals": {
            "jobs_with_0": zero, "jobs_with_more_than_1": many,
            "examples_0": examples_zero, "examples_more_than_1": examples_many,
            "warmup_jobs_not_exactly_1": warm_bad,
        },
        "invariant": if pass { "PASS" } else { "FAIL" },
        "missing_finals_history": missing_history,
        "missing_finals_reread": reread,
        "failure": failure,
        "daemons": daemon_json,
        "loadtest_peak_rss_mb": mb(loadtest_hwm),
        "services": services_rss,
        "rss_sampled_max_mb": rss.iter().map(|(k, m)| (k.clone(), json!(mb(*m)))).collect::<serde_json::Map<_, _>>(),
        "cpu": cpu_report(&cpu_a, &cpu_b, tck, a.jobs),
        "redis_commands": redis_report(&redis_a, &redis_b, a.jobs),
        "reports": {
            "records": tally.records, "events": tally.events, "foreign": tally.foreign,
            "unparsable": tally.unparsable, "consumer_errors": tally.consumer_errors, "last_error": tally.last_error,
        },
        "simulator": {
            "submit_sm": sim_stats.submit_sm, "messages": sim_stats.messages,
            "receipts_sent": sim_stats.receipts_sent, "binds": sim_stats.binds,
        },
        "daemon_metrics": metrics_sum,
        "jobs_in_flight": in_flight,
        "timeline_1s": timeline,
        "clean_exit": clean,
    });
    if a.backlog {
        let from_start = (end_us.saturating_sub(daemons_spawned_us)) as f64 / 1e6;
        let from_first = (end_us.saturating_sub(tally.first_final_us.max(daemons_spawned_us))) as f64 / 1e6;
        result["drain"] = json!({
            "from_daemon_start_s": round(from_start, 2),
            "jobs_per_s_from_daemon_start": round(a.jobs as f64 / from_start.max(1e-9), 0),
            "from_first_final_s": round(from_first, 2),
            "jobs_per_s_from_first_final": round(a.jobs as f64 / from_first.max(1e-9), 0),
        });

        let peak = daemons_peak(&result);
        result["rss_target_256mb"] = json!(if peak < 256.0 { "PASS" } else { "FAIL" });
    } else {
        let secs = (end_us.saturating_sub(produced.first_us)) as f64 / 1e6;
        result["end_to_end"] = json!({
            "seconds": round(secs, 2),
            "jobs_per_s": round(a.jobs as f64 / secs.max(1e-9), 0),
            "basis": "first job produced -> last job's first final report consumed",
        });
        let mut accept: Vec<i64> = Vec::new();
        let mut receipt: Vec<i64> = Vec::new();
        for i in 0..tally.meas.len() {
            let (t0, acc, fin) = (tally.t0[i], tally.acc_at[i], tally.fin_at[i]);
            if t0 != 0 && acc != 0 {
                accept.push(acc - t0);
            }
            if acc != 0 && fin != 0 {
                receipt.push(fin - acc);
            }
        }
        let acc_secs = (tally.last_accepted_us.saturating_sub(produced.first_us)) as f64 / 1e6;
        result["stages"] = json!({
            "accepted_jobs": tally.accepted,
            "accepted_per_s": round(tally.accepted as f64 / acc_secs.max(1e-9), 0),
            "accepted_basis": "first job produced -> last job's `accepted` consumed",
            "t0_to_accepted_at_ms": percentiles_ms(&mut accept),
            "accepted_at_to_final_at_ms": percentiles_ms(&mut receipt),
        });
        result["latency_ms"] = json!({
            "consume_minus_t0": percentiles_ms(&mut tally.lat_consume),
            "report_at_minus_t0": percentiles_ms(&mut tally.lat_at),
            "basis": "consume_minus_t0: when this process read the final report minus meta.t0 (includes the reports-topic hop); report_at_minus_t0: the final report's `at` minus meta.t0",
        });
    }
    if a.json {
        println!("{}", serde_json::to_string(&result).expect("json"));
    } else {
        print_summary(&result);
    }
    Ok(pass && clean)
}

fn daemons_peak(r: &Value) -> f64 {
    r["daemons"].as_array().map(|v| v.iter().filter_map(|d| d["peak_rss_mb"].as_f64()).fold(0.0, f64::max)).unwrap_or(0.0)
}

fn print_summary(r: &Value) {
    let k = &r["knobs"];
    println!("sendgate Kafka load test ({} mode), run {}", r["mode"].as_str().unwrap_or(""), r["run"].as_str().unwrap_or(""));
    println!(
        "  knobs: instances={} partitions={} binds={} window={} max_in_flight={} batch_size={} texts={} receipt_delay={}ms receipt_timeout={}s set={}",
        k["instances"],
        k["partitions"],
        k["binds"],
        k["window"],
        k["max_in_flight"],
        k["batch_size"],
        k["texts"],
        k["receipt_delay_ms"],
        k["receipt_timeout_s"],
        k["set"]
    );
    println!("  jobs: {}  (warm-up {})  daemons ready after {} s", r["jobs"], r["warmup_jobs"], r["daemons_ready_s"]);
    let p = &r["produce"];
    println!("  produce: {} jobs/s, all acknowledged after {} s, delivery failures {}", p["rate_per_s"], p["acked_after_s"], p["delivery_failures"]);
    if let Some(e) = r.get("end_to_end") {
        println!("  END TO END: {} jobs/s ({} s, {})", e["jobs_per_s"], e["seconds"], e["basis"].as_str().unwrap_or(""));
        let l = &r["latency_ms"];
        for (name, key) in [("consume - t0", "consume_minus_t0"), ("report.at - t0", "report_at_minus_t0")] {
            let v = &l[key];
            println!("  latency ({name}): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms", v["p50"], v["p90"], v["p99"], v["max"]);
        }
    }
    if let Some(st) = r.get("stages") {
        let (a, f) = (&st["t0_to_accepted_at_ms"], &st["accepted_at_to_final_at_ms"]);
        println!(
            "  accepted events: {} jobs/s; t0 -> accepted.at p50 {} ms p99 {} ms; accepted.at -> final.at p50 {} ms p99 {} ms",
            st["accepted_per_s"], a["p50"], a["p99"], f["p50"], f["p99"]
        );
    }
    if let Some(d) = r.get("drain") {
        println!(
            "  BACKLOG DRAIN: {} jobs/s from daemon start ({} s); {} jobs/s from first final ({} s)",
            d["jobs_per_s_from_daemon_start"], d["from_daemon_start_s"], d["jobs_per_s_from_first_final"], d["from_first_final_s"]
        );
    }
    for d in r["daemons"].as_array().into_iter().flatten() {
        println!(
            "  {} (pid {}): peak RSS {} MB, exit code {} ({} s after SIGTERM)",
            d["instance"].as_str().unwrap_or(""),
            d["pid"],
            d["peak_rss_mb"],
            d["exit_code"],
            d["exit_after_sigterm_s"]
        );
    }
    for (name, g) in r["jobs_in_flight"].as_object().into_iter().flatten() {
        println!("  {name} sendgate_jobs_in_flight (sampled each second): max {} mean {}", g["max"], g["mean"]);
    }
    let tl = &r["timeline_1s"];
    if let (Some(cols), Some(rows)) = (tl["columns"].as_array(), tl["rows"].as_array()) {
        if !rows.is_empty() {
            let head: Vec<&str> = cols.iter().filter_map(|c| c.as_str()).collect();
            println!("  timeline (12 of {} one-second samples): {}", rows.len(), head.join(" | "));
            let step = (rows.len() / 12).max(1);
            for row in rows.iter().step_by(step).chain(rows.last()) {
                let v: Vec<String> = row.as_array().into_iter().flatten().map(|x| x.to_string()).collect();
                println!("    {}", v.join(" | "));
            }
        }
    }
    if let Some(t) = r.get("rss_target_256mb") {
        println!("  daemon RSS < 256 MB: {}", t.as_str().unwrap_or(""));
    }
    println!("  loadtest process (simulator + producer + reader): peak RSS {} MB", r["loadtest_peak_rss_mb"]);
    for s in r["services"].as_array().into_iter().flatten() {
        println!("  {}: RSS {} MB (peak {} MB)", s["process"].as_str().unwrap_or(""), s["rss_mb"], s["peak_rss_mb"]);
    }
    let c = &r["cpu"];
    println!(
        "  CPU over the measured window ({} s wall; machine {}% busy = {} of {} cores; irq/softirq {} cores; processes not listed here {} cores):",
        c["wall_s"], c["machine_busy_pct"], c["machine_busy_cores"], c["cpus"], c["irq_softirq_cores"], c["other_processes_cores"]
    );
    for p in c["processes"].as_array().into_iter().flatten() {
        let threads: Vec<String> =
            p["threads"].as_array().into_iter().flatten().map(|t| format!("{} {}", t["thread"].as_str().unwrap_or(""), t["cpu_s"])).collect();
        println!(
            "    {:<36} {:>7} s = {:>5} cores = {:>6} us/job | {}",
            p["process"].as_str().unwrap_or(""),
            p["cpu_s"],
            p["cores"],
            p["cpu_us_per_job"],
            threads.join(", ")
        );
    }
    println!(
        "    all listed: {} us CPU per job -> {} jobs/s would use every core of this machine",
        c["listed_cpu_us_per_job"], c["cpu_bound_ceiling_jobs_per_s"]
    );
    let rc = &r["redis_commands"];
    let cmds: Vec<String> = rc["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .take(8)
        .map(|c| format!("{} {}/job {}us/call", c["cmd"].as_str().unwrap_or(""), c["per_job"], c["us_per_call"]))
        .collect();
    println!("  redis: {} commands/job (commands inside scripts included) | {}", rc["calls_per_job"], cmds.join(", "));
    let s = &r["simulator"];
    println!("  simulator: {} submit_sm, {} messages, {} receipts", s["submit_sm"], s["messages"], s["receipts_sent"]);
    println!("  report records {} events {}", r["reports"]["records"], r["reports"]["events"]);
    let f = &r["finals"];
    println!(
        "  jobs with 0 finals: {}   jobs with >1 finals: {}   (warm-up not exactly 1: {})",
        f["jobs_with_0"], f["jobs_with_more_than_1"], f["warmup_jobs_not_exactly_1"]
    );
    if let Some(e) = r["failure"].as_str() {
        println!("  failure: {e}");
    }
    println!("  INVARIANT (every job exactly one final): {}", r["invariant"].as_str().unwrap_or(""));
}
