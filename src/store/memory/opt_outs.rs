//! Opt-out lists in memory: an ordered set per tenant and channel, so a list pages by
//! recipient like Redis's sorted set does with `ZRANGE … BYLEX`.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::{Inner, MemoryStore};
use crate::store::{OptOutEntry, OptOutPage, OptOuts, StoreError};

impl Inner {
    fn opt_out_list(&self, tenant: &str, channel: &str) -> Option<&BTreeSet<String>> {
        self.opt_outs.get(tenant)?.get(channel)
    }
}

#[async_trait]
impl OptOuts for MemoryStore {
    async fn opted_out(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        let g = self.lock();
        Ok(entries.iter().map(|(t, c, r)| g.opt_out_list(t, c).is_some_and(|list| list.contains(*r))).collect())
    }

    async fn add_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        Ok(entries.iter().map(|(t, c, r)| g.opt_outs.entry((*t).to_owned()).or_default().entry((*c).to_owned()).or_default().insert((*r).to_owned())).collect())
    }

    async fn remove_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        Ok(entries.iter().map(|(t, c, r)| g.opt_outs.get_mut(*t).and_then(|l| l.get_mut(*c)).is_some_and(|list| list.remove(*r))).collect())
    }

    async fn list_opt_outs(&self, tenant: &str, channel: &str, after: Option<&str>, limit: usize) -> Result<OptOutPage, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let g = self.lock();
        let Some(list) = g.opt_out_list(tenant, channel) else { return Ok(OptOutPage::default()) };
        let from = after.map_or(Unbounded, |a| Excluded(a.to_owned()));
        let recipients: Vec<String> = list.range((from, Unbounded)).take(limit.saturating_add(1)).cloned().collect();
        Ok(OptOutPage::from_overfetch(recipients, limit))
    }
}
