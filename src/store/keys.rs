//! Every Redis key name `RedisStore` and its Lua scripts use, built from the configured prefix.
//!
//! Scripts that must find keys Rust cannot name in advance (an owner's alive key, the other
//! parts' message keys, an overdue job's keys) get the matching `*_prefix` as an argument and
//! append exactly what the builder here appends; the tests below pin that join so the two
//! cannot drift apart.

/// The key names of one deployment: everything starts with `prefix`, so several deployments
/// (or test runs) can share one Redis.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// String = the incarnation of the live process running `instance_id`, with a PX of the
    /// heartbeat TTL: the claims of an owner whose incarnation is not here are up for grabs.
    pub fn alive(&self, instance_id: &str) -> String {
        format!("{}{instance_id}", self.alive_prefix())
    }
    pub fn alive_prefix(&self) -> String {
        format!("{}alive:", self.prefix)
    }

    /// Hash `st` (claimed | submitting | deferred | sent | final) + `own` (`instance/incarnation`):
    /// the dedup claim of one job id, expiring with the claim TTL. While the job awaits its
    /// final receipt it also holds `j` (SentJob JSON), `n` (parts), `left` (parts not yet
    /// delivered; the previous version counted `ok` up instead) and, once decided, `fin` (the
    /// outcome): one key per job, so a receipt costs one lookup and finishing a job one HDEL.
    pub fn job(&self, job_id: &str) -> String {
        format!("{}{job_id}", self.job_prefix())
    }
    pub fn job_prefix(&self) -> String {
        format!("{}job:", self.prefix)
    }

    /// ZSET job id → due (unix ms); a leased entry's score is its lease's end instead.
    pub fn sched(&self) -> String {
        format!("{}sched", self.prefix)
    }
    /// Hash job id → one recheck flag byte (`0`/`1`) followed by the job's contract JSON.
    pub fn sched_payload(&self) -> String {
        format!("{}sched:payload", self.prefix)
    }
    /// Hash job id → the lease token of its current claim (absent while unclaimed).
    pub fn sched_lease(&self) -> String {
        format!("{}sched:lease", self.prefix)
    }
    /// Counter handing out lease tokens, so a stale claim can never match a newer one.
    pub fn sched_seq(&self) -> String {
        format!("{}sched:seq", self.prefix)
    }

    /// `{prefix}msgs:{provider}`: hash message id → job id, one per provider, how a receipt
    /// finds its job (the scripts append the provider: `scripts/mappings.lua`).
    pub fn msgs_prefix(&self) -> String {
        format!("{}msgs:", self.prefix)
    }

    /// String = job id, for one submitted part, as builds before the per-provider hash kept
    /// it: still taken by a receipt, never written.
    pub fn msg(&self, provider: &str, message_id: &str) -> String {
        format!("{}{provider}:{message_id}", self.msg_prefix())
    }
    pub fn msg_prefix(&self) -> String {
        format!("{}msg:", self.prefix)
    }

    /// Where a replay-guarded script keeps its reply for a retry of the same call.
    pub fn reply(&self, nonce: u64) -> String {
        format!("{}reply:{nonce:016x}", self.prefix)
    }

    /// ZSET offset → when it was checkpointed (unix ms): how far the reports sink had written
    /// one partition of the reports topic, so a read-back starts near a decision's time.
    pub fn offsets(&self, partition: i32) -> String {
        format!("{}offsets:{partition}", self.prefix)
    }

    /// String = SentJob JSON of a job whose `delivered` is out, for a later `read` of one of
    /// its messages (see `Receipts::keep_for_read`), with a TTL.
    pub fn read(&self, provider: &str, message_id: &str) -> String {
        format!("{}read:{provider}:{message_id}", self.prefix)
    }

    /// String `outcome\nerror code` of one early receipt (see `Store::keep_early`), with a TTL.
    pub fn early(&self, provider: &str, message_id: &str) -> String {
        format!("{}early:{provider}:{message_id}", self.prefix)
    }
    pub fn early_prefix(&self) -> String {
        format!("{}early:", self.prefix)
    }
    /// ZSET `provider:message id` → when it was last tried (unix ms): the early receipts kept.
    pub fn early_index(&self) -> String {
        format!("{}early_index", self.prefix)
    }

    /// ZSET job id → receipt deadline (unix ms).
    pub fn deadlines(&self) -> String {
        format!("{}deadlines", self.prefix)
    }

    /// A job's history, `GET /v1/jobs/{id}`: one string of report JSON lines, oldest first
    /// (`record_events.lua`).
    pub fn history(&self, job_id: &str) -> String {
        format!("{}{job_id}", self.history_prefix())
    }
    pub fn history_prefix(&self) -> String {
        format!("{}history:", self.prefix)
    }

    /// A job's history as builds before session 10 kept it: a list of report JSON (read still,
    /// for histories written before or during an upgrade; never written).
    pub fn hist(&self, job_id: &str) -> String {
        format!("{}hist:{job_id}", self.prefix)
    }

    /// ZSET of the recipients on one tenant's opt-out list for one channel, every score 0 so
    /// that members sort by bytes and the list pages by recipient (`ZRANGE … BYLEX`). Tenant
    /// and channel names cannot hold `:`, so no two lists share a key.
    pub fn opt_out(&self, tenant: &str, channel: &str) -> String {
        format!("{}optout:{tenant}:{channel}", self.prefix)
    }

    /// ZSET recipient → when it was last counted (unix ms): the recipients one WhatsApp
    /// portfolio reached in its moving window (trimmed by score, never by TTL, so that the
    /// window follows the `now` the policy passes in).
    pub fn wa_window(&self, portfolio: &str) -> String {
        format!("{}wa:window:{portfolio}", self.prefix)
    }

    /// String = unix ms of the recipient's last message to this phone number id: the
    /// customer-service window it opened. The TTL only cleans up; the value decides.
    pub fn wa_inbound(&self, number: &str, recipient: &str) -> String {
        format!("{}wa:inbound:{number}:{recipient}", self.prefix)
    }

    /// String = `"{unix ms} {job id}"` of the last send from this number to this recipient
    /// (Meta's pair limit). The TTL only cleans up; the value decides.
    pub fn wa_pair(&self, number: &str, recipient: &str) -> String {
        format!("{}wa:pair:{number}:{recipient}", self.prefix)
    }

    /// String = the TAT of one rate limit (µs since the epoch), expiring once it is not booked
    /// ahead: `rate:provider:smsc-a`, `rate:campaign:acme/promo`.
    pub fn rate(&self, limit: &str) -> String {
        format!("{}rate:{limit}", self.prefix)
    }

    /// Hash `tenant/campaign` (or `*/campaign`) → speed set at runtime, segments per second.
    pub fn campaign_rates(&self) -> String {
        format!("{}campaign_rates", self.prefix)
    }

    /// Hash `tenant/campaign` → `finish_by` set through the admin API (unix ms).
    pub fn campaign_finish_by(&self) -> String {
        format!("{}campaign_finish_by", self.prefix)
    }
    /// Hash `tenant/campaign` → `finish_by` proposed by the campaign's first job (unix ms).
    pub fn campaign_finish_by_job(&self) -> String {
        format!("{}campaign_finish_by_job", self.prefix)
    }
    /// ZSET job id → when first seen pending (unix ms): a paced campaign's pending jobs.
    pub fn campaign_pending(&self, tenant: &str, campaign: &str) -> String {
        format!("{}pending:{tenant}/{campaign}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn scripts_can_rebuild_keys_from_prefixes() {
        let k = Keys::new("sg:");
        // The Lua scripts do exactly these concatenations.
        assert_eq!(k.alive("host-1"), format!("{}{}", k.alive_prefix(), "host-1"));
        assert_eq!(k.job("j1"), format!("{}{}", k.job_prefix(), "j1"));
        assert_eq!(k.history("j1"), format!("{}{}", k.history_prefix(), "j1"));
        assert_eq!(k.msg("acme", "0a1"), format!("{}{}:{}", k.msg_prefix(), "acme", "0a1"));
        assert_eq!(k.early("acme", "0a1"), format!("{}{}:{}", k.early_prefix(), "acme", "0a1"));
    }

    #[test]
    fn every_key_starts_with_the_prefix() {
        let k = Keys::new("sg:");
        for key in [
            k.alive("h"),
            k.job("j"),
            k.sched(),
            k.sched_payload(),
            k.sched_lease(),
            k.sched_seq(),
            k.msg("p", "m"),
            k.deadlines(),
            k.offsets(0),
            k.early("p", "m"),
            k.early_index(),
            k.hist("j"),
            k.opt_out("t", "sms"),
            k.wa_window("p"),
            k.wa_inbound("1", "+1"),
            k.wa_pair("1", "+1"),
            k.rate("provider:p"),
            k.campaign_rates(),
            k.campaign_finish_by(),
            k.campaign_finish_by_job(),
            k.campaign_pending("t", "c"),
        ] {
            assert!(key.starts_with("sg:"), "{key}");
        }
    }
}
