//! The exactly-one-final audit (CONTRACT.md, "Report event"; issue 10), over report events as
//! they came off the wire, shared by the kill -9 loop (tests/crash.rs, loadtest/kill_loop.rs)
//! and the Redis fault tests (tests/redis_faults.rs). Only the wire contract is read: the
//! events are plain JSON, so new optional fields or non-final kinds do not break it.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// One report event. The events of one job must be given in the order they were published
/// (reports are keyed by job id, so one partition's order, or a JSONL file's).
#[derive(Debug, Clone)]
pub struct Event {
    pub job_id: String,
    pub event: String,
    pub is_final: bool,
    pub error: Option<String>,
    /// The report's `at`, unix µs (0 if it did not parse).
    pub at_us: i64,
}

impl Event {
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            job_id: v.get("job_id")?.as_str()?.to_owned(),
            event: v.get("event")?.as_str()?.to_owned(),
            is_final: v.get("final")?.as_bool()?,
            error: v.get("error").and_then(|e| e.get("message")).and_then(Value::as_str).map(str::to_owned),
            at_us: v.get("at").and_then(Value::as_str).and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok()).map_or(0, |a| a.timestamp_micros()),
        })
    }
}

/// What the audit found. Examples are capped at a few ids each.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    pub jobs: usize,
    pub events: usize,
    /// Events about ids nobody produced.
    pub foreign_events: usize,
    pub finals_by_kind: BTreeMap<String, usize>,
    pub events_by_kind: BTreeMap<String, usize>,
    pub no_final: Vec<String>,
    /// Ids with two or more finals, with the kinds of their finals in order.
    pub many_finals: Vec<(String, Vec<String>)>,
    /// Ids whose message reached the SMSC more than once, and how often.
    pub smsc_twice: Vec<(String, u32)>,
    pub smsc_messages: u64,
    /// `unknown` finals: ids with the report's `at`, and whether the SMSC ever got the message.
    pub unknown: Vec<(String, i64, bool)>,
    pub unknown_by_error: BTreeMap<String, usize>,
    /// `duplicate` events beyond (records − 1) for an id: produced once but told `duplicate`.
    pub false_duplicates: Vec<String>,
    pub false_duplicate_events: usize,
    /// Ids produced n > 1 times with fewer than n − 1 `duplicate` events.
    pub missing_duplicates: Vec<String>,
    pub ids_produced_twice: usize,
    /// Events after a job's first final other than `read` (and `duplicate`, which answers
    /// another record): (id, kind).
    pub after_final: Vec<(String, String)>,
    pub jobs_with_events_after_final: usize,
    pub accepted_after_final: usize,
    /// `delivered`/`undelivered` finals with no `accepted` before them.
    pub receipt_final_without_accepted: Vec<String>,
    /// Ids with more than one `accepted`.
    pub accepted_twice: Vec<String>,
    /// How many ids each example list stands for.
    pub counts: Counts,
}

const EXAMPLES: usize = 8;

fn push_example<T>(v: &mut Vec<T>, x: T, count: &mut usize) {
    *count += 1;
    if v.len() < EXAMPLES {
        v.push(x);
    }
}

/// Audits `events` for the ids in `records` (id → how many records carried it) against what
/// the SMSC took (`smsc`: id → messages).
pub fn audit(events: &[Event], records: &HashMap<String, u32>, smsc: &HashMap<String, u32>) -> Audit {
    let mut a = Audit { jobs: records.len(), events: events.len(), ..Audit::default() };
    let mut by_job: HashMap<&str, Vec<&Event>> = HashMap::with_capacity(records.len());
    for e in events {
        *a.events_by_kind.entry(e.event.clone()).or_default() += 1;
        if !records.contains_key(&e.job_id) {
            a.foreign_events += 1;
            continue;
        }
        by_job.entry(&e.job_id).or_default().push(e);
    }
    let (mut n_no_final, mut n_many, mut n_twice, mut n_missing_dup, mut n_false_dup_ids, mut n_no_acc, mut n_acc_twice) = (0, 0, 0, 0, 0, 0, 0);
    let mut ids: Vec<&String> = records.keys().collect();
    ids.sort();
    for id in ids {
        let n_records = records[id];
        if n_records > 1 {
            a.ids_produced_twice += 1;
        }
        let evs = by_job.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let finals: Vec<&&Event> = evs.iter().filter(|e| e.is_final).collect();
        match finals.len() {
            0 => push_example(&mut a.no_final, id.clone(), &mut n_no_final),
            1 => {}
            _ => push_example(&mut a.many_finals, (id.clone(), finals.iter().map(|e| e.event.clone()).collect()), &mut n_many),
        }
        for f in &finals {
            *a.finals_by_kind.entry(f.event.clone()).or_default() += 1;
        }
        let at_smsc = smsc.get(id).copied().unwrap_or(0);
        a.smsc_messages += u64::from(at_smsc);
        if at_smsc > 1 {
            push_example(&mut a.smsc_twice, (id.clone(), at_smsc), &mut n_twice);
        }
        if let Some(first) = finals.first() {
            if first.event == "unknown" {
                a.unknown.push((id.clone(), first.at_us, at_smsc > 0));
                let why = first.error.clone().unwrap_or_default();
                let why: String = why.chars().take(70).collect();
                *a.unknown_by_error.entry(why).or_default() += 1;
            }
        }
        // Duplicates: one per extra record.
        let dups = evs.iter().filter(|e| e.event == "duplicate").count() as u32;
        let want = n_records.saturating_sub(1);
        if dups > want {
            a.false_duplicate_events += (dups - want) as usize;
            push_example(&mut a.false_duplicates, id.clone(), &mut n_false_dup_ids);
        } else if dups < want {
            push_example(&mut a.missing_duplicates, id.clone(), &mut n_missing_dup);
        }
        // Order.
        let mut seen_final = false;
        let mut accepted = 0;
        let mut after = false;
        for e in evs {
            if seen_final && e.event != "read" && e.event != "duplicate" {
                after = true;
                if a.after_final.len() < EXAMPLES {
                    a.after_final.push((id.clone(), e.event.clone()));
                }
                if e.event == "accepted" {
                    a.accepted_after_final += 1;
                }
            }
            if e.event == "accepted" {
                accepted += 1;
            }
            if e.is_final && !seen_final {
                seen_final = true;
                if (e.event == "delivered" || e.event == "undelivered") && accepted == 0 {
                    push_example(&mut a.receipt_final_without_accepted, id.clone(), &mut n_no_acc);
                }
            }
        }
        if after {
            a.jobs_with_events_after_final += 1;
        }
        if accepted > 1 {
            push_example(&mut a.accepted_twice, id.clone(), &mut n_acc_twice);
        }
    }
    a.counts = Counts {
        no_final: n_no_final,
        many_finals: n_many,
        smsc_twice: n_twice,
        false_duplicate_ids: n_false_dup_ids,
        missing_duplicates: n_missing_dup,
        receipt_final_without_accepted: n_no_acc,
        accepted_twice: n_acc_twice,
    };
    a
}

/// Totals behind the capped example lists.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub no_final: usize,
    pub many_finals: usize,
    pub smsc_twice: usize,
    pub false_duplicate_ids: usize,
    pub missing_duplicates: usize,
    pub receipt_final_without_accepted: usize,
    pub accepted_twice: usize,
}

impl Audit {
    /// One line per broken rule; empty when the run kept the contract.
    pub fn problems(&self) -> Vec<String> {
        let c = &self.counts;
        let mut p = Vec::new();
        if c.no_final > 0 {
            p.push(format!("{} jobs without a final, e.g. {:?}", c.no_final, self.no_final));
        }
        if c.many_finals > 0 {
            p.push(format!("{} jobs with two or more finals, e.g. {:?}", c.many_finals, self.many_finals));
        }
        if c.smsc_twice > 0 {
            p.push(format!("{} jobs reached the SMSC more than once, e.g. {:?}", c.smsc_twice, self.smsc_twice));
        }
        if self.false_duplicate_events > 0 {
            p.push(format!(
                "{} `duplicate` events for records that were not second records ({} ids), e.g. {:?}",
                self.false_duplicate_events, c.false_duplicate_ids, self.false_duplicates
            ));
        }
        if c.missing_duplicates > 0 {
            p.push(format!("{} ids produced twice without their `duplicate` event, e.g. {:?}", c.missing_duplicates, self.missing_duplicates));
        }
        if self.jobs_with_events_after_final > 0 {
            p.push(format!(
                "{} jobs with events after their final ({} of them `accepted`), e.g. {:?}",
                self.jobs_with_events_after_final, self.accepted_after_final, self.after_final
            ));
        }
        if c.receipt_final_without_accepted > 0 {
            p.push(format!(
                "{} delivered/undelivered finals with no `accepted` before them, e.g. {:?}",
                c.receipt_final_without_accepted, self.receipt_final_without_accepted
            ));
        }
        if c.accepted_twice > 0 {
            p.push(format!("{} jobs `accepted` more than once, e.g. {:?}", c.accepted_twice, self.accepted_twice));
        }
        p
    }

    /// The audit as `(check, got, want)` rows.
    pub fn rows(&self) -> Vec<(String, String, String)> {
        let c = &self.counts;
        let unknown_never = self.unknown.iter().filter(|u| !u.2).count();
        vec![
            ("jobs (ids produced)".into(), self.jobs.to_string(), String::new()),
            ("report events read".into(), self.events.to_string(), String::new()),
            ("jobs with 0 finals".into(), c.no_final.to_string(), "0".into()),
            ("jobs with >= 2 finals".into(), c.many_finals.to_string(), "0".into()),
            ("messages at the SMSC".into(), self.smsc_messages.to_string(), String::new()),
            ("jobs at the SMSC twice or more".into(), c.smsc_twice.to_string(), "0".into()),
            ("unknown finals".into(), self.unknown.len().to_string(), String::new()),
            ("  of which never reached the SMSC".into(), unknown_never.to_string(), String::new()),
            ("ids produced twice".into(), self.ids_produced_twice.to_string(), String::new()),
            ("false duplicate events (record produced once)".into(), self.false_duplicate_events.to_string(), "0".into()),
            ("second records without a duplicate event".into(), c.missing_duplicates.to_string(), "0".into()),
            ("jobs with events after the final (not read)".into(), self.jobs_with_events_after_final.to_string(), "0".into()),
            ("  accepted after the final".into(), self.accepted_after_final.to_string(), "0".into()),
            ("delivered/undelivered without accepted before".into(), c.receipt_final_without_accepted.to_string(), "0".into()),
            ("jobs accepted twice".into(), c.accepted_twice.to_string(), "0".into()),
        ]
    }
}

/// Rows as an aligned text table.
pub fn table(rows: &[(String, String, String)]) -> String {
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0).max(5);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(3);
    let mut out = format!("  {:<w0$}  {:>w1$}  {}\n", "check", "got", "want");
    for (a, b, c) in rows {
        out += &format!("  {a:<w0$}  {b:>w1$}  {c}\n");
    }
    out
}

/// Messages at the SMSC per job id, from message texts that carry the id after `marker`
/// (e.g. "job " in "kill loop job RUN-17: ..."): the id runs to the next space or ':'.
pub fn smsc_counts<'a>(texts: impl Iterator<Item = &'a str>, marker: &str) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for t in texts {
        if let Some(rest) = t.split(marker).nth(1) {
            let id: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ':').collect();
            *m.entry(id).or_default() += 1;
        }
    }
    m
}
