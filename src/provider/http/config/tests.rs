//! The `http` kind's keys: the shipped examples load, and every check names its key.

use crate::config::{parse, ProviderConfig};
use crate::provider::http::HttpConfig;

/// An example file with its secret files' paths pointed at files that exist.
pub(crate) fn example(file: &str, dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples").join(file)).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        match line.split_once(" = \"/etc/sendgate/") {
            Some((key, rest)) => {
                let path = dir.join(rest.trim_end_matches('"'));
                std::fs::write(&path, "secret-token-123\n").unwrap();
                out.push_str(&format!("{key} = {:?}\n", path.display().to_string()));
            }
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

fn http(text: &str, name: &str) -> HttpConfig {
    let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let ProviderConfig::Http(c) = cfg.providers[name].clone() else { panic!("kind") };
    *c
}

#[test]
fn the_shipped_examples_load() {
    let dir = tempfile::tempdir().unwrap();
    let viber = http(&example("http-infobip-viber.toml", dir.path()), "infobip_viber");
    assert_eq!((viber.channels.as_slice(), viber.method.as_str(), viber.answer.down_status.as_slice()), (&["viber".to_owned()][..], "POST", &[401][..]));
    let voice = http(&example("http-sinch-voice.toml", dir.path()), "sinch_voice");
    assert_eq!(voice.answer.message_id_pointer, "/callId");
}

#[test]
fn http_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "k\n").unwrap();
    let secret = format!("{:?}", secret.display().to_string());
    let base = "[providers.h]\nkind = \"http\"\nchannels = [\"viber\"]\nurl = \"https://api.example.com/send\"\n";
    let answer = "[providers.h.answer]\nmessage_id_pointer = \"/id\"\n";
    let hook = format!("[providers.h.webhook]\nauth = \"hmac_sha256\"\nheader = \"x-sig\"\nsecret_file = {secret}\nmessage_id_pointer = \"/id\"\nstatus_pointer = \"/s\"\n[providers.h.webhook.statuses]\nok = \"delivered\"\n");
    parse(&format!("{base}body = '{{\"to\":\"{{{{to}}}}\"}}'\n{answer}{hook}")).unwrap_or_else(|e| panic!("{e}"));
    for (top, extra, want) in [
        ("body = '{\"to\":\"{{too}}\"}'", "", "providers.h.body: unknown placeholder {{too}}"),
        ("body = '{\"to\":{{to}}x}'", "", "providers.h.body: not JSON once its placeholders are filled in"),
        ("headers = { Authorization = \"Bearer {{secret}}\" }", "", "providers.h.headers.Authorization: uses {{secret}}, but token_file is not set"),
        (
            "headers = { X-Cb = \"https://a.example/?t={{webhook_token}}\" }",
            "",
            "providers.h.headers.X-Cb: uses {{webhook_token}}, but the webhook does not authenticate by token",
        ),
        ("method = \"DELETE\"", "", "providers.h.method: must be POST, PUT, PATCH or GET"),
        ("concurrency = 0", "", "providers.h.concurrency: must be > 0"),
        ("request_timeout = \"0s\"", "", "providers.h.request_timeout: must be > 0"),
        ("token_file = \"/nonexistent/key\"", "", "providers.h.token_file: not a readable file"),
        ("", "error_code_pointer = \"code\"", "providers.h.answer.error_code_pointer: must be a JSON pointer"),
        ("", "success_status = [\"2xy\"]", "providers.h.answer.success_status: \"2xy\" is neither"),
        ("", "permanent_codes = [\"7\"]\ntransient_codes = [\"7\"]", "providers.h.answer.transient_codes: \"7\" is in permanent_codes too"),
        ("", "down_status = [200]", "providers.h.answer.down_status: 200 is not an HTTP error status"),
        ("", "mesage_id_pointer = \"/x\"", "providers.h.answer.mesage_id_pointer: unknown field"),
    ] {
        let text = format!("{base}{top}\n{answer}{extra}\n{hook}");
        let errs = parse(&text).unwrap_err().0;
        assert!(errs.len() == 1 && errs[0].starts_with(want), "{top}{extra}: {errs:?}");
    }
    let url = "[providers.h]\nkind = \"http\"\nchannels = [\"viber\"]\nurl = \"api.example.com/send\"\n";
    let errs = parse(&format!("{url}{answer}")).unwrap_err().0;
    assert!(errs[0].starts_with("providers.h.url: must be an https:// URL"), "{errs:?}");
    for (hook, want) in [
        ("auth = \"token\"\nheader = \"x-t\"\nquery = \"t\"", "providers.h.webhook.header: auth = \"token\" needs exactly one of header and query"),
        ("auth = \"hmac_sha256\"", "providers.h.webhook.header: required with auth = \"hmac_sha256\""),
        ("auth = \"token\"\nquery = \"t\"\nstatus_pointer = \"s\"", "providers.h.webhook.status_pointer: must be a JSON pointer"),
        (
            "auth = \"token\"\nquery = \"t\"\nstatuses = { sent = \"ignore\" }",
            "providers.h.webhook.statuses: must map at least one provider status to a final event",
        ),
        ("auth = \"token\"\nquery = \"t\"\nstatuses = { \"a*b\" = \"delivered\" }", "providers.h.webhook.statuses.a*b: `*` only at the end"),
        ("auth = \"sha1\"", "providers.h.webhook.auth: unknown variant `sha1`"),
    ] {
        let rest = if hook.contains("statuses =") { "" } else { "statuses = { ok = \"delivered\" }\n" };
        let status = if hook.contains("status_pointer") { "" } else { "status_pointer = \"/s\"\n" };
        let text = format!("{base}{answer}[providers.h.webhook]\n{hook}\nsecret_file = {secret}\nmessage_id_pointer = \"/id\"\n{status}{rest}");
        let errs = parse(&text).unwrap_err().0;
        assert!(errs.len() == 1 && errs[0].starts_with(want), "{hook}: {errs:?}");
    }
}
