//! Telling the provider: the full flow against moto with the reference receiver, the Python
//! `standardwebhooks` verifier, SNS through moto, and the callback's fault behaviour.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use account_link::config::Callback;
use account_link::deadline::Deadline;
use account_link::delivery::RetryPolicy;
use account_link::handler::{handle_payload, http_client, ANSWER_MARGIN};
use account_link::notify::{Channels, SnsPublisher, Webhook, MAX_SNS_MESSAGE_BYTES};
use account_link::outbound::OutboundPolicy;
use account_link::App;
use common::http::{Reply, Server};
use common::{Listening, Moto, SECRET};
use link_contract::event::LinkEvent;
use link_contract::inventory::{Inventory, RegionInventory, Subnet, Vpc};
use link_contract::parts;
use link_contract::signing::SigningSecret;
use serde_json::{json, Value};

const REGIONS: [&str; 2] = ["us-west-2", "eu-west-1"];

fn secrets() -> Vec<SigningSecret> {
    SigningSecret::parse_list(SECRET).unwrap()
}

fn payload(moto: &Moto, name: &str, key: &str) -> Value {
    let mut p = common::event(name, &moto.presign(key));
    p["ResourceProperties"]["Regions"] = json!(REGIONS);
    if let Some(old) = p.get_mut("OldResourceProperties") {
        old["Regions"] = json!(REGIONS);
    }
    p
}

/// VPC id -> sorted subnet ids, as the provider sees them.
fn subnets_by_vpc(inventory: &[RegionInventory]) -> Value {
    let mut out = serde_json::Map::new();
    for r in inventory {
        let mut vpcs = serde_json::Map::new();
        for v in &r.vpcs {
            let mut ids: Vec<&str> = v.subnets.iter().map(|s| s.subnet_id.as_str()).collect();
            ids.sort();
            vpcs.insert(v.vpc_id.clone(), json!({"subnets": ids, "routeTables": v.route_tables.iter().map(|t| t.route_table_id.as_str()).collect::<Vec<_>>()}));
        }
        out.insert(r.region.clone(), Value::Object(vpcs));
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn link_flow_reaches_the_provider_and_sns() {
    common::capture_logs();
    let moto = Moto::start();
    let seeded: Value =
        serde_json::from_str(&moto.fixture(&["seed", "--regions", &REGIONS.join(",")])).unwrap();
    let topic: Value =
        serde_json::from_str(&moto.fixture(&["sns-topic", "--name", "links"])).unwrap();
    let events_file = common::temp_path("flow-receiver.jsonl");
    let receiver = Listening::py_receiver(SECRET, &events_file);
    let app = common::app(
        &moto.endpoint,
        &[
            (
                "PROVIDER_CALLBACK_URL",
                &format!("{}/hooks/aws", receiver.url),
            ),
            ("PROVIDER_SIGNING_SECRET", SECRET),
            (
                "PROVIDER_SNS_TOPIC_ARN",
                topic["topicArn"].as_str().unwrap(),
            ),
        ],
    )
    .await;

    for name in ["create.json", "update.json", "delete.json"] {
        let key = format!("flow/{name}");
        handle_payload(
            app.clone(),
            payload(&moto, name, &key),
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap();
        let answer = moto.read_answer(&key);
        assert_eq!(answer["Status"], "SUCCESS", "{name}: {answer}");
    }

    // Kept for the schema check that runs after the Rust tests (make test).
    let kept = common::root().join("target/test-output");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::copy(&events_file, kept.join("link-events.jsonl")).unwrap();
    let events: Vec<LinkEvent> = common::json_lines(&events_file)
        .into_iter()
        .map(|v| serde_json::from_value(v["payload"].clone()).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["account.linked", "account.updated", "account.unlinked"]
    );
    for e in &events {
        assert_eq!(
            subnets_by_vpc(&e.data.inventory),
            seeded,
            "{}",
            e.event_type.as_str()
        );
        assert_eq!(e.data.account_id, "123456789012");
        assert_eq!(e.data.partition, "aws");
        assert_eq!(e.data.region, "us-west-2");
        assert_eq!(e.data.roles.len(), 3);
        assert!(e.data.physical_resource_id.starts_with("link-"));
    }
    assert_eq!(
        events[1].data.changes.as_ref().unwrap().changed_properties,
        ["ExternalId"]
    );

    let messages: Vec<Value> = serde_json::from_str(&moto.fixture(&[
        "sqs-drain",
        "--queue-url",
        topic["queueUrl"].as_str().unwrap(),
    ]))
    .unwrap();
    let sns_events: Vec<LinkEvent> = messages
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap()).unwrap())
        .collect();
    let attr_types: Vec<&str> = messages
        .iter()
        .map(|m| m["attributes"]["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(attr_types, types);
    for (sns, hook) in sns_events.iter().zip(&events) {
        assert_eq!(sns.data, hook.data, "SNS carries the same event");
    }
    common::assert_no_secrets_in_logs(&[SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_standardwebhooks_verifies_what_we_send() {
    let moto = Moto::start();
    moto.fixture(&["seed", "--regions", "us-west-2", "--vpcs", "1"]);
    let out = common::temp_path("py-receiver.jsonl");
    let receiver = Listening::py_receiver(SECRET, &out);
    // Two secrets (rotation): the verifier knows only the second.
    let rotated = format!("whsec_{} {SECRET}", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY");
    let app = common::app(
        &moto.endpoint,
        &[
            ("PROVIDER_CALLBACK_URL", &receiver.url),
            ("PROVIDER_SIGNING_SECRET", &rotated),
        ],
    )
    .await;
    for name in ["create.json", "update.json", "delete.json"] {
        let mut p = common::event(name, &moto.presign(name));
        p["ResourceProperties"]["Regions"] = json!(["us-west-2"]);
        handle_payload(
            app.clone(),
            p,
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap();
        assert_eq!(moto.read_answer(name)["Status"], "SUCCESS");
    }
    let verified = common::json_lines(&out);
    let types: Vec<&str> = verified
        .iter()
        .map(|v| v["payload"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["account.linked", "account.updated", "account.unlinked"]
    );
    for v in &verified {
        assert_eq!(v["webhookId"], v["payload"]["data"]["eventId"]);
    }
}

// ---- callback faults (mocked EC2, local provider endpoint) ----

fn mocked_app(callback: Option<Webhook>) -> Arc<App> {
    common::app_on(
        common::one_vpc_ec2(),
        Arc::new(Channels {
            webhook: callback,
            sns: None,
        }),
    )
}

fn webhook(url: &str, per_attempt: Duration) -> Webhook {
    let callback = Callback {
        url: url::Url::parse(url).unwrap(),
        secret: None,
        max_body_bytes: account_link::config::DEFAULT_MAX_BODY_BYTES,
    };
    Webhook::new(http_client(), callback, common::hmac_auth(secrets())).with_policy(RetryPolicy {
        max_attempts: 6,
        per_attempt,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        retry_status: account_link::notify::webhook_retry_status,
    })
}

async fn run(app: Arc<App>, name: &str, within: Duration) -> (Value, Instant, Deadline) {
    let s3 = Server::always(Reply::status(200)).await;
    let deadline = Deadline::after(within);
    handle_payload(
        app,
        common::event(name, &s3.url("/b/k?X-Amz-Signature=S3SECRET")),
        common::FUNCTION_ARN,
        deadline,
    )
    .await
    .unwrap();
    let reqs = s3.requests();
    assert_eq!(reqs.len(), 1, "exactly one answer");
    (
        serde_json::from_slice(&reqs[0].body).unwrap(),
        reqs[0].at,
        deadline,
    )
}

#[tokio::test]
async fn retries_keep_the_webhook_id_and_sign_each_attempt() {
    let provider = Server::start(|n, _| {
        if n < 2 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let app = mocked_app(Some(webhook(
        &provider.url("/hook"),
        Duration::from_secs(2),
    )));
    let (answer, _, _) = run(app, "create.json", Duration::from_secs(20)).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let reqs = provider.requests();
    assert_eq!(reqs.len(), 3);
    let ids: Vec<&str> = reqs
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]) && ids[0].starts_with("msg_"));
    assert_eq!(answer["Data"]["EventId"], ids[0]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for r in &reqs {
        let ok = link_contract::signing::verify(
            &secrets(),
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            &r.body,
            now,
            300,
        );
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let provider = Server::start(|n, _| {
        if n == 0 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(204)
        }
    })
    .await;
    let app = mocked_app(Some(webhook(
        &provider.url("/hook"),
        Duration::from_secs(2),
    )));
    let (answer, _, _) = run(app, "create.json", Duration::from_secs(20)).await;
    assert_eq!(answer["Status"], "SUCCESS");
    let reqs = provider.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_secs(1),
        "waited {:?}",
        reqs[1].at - reqs[0].at
    );
}

#[tokio::test]
async fn a_401_fails_the_create_with_what_the_provider_said() {
    let provider =
        Server::always(Reply::status(401).body("{\"error\":\"unknown external id\"}")).await;
    let app = mocked_app(Some(webhook(
        &provider.url("/hook"),
        Duration::from_secs(2),
    )));
    let (answer, _, _) = run(app, "create.json", Duration::from_secs(20)).await;
    assert_eq!(answer["Status"], "FAILED");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 401") && reason.contains("unknown external id"),
        "{reason}"
    );
    assert_eq!(provider.requests().len(), 1, "a 401 is final");
}

#[tokio::test]
async fn delete_succeeds_when_the_provider_is_down_or_has_no_such_link() {
    let port = common::free_port();
    let app = mocked_app(Some(webhook(
        &format!("http://127.0.0.1:{port}/hook"),
        Duration::from_secs(1),
    )));
    let (answer, _, _) = run(app, "delete.json", Duration::from_secs(6)).await;
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(
        answer["Reason"],
        "unlinked; the provider is told once this answer is accepted"
    );

    let gone = Server::always(Reply::status(410)).await;
    let app = mocked_app(Some(webhook(&gone.url("/hook"), Duration::from_secs(1))));
    let (answer, answered_at, _) = run(app, "delete.json", Duration::from_secs(6)).await;
    assert_eq!(answer["Status"], "SUCCESS");
    let told = gone.requests();
    assert_eq!(told.len(), 1, "the provider is told once");
    assert!(
        told[0].at > answered_at,
        "the unlink goes out after the answer"
    );
}

#[tokio::test]
async fn a_delete_whose_answer_is_refused_tells_the_provider_nothing() {
    // Someone allowed to invoke the function sends a Delete naming the response bucket, but without a
    // pre-signed URL CloudFormation made, the bucket refuses the answer: the provider must not unlink.
    let provider = Server::always(Reply::status(200)).await;
    let app = mocked_app(Some(webhook(
        &provider.url("/hook"),
        Duration::from_secs(1),
    )));
    let s3 =
        Server::always(Reply::status(403).body("<Error><Code>AccessDenied</Code></Error>")).await;
    let result = handle_payload(
        app,
        common::event("delete.json", &s3.url("/b/k?X-Amz-Signature=FORGED")),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(6)),
    )
    .await;
    assert!(result.is_err(), "the answer was not delivered");
    assert!(!s3.requests().is_empty());
    assert!(
        provider.requests().is_empty(),
        "no unlink reached the provider"
    );
}

#[tokio::test]
async fn a_hanging_provider_still_leaves_time_to_answer() {
    common::capture_logs();
    let provider = Server::always(Reply::hang()).await;
    let app = mocked_app(Some(webhook(
        &provider.url("/hook"),
        Duration::from_secs(30),
    )));
    let (answer, at, deadline) = run(app, "create.json", Duration::from_secs(5)).await;
    assert_eq!(answer["Status"], "FAILED");
    assert!(deadline.instant().into_std().saturating_duration_since(at) >= ANSWER_MARGIN);
    assert!(
        answer["Reason"].as_str().unwrap().contains("callback"),
        "{answer}"
    );
    common::assert_no_secrets_in_logs(&[SECRET, "S3SECRET"]);
}

// ---- SNS: splitting under the limit, through moto ----

fn big_inventory(subnets: usize) -> Inventory {
    let vpcs = (0..20)
        .map(|v| Vpc {
            vpc_id: format!("vpc-{v:017x}"),
            cidr_block: Some("10.0.0.0/16".into()),
            subnets: (0..subnets / 20)
                .map(|s| Subnet {
                    subnet_id: format!("subnet-{:017x}", v * 100_000 + s),
                    cidr_block: Some("10.0.0.0/28".into()),
                    availability_zone: Some("us-west-2a".into()),
                    availability_zone_id: Some("usw2-az1".into()),
                    available_ip_address_count: Some(11),
                    name: Some(format!("private-{s}")),
                    ..Subnet::default()
                })
                .collect(),
            ..Vpc::default()
        })
        .collect();
    Inventory(vec![RegionInventory {
        region: "us-west-2".into(),
        vpcs,
    }])
}

fn big_event(subnets: usize) -> LinkEvent {
    let req = account_link::cfn::parse(
        &common::event("create.json", "http://127.0.0.1:1/k"),
        &OutboundPolicy::new(true),
        &common::origin(),
    )
    .unwrap();
    let props = account_link::properties::defaults("us-west-2");
    account_link::report::link_event(&req, "link-x", &props, None, Some(big_inventory(subnets)))
}

/// Puts split parts back together by VPC id.
fn reassemble(parts: &[LinkEvent]) -> Vec<String> {
    let mut ids: Vec<String> = parts
        .iter()
        .flat_map(|p| &p.data.inventory)
        .flat_map(|r| &r.vpcs)
        .flat_map(|v| &v.subnets)
        .map(|s| s.subnet_id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn split_parts_fit_and_hold_everything() {
    let event = big_event(10_000);
    let parts = parts::split(&event, MAX_SNS_MESSAGE_BYTES);
    assert!(parts.len() > 1);
    let decoded: Vec<LinkEvent> = parts
        .iter()
        .map(|p| serde_json::from_str(&p.json).unwrap())
        .collect();
    for (i, (raw, p)) in parts.iter().zip(&decoded).enumerate() {
        assert!(
            raw.json.len() <= MAX_SNS_MESSAGE_BYTES,
            "part {i}: {}",
            raw.json.len()
        );
        let part = p.data.part.as_ref().unwrap();
        assert_eq!((part.index, part.count), (i + 1, parts.len()));
        assert_eq!(p.data.event_id, event.data.event_id);
    }
    let mut want: Vec<String> = event.data.inventory[0]
        .vpcs
        .iter()
        .flat_map(|v| &v.subnets)
        .map(|s| s.subnet_id.clone())
        .collect();
    want.sort();
    assert_eq!(reassemble(&decoded), want);
    let small = big_event(20);
    assert_eq!(parts::split(&small, MAX_SNS_MESSAGE_BYTES).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_subnets_reach_sns_in_parts() {
    let moto = Moto::start();
    let topic: Value =
        serde_json::from_str(&moto.fixture(&["sns-topic", "--name", "big"])).unwrap();
    let sdk = common::sdk_config(&moto.endpoint).await;
    let publisher = SnsPublisher::new(
        aws_sdk_sns::Client::new(&sdk),
        topic["topicArn"].as_str().unwrap().into(),
        None,
    );
    let event = big_event(10_000);
    publisher
        .publish(&event, Deadline::after(Duration::from_secs(60)))
        .await
        .unwrap();
    let messages: Vec<Value> = serde_json::from_str(&moto.fixture(&[
        "sqs-drain",
        "--queue-url",
        topic["queueUrl"].as_str().unwrap(),
    ]))
    .unwrap();
    let parts: Vec<LinkEvent> = messages
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap()).unwrap())
        .collect();
    assert!(parts.len() > 1);
    assert!(messages.iter().all(|m| m["attributes"]["part"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/{}", parts.len()))));
    assert_eq!(reassemble(&parts).len(), 10_000);
}

/// A split beyond what a receiver accepts (more than 64 parts, at the smallest body limit) is not sent
/// at all: the provider gets nothing, and the error says what to change.
#[tokio::test]
async fn a_split_beyond_the_receivers_bounds_is_not_sent() {
    let provider = Server::always(Reply::status(200)).await;
    let callback = Callback {
        url: url::Url::parse(&provider.url("/hook")).unwrap(),
        secret: None,
        max_body_bytes: 16 * 1024,
    };
    let hook = Webhook::new(http_client(), callback, common::hmac_auth(secrets()));
    let event = big_event(6_000);
    assert!(parts::split(&event, 16 * 1024).len() > parts::MAX_PARTS);
    let e = hook
        .deliver(&event, Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("more than the 64") && e.contains("PROVIDER_MAX_BODY_BYTES"),
        "{e}"
    );
    assert!(provider.requests().is_empty(), "no part was sent");
    // At the default 1 MiB the same account fits.
    assert!(parts::check_split(&parts::split(&event, 1 << 20)).is_ok());
}
