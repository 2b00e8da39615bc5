//! The handler's guarantees where moto cannot help: paging, scale, deadlines, panics, unanswerable input.
//! EC2 is faked with aws-smithy-mocks or a hanging loopback endpoint; the ResponseURL is a local server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use account_link::deadline::Deadline;
use account_link::deadline::InFlight;
use account_link::handler::{handle_payload, HandlerError, ANSWER_MARGIN};
use account_link::inventory::{self, Ec2Clients};
use account_link::notify::{Channels, Notifier, NotifyError};
use account_link::App;
use aws_sdk_ec2::operation::describe_route_tables::DescribeRouteTablesOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use common::http::{Reply, Server};
use futures::future::BoxFuture;
use link_contract::event::LinkEvent;
use serde_json::Value;

struct Silent;
impl Notifier for Silent {
    fn notify<'a>(
        &'a self,
        _: &'a LinkEvent,
        _: Deadline,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Panics;
impl Notifier for Panics {
    fn notify<'a>(
        &'a self,
        _: &'a LinkEvent,
        _: Deadline,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async { panic!("bug in the notifier") })
    }
}

fn app(ec2: aws_sdk_ec2::Config, notifier: Arc<dyn Notifier>) -> Arc<App> {
    common::app_on(ec2, notifier)
}

/// A fake S3 that accepts every PUT.
async fn s3() -> Server {
    Server::always(Reply::status(200)).await
}

fn answer_of(s3: &Server) -> Value {
    let reqs = s3.requests();
    assert_eq!(reqs.len(), 1, "exactly one answer");
    serde_json::from_slice(&reqs[0].body).unwrap()
}

#[tokio::test]
async fn every_page_is_followed() {
    let (client, subnet_rule) = common::paged_ec2(3, 2_500);
    let clients = Ec2Clients::new(client.config().clone());
    let inv = inventory::collect(&clients, &["us-west-2".into()], &InFlight::default())
        .await
        .unwrap();
    assert_eq!(subnet_rule.num_calls(), 3, "three pages of subnets");
    assert_eq!(inv.subnet_count(), 2_500);
    assert_eq!(inv.vpc_count(), 3);
    let ids = inv.subnet_ids();
    assert!(
        ids.contains(&"subnet-00000000000000000")
            && ids.contains(&format!("subnet-{:017x}", 2_499).as_str())
    );
}

#[tokio::test]
async fn a_page_token_cycle_ends_with_an_error() {
    let rule = mock!(Client::describe_subnets).then_compute_output(|req| {
        let next = if req.next_token() == Some("a") {
            "b"
        } else {
            "a"
        };
        DescribeSubnetsOutput::builder().next_token(next).build()
    });
    let others = [
        mock!(Client::describe_vpcs).then_output(|| DescribeVpcsOutput::builder().build()),
        mock!(Client::describe_route_tables)
            .then_output(|| DescribeRouteTablesOutput::builder().build()),
    ];
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        &[&rule, &others[0], &others[1]]
    );
    let err = inventory::collect(
        &Ec2Clients::new(client.config().clone()),
        &["eu-west-1".into()],
        &InFlight::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.action, "DescribeSubnets");
    assert!(
        err.to_string().starts_with(
            "ec2:DescribeSubnets in eu-west-1 returned a page token it had already returned"
        ),
        "{err}"
    );
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn ten_thousand_subnets_fit_in_the_answer() {
    let (client, _) = common::paged_ec2(40, 10_000);
    let s3 = s3().await;
    let payload = common::event("create.json", &s3.url("/bucket/key?X-Amz-Signature=SECRET"));
    let mut payload = payload;
    payload["ResourceProperties"]["Regions"] = serde_json::json!(["us-west-2"]);
    handle_payload(
        app(client.config().clone(), Arc::new(Silent)),
        payload,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let body = &s3.requests()[0].body;
    assert!(body.len() <= 4096, "{} bytes", body.len());
    let answer = answer_of(&s3);
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["Data"]["SubnetCount"], "10000");
    assert_eq!(answer["Data"]["Truncated"], "true");
    assert!(answer["Data"].get("SubnetIds").is_none());
    // The PUT is what a pre-signed URL needs: empty content type, exact length.
    let put = &s3.requests()[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.header("content-type"), Some(""));
    assert_eq!(
        put.header("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn hanging_ec2_still_gets_an_answer_before_the_deadline() {
    common::capture_logs();
    let ec2 = Server::always(Reply::hang()).await;
    let sdk = common::sdk_config(&ec2.url("")).await;
    let s3 = s3().await;
    let mut payload = common::event("create.json", &s3.url("/bucket/key?X-Amz-Signature=SECRET"));
    let id = common::own_request_id(&mut payload, "hanging-ec2");
    // Long enough that the work's reserve (a tenth of the time, at most 1 s) dwarfs a loaded machine's
    // scheduling delays.
    let deadline = Deadline::after(Duration::from_secs(10));
    handle_payload(
        app(aws_sdk_ec2::Config::from(&sdk), Arc::new(Silent)),
        payload,
        common::FUNCTION_ARN,
        deadline,
    )
    .await
    .unwrap();
    let answer = answer_of(&s3);
    // The answer started with the margin left, by the function's own clock, and CloudFormation had it
    // before the deadline.
    let left = common::time_left_when_answering(&id);
    assert!(left >= ANSWER_MARGIN, "answered with {left:?} left");
    assert!(
        s3.requests()[0].at < deadline.instant().into_std(),
        "the answer arrived before the deadline"
    );
    assert_eq!(answer["Status"], "FAILED");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("ran out of time waiting for ec2:Describe"),
        "{reason}"
    );
    assert!(
        reason.contains("in us-west-2") && reason.contains("in us-east-1"),
        "{reason}"
    );
    assert!(answer["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .starts_with("create-failed-"));
    common::assert_no_secrets_in_logs(&["SECRET"]);
}

/// EC2 that panics inside the SDK call, in every region.
fn panicking_ec2() -> aws_sdk_ec2::Config {
    let rules = [
        mock!(Client::describe_vpcs)
            .then_compute_output(|_| -> DescribeVpcsOutput { panic!("bug while listing VPCs") }),
        mock!(Client::describe_subnets).then_output(|| DescribeSubnetsOutput::builder().build()),
        mock!(Client::describe_route_tables)
            .then_output(|| DescribeRouteTablesOutput::builder().build()),
    ];
    mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        &[&rules[0], &rules[1], &rules[2]]
    )
    .config()
    .clone()
}

#[tokio::test]
async fn a_delete_whose_own_work_panics_or_hangs_still_succeeds_saying_what_was_not_done() {
    // A panic inside the Delete's own work (listing the networks), not after its answer.
    let told = Arc::new(common::Recorder::default());
    let fake_s3 = s3().await;
    handle_payload(
        app(panicking_ec2(), told.clone()),
        common::event("delete.json", &fake_s3.url("/b/k")),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let answer = answer_of(&fake_s3);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("unlink not confirmed: the function failed unexpectedly"),
        "{reason}"
    );
    assert_eq!(
        answer["PhysicalResourceId"],
        "link-0db000940c03d4ff693e45fe7cd81351"
    );

    // EC2 hangs during the Delete: cut off at the work deadline, still SUCCESS, naming what it waited for.
    let ec2 = Server::always(Reply::hang()).await;
    let sdk = common::sdk_config(&ec2.url("")).await;
    let fake_s3 = s3().await;
    handle_payload(
        app(aws_sdk_ec2::Config::from(&sdk), told.clone()),
        common::event("delete.json", &fake_s3.url("/b/k")),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(4)),
    )
    .await
    .unwrap();
    let answer = answer_of(&fake_s3);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "unlink not confirmed: the function ran out of time waiting for ec2:Describe"
        ),
        "{reason}"
    );
    // Neither Delete finished its work, so neither told the provider anything.
    assert!(told.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_panic_still_answers_failed_and_the_next_request_is_served() {
    let (client, _) = common::paged_ec2(1, 3);
    let app = app(client.config().clone(), Arc::new(Panics));
    for request_type in ["create.json", "update.json"] {
        let s3 = s3().await;
        let payload = common::event(request_type, &s3.url("/b/k"));
        handle_payload(
            app.clone(),
            payload,
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        let answer = answer_of(&s3);
        assert_eq!(answer["Status"], "FAILED", "{request_type}");
        assert!(
            answer["Reason"]
                .as_str()
                .unwrap()
                .contains("failed unexpectedly"),
            "{answer}"
        );
    }
    // A Delete must not strand the stack even then.
    let s3 = s3().await;
    handle_payload(
        app.clone(),
        common::event("delete.json", &s3.url("/b/k")),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(answer_of(&s3)["Status"], "SUCCESS");
}

#[tokio::test]
async fn the_same_request_twice_gets_the_same_answer() {
    let (client, _) = common::paged_ec2(2, 10);
    let app = app(client.config().clone(), Arc::new(Silent));
    let mut answers = Vec::new();
    for _ in 0..2 {
        let s3 = s3().await;
        handle_payload(
            app.clone(),
            common::event("create.json", &s3.url("/b/k")),
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        answers.push(s3.requests()[0].body.clone());
    }
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn unanswerable_events_are_errors_and_invalid_ones_answer_failed() {
    let (client, _) = common::paged_ec2(1, 1);
    let app = app(client.config().clone(), Arc::new(Channels::default()));
    let err = handle_payload(
        app.clone(),
        serde_json::json!({"RequestType": "Create"}),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, HandlerError::Unanswerable(ref m) if m.contains("ResponseURL")),
        "{err}"
    );
    let mut payload = common::event("create.json", "https://attacker.example.com/x");
    let err = handle_payload(
        app.clone(),
        payload.clone(),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("response bucket"), "{err}");

    let s3 = s3().await;
    payload["ResponseURL"] = s3.url("/b/k").into();
    payload["ResourceProperties"]["Regions"] = serde_json::json!(["us-west-2", "nowhere-1"]);
    handle_payload(
        app.clone(),
        payload,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let answer = answer_of(&s3);
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        answer["Reason"].as_str().unwrap().contains("Regions[1]"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_misconfigured_function_fails_create_and_update_naming_the_variable_and_deletes() {
    use account_link::config::Config;
    // Built as main.rs builds it: the configuration read from the environment, then the app. Nothing
    // here reaches EC2 or the provider (a misconfigured function does neither), so their endpoints are
    // unreachable on purpose.
    let sdk = common::sdk_config("http://127.0.0.1:1").await;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("PROVIDER_AUTH_MODE", "hmac")], "PROVIDER_AUTH_MODE"),
        (
            &[(
                "PROVIDER_CALLBACK_URL",
                "https://hooks.provider.example/aws",
            )],
            "PROVIDER_SIGNING_SECRET_ARN",
        ),
        (
            &[
                (
                    "PROVIDER_CALLBACK_URL",
                    "https://hooks.provider.example/aws",
                ),
                ("PROVIDER_SIGNING_SECRET", common::SECRET),
                (
                    "PROVIDER_SIGNING_SECRET_ARN",
                    "arn:aws:secretsmanager:us-west-2:123456789012:secret:s-AbCdEf",
                ),
            ],
            "PROVIDER_SIGNING_SECRET",
        ),
        (
            &[("PROVIDER_SNS_TOPIC_ARN", "links")],
            "PROVIDER_SNS_TOPIC_ARN",
        ),
    ];
    for (vars, var) in cases {
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let config = Config::from_lookup(env);
        assert!(config.is_err(), "{vars:?}");
        let mut app = Arc::new(App::new(&sdk, config));
        // The tests' fake S3 is on loopback, which only the (here unread) local-runs switch allows.
        Arc::get_mut(&mut app).unwrap().outbound =
            account_link::outbound::OutboundPolicy::new(true);
        for (request, status) in [
            ("create.json", "FAILED"),
            ("update.json", "FAILED"),
            ("delete.json", "SUCCESS"),
        ] {
            let s3 = s3().await;
            handle_payload(
                app.clone(),
                common::event(request, &s3.url("/b/k")),
                common::FUNCTION_ARN,
                Deadline::after(Duration::from_secs(10)),
            )
            .await
            .unwrap();
            let answer = answer_of(&s3);
            assert_eq!(answer["Status"], status, "{var}, {request}: {answer}");
            let reason = answer["Reason"].as_str().unwrap();
            assert!(
                reason.contains(&format!(
                    "the function is misconfigured: environment variable {var} "
                )),
                "{var}, {request}: {reason}"
            );
            assert!(!reason.contains("MfKQ"), "{reason}");
        }
    }
}
