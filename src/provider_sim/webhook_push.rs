//! Pushing statuses back: a loop takes the statuses that fell due on a tick, groups them by
//! sender into POSTs of at most `webhook_batch`, and hands each POST to a task; at most
//! `push_concurrency` run at once. While every slot is busy the loop waits and statuses wait in
//! the bounded queue ([`super::statuses::StatusQueue`]), which in turn refuses new sends: a slow
//! receiver slows the sender down instead of growing memory. A POST not answered 2xx is sent
//! again after a doubling wait, `push_retries` times (Meta retries too), then dropped and
//! counted. Once a POST is taken, each of its messages' next status is queued, so one message's
//! statuses arrive in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::statuses::{Pending, Status};
use super::{stopped, Shared};
use crate::provider::https_client::{self, Exchange, Https};

/// A webhook answer over this size is not one; the receiver's `{"received": N}` is tiny.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
const POST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two tries of one POST.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Where statuses go, and the pooled client that takes them there.
pub struct Target {
    uri: Uri,
    client: Https,
}

impl Target {
    pub fn new(url: &str, concurrency: usize) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        let client = https_client::build(None, CONNECT_TIMEOUT, concurrency)?;
        Ok(Self { uri, client })
    }

    /// One POST (to `uri`, else the target's); its HTTP status, or `None` when no answer came.
    async fn post(&self, uri: Option<Uri>, body: Bytes, signature: (&'static str, String)) -> Option<u16> {
        let req = Request::post(uri.unwrap_or_else(|| self.uri.clone()))
            .header(CONTENT_TYPE, "application/json")
            .header(signature.0, signature.1)
            .body(Full::new(body))
            .expect("a parsed URI and ASCII header values");
        match https_client::exchange(&self.client, req, POST_TIMEOUT, MAX_ANSWER_BYTES).await {
            Exchange::Answered { status, .. } => Some(status),
            Exchange::NotSent(_) | Exchange::Silent { .. } => None,
        }
    }
}

/// Takes due statuses and starts their POSTs until shutdown; then aborts the POSTs in flight.
pub async fn push_loop(shared: Arc<Shared>, target: Arc<Target>) {
    let cfg = &shared.cfg;
    let period = (cfg.status_delay / 5).clamp(Duration::from_millis(1), Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = Arc::new(Semaphore::new(cfg.push_concurrency));
    let mut shutdown = shared.shutdown.subscribe();
    let mut posts = JoinSet::new();
    // Taken at once at most: what the free slots can carry, so that what stays queued is
    // still counted against the queue's capacity rather than held here.
    let per_pass = cfg.push_concurrency * cfg.webhook_batch;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = tick.tick() => {}
        }
        while posts.try_join_next().is_some() {}
        loop {
            let due = shared.queue.take_due(Instant::now(), per_pass);
            if due.is_empty() {
                break;
            }
            for (sender, batch) in group(due, cfg.webhook_batch) {
                let permit = tokio::select! {
                    _ = stopped(&mut shutdown) => return,
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                };
                let (shared, target) = (shared.clone(), target.clone());
                posts.spawn(async move {
                    push(&shared, &target, &sender, batch).await;
                    drop(permit);
                });
            }
        }
    }
    posts.abort_all();
}

/// Statuses by sender (one webhook payload names one phone number), in POSTs of at most `max`.
fn group(due: Vec<Pending>, max: usize) -> Vec<(String, Vec<Pending>)> {
    let mut by_sender: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for p in due {
        by_sender.entry(p.sender.clone()).or_default().push(p);
    }
    let mut out = Vec::new();
    for (sender, mut items) in by_sender {
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(max));
            out.push((sender.clone(), std::mem::replace(&mut items, rest)));
        }
    }
    out
}

/// One POST with its retries; then the messages' next statuses, and a forged twin when due.
async fn push(shared: &Shared, target: &Target, sender: &str, batch: Vec<Pending>) {
    let cfg = &shared.cfg;
    let items: Vec<(&Pending, Status)> = batch.iter().map(|p| (p, p.status())).collect();
    let body = shared.mode.webhook_body(sender, &items, cfg.failed_code);
    let signature = shared.mode.signature(cfg.app_secret.as_bytes(), &body);
    let mut wait = cfg.push_retry_backoff;
    let mut taken = false;
    for attempt in 0..=cfg.push_retries {
        if attempt > 0 {
            shared.counters.retried();
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
        if target.post(None, body.clone(), signature.clone()).await.is_some_and(|s| (200..300).contains(&s)) {
            taken = true;
            break;
        }
    }
    if taken {
        let mut by_status = [0u64; 4];
        for (_, s) in &items {
            by_status[*s as usize] += 1;
        }
        shared.counters.pushed(shared.mode.name(), by_status);
    } else {
        shared.counters.dropped(batch.len() as u64);
        tracing::warn!(statuses = batch.len(), tries = cfg.push_retries + 1, "provider-sim gave up on a webhook POST");
    }
    if shared.faults.forge_after_push() {
        forge(shared, target, sender, &batch).await;
    }
    let mut ended = 0;
    for p in batch {
        match p.next().filter(|_| taken) {
            Some(next) => shared.queue.queue(next),
            None => ended += 1,
        }
    }
    shared.queue.done(ended);
}

/// The same messages said to have failed, signed with a secret that is not the app's (and
/// sent where the mode says a forgery goes: a wrong token in the URL).
async fn forge(shared: &Shared, target: &Target, sender: &str, batch: &[Pending]) {
    let items: Vec<(&Pending, Status)> = batch.iter().map(|p| (p, Status::Failed)).collect();
    let body = shared.mode.webhook_body(sender, &items, shared.cfg.failed_code);
    let wrong = format!("{}-forged", shared.cfg.app_secret);
    let signature = shared.mode.signature(wrong.as_bytes(), &body);
    let url = shared.mode.forged_url(&target.uri.to_string());
    let refused = target.post(url.parse().ok(), body, signature).await.is_some_and(|s| s == 401 || s == 403);
    shared.counters.forged(refused);
    if !refused {
        tracing::error!("provider-sim: a forged webhook POST was not refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider_sim::statuses::End;

    #[test]
    fn posts_name_one_sender_and_hold_at_most_the_batch() {
        let p = |id: &str, sender: &str| Pending { id: id.into(), sender: sender.into(), recipient: "1".into(), end: End::Read, step: 0 };
        let got = group(vec![p("a", "1"), p("b", "2"), p("c", "1"), p("d", "1")], 2);
        let ids: Vec<(String, Vec<&str>)> = got.iter().map(|(s, b)| (s.clone(), b.iter().map(|p| p.id.as_str()).collect())).collect();
        assert_eq!(ids, [("1".into(), vec!["a", "c"]), ("1".into(), vec!["d"]), ("2".into(), vec!["b"])]);
    }
}
