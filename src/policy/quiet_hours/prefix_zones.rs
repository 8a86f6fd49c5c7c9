//! Phone number → the recipient's possible zones, from `data/prefix_zones.tsv`.
//!
//! The table is libphonenumber's time-zone metadata, turned by `scripts/gen-prefix-zones`
//! (which says how, and pins the version) into one row per E.164 digit prefix. The longest
//! matching prefix wins; every country calling code that libphonenumber knows has a row of
//! its own, so a number whose finer prefix is not listed still gets its country's zones.
//! That is also why the `phonenumber` crate is not needed for a country-level fallback.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;

const DATA: &str = include_str!("../../../data/prefix_zones.tsv");

struct Table {
    /// Prefix → index into `sets`.
    rows: HashMap<&'static str, usize>,
    /// Distinct zone lists; many prefixes share one.
    sets: Vec<Vec<Tz>>,
    longest: usize,
    /// Zone names in the file that chrono-tz does not know (a test keeps this empty).
    unknown_zones: Vec<&'static str>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| parse(DATA))
}

fn parse(data: &'static str) -> Table {
    let mut t = Table { rows: HashMap::new(), sets: Vec::new(), longest: 0, unknown_zones: Vec::new() };
    let mut by_names: HashMap<&'static str, usize> = HashMap::new();
    let lines = || data.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| l.split_once('\t'));
    // Zone lists first, then `@prefix` rows, which name another row's list.
    for (prefix, names) in lines().filter(|(_, v)| !v.starts_with('@')) {
        let idx = *by_names.entry(names).or_insert_with(|| {
            let mut zones = Vec::new();
            for name in names.split('&') {
                match name.parse::<Tz>() {
                    Ok(z) => zones.push(z),
                    Err(_) => t.unknown_zones.push(name),
                }
            }
            t.sets.push(zones);
            t.sets.len() - 1
        });
        if !t.sets[idx].is_empty() {
            t.rows.insert(prefix, idx);
        }
    }
    for (prefix, target) in lines().filter_map(|(p, v)| Some((p, v.strip_prefix('@')?))) {
        if let Some(&idx) = t.rows.get(target) {
            t.rows.insert(prefix, idx);
        }
    }
    t.longest = t.rows.keys().map(|k| k.len()).max().unwrap_or(0);
    t
}

/// The zones a number may be in: `None` when `to` is not `+` and digits or no prefix matches.
pub fn zones_for(to: &str) -> Option<&'static [Tz]> {
    let digits = to.strip_prefix('+')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = table();
    (1..=digits.len().min(t.longest)).rev().find_map(|n| t.rows.get(&digits[..n])).map(|&i| t.sets[i].as_slice())
}

/// Parses the table now rather than on the first job.
pub fn warm_up() {
    table();
}

#[cfg(test)]
pub(super) fn unknown_zones() -> &'static [&'static str] {
    &table().unknown_zones
}

#[cfg(test)]
pub(super) fn row_count() -> usize {
    table().rows.len()
}
