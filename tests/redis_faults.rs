//! Redis faults injected on purpose (issue 10): the daemon talks to the real Redis
//! (`SENDGATE_TEST_REDIS_URL`) through `support::fault_proxy::FaultProxy`, which drops the
//! reply to a chosen request, black-holes replies, or takes Redis away for a while, in the
//! middle of the policy chain, of receipt settling and of the receipt-deadline sweep. Every job
//! must still get exactly one final report, and no message may reach the SMSC twice.
//!
//! The first tests check the proxy itself against the real Redis.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::fault_proxy::{frame_len, Action, FaultProxy, Match};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn redis_url() -> String {
    support::services::env("SENDGATE_TEST_REDIS_URL")
}

// ------------------------------------------------------------------------------------------
// A raw RESP client: exactly one connection, no reconnects, no hidden commands.

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        Ok(Self { s: TcpStream::connect(addr).await?, buf: Vec::new() })
    }

    async fn direct() -> Self {
        let url = redis_url();
        let hostport = url.trim_start_matches("redis://").split('/').next().unwrap().to_owned();
        Self { s: TcpStream::connect(hostport).await.expect("redis"), buf: Vec::new() }
    }

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    async fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        self.s.write_all(&Self::encode(args)).await
    }

    /// One whole reply; an error on EOF.
    async fn read(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(n) = frame_len(&self.buf, false).expect("RESP") {
                return Ok(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn cmd(&mut self, args: &[&str]) -> std::io::Result<Vec<u8>> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args).await?;
        self.read().await
    }

    /// A reply within `limit`, or `None` if none came (the connection stays usable only as
    /// far as the caller knows what it is doing).
    async fn read_within(&mut self, limit: Duration) -> Option<std::io::Result<Vec<u8>>> {
        tokio::time::timeout(limit, self.read()).await.ok()
    }
}

fn key(name: &str) -> String {
    format!("sgproxy:{:08x}:{name}", rand::random::<u32>())
}

#[test]
fn resp_framing() {
    let cases: &[(&[u8], Option<usize>)] = &[
        (b"+OK\r\n", Some(5)),
        (b"+OK\r", None),
        (b":12\r\n:1\r\n", Some(5)),
        (b"$3\r\nabc\r\n+x", Some(9)),
        (b"$3\r\nab", None),
        (b"$3\r\nabc\r", None),
        (b"$-1\r\n", Some(5)),
        (b"*2\r\n$1\r\na\r\n:1\r\n", Some(15)),
        (b"*2\r\n$1\r\na\r\n", None),
        (b"*-1\r\n", Some(5)),
        (b"*0\r\n", Some(4)),
        (b"%1\r\n+k\r\n+v\r\n", Some(12)),
        (b"*1\r\n*1\r\n$2\r\nab\r\n", Some(16)),
        (b"$4\r\na\r\nb\r\n", Some(10)),
        (b"-ERR x\r\n", Some(8)),
        (b"_\r\n", Some(3)),
        (b"|1\r\n+a\r\n:1\r\n+v\r\n", Some(16)),
    ];
    for (buf, want) in cases {
        assert_eq!(frame_len(buf, false).unwrap(), *want, "{:?}", String::from_utf8_lossy(buf));
        // Every prefix of a complete value is incomplete.
        if let Some(n) = want {
            for cut in 0..*n {
                assert_eq!(frame_len(&buf[..cut], false).unwrap(), None, "{:?} cut at {cut}", String::from_utf8_lossy(buf));
            }
        }
    }
    assert_eq!(frame_len(b"PING\r\n", true).unwrap(), Some(6));
    assert!(frame_len(b"PING\r\n", false).is_err(), "a reply is never inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passes_commands_big_values_and_pipelines_through() {
    let proxy = FaultProxy::start(&redis_url()).await;
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n");
    // A value far bigger than one read: framed across many chunks.
    let k = key("big");
    let big: String = (0..3 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert_eq!(c.cmd(&["SET", &k, &big]).await.unwrap(), b"+OK\r\n");
    let got = c.cmd(&["GET", &k]).await.unwrap();
    assert_eq!(got.len(), big.len() + format!("${}\r\n\r\n", big.len()).len());
    // 1,000 pipelined requests in one write: 1,000 replies, in order.
    let k = key("n");
    let mut wire = Vec::new();
    for _ in 0..1000 {
        wire.extend(Raw::encode(&[b"INCR", k.as_bytes()]));
    }
    c.s.write_all(&wire).await.unwrap();
    for i in 1..=1000 {
        assert_eq!(c.read().await.unwrap(), format!(":{i}\r\n").into_bytes());
    }
    // redis-rs, as the daemon uses it: one multiplexed connection, concurrent callers.
    let client = redis::Client::open(proxy.url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let k2 = key("mux");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut conn = conn.clone();
        let k2 = k2.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = redis::pipe();
            p.cmd("HSET").arg(&k2).arg(i).arg(i * 2).cmd("HGET").arg(&k2).arg(i);
            let (_, v): (i64, i64) = p.query_async(&mut conn).await.unwrap();
            assert_eq!(v, i * 2);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = proxy.stats();
    assert_eq!(s.requests, s.replies, "{s:?}");
    assert!(s.requests >= 1000 + 400, "{s:?}");
    assert_eq!((s.replies_dropped, s.replies_blackholed, s.refused), (0, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_drops_the_reply_to_a_matching_request_after_redis_ran_it() {
    let proxy = FaultProxy::start(&redis_url()).await;
    let k = key("marker");
    let rule = proxy.drop_reply(Match::request([k.as_bytes()]), 1);
    let mut bystander = Raw::connect(proxy.addr()).await.unwrap();
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n");
    let lost = c.cmd(&["SET", &k, "ran"]).await;
    assert!(lost.is_err(), "the reply must not arrive: {lost:?}");
    assert_eq!(rule.fired(), 1);
    assert!(rule.log()[0].contains(&format!("SET {k} ran")), "{:?}", rule.log());
    // Redis ran it.
    assert_eq!(Raw::direct().await.cmd(&["GET", &k]).await.unwrap(), b"$3\r\nran\r\n");
    // Only that connection is gone; the rule fired once and is spent.
    assert_eq!(bystander.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n");
    let mut again = Raw::connect(proxy.addr()).await.unwrap();
    assert_eq!(again.cmd(&["SET", &k, "twice"]).await.unwrap(), b"+OK\r\n");
    assert_eq!(proxy.stats().replies_dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rules_skip_match_replies_and_repeat() {
    let proxy = FaultProxy::start(&redis_url()).await;
    // The third request naming the key loses its reply.
    let k = key("skip");
    let third = proxy.rule(Match::request([k.as_bytes()]), 2, 1, Action::Drop);
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    assert!(c.cmd(&["SET", &k, "1"]).await.is_ok());
    assert!(c.cmd(&["GET", &k]).await.is_ok());
    assert!(c.cmd(&["GET", &k]).await.is_err());
    assert_eq!(third.fired(), 1);
    // A reply that carries a pattern.
    let k = key("reply");
    let by_reply = proxy.drop_reply(Match::reply([b"secret-value".as_slice()]), 1);
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.cmd(&["SET", &k, "secret-value"]).await.unwrap(), b"+OK\r\n", "the request carries it, the reply does not");
    assert!(c.cmd(&["GET", &k]).await.is_err());
    assert_eq!(by_reply.fired(), 1);
    proxy.clear_rules();
    // Every 3rd request, twice.
    let every = proxy.drop_every(3, 2);
    let mut outcomes = Vec::new();
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    for _ in 0..9 {
        match c.cmd(&["PING"]).await {
            Ok(_) => outcomes.push(true),
            Err(_) => {
                outcomes.push(false);
                c = Raw::connect(proxy.addr()).await.unwrap();
            }
        }
    }
    assert_eq!(outcomes, [true, true, false, true, true, false, true, true, true]);
    assert_eq!(every.fired(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_delays_replies_in_order_without_serialising_them() {
    let proxy = FaultProxy::start(&redis_url()).await;
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    proxy.delay(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(c.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n");
    assert!(t.elapsed() >= Duration::from_millis(200), "{:?}", t.elapsed());
    let k = key("order");
    let mut wire = Vec::new();
    for _ in 0..50 {
        wire.extend(Raw::encode(&[b"INCR", k.as_bytes()]));
    }
    let t = Instant::now();
    c.s.write_all(&wire).await.unwrap();
    for i in 1..=50 {
        assert_eq!(c.read().await.unwrap(), format!(":{i}\r\n").into_bytes());
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(3), "50 pipelined replies took {took:?}: a delay, not 50 of them");
    proxy.delay(Duration::ZERO);
    let t = Instant::now();
    c.cmd(&["PING"]).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(150), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_blackholes_replies_then_cuts_the_connections_that_lost_one() {
    let proxy = FaultProxy::start(&redis_url()).await;
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    let mut idle = Raw::connect(proxy.addr()).await.unwrap();
    assert!(c.cmd(&["PING"]).await.is_ok() && idle.cmd(&["PING"]).await.is_ok());
    let k = key("bh");
    let t = Instant::now();
    proxy.blackhole_replies(Duration::from_millis(800));
    c.send(&[b"SET", k.as_bytes(), b"ran"]).await.unwrap();
    assert!(c.read_within(Duration::from_millis(300)).await.is_none(), "no reply inside the black hole");
    assert_eq!(Raw::direct().await.cmd(&["GET", &k]).await.unwrap(), b"$3\r\nran\r\n", "the request reached Redis");
    // When the hole ends, the connection that lost a reply is cut (it is out of step).
    let end = c.read_within(Duration::from_secs(5)).await.expect("cut when the hole ends");
    assert!(end.is_err(), "{end:?}");
    assert!(t.elapsed() >= Duration::from_millis(700), "{:?}", t.elapsed());
    // A connection that lost nothing stays.
    assert_eq!(idle.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n");
    let s = proxy.stats();
    assert_eq!(s.replies_blackholed, 1, "{s:?}");
    // And a rule can open a hole on the reply it fires on.
    let k = key("bh2");
    proxy.rule(Match::request([k.as_bytes()]), 0, 1, Action::BlackholeFrom(Duration::from_millis(500)));
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    c.send(&[b"SET", k.as_bytes(), b"x"]).await.unwrap();
    assert!(c.read_within(Duration::from_millis(200)).await.is_none());
    assert!(c.read_within(Duration::from_secs(5)).await.expect("cut").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cuts_every_connection_and_refuses_new_ones_for_a_while() {
    let proxy = FaultProxy::start(&redis_url()).await;
    let mut a = Raw::connect(proxy.addr()).await.unwrap();
    let mut b = Raw::connect(proxy.addr()).await.unwrap();
    assert!(a.cmd(&["PING"]).await.is_ok() && b.cmd(&["PING"]).await.is_ok());
    proxy.cut();
    assert!(a.read_within(Duration::from_secs(5)).await.expect("closed").is_err());
    assert!(b.read_within(Duration::from_secs(5)).await.expect("closed").is_err());
    let mut c = Raw::connect(proxy.addr()).await.unwrap();
    assert_eq!(c.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n", "new connections work after a cut");

    let t = Instant::now();
    proxy.refuse_for(Duration::from_millis(600));
    let mut refused = 0;
    loop {
        let ok = match Raw::connect(proxy.addr()).await {
            Ok(mut r) => r.cmd(&["PING"]).await.is_ok(),
            Err(_) => false,
        };
        if ok {
            break;
        }
        refused += 1;
        assert!(t.elapsed() < Duration::from_secs(5), "still refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0 && t.elapsed() >= Duration::from_millis(550), "{refused} refused in {:?}", t.elapsed());
    assert_eq!(c.cmd(&["PING"]).await.unwrap(), b"+PONG\r\n", "open connections untouched by refusing");

    // An outage right after a reply got through: that caller's next call fails.
    let k = key("pass");
    let rule = proxy.rule(Match::request([k.as_bytes()]), 0, 1, Action::PassThenOutage(Duration::from_millis(500)));
    assert_eq!(c.cmd(&["SET", &k, "1"]).await.unwrap(), b"+OK\r\n");
    assert_eq!(rule.fired(), 1);
    assert!(c.read_within(Duration::from_secs(5)).await.expect("cut").is_err());
    let mut during = Raw::connect(proxy.addr()).await.unwrap();
    assert!(during.cmd(&["PING"]).await.is_err(), "refused during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_faults_as_the_daemons_redis_client_sees_them() {
    // The daemon's client: ConnectionManager with a response timeout, reconnecting by itself.
    let proxy = FaultProxy::start(&redis_url()).await;
    let client = redis::Client::open(proxy.url()).unwrap();
    let cfg = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(1))).set_max_delay(Duration::from_millis(200));
    let mut conn = redis::aio::ConnectionManager::new_with_config(client, cfg).await.unwrap();
    let k = key("cm");
    let _: () = redis::cmd("SET").arg(&k).arg(1).query_async(&mut conn).await.unwrap();
    // A dropped reply: an I/O error (the command ran), then the manager reconnects.
    proxy.drop_reply(Match::request([k.as_bytes()]), 1);
    let e = redis::cmd("INCR").arg(&k).query_async::<i64>(&mut conn).await.unwrap_err();
    assert!(e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error(), "{e:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let v: i64 = loop {
        match redis::cmd("INCR").arg(&k).query_async(&mut conn).await {
            Ok(v) => break v,
            Err(_) => {
                assert!(Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(v, 3, "the INCR whose reply was lost ran");
    // A black hole: the response timeout fires.
    proxy.blackhole_replies(Duration::from_millis(1500));
    let t = Instant::now();
    let e = redis::cmd("INCR").arg(&k).query_async::<i64>(&mut conn).await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
}

/// Receipt settling's reply lost: the store retries under the same reply key and gets the
/// first run's answers back, not a second run's (whose mappings are consumed: all unmatched).
/// The stored reply keeps a final's job id and the retry reads its SentJob back from the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_settle_reply_is_answered_again_from_the_stored_reply() {
    use sendgate::report::{EventKind, Report};
    use sendgate::store::{mint_token, ClaimReq, Claims, History, PartOutcome, Receipts, SentJob, Settled};
    let proxy = FaultProxy::start(&redis_url()).await;
    let prefix = key("settle-replay:");
    let cfg = RedisConfig { url: proxy.url(), prefix: prefix.clone(), instance_id: Some("a".into()), heartbeat_ttl: Duration::from_secs(30) };
    let st = sendgate::store::RedisStore::connect(&cfg).await.expect("connect through the proxy");
    let ttl = Duration::from_secs(60);
    let sent = |id: &str, parts: &[&str]| SentJob {
        job_id: id.into(),
        tenant: "t".into(),
        channel: "sms".into(),
        to: "+4915112345678".into(),
        meta: Default::default(),
        provider: "p".into(),
        message_ids: parts.iter().map(|s| s.to_string()).collect(),
        segments: parts.len() as u32,
        charge: None,
        claim_until: None,
        step: None,
    };
    let jobs = [sent("one", &["rp-1"]), sent("two", &["rp-2a", "rp-2b"])];
    let tokens: Vec<String> = jobs.iter().map(|_| mint_token(st.owner())).collect();
    let reqs: Vec<ClaimReq> = jobs.iter().zip(&tokens).map(|(j, t)| ClaimReq { id: &j.job_id, token: t, src: None, plan: None }).collect();
    st.claim_ids(&reqs, ttl).await.unwrap();
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(100);
    let with: Vec<(SentJob, chrono::DateTime<chrono::Utc>, String)> = jobs.iter().cloned().zip(tokens).map(|(j, t)| (j, deadline, t)).collect();
    assert_eq!(st.track_sent(&with, ttl).await.unwrap(), [true, true]);
    let now = chrono::Utc::now();
    let accepted: Vec<Report> = jobs.iter().map(|j| Report::from_parts(&j.job_id, "t", "sms", &j.to, &j.meta, EventKind::Accepted, now)).collect();
    st.record_events(&accepted, ttl).await.unwrap();

    let rule = proxy.drop_reply(Match::request([b"rp-2a".as_slice()]), 1);
    let receipts = [("p", "rp-1", PartOutcome::Delivered, None), ("p", "rp-2a", PartOutcome::Delivered, None), ("p", "rp-none", PartOutcome::Delivered, None)];
    let answers = st.settle_parts(&receipts, deadline).await.expect("retried until answered");
    assert_eq!(rule.fired(), 1, "the first reply was dropped: the answers are the replay's");
    match &answers[0] {
        Settled::Final { job, outcome } => assert_eq!((job.as_ref(), *outcome), (&jobs[0], PartOutcome::Delivered)),
        other => panic!("job one's only part delivered: final, got {other:?}"),
    }
    assert_eq!(answers[1..], [Settled::Pending, Settled::Unmatched]);
    // What was stored for the replay is the short form: no SentJob in it.
    let mut raw = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}reply:*")).query_async(&mut raw).await.unwrap();
    let mut stored = Vec::new();
    for k in &keys {
        let v: String = redis::cmd("GET").arg(k).query_async(&mut raw).await.unwrap();
        stored.push(v);
    }
    let settle = stored.iter().find(|v| v.contains("\"f\"")).unwrap_or_else(|| panic!("no stored settle reply among {stored:?}"));
    assert_eq!(settle, r#"["f","one","p","","u",""]"#);
    for k in keys.iter().chain(&[format!("{prefix}job:one"), format!("{prefix}job:two")]) {
        let _: i64 = redis::cmd("DEL").arg(k).query_async(&mut raw).await.unwrap();
    }
}

// ------------------------------------------------------------------------------------------
// The daemon through the proxy: `sendgate dev`'s pipeline in this process (HTTP ingest, the
// embedded SMSC simulator recording every message, reports to a JSONL file) with the Redis
// store, Redis reached through the proxy.

use sendgate::clock::{Clock, ManualClock};
use sendgate::config::RedisConfig;
use std::sync::Arc;
use support::audit::{self, Event};

struct Gw {
    h: support::Harness,
    proxy: FaultProxy,
    ticker: tokio::task::JoinHandle<()>,
    /// Job ids and recipients of this gateway's jobs carry these, so that rules can pick this
    /// test's requests out.
    tag: String,
    rcpt: String,
    ids: Vec<String>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// The harness's clock follows real time from t0 (so rechecks and leases come due as they
/// would), and a test can jump it ahead (receipt deadlines, confirm grace).
fn follow_real_time(clock: Arc<ManualClock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = Instant::now();
            clock.advance(chrono::Duration::from_std(now - last).unwrap());
            last = now;
        }
    })
}

impl Gw {
    async fn start(receipt_delay: Duration) -> Self {
        let proxy = FaultProxy::start(&redis_url()).await;
        let n: u32 = rand::random::<u32>() % 10_000;
        let tag = format!("rf{:08x}", rand::random::<u32>());
        let rcpt = format!("4915{n:04}");
        let url = proxy.url();
        let h = support::start(|cfg| {
            cfg.redis = Some(RedisConfig {
                url,
                // Nothing in the key names or the instance id may carry the tag: rules pick
                // requests out by it.
                prefix: format!("sgfault:{:08x}:", rand::random::<u32>()),
                instance_id: Some(format!("gw-{:08x}", rand::random::<u32>())),
                heartbeat_ttl: Duration::from_secs(3),
            });
            cfg.dev.smsc_sim.receipt_delay = receipt_delay;
        })
        .await;
        let ticker = follow_real_time(h.clock.clone());
        Self { h, proxy, ticker, tag, rcpt, ids: Vec::new() }
    }

    /// The patterns that pick this test's jobs out of requests: ids and recipients.
    fn ours(&self) -> Match {
        Match::request([self.tag.as_bytes(), self.rcpt.as_bytes()])
    }

    /// Posts `n` marketing jobs (the whole chain runs: dedup, expiry, opt-out, schedule,
    /// quiet hours) in one request; their texts carry their ids.
    async fn post_jobs(&mut self, n: usize) {
        let mut body = String::new();
        for i in 0..n {
            let id = format!("{}-{i}", self.tag);
            let job = serde_json::json!({
                "id": id, "tenant": "acme", "channel": "sms", "to": format!("+{}{i:04}", self.rcpt),
                "text": format!("fault test job {id}: hello"), "quiet_hours": false,
            });
            body += &job.to_string();
            body.push('\n');
            self.ids.push(id);
        }
        let (status, v) = self.h.post("/v1/jobs", "application/x-ndjson", body).await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["accepted"], n, "{v}");
    }

    fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(&self.h.reports_path).unwrap_or_default();
        support::complete_lines(&text).filter_map(|l| serde_json::from_str(l).ok()).filter_map(|v| Event::from_json(&v)).collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.event == kind && self.ids.contains(&e.job_id))
            .map(|e| e.job_id.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    async fn wait_accepted(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count("accepted") < self.ids.len() {
            assert!(Instant::now() < deadline, "only {} of {} jobs accepted: {:?}", self.count("accepted"), self.ids.len(), self.proxy.stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every job has a final, or nothing new was reported for `stall` (then the
    /// audit says what is missing).
    async fn wait_finals(&self, stall: Duration, limit: Duration) {
        let start = Instant::now();
        let (mut last_n, mut last_change) = (0, Instant::now());
        loop {
            let events = self.events();
            let finals: std::collections::HashSet<&str> = events.iter().filter(|e| e.is_final).map(|e| e.job_id.as_str()).collect();
            if self.ids.iter().all(|id| finals.contains(id.as_str())) {
                return;
            }
            if events.len() != last_n {
                (last_n, last_change) = (events.len(), Instant::now());
            }
            if last_change.elapsed() > stall || start.elapsed() > limit {
                eprintln!("giving up waiting for finals after {:?} ({} events)", start.elapsed(), events.len());
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn audit(&self) -> audit::Audit {
        let records: HashMap<String, u32> = self.ids.iter().map(|id| (id.clone(), 1)).collect();
        let msgs = self.h.app.sim.as_ref().expect("embedded simulator").messages();
        let smsc = audit::smsc_counts(msgs.iter().map(|m| m.text.as_str()), "fault test job ");
        audit::audit(&self.events(), &records, &smsc)
    }

    /// Panics with the audit and what the proxy did, if the contract was broken.
    fn assert_contract(&self, what: &str, fired: &[String]) {
        let a = self.audit();
        let problems = a.problems();
        if !problems.is_empty() {
            let mut msg = format!("{what}: the proxy lost the reply to {fired:?}\n{:?}\n", self.proxy.stats());
            msg += &audit::table(&a.rows());
            msg += &format!("  finals by kind: {:?}\n  events by kind: {:?}\n", a.finals_by_kind, a.events_by_kind);
            for p in &problems {
                msg += &format!("  - {p}\n");
            }
            panic!("{msg}");
        }
    }
}

/// How long the reports may stand still before a wait for finals gives up (the audit then
/// names what is missing): generous, as a loaded 2-core CI machine can pause a debug build.
const STALL: Duration = Duration::from_secs(20);
const LIMIT: Duration = Duration::from_secs(60);

/// The reply to the `k`-th request (1-based) that names one of this batch's jobs or recipients
/// is lost with its connection: the claim, the opt-out lookup, marking `submitting`, recording
/// the mappings, the history... whichever comes `k`-th.
async fn chain_reply_lost(k: usize) {
    let mut gw = Gw::start(Duration::from_millis(20)).await;
    let rule = gw.proxy.rule(gw.ours(), k - 1, 1, Action::Drop);
    gw.post_jobs(40).await;
    assert!(rule.wait_fired(1, Duration::from_secs(20)).await, "fewer than {k} requests named the jobs");
    eprintln!("request #{k} naming the jobs lost its reply: {:?}", rule.log());
    gw.wait_finals(STALL, LIMIT).await;
    // Late second finals or resends would show up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.assert_contract(&format!("reply lost for request #{k} naming the jobs"), &rule.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reply_lost_for_request_1_naming_the_jobs() {
    chain_reply_lost(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reply_lost_for_request_2_naming_the_jobs() {
    chain_reply_lost(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reply_lost_for_request_3_naming_the_jobs() {
    chain_reply_lost(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reply_lost_for_request_4_naming_the_jobs() {
    chain_reply_lost(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reply_lost_for_request_5_naming_the_jobs() {
    chain_reply_lost(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reply_lost_for_request_6_naming_the_jobs() {
    chain_reply_lost(6).await;
}

/// The same, but the reply never comes and the connection stays open: the client's response
/// timeout (5 s) fires, not a connection error.
async fn chain_blackholed(k: usize) {
    let mut gw = Gw::start(Duration::from_millis(20)).await;
    let rule = gw.proxy.rule(gw.ours(), k - 1, 1, Action::BlackholeFrom(Duration::from_secs(6)));
    gw.post_jobs(40).await;
    assert!(rule.wait_fired(1, Duration::from_secs(20)).await);
    gw.wait_finals(STALL + Duration::from_secs(6), LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.assert_contract(&format!("replies black-holed for 6 s from request #{k} naming the jobs"), &rule.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_blackholed_from_the_claim() {
    chain_blackholed(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_blackholed_from_the_step_after_the_claim() {
    chain_blackholed(2).await;
}

/// Receipts: the first reply that carries one of the jobs after all of them were accepted is
/// receipt settling's (it answers with the jobs it ended).
async fn settle_fault(action: Action) -> Gw {
    let mut gw = Gw::start(Duration::from_secs(3)).await;
    gw.post_jobs(40).await;
    gw.wait_accepted(Duration::from_secs(30)).await;
    assert_eq!(gw.count("delivered"), 0, "receipts came before the fault was armed: raise the receipt delay");
    let rule = gw.proxy.rule(Match::reply([gw.tag.as_bytes()]), 0, 1, action);
    assert!(rule.wait_fired(1, Duration::from_secs(20)).await, "no reply carried the jobs");
    eprintln!("fault on: {:?}", rule.log());
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_reply_lost() {
    let gw = settle_fault(Action::Drop).await;
    gw.wait_finals(STALL, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.assert_contract("receipt settling's reply lost", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_reply_blackholed() {
    let gw = settle_fault(Action::BlackholeFrom(Duration::from_secs(6))).await;
    gw.wait_finals(STALL + Duration::from_secs(6), LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.assert_contract("receipt settling's replies black-holed for 6 s", &[]);
}

/// Redis goes away right after settling answered, for longer than the store calls that
/// confirm the published finals keep trying (~13 s today); then well past the 30 s grace
/// after which an unconfirmed final is published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_then_a_16s_outage_publishes_each_final_once() {
    let gw = settle_fault(Action::PassThenOutage(Duration::from_secs(16))).await;
    outage_then_grace(&gw).await;
    gw.assert_contract("Redis gone 16 s right after receipt settling answered", &[]);
}

/// Waits out the outage the rule started, lets the daemon reconnect, then moves the clock past
/// the confirm grace and gives the sweep (every 1 s) three turns.
async fn outage_then_grace(gw: &Gw) {
    gw.wait_finals(STALL, LIMIT).await;
    // The outage: connections are refused until it ends.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        if let Ok(mut c) = Raw::connect(gw.proxy.addr()).await {
            if c.cmd(&["PING"]).await.is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the outage never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = gw.proxy.stats().replies;
    // The daemon is back on Redis (its heartbeat alone answers every 0.75 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.proxy.stats().replies < before + 3 {
        assert!(Instant::now() < deadline, "the daemon never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.h.clock.advance(chrono::Duration::seconds(31));
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// The receipt-deadline sweep: no receipt comes (the simulator holds them an hour), the clock
/// moves past the provider's receipt timeout (60 s), and the first reply carrying the jobs is
/// the sweep's.
async fn sweep_fault(action: Action) -> Gw {
    let mut gw = Gw::start(Duration::from_secs(3600)).await;
    gw.post_jobs(40).await;
    gw.wait_accepted(Duration::from_secs(30)).await;
    let rule = gw.proxy.rule(Match::reply([gw.tag.as_bytes()]), 0, 1, action);
    gw.h.clock.advance(chrono::Duration::seconds(61));
    assert!(rule.wait_fired(1, Duration::from_secs(20)).await, "no reply carried the jobs");
    eprintln!("fault on: {:?}", rule.log());
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_reply_lost() {
    let gw = sweep_fault(Action::Drop).await;
    gw.wait_finals(STALL, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.assert_contract("the deadline sweep's reply lost", &[]);
    assert_eq!(gw.audit().unknown.len(), gw.ids.len(), "every job ends unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_reply_blackholed() {
    let gw = sweep_fault(Action::BlackholeFrom(Duration::from_secs(6))).await;
    gw.wait_finals(STALL + Duration::from_secs(6), LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.assert_contract("the deadline sweep's replies black-holed for 6 s", &[]);
}

/// A long outage right after the sweep answered: every store call fails for 70 s, longer than
/// the retries that confirm published finals keep going (10 calls; each waits out the
/// client's reconnect attempts, ~5 s). Then the clock moves past the confirm grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_then_a_70s_outage_publishes_each_final_once() {
    let gw = sweep_fault(Action::PassThenOutage(Duration::from_secs(70))).await;
    outage_then_grace(&gw).await;
    gw.assert_contract("Redis gone 70 s right after the sweep answered", &[]);
}

/// Replies lost all through a run: every 15th request's reply, 40 times, while 400 jobs (a
/// tenth of them scheduled 2-4 s ahead) are claimed, sent and settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_lost_all_through_a_run() {
    let mut gw = Gw::start(Duration::from_millis(300)).await;
    let rule = gw.proxy.drop_every(15, 40);
    let mut body = String::new();
    let now = gw.h.clock.now();
    for i in 0..400 {
        let id = format!("{}-{i}", gw.tag);
        let mut job = serde_json::json!({
            "id": id, "tenant": "acme", "channel": "sms", "to": format!("+{}{i:04}", gw.rcpt),
            "text": format!("fault test job {id}: hello"), "quiet_hours": false,
        });
        if i % 10 == 3 {
            job["send_at"] = serde_json::json!((now + chrono::Duration::seconds(2 + (i % 3) as i64)).to_rfc3339());
        }
        body += &job.to_string();
        body.push('\n');
        gw.ids.push(id);
        if i % 50 == 49 {
            let (status, v) = gw.h.post("/v1/jobs", "application/x-ndjson", std::mem::take(&mut body)).await;
            assert_eq!(status, 202, "{v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    gw.wait_finals(STALL, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("{} replies dropped", rule.fired());
    gw.assert_contract("every 15th reply lost, 40 times", &rule.log());
}
