//! Hostile input: every file in events/invalid/ gets the outcome events/invalid/expectations.json gives
//! (a clear error naming the field; FAILED on the ResponseURL when it can be trusted; nothing sent when
//! it cannot), and the same process then serves a valid request.
//!
//! "Nothing sent" is observed: the function's HTTP client sends everything not bound for loopback through
//! a recording listener (as its proxy), so a refused ResponseURL that was used anyway, whatever its host,
//! would show up there; and a provider callback is configured, so a notification would show up too.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use account_link::cfn::{parse_bytes, RequestError};
use account_link::config::Callback;
use account_link::deadline::Deadline;
use account_link::handler::{handle_payload, http_client, HandlerError};
use account_link::notify::{Channels, Webhook};
use account_link::outbound::OutboundPolicy;
use account_link::App;
use common::http::{Reply, Server, Trap};
use link_contract::signing::SigningSecret;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Expect {
    outcome: String,
    mentions: String,
}

/// The function under attack, and what it could send things to.
struct Target {
    app: Arc<App>,
    /// Every request the function's HTTP client makes to a non-loopback host.
    trap: Trap,
    /// The configured provider callback.
    provider: Server,
}

async fn target() -> Target {
    let trap = Trap::start().await;
    let provider = Server::always(Reply::status(200)).await;
    let callback = Callback {
        url: url::Url::parse(&provider.url("/hooks/aws")).unwrap(),
        secret: None,
        max_body_bytes: account_link::config::DEFAULT_MAX_BODY_BYTES,
    };
    let webhook = Webhook::new(
        http_client(),
        callback,
        common::hmac_auth(SigningSecret::parse_list(common::SECRET).unwrap()),
    );
    let mut app = common::app_on(
        common::one_vpc_ec2(),
        Arc::new(Channels {
            webhook: Some(webhook),
            sns: None,
        }),
    );
    Arc::get_mut(&mut app).unwrap().http = trap.client().into();
    Target {
        app,
        trap,
        provider,
    }
}

async fn check(t: &Target, name: &str, raw: &str, expect: &Expect) {
    assert!(
        !expect.mentions.is_empty(),
        "{name}: an expectation names what the outcome says"
    );
    let s3 = Server::always(Reply::status(200)).await;
    let told_before = t.provider.requests().len();
    let text = raw.replace("{{S3}}", &s3.url("/bucket/key"));
    let result = match serde_json::from_str::<Value>(&text) {
        Ok(payload) => {
            handle_payload(
                t.app.clone(),
                payload,
                common::FUNCTION_ARN,
                Deadline::after(Duration::from_secs(5)),
            )
            .await
        }
        // Not JSON: the runtime cannot even hand it over; the parser says why.
        Err(_) => match parse_bytes(
            text.as_bytes(),
            &OutboundPolicy::new(true),
            &common::origin(),
        ) {
            Err(RequestError::Unanswerable(m)) => Err(HandlerError::Unanswerable(m)),
            other => panic!("{name}: {other:?}"),
        },
    };
    let puts = s3.requests();
    let told = &t.provider.requests()[told_before..];
    match expect.outcome.as_str() {
        "unanswerable" => {
            assert_eq!(
                t.trap.seen().await,
                Vec::<String>::new(),
                "{name}: nothing is sent to an untrusted URL"
            );
            assert!(puts.is_empty(), "{name}: no answer anywhere");
            assert!(told.is_empty(), "{name}: nothing sent to the provider");
            let err = result.expect_err(name);
            assert!(err.to_string().contains(&expect.mentions), "{name}: {err}");
        }
        outcome => {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(puts.len(), 1, "{name}: exactly one answer");
            let answer: Value = serde_json::from_slice(&puts[0].body).unwrap();
            let want = if outcome == "failed" {
                "FAILED"
            } else {
                "SUCCESS"
            };
            assert_eq!(answer["Status"], want, "{name}: {answer}");
            assert!(
                answer["Reason"]
                    .as_str()
                    .unwrap()
                    .contains(&expect.mentions),
                "{name}: {answer}"
            );
            assert!(puts[0].body.len() <= 4096);
            if outcome == "failed" {
                assert!(told.is_empty(), "{name}: nothing sent to the provider");
            }
        }
    }
}

#[tokio::test]
async fn every_invalid_event_gets_a_clear_outcome() {
    let dir = common::root().join("events/invalid");
    let expectations: BTreeMap<String, Expect> =
        serde_json::from_slice(&std::fs::read(dir.join("expectations.json")).unwrap()).unwrap();
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "expectations.json")
        .collect();
    assert_eq!(
        files.len(),
        expectations.len(),
        "every corpus file has an expectation"
    );
    let t = target().await;
    for (name, expect) in &expectations {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        check(&t, name, &raw, expect).await;
    }
    // A 1 MB property value: rejected by name, answered within the size limit.
    let mut big: Value =
        serde_json::from_slice(&std::fs::read(common::root().join("events/create.json")).unwrap())
            .unwrap();
    big["ResponseURL"] = "{{S3}}".into();
    big["ResourceProperties"]["ExternalId"] = "a".repeat(1 << 20).into();
    let expect = Expect {
        outcome: "failed".into(),
        mentions: "ExternalId: is 1048576 characters long".into(),
    };
    check(&t, "1 MB ExternalId", &big.to_string(), &expect).await;
    // ... and the process goes on serving: the provider hears of a valid request.
    let s3 = Server::always(Reply::status(200)).await;
    handle_payload(
        t.app.clone(),
        common::event("create.json", &s3.url("/b/k")),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let answer: Value = serde_json::from_slice(&s3.requests()[0].body).unwrap();
    assert_eq!(answer["Status"], "SUCCESS");
    // Of the whole corpus, only the Delete of a link this resource issued (invalid properties are
    // ignored on Delete) and the valid Create reached the provider.
    let told: Vec<(String, String)> = t
        .provider
        .requests()
        .iter()
        .map(|r| {
            let e: Value = serde_json::from_slice(&r.body).unwrap();
            (
                e["type"].as_str().unwrap().to_string(),
                e["data"]["requestId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let types: Vec<&str> = told.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["account.unlinked", "account.linked"], "{told:?}");
    assert_eq!(
        t.trap.seen().await,
        Vec::<String>::new(),
        "nothing went anywhere else"
    );
}

/// The trap works: an answer the function is allowed to send to AWS (CloudFormation's response bucket)
/// goes through it; so the refused URLs above would have been seen had anything been sent to them.
#[tokio::test]
async fn the_trap_sees_what_the_function_sends() {
    let t = target().await;
    let mut payload: Value = serde_json::from_slice(
        &std::fs::read(common::root().join("events/invalid/delete-of-unknown-id.json")).unwrap(),
    )
    .unwrap();
    payload["ResponseURL"] =
        "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k?X-Amz-Signature=0"
            .into();
    let result = handle_payload(
        t.app.clone(),
        payload,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(3)),
    )
    .await;
    assert!(
        matches!(result, Err(HandlerError::AnswerNotDelivered { .. })),
        "{result:?}"
    );
    let seen = t.trap.seen().await;
    assert!(!seen.is_empty(), "the answer went through the trap");
    assert!(
        seen.iter().all(|l| {
            l.starts_with(
            "CONNECT cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com:443"
        )
        }),
        "{seen:?}"
    );
}
