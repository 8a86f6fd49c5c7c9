//! The scheduler: feeds deferred jobs back into the policy chain when they fall due.
//!
//! Claims are leased in the store, so a job claimed by an instance that dies comes back to
//! whichever instance looks next after the lease lapses.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::clock::Clock;
use crate::pipeline::{Intake, Origin};
use crate::store::{DueKind, Store};

pub struct Scheduler {
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub intake: Intake,
    pub tick: Duration,
    pub lease: Duration,
    pub batch: usize,
    /// How long a claim taken back here is kept (`pipeline.dedup_ttl`).
    pub claim_ttl: Duration,
}

impl Scheduler {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A full batch claimed means more are due: claim again at once rather than a tick
        // later (a cascade's next steps all come back through here; one batch per tick capped
        // them at batch / tick).
        let mut more = false;
        loop {
            if !more {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
            } else if stop.is_cancelled() {
                return;
            }
            more = false;
            // Never claim more than intake can take now: a claimed job waiting for room
            // would only hold its lease hostage.
            let limit = self.batch.min(self.intake.room());
            if limit == 0 {
                continue;
            }
            let now = self.clock.now();
            let claimed = match self.store.claim_due(now, limit, self.lease, self.claim_ttl).await {
                Ok(c) => {
                    more = c.len() == limit;
                    c
                }
                Err(e) => {
                    warn!(error = %e, "cannot claim due jobs");
                    continue;
                }
            };
            for c in claimed {
                let job = match crate::job::parse(c.payload.as_bytes(), now) {
                    // A cascade's later step is stored as its job, under the step's store id:
                    // the id tells the worker which step it is.
                    Ok(mut j) if crate::cascade::split_store_id(&c.entry).0 == j.id && c.entry != j.id => {
                        j.id.clone_from(&c.entry);
                        j
                    }
                    Ok(j) => j,
                    Err(e) => {
                        // Written by us, so this is a bug; drop the entry rather than loop on it.
                        error!(entry = %c.entry, error = %e, "scheduled entry does not parse; dropped");
                        let _ = self.store.finish_scheduled(&[(c.entry, c.lease)]).await;
                        continue;
                    }
                };
                let store = self.store.clone();
                let (id, lease) = (c.entry, c.lease);
                let finish = {
                    Box::new(move || {
                        tokio::spawn(async move {
                            if let Err(e) = store.finish_scheduled(&[(id, lease)]).await {
                                warn!(error = %e, "cannot finish scheduled job; its lease will lapse and it comes back");
                            }
                        });
                    }) as Box<dyn FnOnce() + Send>
                };
                // A job parked as Busy has its claim checked again; others are ours already.
                let origin = match (c.kind, c.token) {
                    (DueKind::Resumed, Some(token)) => Origin::Resumed { token, src: c.src },
                    (DueKind::Orphaned, Some(token)) => Origin::Orphaned { token, src: c.src },
                    (_, _) => Origin::Record { src: c.src },
                };
                if self.intake.submit(job, origin, Some(finish)).await.is_err() {
                    return;
                }
            }
        }
    }
}
