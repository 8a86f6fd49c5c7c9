//! JSON lines to stdout and/or a file: the report sink of `sendgate dev`.
//!
//! One writer task owns the outputs and flushes whenever its queue runs dry, so a burst of
//! reports costs one write per burst, not one per report.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::{Sink, SinkError};
use crate::report::Report;

enum Msg {
    Lines(Vec<u8>, oneshot::Sender<()>),
    Flush(oneshot::Sender<()>),
}

pub struct JsonlSink {
    tx: mpsc::Sender<Msg>,
}

impl JsonlSink {
    pub async fn open(stdout: bool, file: Option<PathBuf>) -> std::io::Result<Self> {
        let mut outs: Vec<BufWriter<Box<dyn AsyncWrite + Send + Unpin>>> = Vec::new();
        if stdout {
            outs.push(BufWriter::with_capacity(256 * 1024, Box::new(tokio::io::stdout())));
        }
        if let Some(path) = file {
            let f = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
            outs.push(BufWriter::with_capacity(256 * 1024, Box::new(f)));
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(writer(rx, outs));
        Ok(Self { tx })
    }
}

async fn writer(mut rx: mpsc::Receiver<Msg>, mut outs: Vec<BufWriter<Box<dyn AsyncWrite + Send + Unpin>>>) {
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(msg) = rx.recv().await {
        let mut next = Some(msg);
        while let Some(m) = next.take() {
            match m {
                Msg::Lines(bytes, done) => {
                    for o in outs.iter_mut() {
                        if let Err(e) = o.write_all(&bytes).await {
                            tracing::error!(error = %e, "report sink write failed");
                        }
                    }
                    waiting.push(done);
                }
                Msg::Flush(done) => waiting.push(done),
            }
            next = rx.try_recv().ok();
        }
        for o in outs.iter_mut() {
            if let Err(e) = o.flush().await {
                tracing::error!(error = %e, "report sink flush failed");
            }
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

#[async_trait]
impl Sink for JsonlSink {
    async fn publish(&self, reports: &[Report]) -> Result<(), SinkError> {
        let mut bytes = Vec::with_capacity(reports.len() * 400);
        for r in reports {
            serde_json::to_writer(&mut bytes, r).expect("reports serialize");
            bytes.push(b'\n');
        }
        let (done, wait) = oneshot::channel();
        self.tx.send(Msg::Lines(bytes, done)).await.map_err(|_| SinkError::Unavailable("writer stopped".into()))?;
        wait.await.map_err(|_| SinkError::Unavailable("writer stopped".into()))
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Msg::Flush(done)).await.map_err(|_| SinkError::Unavailable("writer stopped".into()))?;
        wait.await.map_err(|_| SinkError::Unavailable("writer stopped".into()))
    }
}
