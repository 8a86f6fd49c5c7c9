//! A TCP proxy in front of the real Redis that a test can make misbehave: delay replies, drop
//! the reply to a chosen request, black-hole every reply for a while, cut every connection,
//! refuse new connections for a while.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&env("SENDGATE_TEST_REDIS_URL")).await;
//! cfg.redis.url = proxy.url();                       // the daemon talks to Redis through it
//! let rule = proxy.drop_reply(Match::request(["job-7"]), 1);   // the next request naming job-7
//! ... // jobs flow
//! rule.wait_fired(1, Duration::from_secs(30)).await;
//! proxy.cut();                                       // every connection, now
//! proxy.refuse_for(Duration::from_secs(3));          // new connections closed at once
//! proxy.blackhole_replies(Duration::from_secs(6));   // requests reach Redis, replies do not
//! proxy.delay(Duration::from_millis(50));            // every reply 50 ms late, in order
//! ```
//!
//! ## Why it parses RESP
//! A Redis client matches replies to requests by order on one connection (redis-rs multiplexes
//! every caller over one). Swallowing one reply and carrying on would hand every later reply
//! to the wrong caller, which no real network does. So the proxy frames both directions into
//! whole RESP values, counts requests and replies per connection, and a dropped reply always
//! ends its connection: the client sees the request vanish with its connection, exactly as when
//! a connection dies after Redis ran a command and before the reply arrived. A black hole
//! keeps the connection open and silent (the client's response timeout fires), then cuts it
//! when it ends. Push frames (RESP3 `>`) are forwarded without consuming a request. A cut
//! loses whatever replies a `delay` was still holding back on that connection, as a real one
//! would.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which messages a rule looks at: a request (client → Redis) or a reply (Redis → client)
/// whose bytes contain any of the patterns.
#[derive(Debug, Clone)]
pub enum Match {
    Request(Vec<Vec<u8>>),
    Reply(Vec<Vec<u8>>),
    /// Every request.
    AnyRequest,
}

impl Match {
    pub fn request<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(any_of: I) -> Self {
        Self::Request(any_of.into_iter().map(|s| s.as_ref().to_vec()).collect())
    }
    pub fn reply<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(any_of: I) -> Self {
        Self::Reply(any_of.into_iter().map(|s| s.as_ref().to_vec()).collect())
    }
    fn hits(pats: &[Vec<u8>], frame: &[u8]) -> bool {
        pats.iter().any(|p| !p.is_empty() && frame.windows(p.len()).any(|w| w == p.as_slice()))
    }
}

/// What happens to the reply a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Swallow the reply and close its connection (Redis ran the command; the client never
    /// hears back).
    Drop,
    /// Swallow the reply, cut every connection and refuse new ones for this long: the reply
    /// is lost in an outage.
    DropThenOutage(Duration),
    /// Forward the reply, then cut every connection and refuse new ones for this long: the
    /// outage starts right after the client got its answer (the caller's *next* call fails).
    PassThenOutage(Duration),
    /// Swallow this reply and every reply for this long (a black hole starting here, see
    /// [`FaultProxy::blackhole_replies`]).
    BlackholeFrom(Duration),
}

struct Rule {
    on: Match,
    /// Matching messages to let through before firing.
    skip: usize,
    /// After each firing, `skip` starts again from `every - 1` (0: no repeat).
    every: usize,
    /// Firings left.
    left: usize,
    action: Action,
    state: Arc<RuleState>,
}

#[derive(Default)]
struct RuleState {
    fired: AtomicUsize,
    /// A short description of each message the rule fired on.
    log: Mutex<Vec<String>>,
}

/// A rule's firings, for the test to wait on and report.
#[derive(Clone)]
pub struct RuleHandle(Arc<RuleState>);

impl RuleHandle {
    pub fn fired(&self) -> usize {
        self.0.fired.load(Relaxed)
    }

    /// What the rule fired on: the request (or reply) that lost its reply, abbreviated.
    pub fn log(&self) -> Vec<String> {
        self.0.log.lock().unwrap().clone()
    }

    /// Waits until the rule fired `n` times; false after `limit`.
    pub async fn wait_fired(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.fired() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub connections: u64,
    /// Connections closed at once because of `refuse_for` / an outage.
    pub refused: u64,
    pub requests: u64,
    pub replies: u64,
    /// Replies swallowed by a rule.
    pub replies_dropped: u64,
    /// Replies swallowed by a black hole.
    pub replies_blackholed: u64,
    /// Connections this proxy closed (rules, cuts, black holes ending).
    pub connections_cut: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    requests: AtomicU64,
    replies: AtomicU64,
    replies_dropped: AtomicU64,
    replies_blackholed: AtomicU64,
    connections_cut: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    delay: Mutex<Duration>,
    blackhole_until: Mutex<Option<Instant>>,
    refuse_until: Mutex<Option<Instant>>,
    rules: Mutex<Vec<Rule>>,
    /// Bumped by `cut`: every connection task watches it.
    cut: watch::Sender<u64>,
    n: Counters,
}

impl Shared {
    fn cut_all(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    fn outage(&self, d: Duration) {
        *self.refuse_until.lock().unwrap() = Some(Instant::now() + d);
        self.cut_all();
    }

    fn blackhole_end(&self) -> Option<Instant> {
        self.blackhole_until.lock().unwrap().filter(|t| *t > Instant::now())
    }

    /// The first rule of this kind that fires on `frame`, consuming one firing.
    fn fire(&self, frame: &[u8], request: bool) -> Option<Action> {
        let mut rules = self.rules.lock().unwrap();
        for r in rules.iter_mut() {
            let hit = match (&r.on, request) {
                (Match::Request(p), true) | (Match::Reply(p), false) => Match::hits(p, frame),
                (Match::AnyRequest, true) => true,
                _ => false,
            };
            if r.left == 0 || !hit {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            r.left -= 1;
            r.skip = r.every.saturating_sub(1);
            r.state.log.lock().unwrap().push(describe(frame));
            r.state.fired.fetch_add(1, Relaxed);
            return Some(r.action);
        }
        None
    }
}

pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut_all();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port in front of `upstream` (`redis://host:port/…` or
    /// `host:port`).
    pub async fn start(upstream: &str) -> Self {
        let hostport = upstream.strip_prefix("redis://").unwrap_or(upstream);
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
        let upstream: SocketAddr = tokio::net::lookup_host(hostport).await.expect("upstream resolves").next().expect("an upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listens");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            delay: Mutex::new(Duration::ZERO),
            blackhole_until: Mutex::new(None),
            refuse_until: Mutex::new(None),
            rules: Mutex::new(Vec::new()),
            cut: watch::Sender::new(0),
            n: Counters::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self { shared, addr, accept }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT/`: give this to the client instead of Redis's own URL.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Every reply reaches the client this much later (in order, pipelined: a delay, not a
    /// bandwidth cap). `Duration::ZERO` turns it off.
    pub fn delay(&self, d: Duration) {
        *self.shared.delay.lock().unwrap() = d;
    }

    /// Closes every open connection now.
    pub fn cut(&self) {
        self.shared.cut_all();
    }

    /// New connections are accepted and closed at once for `d` (the client sees its connection
    /// reset during the handshake); open ones are untouched.
    pub fn refuse_for(&self, d: Duration) {
        *self.shared.refuse_until.lock().unwrap() = Some(Instant::now() + d);
    }

    /// Cuts every connection and refuses new ones for `d`: Redis is gone for that long.
    pub fn outage(&self, d: Duration) {
        self.shared.outage(d);
    }

    /// For `d`, requests still reach Redis (and run) but no reply comes back; connections that
    /// lost a reply are cut when the black hole ends.
    pub fn blackhole_replies(&self, d: Duration) {
        *self.shared.blackhole_until.lock().unwrap() = Some(Instant::now() + d);
    }

    /// Swallows the reply to the next `count` messages matching `on` (see [`Match`]); each
    /// firing closes the connection it happened on.
    pub fn drop_reply(&self, on: Match, count: usize) -> RuleHandle {
        self.rule(on, 0, count, Action::Drop)
    }

    /// The general form: let `skip` matching messages through, then apply `action` to the next
    /// `count`.
    pub fn rule(&self, on: Match, skip: usize, count: usize, action: Action) -> RuleHandle {
        let state = Arc::new(RuleState::default());
        self.shared.rules.lock().unwrap().push(Rule { on, skip, every: 0, left: count, action, state: state.clone() });
        RuleHandle(state)
    }

    /// Swallows the reply to every `n`th request (any request, on any connection), `count`
    /// times in all; each firing closes the connection it happened on.
    pub fn drop_every(&self, n: usize, count: usize) -> RuleHandle {
        let n = n.max(1);
        let state = Arc::new(RuleState::default());
        let rule = Rule { on: Match::AnyRequest, skip: n - 1, every: n, left: count, action: Action::Drop, state: state.clone() };
        self.shared.rules.lock().unwrap().push(rule);
        RuleHandle(state)
    }

    /// Removes every rule (firings already counted stay in their handles).
    pub fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    pub fn stats(&self) -> ProxyStats {
        let n = &self.shared.n;
        ProxyStats {
            connections: n.connections.load(Relaxed),
            refused: n.refused.load(Relaxed),
            requests: n.requests.load(Relaxed),
            replies: n.replies.load(Relaxed),
            replies_dropped: n.replies_dropped.load(Relaxed),
            replies_blackholed: n.replies_blackholed.load(Relaxed),
            connections_cut: n.connections_cut.load(Relaxed),
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let refusing = shared.refuse_until.lock().unwrap().is_some_and(|t| t > Instant::now());
        if refusing {
            shared.n.refused.fetch_add(1, Relaxed);
            drop(client);
            continue;
        }
        shared.n.connections.fetch_add(1, Relaxed);
        tokio::spawn(connection(client, shared.clone()));
    }
}

/// Why a connection ended.
enum End {
    Eof,
    Cut,
}

/// Per request on one connection, in order: what to do with its reply.
type Pending = Arc<Mutex<VecDeque<Option<Action>>>>;

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut cut_rx = shared.cut.subscribe();
    cut_rx.mark_unchanged();
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let pending: Pending = Arc::default();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Out>();
    let mut up = tokio::spawn(requests(cr, uw, shared.clone(), pending.clone()));
    let mut down = tokio::spawn(replies(ur, out_tx, shared.clone(), pending));
    let mut writer = tokio::spawn(write_replies(cw, out_rx, shared.clone()));
    let end = tokio::select! {
        r = &mut up => r.unwrap_or(End::Cut),
        r = &mut down => r.unwrap_or(End::Cut),
        _ = &mut writer => End::Eof,
        _ = cut_rx.changed() => End::Cut,
    };
    if matches!(end, End::Cut) {
        shared.n.connections_cut.fetch_add(1, Relaxed);
    }
    up.abort();
    down.abort();
    writer.abort();
}

/// Client → Redis: forwards whole requests, noting for each whether a rule wants its reply.
async fn requests(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, shared: Arc<Shared>, pending: Pending) -> End {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return End::Eof,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            match frame_len(&buf[at..], true) {
                Ok(Some(len)) => {
                    let frame = &buf[at..at + len];
                    shared.n.requests.fetch_add(1, Relaxed);
                    let action = shared.fire(frame, true);
                    pending.lock().unwrap().push_back(action);
                    at += len;
                }
                Ok(None) => break,
                Err(e) => panic!("fault proxy: a request that is not RESP ({e}): {:?}", String::from_utf8_lossy(&buf[at..buf.len().min(at + 200)])),
            }
        }
        // Requests are forwarded whole, as soon as they are complete: a request's reply
        // cannot come before the proxy has noted what to do with it.
        if at > 0 {
            if to.write_all(&buf[..at]).await.is_err() {
                return End::Eof;
            }
            buf.drain(..at);
        }
    }
}

/// Redis → client: frames replies, pairs each with its request's note, applies rules, black
/// holes and delays.
async fn replies(mut from: tokio::net::tcp::OwnedReadHalf, out: mpsc::UnboundedSender<Out>, shared: Arc<Shared>, pending: Pending) -> End {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Set once this connection lost a reply to a black hole: it is cut when the hole ends.
    let mut tainted_until: Option<Instant> = None;
    loop {
        let read = if let Some(t) = tainted_until {
            tokio::select! {
                r = from.read(&mut chunk) => r,
                _ = tokio::time::sleep_until(t) => {
                    // Extended meanwhile? Then wait for the new end.
                    match shared.blackhole_end() {
                        Some(later) => { tainted_until = Some(later); continue; }
                        None => return End::Cut,
                    }
                }
            }
        } else {
            from.read(&mut chunk).await
        };
        let n = match read {
            Ok(0) | Err(_) => return End::Eof,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            let len = match frame_len(&buf[at..], false) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => panic!("fault proxy: a reply that is not RESP ({e})"),
            };
            let frame = buf[at..at + len].to_vec();
            at += len;
            if frame.first() == Some(&b'>') {
                // Out of band (RESP3 push): not a reply to any request.
                let _ = out.send(Out::At(Instant::now() + *shared.delay.lock().unwrap(), frame));
                continue;
            }
            shared.n.replies.fetch_add(1, Relaxed);
            let noted = pending.lock().unwrap().pop_front().flatten();
            let action = noted.or_else(|| shared.fire(&frame, false));
            if let Some(Action::BlackholeFrom(d)) = action {
                *shared.blackhole_until.lock().unwrap() = Some(Instant::now() + d);
            }
            if let Some(hole) = shared.blackhole_end() {
                shared.n.replies_blackholed.fetch_add(1, Relaxed);
                tainted_until = Some(hole);
                continue;
            }
            if tainted_until.is_some() {
                // The hole ended while this reply was in the same read: the connection is
                // already out of step; cut it.
                return End::Cut;
            }
            match action {
                None => {
                    let due = Instant::now() + *shared.delay.lock().unwrap();
                    if out.send(Out::At(due, frame)).is_err() {
                        return End::Eof;
                    }
                }
                Some(Action::Drop) => {
                    shared.n.replies_dropped.fetch_add(1, Relaxed);
                    return End::Cut;
                }
                Some(Action::DropThenOutage(d)) => {
                    shared.n.replies_dropped.fetch_add(1, Relaxed);
                    shared.outage(d);
                    return End::Cut;
                }
                Some(Action::BlackholeFrom(_)) => unreachable!("handled as a black hole above"),
                Some(Action::PassThenOutage(d)) => {
                    // The writer delivers it (no delay applies), then starts the outage, which
                    // cuts this connection too.
                    let _ = out.send(Out::ThenOutage(frame, d));
                    std::future::pending::<()>().await;
                }
            }
        }
        buf.drain(..at);
    }
}

/// What the reply writer is handed.
enum Out {
    /// Bytes to write at this instant (a reply delay) or later.
    At(Instant, Vec<u8>),
    /// Write these now, then start an outage.
    ThenOutage(Vec<u8>, Duration),
}

async fn write_replies(mut to: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>, shared: Arc<Shared>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut batch = Vec::new();
        let mut outage = None;
        // Whatever else is queued goes out in the same write, each part no earlier than due.
        while let Some(out) = next.take() {
            match out {
                Out::At(due, bytes) => {
                    tokio::time::sleep_until(due).await;
                    batch.extend_from_slice(&bytes);
                }
                Out::ThenOutage(bytes, d) => {
                    batch.extend_from_slice(&bytes);
                    outage = Some(d);
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        if to.write_all(&batch).await.is_err() {
            return;
        }
        if let Some(d) = outage {
            let _ = to.flush().await;
            shared.outage(d);
            std::future::pending::<()>().await;
        }
    }
}

/// A one-line description of a RESP message: its strings joined by spaces, long ones cut.
pub fn describe(frame: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(frame)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(|l| if l.len() > 60 { format!("{}…", &l[..l.char_indices().nth(60).map_or(l.len(), |c| c.0)]) } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join(" ");
    if text.len() > 300 {
        format!("{}…", &text[..text.char_indices().nth(300).map_or(text.len(), |c| c.0)])
    } else {
        text
    }
}

/// The length of the first complete RESP2/RESP3 value in `buf`; `None` while incomplete.
/// `request`: a client may also send an inline command (a bare line).
pub fn frame_len(buf: &[u8], request: bool) -> Result<Option<usize>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    if request && buf[0] != b'*' {
        // Inline command: up to and including the newline.
        return Ok(buf.iter().position(|&b| b == b'\n').map(|i| i + 1));
    }
    value_end(buf, 0)
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
}

fn header_num(buf: &[u8], pos: usize) -> Result<Option<(i64, usize)>, String> {
    let Some(end) = line_end(buf, pos + 1) else { return Ok(None) };
    let s = std::str::from_utf8(&buf[pos + 1..end]).map_err(|e| e.to_string())?;
    let n: i64 = s.parse().map_err(|_| format!("bad length {s:?}"))?;
    Ok(Some((n, end + 2)))
}

/// The end (exclusive) of the value starting at `pos`.
fn value_end(buf: &[u8], pos: usize) -> Result<Option<usize>, String> {
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    match kind {
        b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => Ok(line_end(buf, pos + 1).map(|e| e + 2)),
        b'$' | b'!' | b'=' => {
            let Some((n, body)) = header_num(buf, pos)? else { return Ok(None) };
            if n < 0 {
                return Ok(Some(body));
            }
            let end = body + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some((n, mut at)) = header_num(buf, pos)? else { return Ok(None) };
            if n < 0 {
                return Ok(Some(at));
            }
            let items = if matches!(kind, b'%' | b'|') { 2 * n } else { n };
            for _ in 0..items {
                match value_end(buf, at)? {
                    Some(e) => at = e,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute precedes the value it describes.
                return value_end(buf, at);
            }
            Ok(Some(at))
        }
        other => Err(format!("unexpected type byte {:?}", other as char)),
    }
}
