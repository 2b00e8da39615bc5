// What each fuzz target asserts, shared with tests/fuzz_regressions.rs so every input a fuzzer ever
// crashed on is replayed by `make test`. Each fuzz target uses one of the checks.
#![allow(dead_code)]

use account_link::cfn::{self, Answer, RequestError};
use account_link::outbound::OutboundPolicy;
use account_link::properties;
use link_contract::signing::{self, SigningSecret, WebhookHeaders};

/// Any bytes as a CloudFormation event: no panic; an answer, when one is possible, fits the limit.
pub fn parse_event(data: &[u8]) {
    let policy = OutboundPolicy::new(true);
    let origin = cfn::Origin::from_function_arn("arn:aws:lambda:us-west-2:123456789012:function:f")
        .expect("a valid function ARN");
    match cfn::parse_bytes(data, &policy, &origin) {
        Ok(req) => {
            let props = properties::parse(
                &req.properties,
                "us-west-2",
                &req.stack.partition,
                &req.stack.account_id,
            );
            let reason = match props {
                Ok(p) => format!("{p:?}"),
                Err(e) => e.to_string(),
            };
            let answer = Answer::failed(cfn::failed_create_id(&req.reply.request_id), reason);
            assert!(cfn::render(&req.reply, &answer).len() <= cfn::MAX_RESPONSE_BYTES);
        }
        Err(RequestError::Invalid { reply, message }) => {
            let answer = Answer::failed(cfn::failed_create_id(&reply.request_id), message);
            assert!(cfn::render(&reply, &answer).len() <= cfn::MAX_RESPONSE_BYTES);
        }
        Err(RequestError::Unanswerable(m)) => assert!(!m.is_empty()),
    }
}

/// Any headers and body: verification never panics, never accepts what was not signed with the key,
/// and always accepts what was.
pub fn verify_signature(data: &[u8]) {
    let secrets = vec![SigningSecret::from_bytes(
        b"fuzzing-key-fuzzing-key-32bytes!".to_vec(),
    )];
    let mut parts = data.splitn(4, |b| *b == 0xff);
    let text = |p: Option<&[u8]>| p.map(|b| String::from_utf8_lossy(b).into_owned());
    let (id, ts, sig, body) = (
        text(parts.next()),
        text(parts.next()),
        text(parts.next()),
        parts.next().unwrap_or(&[]),
    );
    let now = 1_800_000_000;
    let verdict = signing::verify(
        &secrets,
        id.as_deref(),
        ts.as_deref(),
        sig.as_deref(),
        body,
        now,
        300,
    );
    if verdict.is_ok() {
        // Only possible by forging HMAC-SHA256: treat as a finding.
        panic!("accepted an unsigned delivery: {id:?} {ts:?} {sig:?}");
    }
    // The two-step path a receiver takes (headers before the body) agrees with the one-call check.
    if let Ok(headers) =
        WebhookHeaders::parse(id.as_deref(), ts.as_deref(), sig.as_deref(), now, 300)
    {
        assert!(headers.verify(&secrets, body).is_err());
    }
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        let signed = signing::sign(&secrets, &id, now, body);
        assert!(signing::verify(
            &secrets,
            Some(&id),
            Some(&now.to_string()),
            Some(&signed),
            body,
            now,
            300
        )
        .is_ok());
    }
}

/// Any bytes as a delivered link event, through the checks a receiver makes of it (its claims, a part's
/// bounds, the envelope digest): no panic, whatever the numbers and strings. An event that passes is split
/// and put back together exactly, one part at a time, and a split beyond the bounds is refused.
pub fn check_event(data: &[u8]) {
    use link_contract::event::LinkEvent;
    use link_contract::parts;
    let Ok(event) = serde_json::from_slice::<LinkEvent>(data) else {
        return;
    };
    let claims = event.data.check_claims();
    let _ = parts::envelope_digest(&event);
    match &event.data.part {
        Some(part) if parts::check_part(part).is_ok() => {
            assert!((1..=part.count).contains(&part.index) && part.count <= parts::MAX_PARTS);
            // A part alone reassembles only when it is the whole split.
            let alone = parts::reassemble(vec![event.clone()]);
            assert_eq!(alone.is_ok(), part.count == 1 && part.index == 1);
        }
        Some(_) => {}
        None if claims.is_ok() => {
            for max in [16 * 1024, 64 * 1024] {
                let messages = parts::split(&event, max);
                if parts::check_split(&messages).is_err() || messages.len() < 2 {
                    continue;
                }
                let back: Vec<LinkEvent> = messages
                    .iter()
                    .map(|m| serde_json::from_str(&m.json).expect("a part is JSON"))
                    .collect();
                assert!(back
                    .iter()
                    .all(|p| parts::envelope_digest(p) == parts::envelope_digest(&back[0])));
                assert_eq!(parts::reassemble(back).expect("its own parts"), event);
            }
        }
        None => {}
    }
}
