//! The configured webhook's checks and its reading of statuses, on the shipped examples'
//! callback shapes.

use std::collections::BTreeMap;

use hyper::header::HeaderValue;

use super::*;

fn config(auth: WebhookAuth, encoding: SignatureEncoding, prefix: &str) -> WebhookConfig {
    let statuses: BTreeMap<String, StatusEvent> = [
        ("DELIVERED_TO_HANDSET", StatusEvent::Delivered),
        ("UNDELIVERABLE_*", StatusEvent::Undelivered),
        ("UNDELIVERABLE_NOT_SENT_*", StatusEvent::Rejected),
        ("EXPIRED_*", StatusEvent::Expired),
        ("SEEN", StatusEvent::Read),
        ("PENDING_*", StatusEvent::Ignore),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    WebhookConfig {
        auth,
        secret_file: "unused".into(),
        header: (auth == WebhookAuth::HmacSha256 || prefix == "header").then(|| "x-signature".into()),
        query: (auth == WebhookAuth::Token && prefix != "header").then(|| "token".into()),
        encoding,
        prefix: if auth == WebhookAuth::HmacSha256 { prefix.into() } else { String::new() },
        statuses_pointer: Some("/results".into()),
        message_id_pointer: "/messageId".into(),
        status_pointer: "/status/name".into(),
        error_code_pointer: Some("/error/name".into()),
        statuses,
        max_body_bytes: 4096,
    }
}

fn headers(sig: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(s) = sig {
        h.insert("x-signature", HeaderValue::from_str(s).unwrap());
    }
    h
}

#[test]
fn hmac_over_the_raw_body_hex_or_base64() {
    let body = br#"{"results":[]}"#;
    for (encoding, prefix) in [(SignatureEncoding::Hex, "sha256="), (SignatureEncoding::Base64, "")] {
        let hook = HttpWebhook::new("p", config(WebhookAuth::HmacSha256, encoding, prefix), "key");
        let good = format!("{prefix}{}", sign(b"key", body, encoding));
        assert_eq!(hook.authenticate(&headers(Some(&good)), body), Ok(()), "{good}");
        let forged = format!("{prefix}{}", sign(b"other", body, encoding));
        for (sig, body, why) in [
            (None, &body[..], "no signature header"),
            (Some(forged.as_str()), &body[..], "signature does not match the body"),
            (Some(good.as_str()), &br#"{"results": []}"#[..], "signature does not match the body"),
            (Some("!!"), &body[..], if prefix.is_empty() { "signature is not in the configured encoding" } else { "signature header without its prefix" }),
        ] {
            assert_eq!(hook.authenticate(&headers(sig), body), Err(Unauthorized(why)), "{encoding:?} {sig:?}");
        }
    }
    assert_eq!(base64_encode(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
    assert_eq!(base64_decode("YW55IGNhcm5hbCBwbGVhcw").as_deref(), Some(&b"any carnal pleas"[..]));
}

#[test]
fn a_token_in_the_query_or_a_header() {
    let hook = HttpWebhook::new("p", config(WebhookAuth::Token, SignatureEncoding::Hex, ""), "s3cret-Token");
    assert_eq!(hook.authenticate_request("a=1&token=s3cret-Token", &HeaderMap::new(), b"{}"), Ok(()));
    assert_eq!(hook.authenticate_request("token=s3cret-Tokem", &HeaderMap::new(), b"{}"), Err(Unauthorized("wrong token")));
    assert_eq!(hook.authenticate_request("tokens=s3cret-Token", &HeaderMap::new(), b"{}"), Err(Unauthorized("no token")));
    assert_eq!(hook.authenticate(&headers(Some("s3cret-Token")), b"{}"), Err(Unauthorized("no token")), "the query, not a header");
    let by_header = HttpWebhook::new("p", config(WebhookAuth::Token, SignatureEncoding::Hex, "header"), "s3cret-Token");
    assert_eq!(by_header.authenticate(&headers(Some("s3cret-Token")), b"{}"), Ok(()));
    assert_eq!(by_header.authenticate_request("token=s3cret-Token", &HeaderMap::new(), b"{}"), Err(Unauthorized("no token")));
}

#[test]
fn statuses_through_the_table() {
    let hook = HttpWebhook::new("p", config(WebhookAuth::Token, SignatureEncoding::Hex, ""), "t");
    let body = serde_json::json!({"results": [
        {"messageId": "m1", "status": {"groupName": "DELIVERED", "name": "DELIVERED_TO_HANDSET"}, "error": {"name": "NO_ERROR"}},
        {"messageId": "m2", "status": {"name": "UNDELIVERABLE_NOT_DELIVERED"}, "error": {"name": "EC_UNKNOWN_SUBSCRIBER"}},
        {"messageId": "m3", "status": {"name": "UNDELIVERABLE_NOT_SENT_X"}},
        {"messageId": 4, "status": {"name": "EXPIRED_EXPIRED"}},
        {"messageId": "m5", "status": {"name": "PENDING_ENROUTE"}},
        {"messageId": "m6", "status": {"name": "SOMETHING_NEW"}},
        {"messageId": "m7", "status": {"name": "SEEN"}},
        {"status": {"name": "DELIVERED_TO_HANDSET"}},
        {"messageId": "m9"},
    ]});
    let got: Vec<(String, Option<PartOutcome>, Option<String>, bool)> = hook
        .parse(body.to_string().as_bytes())
        .unwrap()
        .into_iter()
        .map(|e| match e {
            ProviderEvent::Receipt(r) => (r.message_id, r.outcome, r.error_code, r.read),
            ProviderEvent::Inbound(_) => panic!("no inbound"),
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        got,
        [
            ("m1".into(), Some(PartOutcome::Delivered), None, false),
            ("m2".into(), Some(PartOutcome::Undelivered), s("EC_UNKNOWN_SUBSCRIBER"), false),
            ("m3".into(), Some(PartOutcome::Rejected), s("UNDELIVERABLE_NOT_SENT_X"), false),
            ("4".into(), Some(PartOutcome::Expired), s("EXPIRED_EXPIRED"), false),
            ("m5".into(), None, None, false),
            ("m6".into(), None, None, false),
            ("m7".into(), Some(PartOutcome::Delivered), None, true),
        ]
    );
    for (bad, why) in
        [(&b"{not json"[..], "key must be a string"), (br#"{"results": {}}"#, "no array of statuses at /results"), (b"[]", "no array of statuses at /results")]
    {
        let e = hook.parse(bad).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
}
