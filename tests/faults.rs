//! Never strand a stack: each fault scenario ends with exactly one CloudFormation answer, sent before the
//! deadline, with the outcome a cloud admin can act on, and no secret in any log line.

mod common;

use std::sync::Arc;
use std::time::Duration;

use account_link::config::Callback;
use account_link::deadline::Deadline;
use account_link::delivery::RetryPolicy;
use account_link::handler::{handle_payload, http_client, HandlerError, ANSWER_MARGIN};
use account_link::notify::{webhook_retry_status, Channels, Webhook};
use account_link::App;
use common::http::{Recorded, Reply, Server};
use common::SECRET;
use link_contract::signing::SigningSecret;
use serde_json::Value;

const S3_SECRET: &str = "X-Amz-Signature=F4ULTS3CR3T";

/// EC2 Query-protocol answers by action, as a loopback endpoint: every region gets `ok` unless
/// `deny_region` names it.
fn ec2_reply(req: &Recorded, deny_region: Option<&str>) -> Reply {
    let body = String::from_utf8_lossy(&req.body);
    let action = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("")
        .to_string();
    let auth = req.header("authorization").unwrap_or_default();
    if deny_region.is_some_and(|r| auth.contains(&format!("/{r}/ec2/"))) {
        return Reply::status(403).body(&format!(
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/BasicLambdaRole/account-link is not authorized to perform: ec2:{action}</Message></Error></Errors><RequestID>r</RequestID></Response>"
        ));
    }
    let set = match action.as_str() {
        "DescribeVpcs" => "<vpcSet><item><vpcId>vpc-0000000a</vpcId><cidrBlock>10.0.0.0/16</cidrBlock><isDefault>false</isDefault><state>available</state></item></vpcSet>",
        "DescribeSubnets" => "<subnetSet><item><subnetId>subnet-0000000a</subnetId><vpcId>vpc-0000000a</vpcId><cidrBlock>10.0.0.0/24</cidrBlock><availabilityZone>us-west-2a</availabilityZone></item></subnetSet>",
        _ => "<routeTableSet/>",
    };
    Reply::status(200).body(&format!(
        "<{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId>{set}</{action}Response>"
    ))
}

async fn app_with(ec2: &Server, webhook: Option<Webhook>) -> Arc<App> {
    let sdk = common::sdk_config(&ec2.url("")).await;
    common::app_on(
        aws_sdk_ec2::Config::from(&sdk),
        Arc::new(Channels { webhook, sns: None }),
    )
}

fn webhook(url: &str, per_attempt: Duration) -> Webhook {
    let callback = Callback {
        url: url::Url::parse(url).unwrap(),
        secret: None,
        max_body_bytes: account_link::config::DEFAULT_MAX_BODY_BYTES,
    };
    Webhook::new(
        http_client(),
        callback,
        common::hmac_auth(SigningSecret::parse_list(SECRET).unwrap()),
    )
    .with_policy(RetryPolicy {
        max_attempts: 5,
        per_attempt,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        retry_status: webhook_retry_status,
    })
}

/// Runs `name` (with both regions) against a local S3 answering `s3`; returns the answers S3 accepted.
async fn run(
    app: Arc<App>,
    name: &str,
    within: Duration,
    s3: Server,
) -> (Result<Value, HandlerError>, Vec<Value>, Deadline) {
    let mut payload = common::event(name, &s3.url(&format!("/bucket/{name}?{S3_SECRET}")));
    payload["ResourceProperties"]["Regions"] = serde_json::json!(["us-west-2", "eu-west-1"]);
    let deadline = Deadline::after(within);
    let result = handle_payload(app, payload, common::FUNCTION_ARN, deadline).await;
    let reqs = s3.requests();
    for r in &reqs {
        let before = deadline
            .instant()
            .into_std()
            .saturating_duration_since(r.at);
        assert!(
            before >= Duration::from_millis(300),
            "{name}: a PUT only {before:?} before the deadline"
        );
    }
    let accepted = reqs
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    (result, accepted, deadline)
}

async fn ok_s3() -> Server {
    Server::always(Reply::status(200)).await
}

#[tokio::test]
async fn ec2_access_denied_in_one_of_two_regions() {
    common::capture_logs();
    let ec2 = Server::start(|_, r| ec2_reply(r, Some("eu-west-1"))).await;
    let app = app_with(&ec2, None).await;
    let (_, answers, _) = run(
        app.clone(),
        "create.json",
        Duration::from_secs(10),
        ok_s3().await,
    )
    .await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["Status"], "FAILED");
    let reason = answers[0]["Reason"].as_str().unwrap();
    assert!(
        reason.contains(" in eu-west-1 was denied (UnauthorizedOperation)"),
        "{reason}"
    );
    assert!(
        reason.contains("Allow this action on the function's execution role"),
        "{reason}"
    );
    // Delete goes through anyway.
    let (_, answers, _) = run(app, "delete.json", Duration::from_secs(10), ok_s3().await).await;
    assert_eq!(answers[0]["Status"], "SUCCESS");
    assert!(
        answers[0]["Reason"]
            .as_str()
            .unwrap()
            .contains("unlinked with warnings: ec2:Describe"),
        "{}",
        answers[0]
    );
    common::assert_no_secrets_in_logs(&["F4ULTS3CR3T"]);
}

#[tokio::test]
async fn ec2_throttling_then_success_is_retried_by_the_sdk() {
    let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = throttled.clone();
    let ec2 = Server::start(move |_, r| {
        if String::from_utf8_lossy(&r.body).contains("Action=DescribeSubnets") && count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Reply::status(503).body("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>");
        }
        ec2_reply(r, None)
    })
    .await;
    let app = app_with(&ec2, None).await;
    let (_, answers, _) = run(app, "create.json", Duration::from_secs(15), ok_s3().await).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["Status"], "SUCCESS", "{}", answers[0]);
    assert_eq!(answers[0]["Data"]["SubnetCount"], "2");
    let subnet_calls = ec2
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("Action=DescribeSubnets"))
        .count();
    assert_eq!(
        subnet_calls, 3,
        "one throttled call retried, one per region"
    );
}

#[tokio::test]
async fn a_three_second_deadline_with_hanging_ec2() {
    common::capture_logs();
    let ec2 = Server::always(Reply::hang()).await;
    let app = app_with(&ec2, None).await;
    let s3 = ok_s3().await;
    let mut payload = common::event("create.json", &s3.url(&format!("/bucket/3s?{S3_SECRET}")));
    let id = common::own_request_id(&mut payload, "three-seconds");
    let deadline = Deadline::after(Duration::from_secs(3));
    let result = handle_payload(app, payload, common::FUNCTION_ARN, deadline).await;
    assert!(result.is_ok(), "{result:?}");
    let reqs = s3.requests();
    assert_eq!(reqs.len(), 1);
    let answer: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(answer["Status"], "FAILED");
    // Compared with the deadline the function was given: the answer started with the margin left (by
    // its own clock), and arrived before the deadline.
    let left = common::time_left_when_answering(&id);
    assert!(left >= ANSWER_MARGIN, "answered with {left:?} left");
    assert!(reqs[0].at < deadline.instant().into_std());
}

#[tokio::test]
async fn response_url_503_then_200_delivers_one_answer() {
    let ec2 = Server::start(|_, r| ec2_reply(r, None)).await;
    let s3 = Server::start(|n, _| {
        if n == 0 {
            Reply::status(503).body("<Error><Code>SlowDown</Code></Error>")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let (result, puts, _) = run(
        app_with(&ec2, None).await,
        "create.json",
        Duration::from_secs(10),
        s3,
    )
    .await;
    assert!(result.is_ok());
    assert_eq!(puts.len(), 2, "retried once");
    assert_eq!(puts[0], puts[1], "the same answer both times");
    assert_eq!(puts[1]["Status"], "SUCCESS");
}

#[tokio::test]
async fn response_url_unreachable_is_an_error_not_a_hang() {
    let ec2 = Server::start(|_, r| ec2_reply(r, None)).await;
    let port = common::free_port();
    let mut payload = common::event(
        "create.json",
        &format!("http://127.0.0.1:{port}/b/k?{S3_SECRET}"),
    );
    payload["ResourceProperties"]["Regions"] = serde_json::json!(["us-west-2"]);
    let deadline = Deadline::after(Duration::from_secs(5));
    let err = handle_payload(
        app_with(&ec2, None).await,
        payload,
        common::FUNCTION_ARN,
        deadline,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, HandlerError::AnswerNotDelivered { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert!(!err.to_string().contains("F4ULTS3CR3T"));
    assert!(!deadline.is_past(), "gave up before the deadline");
}

#[tokio::test]
async fn a_provider_answering_late_within_the_attempt_timeout_is_a_success() {
    // Answers 3 s into a 5 s attempt timeout: slow, but in time (2 s to spare even on a loaded machine).
    let ec2 = Server::start(|_, r| ec2_reply(r, None)).await;
    let provider = Server::always(Reply::status(200).delay(Duration::from_secs(3))).await;
    let app = app_with(
        &ec2,
        Some(webhook(&provider.url("/hook"), Duration::from_secs(5))),
    )
    .await;
    let (_, answers, _) = run(app, "create.json", Duration::from_secs(20), ok_s3().await).await;
    assert_eq!(answers[0]["Status"], "SUCCESS", "{}", answers[0]);
    assert_eq!(provider.requests().len(), 1, "no second attempt");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let ec2 = Server::start(|_, r| ec2_reply(r, None)).await;
    let elsewhere = Server::always(Reply::status(200)).await;
    let location = elsewhere.url("/steal");
    let provider = Server::always(Reply::status(302).header("location", &location)).await;
    let app = app_with(
        &ec2,
        Some(webhook(&provider.url("/hook"), Duration::from_secs(1))),
    )
    .await;
    let (_, answers, _) = run(app, "create.json", Duration::from_secs(10), ok_s3().await).await;
    assert_eq!(answers[0]["Status"], "FAILED");
    assert!(
        answers[0]["Reason"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{}",
        answers[0]
    );
    assert!(
        elsewhere.requests().is_empty(),
        "the event went nowhere else"
    );
}

#[tokio::test]
async fn a_create_that_failed_after_telling_the_provider_is_undone_on_rollback() {
    let ec2 = Server::start(|_, r| ec2_reply(r, None)).await;
    // The provider takes the event but never answers: it may have recorded the link.
    let provider = Server::start(|n, _| {
        if n == 0 {
            Reply::hang()
        } else {
            Reply::status(200)
        }
    })
    .await;
    let app = app_with(
        &ec2,
        Some(webhook(&provider.url("/hook"), Duration::from_secs(30))),
    )
    .await;
    let (_, answers, _) = run(
        app.clone(),
        "create.json",
        Duration::from_secs(4),
        ok_s3().await,
    )
    .await;
    assert_eq!(answers[0]["Status"], "FAILED");
    let placeholder = answers[0]["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        placeholder.starts_with("create-unconfirmed-"),
        "{placeholder}"
    );

    // CloudFormation's rollback Delete: the provider is told to unlink the id it may have stored.
    let s3 = ok_s3().await;
    let mut delete = common::event("delete.json", &s3.url("/b/rollback"));
    delete["PhysicalResourceId"] = placeholder.clone().into();
    handle_payload(
        app,
        delete,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let answer: Value = serde_json::from_slice(&s3.requests()[0].body).unwrap();
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["PhysicalResourceId"], placeholder.as_str());
    let reqs = provider.requests();
    assert_eq!(reqs.len(), 2);
    let linked: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let unlinked: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(unlinked["type"], "account.unlinked");
    assert_eq!(
        unlinked["data"]["physicalResourceId"],
        linked["data"]["physicalResourceId"]
    );
}
