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
    let _ = HashMap::<(), ()>::new();
}
