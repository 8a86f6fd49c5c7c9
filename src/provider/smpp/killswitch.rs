//! A socket wrapper that cuts a link at once: after [`KillSwitch::kill`] it reads nothing and
//! writes nothing more.
//!
//! rusmppc's own `close` first writes every PDU still queued in it; on a link declared dead
//! those submits would go out only to be lost. Cut here instead, rusmppc's connection ends on
//! the read error and writes nothing more. Its submits still end ambiguous (`send`): a test
//! caught a PDU rusmppc reported unwritten reaching the SMSC, so none is ever resent blindly.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Clone, Default)]
pub(super) struct KillSwitch(Arc<State>);

#[derive(Default)]
struct State {
    killed: AtomicBool,
    /// The connection task waiting to read, woken so it sees the kill.
    reader: AtomicWaker,
}

impl KillSwitch {
    pub(super) fn kill(&self) {
        self.0.killed.store(true, Ordering::Release);
        self.0.reader.wake();
    }

    pub(super) fn wrap<S>(&self, inner: S) -> Killable<S> {
        Killable { inner, switch: self.0.clone() }
    }

    fn cut(state: &State) -> Option<io::Error> {
        state.killed.load(Ordering::Acquire).then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "link declared dead"))
    }
}

pub(super) struct Killable<S> {
    inner: S,
    switch: Arc<State>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.switch.reader.register(cx.waker());
        if let Some(e) = KillSwitch::cut(&self.switch) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = KillSwitch::cut(&self.switch) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Passed through even when cut: only a refused write may say a PDU did not go out whole
    /// (see `send::submit_once`), never a flush of bytes that did.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_killed_link_stops_reading_and_writing() {
        let (a, mut b) = tokio::io::duplex(64);
        let switch = KillSwitch::default();
        let mut link = switch.wrap(a);
        link.write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).await.unwrap();
        // A read waiting on the socket ends when the switch is thrown.
        let (read, ()) = tokio::join!(link.read(&mut buf), async {
            tokio::task::yield_now().await;
            switch.kill();
        });
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert!(link.write_all(b"no").await.is_err());
        drop(link);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }
}
