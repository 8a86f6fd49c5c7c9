//! Opt-outs: one list of recipients per tenant and channel, checked for a batch on the hot path
//! and edited and paged through by the admin API and inbound `STOP` messages.

use async_trait::async_trait;

use super::StoreError;

/// One opt-out list entry: `(tenant, channel, recipient)`. Each tenant has one list per channel.
pub type OptOutEntry<'a> = (&'a str, &'a str, &'a str);

/// One page of an opt-out list, in recipient (byte) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptOutPage {
    pub recipients: Vec<String>,
    /// Pass back as `after` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl OptOutPage {
    /// A page from up to `limit + 1` recipients read in order: the extra one only says that
    /// another page follows, which then starts after this page's last recipient.
    pub fn from_overfetch(mut recipients: Vec<String>, limit: usize) -> Self {
        let next_cursor = if recipients.len() > limit {
            recipients.truncate(limit);
            recipients.last().cloned()
        } else {
            None
        };
        Self { recipients, next_cursor }
    }
}

#[async_trait]
pub trait OptOuts: Send + Sync {
    /// Whether each recipient is on its tenant's opt-out list for its channel, in order; one
    /// round trip for the batch (the opt-out policy calls this on the hot path).
    async fn opted_out(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Puts recipients on opt-out lists; `true` where one was not on it before.
    async fn add_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Takes recipients off opt-out lists; `true` where one was on it.
    async fn remove_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError>;

    /// Up to `limit` recipients of one list that sort after `after` (from the start without it).
    async fn list_opt_outs(&self, tenant: &str, channel: &str, after: Option<&str>, limit: usize) -> Result<OptOutPage, StoreError>;
}
