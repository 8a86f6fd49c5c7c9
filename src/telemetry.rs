//! Every metric name the daemon emits, declared once, plus the `/metrics` renderer.
//!
//! Names follow Prometheus conventions: `sendgate_` prefix, base units in the name, `_total`
//! on counters. Labels never carry a phone number, a job id or a message id.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Jobs read from a source, by `source` (`http`, `kafka`, `scheduler`).
pub const JOBS_CONSUMED_TOTAL: &str = "sendgate_jobs_consumed_total";
/// Items a source refused before they became jobs, by `source` and `reason`.
pub const JOBS_REJECTED_AT_INGEST_TOTAL: &str = "sendgate_jobs_rejected_at_ingest_total";
/// Policy decisions, by `policy` and `verdict` (`allow`, `defer`, `stop`).
pub const POLICY_VERDICTS_TOTAL: &str = "sendgate_policy_verdicts_total";
/// Requests handed to a provider, by `provider` and `outcome` (`accepted`, `throttled`, `retry`,
/// `rejected`, `timeout`, `failed`).
pub const PROVIDER_REQUESTS_TOTAL: &str = "sendgate_provider_requests_total";
/// Time from handing a message to a provider to its answer, by `provider`.
pub const PROVIDER_REQUEST_DURATION_SECONDS: &str = "sendgate_provider_request_duration_seconds";
/// SMPP binds currently bound, by `provider` (transmitters and receivers each count).
pub const SMPP_BINDS_BOUND: &str = "sendgate_smpp_binds_bound";
/// SMPP binds configured but not bound right now, by `provider`.
pub const SMPP_BINDS_DOWN: &str = "sendgate_smpp_binds_down";
/// SMPP window slots of the submitting binds, by `provider` (`binds × window`).
pub const SMPP_WINDOW_SLOTS: &str = "sendgate_smpp_window_slots";
/// Of those, the slots jobs hold right now (sampled each second), by `provider`: a job holds one
/// from before its submit gate mark until its answer is recorded. At the configured total while
/// jobs wait, the window bounds the rate (docs/smpp.md "Window slots and throughput").
pub const SMPP_WINDOW_SLOTS_IN_USE: &str = "sendgate_smpp_window_slots_in_use";
/// submit_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL, by `provider` and `status`.
pub const SMPP_THROTTLED_TOTAL: &str = "sendgate_smpp_throttled_total";
/// Bind pauses after throttling, by `provider`: `_sum` is the seconds binds spent paused
/// (overlapping pauses counted once), `_count` the pauses started or extended.
pub const SMPP_LINK_PAUSE_SECONDS: &str = "sendgate_smpp_link_pause_seconds";
/// Delivery receipts received, by `provider` and `outcome` (`matched`, `unmatched`, `mo`, and
/// `read`: a chat's `read` after its job's `delivered`).
pub const RECEIPTS_TOTAL: &str = "sendgate_receipts_total";
/// `/v1/webhooks/{provider}` requests, by `provider` (`(unknown)` for a name no provider with a
/// webhook has) and `outcome` (`accepted`, `verified`, `unauthorized`, `malformed`, `too_large`,
/// `body_timeout`, `broken_body`, `unknown_provider`, `method_not_allowed`, `unavailable`).
pub const WEBHOOK_REQUESTS_TOTAL: &str = "sendgate_webhook_requests_total";
/// Statuses in an authenticated `kind = "http"` webhook body that could not be read, by
/// `provider` and `reason` (`no_message_id`, `no_status`): skipped, the rest of the body taken.
pub const WEBHOOK_STATUSES_IGNORED_TOTAL: &str = "sendgate_webhook_statuses_ignored_total";
/// Report events produced, by `event`.
pub const REPORTS_TOTAL: &str = "sendgate_reports_total";
/// Submits whose outcome is unknown and that are never resent, by `cause`
/// (`response_timeout`, `connection_closed`, `instance_died`).
pub const SUBMITS_AMBIGUOUS_TOTAL: &str = "sendgate_submits_ambiguous_total";
/// submit_sm sent again after getting no answer (`on_response_timeout = "retry"`), by
/// `provider` and `cause` (`response_timeout`, `connection_closed`).
pub const SMPP_SUBMITS_RESENT_TOTAL: &str = "sendgate_smpp_submits_resent_total";
/// Recipients newly put on an opt-out list, by `source` (`mo`: a STOP reply, `admin`: the admin API,
/// `blocked`: a Telegram user blocked the bot).
pub const OPT_OUTS_TOTAL: &str = "sendgate_opt_outs_total";
/// Jobs currently between source and a durable point (in memory).
pub const JOBS_IN_FLIGHT: &str = "sendgate_jobs_in_flight";

/// `submit_sm` PDUs the built-in SMSC simulator received.
pub const SIM_SUBMIT_SM_TOTAL: &str = "sendgate_smsc_sim_submit_sm_total";
/// Whole (reassembled) messages the built-in SMSC simulator received.
pub const SIM_MESSAGES_TOTAL: &str = "sendgate_smsc_sim_messages_total";
/// Delivery receipts the built-in SMSC simulator sent, by `outcome`.
pub const SIM_RECEIPTS_TOTAL: &str = "sendgate_smsc_sim_receipts_total";
/// Send requests the built-in provider simulator answered, by `mode` (`whatsapp`) and `answer`
/// (`taken`, `taken_slowly`, `throttled`, `pair_limit`, `server_error`, `overloaded`,
/// `bad_token`, `invalid`, `unknown_path`).
pub const PROVIDER_SIM_REQUESTS_TOTAL: &str = "sendgate_provider_sim_requests_total";
/// Statuses the built-in provider simulator pushed and the webhook receiver took (answered
/// 2xx), by `mode` and `status` (`sent`, `delivered`, `read`, `failed`): the webhook intake.
pub const PROVIDER_SIM_STATUSES_TOTAL: &str = "sendgate_provider_sim_statuses_total";

/// Counts per label value within one batch, so that a labelled counter is looked up once per
/// value and batch instead of once per job: each `counter!` with labels hashes its name and
/// labels into the registry, which per job and policy was a visible share of the daemon's CPU.
#[derive(Debug)]
pub struct Tally<K> {
    counts: Vec<(K, u64)>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self { counts: Vec::new() }
    }
}

impl<K: PartialEq> Tally<K> {
    /// A batch meets a handful of distinct values: a linear scan beats hashing.
    pub fn add(&mut self, key: K) {
        match self.counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((key, 1)),
        }
    }
}

impl<K> IntoIterator for Tally<K> {
    type Item = (K, u64);
    type IntoIter = std::vec::IntoIter<(K, u64)>;
    fn into_iter(self) -> Self::IntoIter {
        self.counts.into_iter()
    }
}

/// MO messages the broker did not take within `kafka.inbound_timeout` (dropped; logged masked).
pub const INBOUND_UNPUBLISHED_TOTAL: &str = "sendgate_inbound_unpublished_total";
/// Requests the Redis store sent (a script or a pipeline is one round trip).
pub const REDIS_REQUESTS_TOTAL: &str = "sendgate_redis_requests_total";
/// Failed store or sink calls tried again by `retry::until_ok`, by `op`.
pub const RETRIES_TOTAL: &str = "sendgate_retries_total";
/// Jobs this instance dropped because another claim holds them now (it stalled past its
/// heartbeat and was taken over), by `step` (`submit`, `track`, `park`, `final`).
pub const JOBS_FENCED_TOTAL: &str = "sendgate_jobs_fenced_total";
/// Records read again (a crash or a rebalance re-delivered them) that needed no event.
pub const JOBS_REPLAYED_TOTAL: &str = "sendgate_jobs_replayed_total";

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// Several app instances in one test process share the recorder; that is why this is a
/// `OnceLock` and not an error on the second call.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            .expect("static buckets are valid")
            .install_recorder()
            .expect("the first install of the recorder succeeds");
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(JOBS_CONSUMED_TOTAL, "Jobs read from a source");
    describe_counter!(JOBS_REJECTED_AT_INGEST_TOTAL, "Items refused before they became jobs");
    describe_counter!(POLICY_VERDICTS_TOTAL, "Policy decisions");
    describe_counter!(PROVIDER_REQUESTS_TOTAL, "Requests handed to providers");
    describe_histogram!(PROVIDER_REQUEST_DURATION_SECONDS, Unit::Seconds, "Provider answer latency");
    describe_counter!(WEBHOOK_REQUESTS_TOTAL, "Provider webhook requests, by how they were answered");
    describe_counter!(WEBHOOK_STATUSES_IGNORED_TOTAL, "Statuses in HTTP provider webhooks that had no message id or status");
    describe_gauge!(SMPP_BINDS_BOUND, "SMPP binds currently bound");
    describe_gauge!(SMPP_BINDS_DOWN, "SMPP binds configured but not bound");
    describe_gauge!(SMPP_WINDOW_SLOTS, "SMPP window slots of the submitting binds (binds x window)");
    describe_gauge!(SMPP_WINDOW_SLOTS_IN_USE, "SMPP window slots held by jobs between their submit gate mark and their recorded answer");
    describe_counter!(SMPP_THROTTLED_TOTAL, "submit_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL");
    describe_histogram!(SMPP_LINK_PAUSE_SECONDS, Unit::Seconds, "Time SMPP binds spent paused after throttling");
    describe_counter!(RECEIPTS_TOTAL, "Delivery receipts received");
    describe_counter!(REPORTS_TOTAL, "Report events produced");
    describe_counter!(SUBMITS_AMBIGUOUS_TOTAL, "Submits with unknown outcome, never resent");
    describe_counter!(SMPP_SUBMITS_RESENT_TOTAL, "submit_sm resent after no answer (on_response_timeout = retry)");
    describe_counter!(OPT_OUTS_TOTAL, "Recipients newly put on an opt-out list");
    describe_counter!(INBOUND_UNPUBLISHED_TOTAL, "MO messages not published in time and dropped");
    describe_counter!(REDIS_REQUESTS_TOTAL, "Requests sent to Redis: one per script or pipeline");
    describe_gauge!(JOBS_IN_FLIGHT, "Jobs between source and a durable point");
    describe_counter!(SIM_SUBMIT_SM_TOTAL, "submit_sm PDUs received by the SMSC simulator");
    describe_counter!(SIM_MESSAGES_TOTAL, "Reassembled messages received by the SMSC simulator");
    describe_counter!(SIM_RECEIPTS_TOTAL, "Receipts sent by the SMSC simulator");
    describe_counter!(PROVIDER_SIM_REQUESTS_TOTAL, "Send requests answered by the provider simulator");
    describe_counter!(PROVIDER_SIM_STATUSES_TOTAL, "Statuses the provider simulator pushed and the webhook receiver took");
    describe_counter!(QUIET_HOURS_ZONE_FALLBACK_TOTAL, "Quiet-hour decisions made in the tenant's zone because the prefix's zones share no allowed time");
    describe_whatsapp();
    describe_rate_limits();
    describe_http();
    describe_prices();
    describe_cascades();
}

/// Cascade steps that ended, by `cascade` (its config name, or `inline`), `step` (index) and
/// `outcome` (the step's own: delivered, undelivered, unknown, ...).
pub const CASCADE_STEPS_TOTAL: &str = "sendgate_cascade_steps_total";
/// Fallbacks fired: a step ended without ending its job, so the next step goes; by `cascade`
/// and `step` (the index of the step that fell back).
pub const CASCADE_FALLBACKS_TOTAL: &str = "sendgate_cascade_fallbacks_total";
/// Receipts of a cascade step that came after the step had ended (its decision time over):
/// recorded in the job's history, never a second final; by `cascade`.
pub const CASCADE_LATE_RESULTS_TOTAL: &str = "sendgate_cascade_late_results_total";

fn describe_cascades() {
    use metrics::describe_counter;
    describe_counter!(CASCADE_STEPS_TOTAL, "Cascade steps that ended, by cascade, step and outcome");
    describe_counter!(CASCADE_FALLBACKS_TOTAL, "Cascade fallbacks fired, by cascade and the step that fell back");
    describe_counter!(CASCADE_LATE_RESULTS_TOTAL, "Receipts of cascade steps that had already ended");
}

/// Quiet-hour decisions made in the tenant's zone because the zones of the number's prefix
/// share no allowed instant within 24 h.
pub const QUIET_HOURS_ZONE_FALLBACK_TOTAL: &str = "sendgate_quiet_hours_zone_fallback_total";

/// What accepted jobs cost, in micro-units (1e-6) of `currency`, by `provider` and `currency`:
/// an integer counter, so sums are exact.
pub const SPEND_MICRO_UNITS_TOTAL: &str = "sendgate_spend_micro_units_total";
/// What finals refunded (`refund_on`), in micro-units, by `provider` and `currency`.
pub const REFUNDS_MICRO_UNITS_TOTAL: &str = "sendgate_refunds_micro_units_total";
/// Accepted jobs on a provider with a price table that has no row for them, by `provider`.
pub const JOBS_UNPRICED_TOTAL: &str = "sendgate_jobs_unpriced_total";

fn describe_prices() {
    use metrics::describe_counter;
    describe_counter!(SPEND_MICRO_UNITS_TOTAL, "What accepted jobs cost, in micro-units of the currency");
    describe_counter!(REFUNDS_MICRO_UNITS_TOTAL, "What finals refunded, in micro-units of the currency");
    describe_counter!(JOBS_UNPRICED_TOTAL, "Accepted jobs their provider's price table has no row for");
}

/// Unique recipients a WhatsApp portfolio has reached in its moving window, by `portfolio`
/// (as last seen by this instance; the count itself is shared, so take the max across them).
pub const WHATSAPP_TIER_USED_RECIPIENTS: &str = "sendgate_whatsapp_tier_used_recipients";
/// A WhatsApp portfolio's messaging limit, by `portfolio` (absent for an unlimited one).
pub const WHATSAPP_TIER_LIMIT_RECIPIENTS: &str = "sendgate_whatsapp_tier_limit_recipients";
/// WhatsApp jobs deferred by the `whatsapp_tier` policy, by `portfolio` and `reason`
/// (`tier_cap`, `pair_limit`).
pub const WHATSAPP_DEFERRED_TOTAL: &str = "sendgate_whatsapp_deferred_total";
/// WhatsApp jobs sent without a tier check because their `from` is in no configured
/// portfolio, by `reason` (`no_from`, `unknown_number`).
pub const WHATSAPP_UNMANAGED_TOTAL: &str = "sendgate_whatsapp_unmanaged_total";

fn describe_whatsapp() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(WHATSAPP_TIER_USED_RECIPIENTS, "Unique recipients a WhatsApp portfolio reached in its window");
    describe_gauge!(WHATSAPP_TIER_LIMIT_RECIPIENTS, "A WhatsApp portfolio's messaging limit");
    describe_counter!(WHATSAPP_DEFERRED_TOTAL, "WhatsApp jobs deferred by tier cap or pair limit");
    describe_counter!(WHATSAPP_UNMANAGED_TOTAL, "WhatsApp jobs whose sender is in no configured portfolio");
}

/// Time jobs waited in place for their rate-limit slot, by the `limit` kind that held them
/// (`provider`, `sender`, `tenant`, `campaign`, `pace`): `_sum` is the seconds waited, `_count` the
/// jobs that waited. A histogram because counters here are integers.
pub const RATE_LIMIT_WAIT_SECONDS: &str = "sendgate_rate_limit_wait_seconds";
/// Jobs deferred as `rate_limited` (their turn was further off than `max_wait`), by `limit`.
pub const RATE_LIMITED_TOTAL: &str = "sendgate_rate_limited_total";

/// Campaigns this instance paces now (smooth sending: a `finish_by` from the admin API,
/// config or a job). Per-campaign figures are in the admin API: campaign names are unbounded.
pub const CAMPAIGNS_PACED: &str = "sendgate_campaigns_paced";
/// Jobs pending in the campaigns this instance paces, summed, as the store last counted them.
pub const CAMPAIGN_JOBS_PENDING: &str = "sendgate_campaign_jobs_pending";
/// Jobs of a paced campaign let go by the rate limiter after their campaign's `finish_by`.
pub const CAMPAIGN_JOBS_LATE_TOTAL: &str = "sendgate_campaign_jobs_late_total";

fn describe_rate_limits() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(RATE_LIMIT_WAIT_SECONDS, Unit::Seconds, "Time jobs waited in place for a rate-limit slot");
    describe_counter!(RATE_LIMITED_TOTAL, "Jobs deferred by a rate limit");
    describe_gauge!(CAMPAIGNS_PACED, "Campaigns paced to a finish_by by this instance");
    describe_gauge!(CAMPAIGN_JOBS_PENDING, "Jobs pending in the campaigns this instance paces");
    describe_counter!(CAMPAIGN_JOBS_LATE_TOTAL, "Jobs of paced campaigns let go after their finish_by");
}

/// HTTP connections the server closed before their client did, by `reason`
/// (`header_timeout`, `idle_timeout`, `over_capacity`: refused at `server.max_connections`).
pub const HTTP_CONNECTIONS_CLOSED_TOTAL: &str = "sendgate_http_connections_closed_total";
/// Failed `accept` calls on the HTTP listeners, by `kind`: `connection` (one client's, the
/// next is accepted at once) or `resource` (the process is out of file descriptors or memory;
/// accepting backs off).
pub const HTTP_ACCEPT_ERRORS_TOTAL: &str = "sendgate_http_accept_errors_total";

fn describe_http() {
    use metrics::describe_counter;
    describe_counter!(HTTP_CONNECTIONS_CLOSED_TOTAL, "HTTP connections closed by the server: timeouts and the connection cap");
    describe_counter!(HTTP_ACCEPT_ERRORS_TOTAL, "Failed accepts on the HTTP listeners");
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn tally_counts_each_value_once_in_first_seen_order() {
        let mut t = Tally::default();
        for v in ["allow", "stop", "allow", "defer", "allow"] {
            t.add(v);
        }
        assert_eq!(t.into_iter().collect::<Vec<_>>(), [("allow", 3), ("stop", 1), ("defer", 1)]);
        assert_eq!(Tally::<&str>::default().into_iter().count(), 0);
    }
}
