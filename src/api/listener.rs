//! The HTTP listeners' connection handling: a cap on open connections, backoff on accept
//! errors, and the header, idle and body timeouts, so that no client can hold the daemon's
//! file descriptors or memory by connecting and then going slow.
//!
//! hyper 1.x has a header read timeout, but its timer starts whenever the connection waits for
//! a request head, idle keep-alive time included, so it cannot tell a slow head from an idle
//! connection; and it has no idle or body timeout. So each connection is watched here: its
//! socket reads and writes and its requests move it between three phases, each with its own
//! deadline (see [`Phase`]). Bodies are read by handlers, which bound that with
//! [`read_body`] and the [`Limits`] each request carries in its extensions.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Resp;
use crate::config::ServerConfig;
use crate::telemetry;

/// The `[server]` limits a listener enforces; handlers find a copy in each request's
/// extensions, so they read the same values the listener was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_jobs_per_request: usize,
}

impl From<&ServerConfig> for Limits {
    fn from(s: &ServerConfig) -> Self {
        Self {
            header_timeout: s.header_timeout,
            body_timeout: s.body_timeout,
            idle_timeout: s.idle_timeout,
            max_connections: s.max_connections,
            max_jobs_per_request: s.max_jobs_per_request,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&ServerConfig::default())
    }
}

impl Limits {
    /// The limits a request was served under (the defaults for one built by hand, in tests).
    pub fn of<B>(req: &Request<B>) -> Self {
        req.extensions().get::<Self>().copied().unwrap_or_default()
    }
}

/// What a connection over `max_connections` is told before it is closed: a client that reads
/// it knows to come back later rather than that the server broke.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 41\r\nconnection: close\r\n\r\n{\"error\": \"too many connections; retry\"}";

/// Serves `handler` on `listener` under `limits` until `stop`; requests in progress finish
/// first, and connections waiting between requests are closed at once.
pub async fn serve_with<F, Fut>(listener: TcpListener, limits: Limits, stop: CancellationToken, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let conns = tokio_util::task::TaskTracker::new();
    // One permit per open connection, held by its task: the cap is on file descriptors, so
    // it counts connections, not requests.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Backoff::default();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => { backoff.reset(); s }
                Err(e) => { backoff.after(&e, &stop).await; continue; }
            },
            _ = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(telemetry::HTTP_CONNECTIONS_CLOSED_TOTAL, "reason" => "over_capacity").increment(1);
            debug!(max_connections = limits.max_connections, "connection refused: at max_connections");
            // Best effort and never waiting: a client that is not reading gets the close alone.
            let _ = stream.try_write(OVER_CAPACITY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (handler, stop) = (handler.clone(), stop.clone());
        conns.spawn(async move {
            connection(stream, limits, stop, handler).await;
            drop(slot);
        });
    }
    conns.close();
    conns.wait().await;
}

/// Accept errors come in two kinds. One client's (it reset or gave up before we took it):
/// accept the next at once. The process's (out of file descriptors or memory, `EMFILE`,
/// `ENFILE`, `ENOBUFS`, `ENOMEM`): accepting again at once fails again and spins a core while
/// the condition lasts, so wait, doubling from 10 ms up to 1 s, until an accept succeeds. It
/// never gives up: the condition passes as connections close, and this listener is how jobs
/// get in.
#[derive(Debug, Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        self.next = None;
    }

    async fn after(&mut self, e: &io::Error, stop: &CancellationToken) {
        use io::ErrorKind::*;
        if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock) {
            metrics::counter!(telemetry::HTTP_ACCEPT_ERRORS_TOTAL, "kind" => "connection").increment(1);
            debug!(error = %e, "accept failed for one connection");
            return;
        }
        metrics::counter!(telemetry::HTTP_ACCEPT_ERRORS_TOTAL, "kind" => "resource").increment(1);
        let wait = self.next.unwrap_or(Self::FIRST);
        self.next = Some((wait * 2).min(Self::MAX));
        warn!(error = %e, retry_in = ?wait, "accept failed (out of file descriptors or memory?); backing off");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Where a connection is between requests, which decides how long it may stay as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for a request head: since the connection opened, or since the first byte after
    /// an idle spell. Closed after `header_timeout`.
    Head = 0,
    /// A request is in its handler, which bounds its own body read; no deadline here.
    Busy = 1,
    /// Between requests (the last response may still be going out; each write that makes
    /// progress restarts the clock). Closed after `idle_timeout`.
    Idle = 2,
}

/// One connection's phase and when it began, shared by its socket wrapper, its requests and
/// its watchdog; all run on the connection's one task, so the atomics never contend.
struct Watch {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds after `epoch` at which the current phase's clock started.
    since_ms: AtomicU64,
    /// Requests in their handler (more than one only when a client pipelines).
    busy: AtomicUsize,
    /// Woken on every phase change, so the watchdog never sleeps towards a stale deadline.
    changed: Notify,
}

impl Watch {
    fn new() -> Self {
        Self { epoch: Instant::now(), phase: AtomicU8::new(Phase::Head as u8), since_ms: AtomicU64::new(0), busy: AtomicUsize::new(0), changed: Notify::new() }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn enter(&self, phase: Phase) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        if self.phase.swap(phase as u8, Ordering::Relaxed) != phase as u8 {
            self.changed.notify_one();
        }
    }

    fn on_read(&self) {
        if self.phase() == Phase::Idle {
            self.enter(Phase::Head);
        }
    }

    fn on_write(&self) {
        if self.phase() == Phase::Idle {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.enter(Phase::Busy);
        RequestGuard(self.clone())
    }

    /// When the current phase runs out, and which timeout that is; `None` while busy.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match self.phase() {
            Phase::Head => Some((since + limits.header_timeout, "header_timeout")),
            Phase::Idle => Some((since + limits.idle_timeout, "idle_timeout")),
            Phase::Busy => None,
        }
    }
}

/// Ends a request's busy spell however its handler ends (done, or dropped with the connection).
struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.enter(Phase::Idle);
        }
    }
}

async fn connection<F, Fut>(stream: TcpStream, limits: Limits, stop: CancellationToken, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let watch = Arc::new(Watch::new());
    let io = Watched { io: stream, watch: watch.clone() };
    let svc = {
        let watch = watch.clone();
        service_fn(move |mut req: Request<Incoming>| {
            let (h, guard) = (handler.clone(), watch.request_started());
            req.extensions_mut().insert(limits);
            async move {
                let resp = h(req).await;
                drop(guard);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    // hyper's own header timer is off: `Watch` keeps a head's time apart from idle time.
    let conn = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = watch.deadline(&limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(error = %e, "connection ended with error");
                }
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                // Closes an idle connection now, and a busy one after its response.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watch.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline.map_or_else(Instant::now, |(at, _)| at)), if deadline.is_some() => {
                // A phase change since the deadline was computed moves it; only a deadline
                // that still holds closes the connection.
                if let Some((at, reason)) = watch.deadline(&limits).filter(|(at, _)| *at <= Instant::now()) {
                    metrics::counter!(telemetry::HTTP_CONNECTIONS_CLOSED_TOTAL, "reason" => reason).increment(1);
                    debug!(reason, late_ms = at.elapsed().as_millis() as u64, "connection closed");
                    return;
                }
            }
        }
    }
}

/// The socket, telling its [`Watch`] about reads and writes that moved bytes.
struct Watched {
    io: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.on_write();
        }
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the handler's limit (`413`).
    TooLarge { max: usize },
    /// Not all there within `server.body_timeout` (`408`).
    TooSlow { timeout: Duration },
    /// The connection failed mid-body (`400`).
    Broken(String),
}

/// A request body of at most `max` bytes, read within the request's `body_timeout`: a client
/// that trickles its body is cut off instead of holding the connection and its buffer. The
/// body goes straight into one buffer, sized by `content-length` when there is one, rather than
/// chunks joined at the end: a body in memory once, not twice.
pub async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, BodyError> {
    let timeout = Limits::of(&req).body_timeout;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge { max });
    }
    let mut body = req.into_body();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max {
                    return Err(BodyError::TooLarge { max });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(BodyError::TooSlow { timeout }),
        Ok(r) => r.map(|()| Bytes::from(buf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_processs_accept_errors_back_off_doubling_to_a_second_and_one_clients_do_not() {
        let (stop, mut b) = (CancellationToken::new(), Backoff::default());
        let emfile = io::Error::from_raw_os_error(24);
        let mut waits = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            b.after(&emfile, &stop).await;
            waits.push(t.elapsed().as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        let t = Instant::now();
        b.after(&io::Error::from(io::ErrorKind::ConnectionAborted), &stop).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        // A successful accept starts the doubling over; a stop cuts a wait short.
        b.reset();
        let t = Instant::now();
        b.after(&emfile, &stop).await;
        assert_eq!(t.elapsed(), Duration::from_millis(10));
        stop.cancel();
        let t = Instant::now();
        b.after(&emfile, &stop).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}
