//! Hostile input: every file in events/invalid/ gets the outcome events/invalid/expectations.json gives
//! (a clear error naming the field; FAILED on the ResponseURL when it can be trusted; nothing sent when
//! it cannot), and the same process then serves a valid request.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use account_link::cfn::{parse_bytes, RequestError};
use account_link::deadline::Deadline;
use account_link::handler::{handle_payload, HandlerError};
use account_link::notify::Channels;
use account_link::outbound::OutboundPolicy;
use account_link::App;
use common::http::{Reply, Server};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Expect {
    outcome: String,
    mentions: String,
}

fn app() -> Arc<App> {
    common::app_on(common::one_vpc_ec2(), Arc::new(Channels::default()))
}

async fn check(app: &Arc<App>, name: &str, raw: &str, expect: &Expect) {
    let s3 = Server::always(Reply::status(200)).await;
    let text = raw.replace("{{S3}}", &s3.url("/bucket/key"));
    let result = match serde_json::from_str::<Value>(&text) {
        Ok(payload) => {
            handle_payload(
                app.clone(),
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
    match expect.outcome.as_str() {
        "unanswerable" => {
            let err = result.expect_err(name);
            assert!(err.to_string().contains(&expect.mentions), "{name}: {err}");
            assert!(
                puts.is_empty(),
                "{name}: nothing is sent to an untrusted URL"
            );
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
    let app = app();
    for (name, expect) in &expectations {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        check(&app, name, &raw, expect).await;
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
    check(&app, "1 MB ExternalId", &big.to_string(), &expect).await;
    // ... and the process goes on serving.
    let s3 = Server::always(Reply::status(200)).await;
    handle_payload(
        app,
        common::event("create.json", &s3.url("/b/k")),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let answer: Value = serde_json::from_slice(&s3.requests()[0].body).unwrap();
    assert_eq!(answer["Status"], "SUCCESS");
}
