//! WhatsApp messaging limits in memory: the same decision as `scripts/whatsapp_admit.lua`, on
//! plain maps (see `store::whatsapp` for what is kept).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryStore;
use crate::store::whatsapp::{dur_ms, from_ms, ms, window_open, Admission, Attempt, Decision, Portfolio, Usage, Whatsapp, SERVICE_WINDOW};
use crate::store::StoreError;

#[async_trait]
impl Whatsapp for MemoryStore {
    async fn whatsapp_admit(&self, portfolios: &[Portfolio<'_>], attempts: &[Attempt<'_>], now: DateTime<Utc>) -> Result<Admission, StoreError> {
        Ok(self.lock().whatsapp.admit(portfolios, attempts, now))
    }

    async fn record_inbound_contacts(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.lock().whatsapp.record_inbound(contacts);
        Ok(())
    }

    async fn service_windows_open(&self, pairs: &[(&str, &str)], now: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        let state = self.lock();
        Ok(pairs.iter().map(|(n, r)| window_open(state.whatsapp.inbound.get(&((*n).to_owned(), (*r).to_owned())).copied(), now)).collect())
    }

    async fn whatsapp_usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Result<Usage, StoreError> {
        Ok(self.lock().whatsapp.usage(portfolio, window, now))
    }
}

#[derive(Default)]
pub(super) struct WhatsappState {
    /// Portfolio name → the recipients counted in its window.
    windows: HashMap<String, Window>,
    /// (number, recipient) → last inbound contact (ms).
    inbound: HashMap<(String, String), i64>,
    /// (number, recipient) → (last send (ms), its job id, forgettable after (ms)).
    pairs: HashMap<(String, String), (i64, String, i64)>,
    /// When `now` last swept old inbound contacts and pair sends (ms).
    last_sweep: i64,
}

#[derive(Default)]
struct Window {
    counted: HashMap<String, i64>,
    /// (counted at, recipient): `counted` by time, oldest first.
    by_time: BTreeSet<(i64, String)>,
}

impl Window {
    /// Forgets recipients counted at or before `now - window`.
    fn trim(&mut self, cutoff: i64) {
        while let Some((at, r)) = self.by_time.first().cloned() {
            if at > cutoff {
                break;
            }
            self.by_time.pop_first();
            self.counted.remove(&r);
        }
    }

    /// Counts `recipient` at `at`, or moves it there if it was counted earlier.
    fn count(&mut self, recipient: &str, at: i64) {
        match self.counted.get(recipient).copied() {
            Some(old) if old >= at => {}
            Some(old) => {
                self.by_time.remove(&(old, recipient.to_owned()));
                self.by_time.insert((at, recipient.to_owned()));
                self.counted.insert(recipient.to_owned(), at);
            }
            None => {
                self.by_time.insert((at, recipient.to_owned()));
                self.counted.insert(recipient.to_owned(), at);
            }
        }
    }

    /// The `k`-th least recently counted time (0-based), or the newest if there are fewer.
    fn nth_oldest(&self, k: usize) -> Option<i64> {
        self.by_time.iter().nth(k).or_else(|| self.by_time.last()).map(|(at, _)| *at)
    }
}

impl WhatsappState {
    fn admit(&mut self, portfolios: &[Portfolio<'_>], attempts: &[Attempt<'_>], now: DateTime<Utc>) -> Admission {
        let now_ms = ms(now);
        self.sweep(now_ms);
        for p in portfolios.iter().filter(|p| p.tier.is_some()) {
            self.windows.entry(p.name.to_owned()).or_default().trim(now_ms.saturating_sub(dur_ms(p.window)));
        }
        // Attempts capped so far per portfolio: the k-th waits for the k-th oldest to leave.
        let mut capped = vec![0usize; portfolios.len()];
        let service_from = now_ms.saturating_sub(dur_ms(SERVICE_WINDOW));
        let mut decisions = Vec::with_capacity(attempts.len());
        for a in attempts {
            let p = &portfolios[a.portfolio];
            let pair_key = (a.number.to_owned(), a.recipient.to_owned());
            let mut counts = false;
            if let Some(tier) = p.tier {
                let in_service = self.inbound.get(&pair_key).is_some_and(|at| *at > service_from);
                if !in_service {
                    let w = &self.windows[p.name];
                    if !w.counted.contains_key(a.recipient) && w.counted.len() as u64 >= tier {
                        let oldest = w.nth_oldest(capped[a.portfolio]).unwrap_or(now_ms);
                        capped[a.portfolio] += 1;
                        decisions.push(Decision::TierCap { until: from_ms(oldest.saturating_add(dur_ms(p.window))) });
                        continue;
                    }
                    counts = true;
                }
            }
            let interval = dur_ms(p.pair_interval);
            if interval > 0 {
                if let Some((last, job, _)) = self.pairs.get(&pair_key) {
                    if job != a.job_id && last.saturating_add(interval) > now_ms {
                        decisions.push(Decision::PairLimit { until: from_ms(last.saturating_add(interval)) });
                        continue;
                    }
                }
                self.pairs.insert(pair_key, (now_ms, a.job_id.to_owned(), now_ms.saturating_add(interval)));
            }
            if counts {
                self.windows.get_mut(p.name).expect("trimmed above").count(a.recipient, now_ms);
            }
            decisions.push(Decision::Allow);
        }
        let used = portfolios.iter().map(|p| if p.tier.is_some() { self.windows[p.name].counted.len() as u64 } else { 0 }).collect();
        Admission { decisions, used }
    }

    fn record_inbound(&mut self, contacts: &[(&str, &str, DateTime<Utc>)]) {
        for (number, recipient, at) in contacts {
            let e = self.inbound.entry(((*number).to_owned(), (*recipient).to_owned())).or_insert(i64::MIN);
            *e = (*e).max(ms(*at));
        }
    }

    fn usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Usage {
        let cutoff = ms(now).saturating_sub(dur_ms(window));
        let Some(w) = self.windows.get(portfolio) else { return Usage { used: 0, oldest: None } };
        let live = w.by_time.iter().filter(|(at, _)| *at > cutoff);
        let oldest = live.clone().next().map(|(at, _)| from_ms(*at));
        Usage { used: live.count() as u64, oldest }
    }

    /// Drops inbound contacts and pair sends that can no longer matter, once a minute of `now`.
    fn sweep(&mut self, now_ms: i64) {
        if now_ms.saturating_sub(self.last_sweep) < 60_000 {
            return;
        }
        self.last_sweep = now_ms;
        let service_from = now_ms.saturating_sub(dur_ms(SERVICE_WINDOW));
        self.inbound.retain(|_, at| *at > service_from);
        self.pairs.retain(|_, (_, _, until)| *until > now_ms);
    }
}
