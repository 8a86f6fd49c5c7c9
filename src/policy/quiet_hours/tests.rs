//! Quiet hours at fixed instants: DST days, wrapped windows, multi-zone prefixes, fallbacks.
//! Every expected instant is worked out by hand in its row's comment (and was checked against
//! a minute-by-minute search with Python's zoneinfo); `agrees_with_a_minute_by_minute_search`
//! then compares the fast search with the slow one on many more instants.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, NaiveTime, Utc};
use chrono_tz::Tz;

use super::*;
use crate::policy::{Candidate, Chain, Verdict};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

fn hm(s: &str) -> NaiveTime {
    NaiveTime::parse_from_str(s, "%H:%M").unwrap()
}

fn win(start: &str, end: &str) -> Window {
    Window::new(hm(start), hm(end)).unwrap()
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

/// `None` in a row means "allowed now".
fn check(window: Window, zones: &[Tz], rows: &[(&str, Option<&str>)]) {
    for &(now, want) in rows {
        let now_t = at(now);
        let got = next_allowed(&window, zones, now_t, Duration::hours(72)).expect("one zone always opens");
        let want = want.map_or(now_t, at);
        assert_eq!(got, want, "{window:?} in {zones:?} at {now}");
    }
}

#[test]
fn new_york_spring_forward() {
    // 2026-03-08: at 07:00Z (02:00 EST) the clock jumps to 03:00 EDT; EST is UTC-5, EDT UTC-4.
    let ny = [tz("America/New_York")];
    check(
        win("21:00", "09:00"),
        &ny,
        &[
            ("2026-03-08T06:00:00Z", Some("2026-03-08T13:00:00Z")), // 01:00 EST -> 09:00 EDT
            ("2026-03-08T02:00:00Z", Some("2026-03-08T13:00:00Z")), // 21:00 EST on the 7th: only 11 h of quiet
            ("2026-03-08T12:59:00Z", Some("2026-03-08T13:00:00Z")), // 08:59 EDT
            ("2026-03-08T13:00:00Z", None),                         // 09:00 EDT
            ("2026-03-07T13:59:30Z", Some("2026-03-07T14:00:00Z")), // 08:59:30 EST, the day before: to the minute
            ("2026-03-08T00:59:00Z", None),                         // 19:59 EST on the 7th
        ],
    );
    check(
        win("01:30", "03:30"),
        &ny,
        &[
            ("2026-03-08T06:29:00Z", None),                         // 01:29 EST
            ("2026-03-08T06:30:00Z", Some("2026-03-08T07:30:00Z")), // 01:30 EST -> 03:30 EDT: one real hour
            ("2026-03-08T07:00:00Z", Some("2026-03-08T07:30:00Z")), // 03:00 EDT, just after the jump
            ("2026-03-08T07:30:00Z", None),                         // 03:30 EDT
        ],
    );
    // The window's end falls in the gap: the jump itself ends it.
    check(win("01:00", "02:30"), &ny, &[("2026-03-08T06:15:00Z", Some("2026-03-08T07:00:00Z"))]);
    // The window's start falls in the gap: the jump starts it.
    check(
        win("02:15", "05:00"),
        &ny,
        &[
            ("2026-03-08T06:59:00Z", None),                         // 01:59 EST
            ("2026-03-08T07:00:00Z", Some("2026-03-08T09:00:00Z")), // 03:00 EDT -> 05:00 EDT
        ],
    );
}

#[test]
fn new_york_fall_back() {
    // 2026-11-01: at 06:00Z (02:00 EDT) the clock goes back to 01:00 EST; 01:00-01:59 happens twice.
    let ny = [tz("America/New_York")];
    check(
        win("21:00", "09:00"),
        &ny,
        &[
            ("2026-11-01T01:00:00Z", Some("2026-11-01T14:00:00Z")), // 21:00 EDT on Oct 31 -> 09:00 EST: 13 h
            ("2026-11-01T05:30:00Z", Some("2026-11-01T14:00:00Z")), // 01:30 EDT
            ("2026-11-01T06:30:00Z", Some("2026-11-01T14:00:00Z")), // 01:30 EST, the second time
            ("2026-11-01T14:00:00Z", None),
        ],
    );
    // The clock, not the hour, decides: when it falls back from 01:59 EDT to 01:00 EST it reads
    // a time outside 01:30-03:30 until it reaches 01:30 again.
    check(
        win("01:30", "03:30"),
        &ny,
        &[
            ("2026-11-01T05:29:00Z", None),                         // 01:29 EDT
            ("2026-11-01T05:30:00Z", Some("2026-11-01T06:00:00Z")), // 01:30 EDT -> the fall back to 01:00 EST
            ("2026-11-01T06:10:00Z", None),                         // 01:10 EST
            ("2026-11-01T06:30:00Z", Some("2026-11-01T08:30:00Z")), // 01:30 EST -> 03:30 EST
        ],
    );
    // The window ends inside the repeated hour: it ends at the first 01:30, starts again at the
    // fall back, and ends at the second 01:30.
    check(
        win("21:00", "01:30"),
        &ny,
        &[
            ("2026-11-01T03:00:00Z", Some("2026-11-01T05:30:00Z")), // 23:00 EDT -> 01:30 EDT
            ("2026-11-01T05:45:00Z", None),                         // 01:45 EDT
            ("2026-11-01T06:10:00Z", Some("2026-11-01T06:30:00Z")), // 01:10 EST -> 01:30 EST
        ],
    );
}

#[test]
fn windows_that_wrap_midnight_and_windows_that_do_not() {
    // Berlin in November is CET, UTC+1.
    let berlin = [tz("Europe/Berlin")];
    check(
        win("22:00", "07:00"),
        &berlin,
        &[
            ("2026-11-21T22:30:00Z", Some("2026-11-22T06:00:00Z")), // 23:30 -> 07:00 next day
            ("2026-11-21T05:59:00Z", Some("2026-11-21T06:00:00Z")), // 06:59 -> 07:00 same day
            ("2026-11-21T06:00:00Z", None),                         // 07:00
            ("2026-11-21T20:59:00Z", None),                         // 21:59
            ("2026-11-21T21:00:00Z", Some("2026-11-22T06:00:00Z")), // 22:00
        ],
    );
    check(
        win("12:00", "14:00"),
        &berlin,
        &[
            ("2026-11-21T11:30:00Z", Some("2026-11-21T13:00:00Z")), // 12:30 -> 14:00
            ("2026-11-21T10:59:00Z", None),                         // 11:59
        ],
    );
    check(win("20:00", "00:00"), &berlin, &[("2026-11-21T19:30:00Z", Some("2026-11-21T23:00:00Z"))]);
    // 20:30 -> midnight
}

#[test]
fn moscow_has_no_dst() {
    // MSK is UTC+3 all year; the EU's switch (2026-03-29, 2026-10-25) changes nothing there.
    check(
        win("21:00", "09:00"),
        &[tz("Europe/Moscow")],
        &[
            ("2026-11-21T19:00:00Z", Some("2026-11-22T06:00:00Z")), // 22:00 -> 09:00
            ("2026-07-01T19:00:00Z", Some("2026-07-02T06:00:00Z")),
            ("2026-03-29T19:00:00Z", Some("2026-03-30T06:00:00Z")),
            ("2026-10-25T05:59:00Z", Some("2026-10-25T06:00:00Z")),
            ("2026-10-25T06:00:00Z", None),
        ],
    );
}

#[test]
fn retry_at_is_exact_to_the_minute() {
    // Seconds in `now` do not leak into retry_at; a +05:45 zone opens at :15 past the UTC hour.
    check(win("22:00", "07:00"), &[tz("Europe/Berlin")], &[("2026-11-21T05:59:31.250Z", Some("2026-11-21T06:00:00Z"))]);
    check(win("21:00", "09:00"), &[tz("Asia/Kathmandu")], &[("2026-11-21T03:00:00Z", Some("2026-11-21T03:15:00Z"))]);
    // 08:45 NPT
}

#[test]
fn every_us_zone_from_eastern_to_hawaii() {
    // 21:00-09:00 quiet, so 09:00-21:00 allowed. On 2026-11-21 (standard time) that is in UTC:
    // New York (-5) 14-02, Chicago (-6) 15-03, Denver/Phoenix (-7) 16-04, Los Angeles (-8) 17-05,
    // Anchorage (-9) 18-06, Honolulu (-10) 19-07: all allowed from 19:00Z (09:00 in Honolulu)
    // to 02:00Z (21:00 in New York).
    // On 2026-07-02 (DST but in Phoenix and Honolulu): New York (-4) 13-01, ..., Honolulu 19-07:
    // 19:00Z to 01:00Z.
    let us: Vec<Tz> =
        ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu"]
            .map(tz)
            .to_vec();
    check(
        win("21:00", "09:00"),
        &us,
        &[
            ("2026-11-21T14:00:00Z", Some("2026-11-21T19:00:00Z")),
            ("2026-11-21T19:00:00Z", None),
            ("2026-11-22T01:59:00Z", None),
            ("2026-11-22T02:00:00Z", Some("2026-11-22T19:00:00Z")),
            ("2026-07-02T01:00:00Z", Some("2026-07-02T19:00:00Z")),
            ("2026-07-02T00:59:00Z", None),
        ],
    );
}

fn job_of(tenant: &str, to: &str, extra: &str) -> Job {
    let now = at("2026-01-01T00:00:00Z");
    crate::job::parse(format!(r#"{{"id":"q","tenant":"{tenant}","channel":"sms","to":"{to}","text":"x"{extra}}}"#).as_bytes(), now).unwrap()
}

fn job(to: &str, extra: &str) -> Job {
    job_of("acme", to, extra)
}

/// Tenant `acme` in Moscow with 21:00-09:00; `open` in Berlin with none; everyone else UTC, 22:00-08:00.
fn policy() -> QuietHours {
    let default = TenantQuiet { tz: Tz::UTC, window: Some(win("22:00", "08:00")) };
    let tenants = HashMap::from([
        ("acme".to_string(), TenantQuiet { tz: tz("Europe/Moscow"), window: Some(win("21:00", "09:00")) }),
        ("open".to_string(), TenantQuiet { tz: tz("Europe/Berlin"), window: None }),
    ]);
    QuietHours::new(default, tenants)
}

#[test]
fn zones_come_from_the_job_then_the_prefix_then_the_tenant() {
    let p = policy();
    let d = |to: &str, extra: &str, now: &str| p.decide(&job(to, extra), at(now));
    let defer = |t: &str, s| Decision::DeferUntil(at(t), s);
    use ZoneSource::*;
    for (to, extra, now, want) in [
        // +1 208 is Idaho: Boise (MST, -7) and Los Angeles (PST, -8) both; 09:00 comes last in LA.
        ("+12085550123", "", "2026-11-21T16:30:00Z", defer("2026-11-21T17:00:00Z", Prefix)),
        ("+12085550123", "", "2026-11-21T17:00:00Z", Decision::Allow(Prefix)),
        // The job's tz wins over the prefix: 16:30Z is 09:30 in Boise.
        ("+12085550123", r#","tz":"America/Boise""#, "2026-11-21T16:30:00Z", Decision::Allow(Job)),
        // +7 495 is a Moscow landline: one zone.
        ("+74951234567", "", "2026-11-21T19:00:00Z", defer("2026-11-22T06:00:00Z", Prefix)),
        // +999 is no country: the tenant's zone (Moscow), 22:00 -> 09:00.
        ("+99912345678", "", "2026-11-21T19:00:00Z", defer("2026-11-22T06:00:00Z", Tenant)),
        // A +1 toll-free number may be anywhere in the NANP, so libphonenumber gives all 42 of its
        // zones, from Guam (+10) to Pago Pago (-11) and St. John's (-3:30). 09:00-21:00 there is
        // 23:00Z-11:00Z in Guam, 20:00Z-08:00Z in Pago Pago, 12:30Z-00:30Z in St. John's; every
        // other zone lies between, so all are allowed from 23:00Z (09:00 in Guam) to 00:30Z.
        ("+18005550100", "", "2026-11-21T14:00:00Z", defer("2026-11-21T23:00:00Z", Prefix)),
        ("+18005550100", "", "2026-11-22T00:15:00Z", Decision::Allow(Prefix)),
        // A Russian mobile may be in any of the 16 zones of +7 (libphonenumber: mobiles there are
        // not geographic), from Bucharest (+2; Transnistria) to Kamchatka and Anadyr (+12). For
        // 09:00-21:00 that is 07:00Z-19:00Z and 21:00Z-09:00Z: allowed everywhere 07:00Z-09:00Z.
        ("+79161234567", "", "2026-11-21T12:00:00Z", defer("2026-11-22T07:00:00Z", Prefix)),
        ("+79161234567", "", "2026-11-22T08:00:00Z", Decision::Allow(Prefix)),
        // With 10:00-20:00 allowed (08:00Z-18:00Z in Bucharest, 22:00Z-08:00Z in Kamchatka) no
        // instant is allowed everywhere: the tenant's Moscow decides, and it is counted.
        // 12:00Z is 15:00 MSK; 19:00Z is 22:00 MSK, quiet until 10:00 MSK = 07:00Z.
        ("+79161234567", r#","quiet_hours":{"start":"20:00","end":"10:00"}"#, "2026-11-21T12:00:00Z", Decision::Allow(TenantFallback)),
        ("+79161234567", r#","quiet_hours":{"start":"20:00","end":"10:00"}"#, "2026-11-21T19:00:00Z", defer("2026-11-22T07:00:00Z", TenantFallback)),
    ] {
        assert_eq!(d(to, extra, now), want, "{to} {extra} at {now}");
    }
}

#[test]
fn which_window_applies() {
    let p = policy();
    let night = "2026-11-21T23:30:00Z"; // 02:30 MSK, 00:30 in Berlin, 23:30 UTC: quiet everywhere
    let berlin_mobile = "+4915112345678";
    for (tenant, extra, want) in [
        // A transactional job at 03:00 local (the tenant's 21:00-09:00 would hold it) goes.
        ("acme", r#","priority":"transactional","tz":"Europe/Moscow""#, Decision::NotApplicable),
        // quiet_hours false switches the tenant's window off.
        ("acme", r#","quiet_hours":false"#, Decision::NotApplicable),
        // The job's own window replaces the tenant's: 00:30 Berlin is outside 01:00-06:00.
        ("acme", r#","quiet_hours":{"start":"01:00","end":"06:00"}"#, Decision::Allow(ZoneSource::Prefix)),
        // The tenant's window, in the recipient's zone: 00:30 Berlin -> 09:00 = 08:00Z.
        ("acme", "", Decision::DeferUntil(at("2026-11-22T08:00:00Z"), ZoneSource::Prefix)),
        // A tenant with none.
        ("open", "", Decision::NotApplicable),
        // A tenant not listed gets the defaults' 22:00-08:00: 08:00 Berlin = 07:00Z.
        ("other", "", Decision::DeferUntil(at("2026-11-22T07:00:00Z"), ZoneSource::Prefix)),
        // A job's own window applies even where the tenant has none.
        ("open", r#","quiet_hours":{"start":"22:00","end":"06:00"}"#, Decision::DeferUntil(at("2026-11-22T05:00:00Z"), ZoneSource::Prefix)),
    ] {
        assert_eq!(p.decide(&job_of(tenant, berlin_mobile, extra), at(night)), want, "{tenant} {extra}");
    }
}

#[tokio::test]
async fn verdicts_in_the_chain() {
    let p = policy();
    let now = at("2026-11-21T19:00:00Z"); // 22:00 MSK
    let jobs = [
        job("+74951234567", ""),
        job("+74951234567", r#","priority":"transactional""#),
        // Valid until 08:00 MSK, quiet until 09:00 MSK: it could never go, so it ends now.
        job("+74951234567", r#","expires_at":"2026-11-22T05:00:00Z""#),
        job("+74951234567", r#","tz":"America/New_York""#), // 14:00 there
    ];
    let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
    Chain::new(vec![Box::new(p)]).evaluate(&mut batch, now).await;
    assert_eq!(batch[0].verdict, Verdict::Defer { until: at("2026-11-22T06:00:00Z"), reason: Reason::QuietHours });
    assert_eq!(batch[1].verdict, Verdict::Allow);
    assert!(matches!(&batch[2].verdict, Verdict::Stop { event: EventKind::Expired, message: Some(m), .. } if m.contains("quiet hours")));
    assert_eq!(batch[3].verdict, Verdict::Allow);
}

#[test]
fn the_prefix_table_is_whole_and_matches_the_longest_prefix() {
    assert!(prefix_zones::unknown_zones().is_empty(), "zones chrono-tz does not know: {:?}", prefix_zones::unknown_zones());
    assert!(prefix_zones::row_count() > 3000, "{}", prefix_zones::row_count());
    let names = |to: &str| prefix_zones::zones_for(to).map(|zs| zs.iter().map(|z| z.name()).collect::<Vec<_>>());
    assert_eq!(names("+12125550100").unwrap(), ["America/New_York"]);
    assert_eq!(names("+74951234567").unwrap(), ["Europe/Moscow"]);
    assert_eq!(names("+4915112345678").unwrap(), ["Europe/Berlin"]);
    assert_eq!(names("+12085550123").unwrap(), ["America/Boise", "America/Los_Angeles"]);
    assert_eq!(names("+79161234567").unwrap().len(), 16);
    assert_eq!(names("+18005550100").unwrap().len(), 42);
    assert_eq!(names("+99912345678"), None);
    assert_eq!(names("chat-42"), None);
    assert_eq!(names("+"), None);
}

/// The slow, obviously right answer: try every minute.
fn minute_by_minute(window: &Window, zones: &[Tz], now: DateTime<Utc>, horizon: Duration) -> Option<DateTime<Utc>> {
    let quiet = |t| zones.iter().any(|&z| window.is_quiet(z, t));
    if !quiet(now) {
        return Some(now);
    }
    let mut t = now.duration_trunc(Duration::minutes(1)).unwrap() + Duration::minutes(1);
    while t <= now + horizon {
        if !quiet(t) {
            return Some(t);
        }
        t += Duration::minutes(1);
    }
    None
}

#[test]
fn agrees_with_a_minute_by_minute_search() {
    let zone_sets: Vec<Vec<Tz>> = vec![
        vec![tz("America/New_York")],
        vec![tz("Australia/Lord_Howe")], // DST of 30 minutes
        vec![tz("Pacific/Chatham")],     // +12:45 / +13:45
        vec![tz("Europe/London"), tz("Asia/Kolkata")],
        vec![tz("America/Boise"), tz("America/Los_Angeles"), tz("America/St_Johns")],
    ];
    let windows = [win("21:00", "09:00"), win("01:30", "03:30"), win("00:00", "02:30"), win("02:45", "02:15"), win("12:00", "12:01")];
    // Weeks holding DST changes in the north and the south, stepped by an odd 53 minutes.
    let starts = ["2026-03-06T00:00:00Z", "2026-04-03T00:00:00Z", "2026-09-25T00:00:00Z", "2026-10-30T00:00:00Z"];
    for zones in &zone_sets {
        for w in &windows {
            for s in starts {
                let mut now = at(s) + Duration::seconds(17);
                while now < at(s) + Duration::days(4) {
                    let h = Duration::hours(24);
                    assert_eq!(next_allowed(w, zones, now, h), minute_by_minute(w, zones, now, h), "{w:?} {zones:?} at {now}");
                    now += Duration::minutes(53);
                }
            }
        }
    }
    // Samoa skipped 2011-12-30 altogether.
    let apia = [tz("Pacific/Apia")];
    let mut now = at("2011-12-29T00:00:00Z");
    while now < at("2012-01-01T00:00:00Z") {
        assert_eq!(next_allowed(&windows[0], &apia, now, Duration::hours(72)), minute_by_minute(&windows[0], &apia, now, Duration::hours(72)), "{now}");
        now += Duration::minutes(41);
    }
}
