//! The real services the production-mode tests run against (started by `scripts/services`),
//! and `sendgate run` as a child process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sendgate::report::Report;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the services with `scripts/services start` and `eval \"$(scripts/services env)\"` (scripts/test does both)")
    })
}

pub fn brokers() -> String {
    env("SENDGATE_TEST_KAFKA_BROKERS")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Creates a topic with the broker's own CLI (Tansu), so tests never share topics.
pub fn create_topic(name: &str, partitions: u32) {
    let out = Command::new(env("SENDGATE_TEST_TANSU_BIN"))
        .args(["topic", "create", "--broker", &format!("tcp://{}", brokers()), "--partitions", &partitions.to_string(), name])
        .output()
        .expect("tansu runs");
    assert!(out.status.success(), "topic create {name}: {}", String::from_utf8_lossy(&out.stderr));
}

pub struct Topics {
    pub jobs: String,
    pub reports: String,
    pub dlq: String,
    pub inbound: String,
}

impl Topics {
    pub fn create(partitions: u32) -> Self {
        let base = unique("t");
        let t = Self { jobs: format!("{base}.jobs"), reports: format!("{base}.reports"), dlq: format!("{base}.dlq"), inbound: format!("{base}.inbound") };
        create_topic(&t.jobs, partitions);
        create_topic(&t.reports, partitions);
        create_topic(&t.dlq, 1);
        create_topic(&t.inbound, 1);
        t
    }
}

pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "5")
        .set("message.max.bytes", (8 * 1024 * 1024).to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Produces `(key, payload)` records and waits for every confirmation.
pub async fn produce(p: &FutureProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    for chunk in records.chunks(10_000) {
        let mut futs = Vec::with_capacity(chunk.len());
        for (k, v) in chunk {
            loop {
                match p.send_result(FutureRecord::to(topic).key(k).payload(v)) {
                    Ok(f) => {
                        futs.push(f);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        for f in futs {
            f.await.expect("delivery future").expect("broker confirmed");
        }
    }
}

/// A record as the test consumer saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads a topic from the start in the background, collecting everything.
pub struct Collector {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub fn start(topic: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique("test-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "50")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            // Tansu's fetch can skip a batch being written (support/offsets.rs): read it again.
            let mut gaps = super::offsets::Gaps::default();
            loop {
                if let Ok(m) = consumer.recv().await {
                    match gaps.step(m.partition(), m.offset()) {
                        super::offsets::Step::Take => {}
                        super::offsets::Step::Seen => continue,
                        super::offsets::Step::SeekBack(o) => {
                            let (topic, partition) = (m.topic().to_owned(), m.partition());
                            drop(m);
                            if let Err(e) = consumer.seek(&topic, partition, rdkafka::Offset::Offset(o), Duration::from_secs(5)) {
                                eprintln!("test reader: seeking {topic}/{partition} back to {o}: {e}");
                            }
                            continue;
                        }
                    }
                    let headers = m
                        .headers()
                        .map(|h| h.iter().map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
                        .unwrap_or_default();
                    s.lock().unwrap().push(Seen { key: m.key().unwrap_or_default().to_vec(), payload: m.payload().unwrap_or_default().to_vec(), headers });
                }
            }
        });
        Self { seen, task }
    }

    pub fn reports(&self) -> Vec<Report> {
        self.seen.lock().unwrap().iter().map(|s| serde_json::from_slice(&s.payload).expect("report JSON")).collect()
    }

    /// Final events per job id.
    pub fn finals(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.reports().into_iter().filter(|r| r.is_final) {
            *m.entry(r.job_id).or_insert(0) += 1;
        }
        m
    }

    /// Waits until `n` distinct jobs have a final event (or panics after `limit`).
    pub async fn wait_finals(&self, n: usize, limit: Duration) -> HashMap<String, usize> {
        let deadline = Instant::now() + limit;
        // Only the reports new since the last look are parsed, outside the lock: parsing all of
        // them every 100 ms (tens of thousands in a long test) under the lock held a runtime
        // thread and blocked the reader on the other, starving whatever else this process runs
        // (the SMPP simulator, whose arrival times then came in bursts on a loaded machine).
        let (mut f, mut read) = (HashMap::new(), 0);
        loop {
            let fresh: Vec<Vec<u8>> = {
                let seen = self.seen.lock().unwrap();
                seen[read..].iter().map(|s| s.payload.clone()).collect()
            };
            read += fresh.len();
            for p in fresh {
                let r: Report = serde_json::from_slice(&p).expect("report JSON");
                if r.is_final {
                    *f.entry(r.job_id).or_insert(0) += 1;
                }
            }
            if f.len() >= n {
                return f;
            }
            if Instant::now() >= deadline {
                // Leave the caller's invariant check to say which jobs and what they got.
                eprintln!("only {} of {n} jobs final after {limit:?}", f.len());
                return f;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `sendgate run` as a child process.
pub struct Daemon {
    pub child: Child,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: PathBuf) -> Self {
        Self::start_with(config, log, &[])
    }

    /// [`Daemon::start`] with extra environment (`SENDGATE_FAILPOINTS`, say).
    pub fn start_with(config: &Path, log: PathBuf, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sendgate"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rdkafka=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sendgate starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
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
        });
        let (api, metrics) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("sendgate did not start; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
        Self { child, api: api.parse().unwrap(), metrics: metrics.parse().unwrap(), log }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM and wait for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal("-TERM");
        self.child.wait().unwrap().code()
    }

    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to end by itself (a failpoint killed it); panics after `limit`.
    pub async fn wait_dead(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "still alive after {limit:?}; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One metric's value summed over its series (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = super::request(self.metrics, "GET", "/metrics", None, bytes::Bytes::new()).await;
        let text = body.as_str().map(str::to_owned).unwrap_or_else(|| body.to_string());
        text.lines().filter(|l| l.starts_with(name) && !l.starts_with('#')).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    pub async fn ready(&self) -> u16 {
        super::request(self.api, "GET", "/readyz", None, bytes::Bytes::new()).await.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's config for a test: given topics, group, Redis prefix, SMSC address.
pub fn run_config(dir: &Path, name: &str, topics: &Topics, group: &str, redis_url: &str, prefix: &str, smsc: SocketAddr) -> PathBuf {
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

[providers.smsc-a]
kind = "smpp"
address = "{smsc}"
system_id = "sendgate"
password = "test"
binds = 2
window = 128
receipt_timeout = "120s"
response_timeout = "5s"
reconnect_min = "100ms"
reconnect_max = "1s"

[kafka]
brokers = "{brokers}"
group_id = "{group}"
jobs_topic = "{jobs}"
reports_topic = "{reports}"
dlq_topic = "{dlq}"
inbound_topic = "{inbound}"
session_timeout = "6s"
commit_interval = "200ms"

[opt_out]
default_tenant = "acme"

[redis]
url = "{redis_url}"
prefix = "{prefix}"
instance_id = "{name}"
heartbeat_ttl = "3s"
"#,
        brokers = brokers(),
        jobs = topics.jobs,
        reports = topics.reports,
        dlq = topics.dlq,
        inbound = topics.inbound,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
