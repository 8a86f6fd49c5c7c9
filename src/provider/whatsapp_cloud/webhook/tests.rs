//! The webhook's checks and parser, on payloads shaped as Meta's webhook reference shows them.

use hyper::header::HeaderValue;

use super::*;

const SECRET: &[u8] = b"app-secret-for-tests";

fn hook() -> CloudWebhook {
    CloudWebhook::new(SECRET, Some("verify-me-please".into()), "whatsapp".into())
}

fn headers(sig: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(s) = sig {
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(s).unwrap());
    }
    h
}

#[test]
fn the_signature_is_checked_over_the_raw_body() {
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let good = sign(SECRET, body);
    assert!(good.starts_with("sha256=") && good.len() == 7 + 64, "{good}");
    assert_eq!(hook().authenticate(&headers(Some(&good)), body), Ok(()));
    let upper = format!("sha256={}", good[7..].to_uppercase());
    assert_eq!(hook().authenticate(&headers(Some(&upper)), body), Ok(()), "hex is case-insensitive");
    let forged = sign(b"another secret", body);
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (sig, body, why) in [
        (None, &body[..], "no X-Hub-Signature-256"),
        (Some(forged.as_str()), &body[..], "X-Hub-Signature-256 does not match the body"),
        (Some(flipped.as_str()), &body[..], "X-Hub-Signature-256 does not match the body"),
        (Some(good.as_str()), &br#"{"object":"whatsapp_business_account","entry":[ ]}"#[..], "X-Hub-Signature-256 does not match the body"),
        (Some(&good[7..]), &body[..], "X-Hub-Signature-256 is not sha256=<hex>"),
        (Some("sha1=abcd"), &body[..], "X-Hub-Signature-256 is not sha256=<hex>"),
        (Some("sha256=xyz"), &body[..], "X-Hub-Signature-256 is not hex"),
        (Some("sha256="), &body[..], "X-Hub-Signature-256 does not match the body"),
    ] {
        assert_eq!(hook().authenticate(&headers(sig), body), Err(Unauthorized(why)), "{sig:?}");
    }
}

#[test]
fn the_subscription_check_echoes_the_challenge_only_for_the_token() {
    for (query, want) in [
        ("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me-please", Some("1158201444")),
        ("hub.verify_token=verify%2Dme%2Dplease&hub.challenge=a%20b&hub.mode=subscribe", Some("a b")),
        ("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong", None),
        ("hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=verify-me-please", None),
        ("hub.mode=subscribe&hub.verify_token=verify-me-please", None),
        ("", None),
    ] {
        let got = hook().verify(query);
        let want = Some(want.map_or(Verification::Refused, |c| Verification::Challenge(c.into())));
        assert_eq!(got, want, "{query}");
    }
    let no_token = CloudWebhook::new(SECRET, None, "whatsapp".into());
    assert_eq!(no_token.verify("hub.mode=subscribe&hub.challenge=1&hub.verify_token="), Some(Verification::Refused));
}

/// A `messages` change as Meta sends it: statuses of three messages and two inbound messages.
pub const PAYLOAD: &str = r#"{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "field": "messages",
      "value": {
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
        "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": "16505551234" }],
        "statuses": [
          { "id": "wamid.A", "status": "sent", "timestamp": "1750263773", "recipient_id": "16505551234",
            "conversation": { "id": "c", "origin": { "type": "marketing" } },
            "pricing": { "billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular" } },
          { "id": "wamid.A", "status": "delivered", "timestamp": "1750263774", "recipient_id": "16505551234" },
          { "id": "wamid.B", "status": "read", "timestamp": "1750263775", "recipient_id": "16505551234" },
          { "id": "wamid.C", "status": "failed", "timestamp": "1750263776", "recipient_id": "16505551234",
            "errors": [{ "code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
                         "error_data": { "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number." } }] },
          { "id": "wamid.D", "status": "deleted", "timestamp": "1750263777", "recipient_id": "16505551234" }
        ],
        "messages": [
          { "from": "16505551234", "id": "wamid.in1", "timestamp": "1750263778", "type": "text", "text": { "body": "STOP" } },
          { "from": "16505551234", "id": "wamid.in2", "timestamp": "1750263779", "type": "interactive",
            "interactive": { "type": "button_reply", "button_reply": { "id": "b1", "title": "Yes, please" } } },
          { "from": "16505551234", "id": "wamid.in3", "timestamp": "1750263780", "type": "image",
            "image": { "caption": "my receipt", "mime_type": "image/jpeg", "sha256": "x", "id": "m1" } }
        ]
      }
    }]
  }]
}"#;

#[test]
fn statuses_become_receipts_and_messages_inbound_messages() {
    let events = hook().parse(PAYLOAD.as_bytes()).unwrap();
    let receipts: Vec<(String, Option<PartOutcome>, Option<String>, bool)> = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Receipt(r) => Some((r.message_id.clone(), r.outcome, r.error_code.clone(), r.read)),
            _ => None,
        })
        .collect();
    assert_eq!(
        receipts,
        [
            ("wamid.A".into(), None, None, false),
            ("wamid.A".into(), Some(PartOutcome::Delivered), None, false),
            ("wamid.B".into(), Some(PartOutcome::Delivered), None, true),
            ("wamid.C".into(), Some(PartOutcome::Undelivered), Some("131047".into()), false),
            ("wamid.D".into(), None, None, false),
        ]
    );
    let inbound: Vec<(String, String, String, String, i64)> = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Inbound(m) => Some((m.channel.clone(), m.from.clone(), m.to.clone(), m.text.clone(), m.at.unwrap().timestamp())),
            _ => None,
        })
        .collect();
    let row = |text: &str, at| ("whatsapp".to_owned(), "+16505551234".to_owned(), "106540352242922".to_owned(), text.to_owned(), at);
    assert_eq!(inbound, [row("STOP", 1750263778), row("Yes, please", 1750263779), row("my receipt", 1750263780)]);
}

#[test]
fn bodies_that_are_not_payloads_are_errors_and_other_fields_are_ignored() {
    for bad in [&b"{not json"[..], br#"{"entry":[{"changes":[{"value":{"statuses":[{"status":"sent"}]}}]}]}"#] {
        assert!(hook().parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    for empty in [&b"{}"[..], br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update","value":{"event":"x"}}]}]}"#] {
        assert_eq!(hook().parse(empty).unwrap(), []);
    }
}
