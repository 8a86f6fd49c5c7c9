//! The API listener's limits over real TCP: slow heads and idle connections are closed after
//! their timeouts, a slow body is cut with `408`, and a connection over the cap is refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use sendgate::api::listener::{read_body, serve_with, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const HEAD: &[u8] = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\n";

/// A listener whose one handler reads the body under the request's limits and answers its
/// length; `stop` ends it.
async fn server(limits: Limits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_with(listener, limits, stop.clone(), |req: Request<hyper::body::Incoming>| async move {
        let status = match read_body(req, 1024).await {
            Ok(b) => return Response::new(Full::new(Bytes::from(format!("read {}", b.len())))),
            Err(sendgate::api::listener::BodyError::TooSlow { .. }) => 408,
            Err(_) => 400,
        };
        Response::builder().status(status).body(Full::new(Bytes::new())).unwrap()
    }));
    (addr, stop)
}

fn limits(header: u64, idle: u64, body: u64, max_connections: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(idle),
        body_timeout: Duration::from_millis(body),
        max_connections,
        ..Limits::default()
    }
}

/// Reads until the server closes; what it sent, and when it closed (`None`: still open at `within`).
async fn until_closed(s: &mut TcpStream, within: Duration) -> (String, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// How many slow clients: `SENDGATE_TEST_SLOW_CLIENTS` (e.g. 3000 with `ulimit -n` raised),
/// 200 by default so CI stays within its file descriptors.
fn slow_clients() -> usize {
    std::env::var("SENDGATE_TEST_SLOW_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_sending_half_a_head_are_closed_after_the_header_timeout() {
    let n = slow_clients();
    let (addr, stop) = server(limits(1000, 30_000, 30_000, n + 10)).await;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&HEAD[..20]).await.unwrap();
        clients.push(s);
    }
    let opened = started.elapsed();
    let closes = futures::future::join_all(clients.iter_mut().map(|s| until_closed(s, Duration::from_secs(10)))).await;
    for (i, (got, closed)) in closes.iter().enumerate() {
        let at = closed.unwrap_or_else(|| panic!("client {i} still open 10 s later")) - started;
        // Not before its timeout; and all within a second of it (plus the time to open them).
        assert!(at >= Duration::from_millis(1000), "client {i} closed after {at:?}");
        assert!(at < opened + Duration::from_millis(2500), "client {i} closed after {at:?} (opening took {opened:?})");
        assert_eq!(got, "", "a half head gets no answer");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_header_one() {
    let (addr, stop) = server(limits(300, 1500, 5000, 10)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Requests 200 ms apart, well inside the idle timeout, for longer than the header
    // timeout: the connection stays; each request's head arrives whole, so its 300 ms holds.
    for _ in 0..5 {
        s.write_all(HEAD).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("read 5"), "{}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_from = Instant::now();
    let (_, closed) = until_closed(&mut s, Duration::from_secs(5)).await;
    let idle = closed.expect("closed when idle") - idle_from;
    assert!(idle >= Duration::from_millis(1200) && idle < Duration::from_millis(2500), "closed after {idle:?} idle");

    // Idle a while, then half a head: the head's own timeout applies from its first byte.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(HEAD).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let head_from = Instant::now();
    s.write_all(&HEAD[..10]).await.unwrap();
    let (_, closed) = until_closed(&mut s, Duration::from_secs(5)).await;
    let took = closed.expect("closed") - head_from;
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(900), "closed {took:?} after the head began");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_with_408() {
    let (addr, stop) = server(limits(5000, 5000, 500, 10)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(HEAD).await.unwrap();
    s.write_all(b"he").await.unwrap();
    let (got, _) = until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(2), "{took:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_is_refused_and_a_freed_slot_serves_again() {
    let (addr, stop) = server(limits(5000, 5000, 5000, 2)).await;
    let a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    // Let the listener take both before the third knocks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (got, closed) = until_closed(&mut c, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "the third connection must be closed");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 503"), "{got:?}");
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = TcpStream::connect(addr).await.unwrap();
    d.write_all(HEAD).await.unwrap();
    d.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 512];
    let n = d.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    stop.cancel();
}
