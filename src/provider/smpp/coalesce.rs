//! Write coalescing for a bind's socket.
//!
//! rusmppc flushes after every PDU: one `send(2)` per submit_sm and per deliver_sm_resp, and on
//! loopback or TLS one packet or record each, so at tens of thousands of PDUs a second the
//! syscalls and the packets they make cost more than everything else the link does. Here a
//! write lands in a buffer and a flush returns at once; one writer task per link empties the
//! whole buffer with a single write whenever it runs, so a burst of PDUs costs one syscall.
//!
//! A flush that returns says the bytes are with the writer, as a returning `write(2)` says they
//! are in the kernel: in both cases they may still never reach the SMSC. Nothing is lost by
//! that which was not already: every submit without an answer is ambiguous (see `send.rs`).
//! A link declared dead writes nothing more: the writer writes through the kill switch.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

/// Bytes held before a write waits: about a kernel socket buffer's worth.
const BUFFER_BYTES: usize = 256 * 1024;
/// Scheduler turns the writer waits for a burst to grow before it writes.
const MAX_YIELDS: usize = 4;
/// How long a closing link's last bytes (an unbind, say) may take to go out.
const DRAIN_ON_CLOSE: Duration = Duration::from_secs(5);

/// The stream rusmppc sees: reads go straight through, writes go to the writer task.
pub(super) struct Coalesced<S> {
    read: ReadHalf<S>,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Set whenever bytes move either way; see [`Repoll`].
    moved: Arc<AtomicBool>,
    /// The writer task, woken when bytes arrive or the link closes.
    writer: AtomicWaker,
    /// The connection task, waiting for room in the buffer or for the shutdown to finish.
    room: AtomicWaker,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer's error: every later write and flush fails with it.
    failed: Option<(io::ErrorKind, String)>,
    closing: bool,
    closed: bool,
}

impl State {
    fn error(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves a plain buffer behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Splits `stream` and starts its writer task (on the current tokio runtime).
pub(super) fn coalesce<S>(stream: S) -> Coalesced<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let shared =
        Arc::new(Shared { state: Mutex::new(State::default()), moved: Arc::new(AtomicBool::new(false)), writer: AtomicWaker::new(), room: AtomicWaker::new() });
    tokio::spawn(write_out(write, shared.clone()));
    Coalesced { read, shared }
}

/// What the writer task found in the buffer.
enum Next {
    /// Bytes to write; `closing` once the link is being shut or was dropped.
    Write {
        closing: bool,
    },
    Close,
}

async fn write_out<S: AsyncWrite>(mut write: WriteHalf<S>, shared: Arc<Shared>) {
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        // Woken by the first PDU of a burst: let the tasks that make the rest of it run first.
        std::future::poll_fn(|cx| {
            shared.writer.register(cx.waker());
            let st = shared.lock();
            if st.buf.is_empty() && !st.closing {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        // Then keep yielding while the burst still grows, a few times at most: each yield is a
        // turn of the scheduler, microseconds when idle, and it is what lets a burst form.
        let mut seen = 0;
        for _ in 0..MAX_YIELDS {
            tokio::task::yield_now().await;
            let now = shared.lock().buf.len();
            if now == seen || now >= BUFFER_BYTES / 4 {
                break;
            }
            seen = now;
        }
        // Only this task empties the buffer: what woke it above is still there.
        let next = {
            let mut st = shared.lock();
            if st.buf.is_empty() {
                Next::Close
            } else {
                std::mem::swap(&mut st.buf, &mut out);
                Next::Write { closing: st.closing }
            }
        };
        // The buffer is empty again: a connection task waiting for room may go on while this
        // write is under way.
        shared.room.wake();
        let result = match next {
            // A closing link's peer may have stopped reading: its last bytes get a bound.
            Next::Write { closing: true } => bounded(write.write_all(&out)).await,
            Next::Write { closing: false } => write.write_all(&out).await,
            Next::Close => bounded(write.shutdown()).await,
        };
        out.clear();
        let mut st = shared.lock();
        if let Err(e) = result {
            st.failed.get_or_insert((e.kind(), e.to_string()));
        }
        if st.failed.is_some() || matches!(next, Next::Close) {
            st.closed = true;
            st.buf = Vec::new();
            drop(st);
            shared.room.wake();
            return;
        }
    }
}

async fn bounded(io: impl std::future::Future<Output = io::Result<()>>) -> io::Result<()> {
    tokio::time::timeout(DRAIN_ON_CLOSE, io)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "the SMSC stopped reading while the link closed")))
}

impl<S> Coalesced<S> {
    /// For the connection task that drives this stream: see [`Repoll`].
    pub(super) fn activity(&self) -> Activity {
        Activity(self.shared.moved.clone())
    }
}

/// Whether a [`Coalesced`] stream moved bytes since the last look.
pub(super) struct Activity(Arc<AtomicBool>);

impl<S: AsyncRead> AsyncRead for Coalesced<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.read).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.shared.moved.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<S> AsyncWrite for Coalesced<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        if let Some(e) = st.error() {
            return Poll::Ready(Err(e));
        }
        if st.closing || st.closed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "link closing")));
        }
        if st.buf.len() >= BUFFER_BYTES {
            // Registered under the lock the writer takes to empty the buffer: no wake is missed.
            self.shared.room.register(cx.waker());
            return Poll::Pending;
        }
        let n = bytes.len().min(BUFFER_BYTES - st.buf.len());
        st.buf.extend_from_slice(&bytes[..n]);
        drop(st);
        self.shared.moved.store(true, Ordering::Relaxed);
        self.shared.writer.wake();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shared.lock().error() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Waits until everything written went out, then shuts the socket's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if st.closed {
            return Poll::Ready(st.error().map_or(Ok(()), Err));
        }
        st.closing = true;
        self.shared.room.register(cx.waker());
        drop(st);
        self.shared.writer.wake();
        Poll::Pending
    }
}

/// rusmppc 0.4's connection task takes at most 5 actions, 5 writes and 5 reads per poll, and
/// when it stops at such a limit with its action queue not yet drained it registers no wake-up
/// for that queue: the submits left in it wait for the next incoming PDU or the enquire_link
/// timer (measured before this: a few hundred jobs, then nothing for up to
/// `enquire_link_interval`). So a poll of the connection that moved bytes is followed by
/// another; the first poll that moves nothing has drained the queue and registered for it.
pub(super) struct Repoll<F> {
    connection: Pin<Box<F>>,
    moved: Activity,
}

impl<F: Future<Output = ()>> Repoll<F> {
    pub(super) fn new(connection: F, moved: Activity) -> Self {
        Self { connection: Box::pin(connection), moved }
    }
}

impl<F: Future<Output = ()>> Future for Repoll<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.moved.0.store(false, Ordering::Relaxed);
        let polled = self.connection.as_mut().poll(cx);
        if polled.is_pending() && self.moved.0.swap(false, Ordering::Relaxed) {
            cx.waker().wake_by_ref();
        }
        polled
    }
}

impl<S> Drop for Coalesced<S> {
    /// What was written still goes out (as the kernel sends a closed socket's buffer), within
    /// [`DRAIN_ON_CLOSE`]; a killed link's writer fails at once instead.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.writer.wake();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::provider::smpp::killswitch::KillSwitch;

    #[tokio::test]
    async fn many_flushed_writes_reach_the_peer_whole_and_in_order() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut link = coalesce(a);
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let pdu = format!("pdu {i};");
            link.write_all(pdu.as_bytes()).await.unwrap();
            link.flush().await.unwrap();
            want.extend_from_slice(pdu.as_bytes());
        }
        link.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
    }

    #[tokio::test]
    async fn a_burst_of_writes_goes_out_in_few_syscalls() {
        // Counts the writes that reach the inner stream.
        struct Counting<S>(S, Arc<std::sync::atomic::AtomicUsize>);
        impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
            fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }
        impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
            fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Pin::new(&mut self.0).poll_write(cx, buf)
            }
            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_flush(cx)
            }
            fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut link = coalesce(Counting(a, writes.clone()));
        // All within one poll of this task: the writer cannot run in between.
        for _ in 0..100 {
            link.write_all(&[7u8; 40]).await.unwrap();
            link.flush().await.unwrap();
        }
        link.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 4000);
        let n = writes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n <= 2, "{n} writes for one burst");
    }

    #[tokio::test]
    async fn a_full_buffer_makes_the_writer_wait_until_the_peer_reads() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut link = coalesce(a);
        let chunk = vec![1u8; 64 * 1024];
        let writing = tokio::spawn(async move {
            for _ in 0..16 {
                link.write_all(&chunk).await.unwrap();
            }
            link.shutdown().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writing.is_finished(), "1 MiB went into a buffer of {BUFFER_BYTES} bytes with nobody reading");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 16 * 64 * 1024);
        writing.await.unwrap();
    }

    #[tokio::test]
    async fn a_write_error_fails_later_writes_and_flushes() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut link = coalesce(a);
        link.write_all(b"lost").await.unwrap();
        let mut err = None;
        for _ in 0..100 {
            tokio::task::yield_now().await;
            if let Err(e) = link.flush().await {
                err = Some(e);
                break;
            }
        }
        assert!(err.is_some(), "the writer's error never surfaced");
        assert!(link.write_all(b"more").await.is_err());
    }

    #[tokio::test]
    async fn a_killed_link_sends_nothing_it_still_held() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let switch = KillSwitch::default();
        let mut link = coalesce(switch.wrap(a));
        // Killed before the writer task had a chance to run: the buffered bytes stay here.
        link.write_all(b"never").await.unwrap();
        switch.kill();
        drop(link);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn a_dropped_link_still_sends_what_it_was_given() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut link = coalesce(a);
        link.write_all(b"unbind").await.unwrap();
        drop(link);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"unbind");
    }
}
