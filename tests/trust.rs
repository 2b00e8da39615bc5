//! Trust without a shared secret (issue 12): the proof of the account against botocore and moto's STS, the
//! signing secret from Secrets Manager, SNS in the topic's region, and forged invocations refused.
//!
//! moto's STS answers GetCallerIdentity without checking the SigV4 signature: it names the caller by the
//! access key id alone. So the signature is proven by comparing it with botocore's for the same
//! credentials, time and request (`the_proof_is_signed_exactly_as_botocore_signs_it`), and the round trips
//! through moto prove everything else: the wire format, the binding, the replay, STS's answer and the
//! account and role checks.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use account_link::config::Callback;
use account_link::deadline::Deadline;
use account_link::handler::{handle_payload, http_client};
use account_link::notify::{Channels, Webhook};
use account_link::App;
use aws_credential_types::Credentials;
use common::http::{Recorded, Reply, Server};
use common::{assume_role, sdk_with, Moto, SECRET};
use link_contract::event::LinkEvent;
use link_contract::partition::Partition;
use link_contract::proof::{self, Binding, Expected};
use link_contract::signing::{self, SigningSecret};
use link_registry::proof::{ProofError, ProofVerifier, VerifierOptions};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";

fn verifier(moto: &Moto) -> ProofVerifier {
    ProofVerifier::with_options(VerifierOptions {
        endpoint_override: Some(moto.endpoint.clone()),
        ..VerifierOptions::default()
    })
    .unwrap()
}

fn python(script: &str, args: &[&str], stdin: &[u8]) -> Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::venv_bin("python"))
        .arg(common::root().join("scripts").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_proof_is_signed_exactly_as_botocore_signs_it() {
    let body = br#"{"type":"account.linked","data":{"eventId":"msg_0123"}}"#;
    for (region, suffix, partition, token) in [
        (
            "eu-west-1",
            "amazonaws.com",
            "aws",
            Some("IQoJb3JpZ2luX2VjEJr//+token/with+chars=="),
        ),
        ("us-west-2", "amazonaws.com", "aws", None),
        ("cn-north-1", "amazonaws.com.cn", "aws-cn", Some("token")),
    ] {
        let creds = Credentials::new(
            "ASIAQEXAMPLE7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test",
        );
        let binding = Binding {
            audience: "https://hooks.provider.example",
            event_id: "msg_0123-ab12cd34ef56ab78-1of2",
            body,
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        let ours = account_link::proof::sign_request(
            &creds,
            Partition::named(partition).unwrap(),
            region,
            &binding,
            at,
        )
        .unwrap();
        let mut args = vec![
            "--access-key",
            "ASIAQEXAMPLE7EXAMPLE",
            "--secret-key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "--region",
            region,
            "--dns-suffix",
            suffix,
            "--audience",
            binding.audience,
            "--event-id",
            binding.event_id,
            "--time",
            "20261123T120000Z",
        ];
        if let Some(t) = token {
            args.extend(["--session-token", t]);
        }
        let theirs = python("sts_proof.py", &args, body);
        assert_eq!(
            ours.headers["authorization"], theirs["authorization"],
            "{region}: aws-sigv4 and botocore sign the same request identically"
        );
        assert_eq!(ours.headers["x-amz-date"], theirs["amzDate"]);
        // botocore's proof, decoded, is the same request.
        let decoded = proof::SignedRequest::decode(theirs["proof"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, ours, "{region}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_verifier_accepts_a_proof_botocore_made_and_names_the_role() {
    let moto = Moto::start();
    let session = assume_role(&moto, "account-link-fn-role");
    let body = br#"{"type":"account.linked"}"#;
    let made = python(
        "sts_proof.py",
        &[
            "--access-key",
            &session.access_key_id,
            "--secret-key",
            &session.secret_access_key,
            "--session-token",
            &session.session_token,
            "--region",
            "us-west-2",
            "--audience",
            "https://hooks.provider.example",
            "--event-id",
            "msg_1",
        ],
        body,
    );
    let expected = Expected {
        audience: "https://hooks.provider.example",
        event_id: "msg_1",
        body,
        partition: "aws",
        account_id: ACCOUNT,
    };
    let caller = verifier(&moto)
        .verify(made["proof"].as_str().unwrap(), &expected)
        .await
        .unwrap();
    assert_eq!(caller.arn, session.arn);
    assert_eq!(
        (caller.role_name.as_str(), caller.session_name.as_str()),
        ("account-link-fn-role", "account-link")
    );
    // The same proof with another body, event or audience vouches for nothing.
    let v = verifier(&moto);
    let p = made["proof"].as_str().unwrap();
    for (e, why) in [
        (
            Expected {
                body: b"{}",
                ..expected
            },
            "body",
        ),
        (
            Expected {
                event_id: "msg_2",
                ..expected
            },
            "event id",
        ),
        (
            Expected {
                audience: "https://other.example",
                ..expected
            },
            "audience",
        ),
        (
            Expected {
                account_id: "210987654321",
                ..expected
            },
            "account",
        ),
    ] {
        let err = v.verify(p, &e).await.unwrap_err();
        assert!(matches!(err, ProofError::Refused(_)), "{why}: {err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
}

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("the delivery has no {name} header"))
}

/// The answer the fake S3 received.
fn answer(s3: &Server) -> Value {
    let reqs = s3.requests();
    assert_eq!(reqs.len(), 1, "exactly one answer");
    serde_json::from_slice(&reqs[0].body).unwrap()
}

/// Sends a Create (patched) as `function_arn`; the answer the function says it sent, which must be the one
/// the fake S3 received, once.
async fn create(
    app: &Arc<App>,
    s3: &Server,
    function_arn: &str,
    patch: impl Fn(&mut Value),
) -> Value {
    let mut payload = common::event("create.json", &s3.url("/answer"));
    payload["ResourceProperties"]["Regions"] = json!(["us-west-2"]);
    patch(&mut payload);
    let sent = handle_payload(
        app.clone(),
        payload,
        function_arn,
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap_or_else(|e| panic!("the answer was not delivered: {e}"));
    assert_eq!(
        answer(s3),
        sent,
        "the answer the function sent is the one received"
    );
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn every_delivery_proves_the_account_on_both_channels() {
    common::capture_logs();
    let moto = Moto::start();
    let session = assume_role(&moto, "account-link-BasicLambdaRole");
    let topic: Value =
        serde_json::from_str(&moto.fixture(&["sns-topic", "--name", "proofs"])).unwrap();
    let provider = Server::always(Reply::status(200)).await;
    let sdk = sdk_with(&moto, &session).await;
    let callback = provider.url("/hooks/aws");
    let app = Arc::new(App::new(
        &sdk,
        Ok(common::config(&[
            ("PROVIDER_CALLBACK_URL", &callback),
            ("PROVIDER_SIGNING_SECRET", SECRET),
            (
                "PROVIDER_SNS_TOPIC_ARN",
                topic["topicArn"].as_str().unwrap(),
            ),
            // Small enough that this account's event goes out in two parts, each with its own proof.
            ("PROVIDER_MAX_BODY_BYTES", "16384"),
        ])),
    ));
    moto.fixture(&[
        "seed",
        "--regions",
        "us-west-2",
        "--vpcs",
        "4",
        "--subnets",
        "30",
    ]);
    let s3 = Server::always(Reply::status(200)).await;
    create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(answer(&s3)["Status"], "SUCCESS", "{}", answer(&s3));

    let audience = format!("http://{}", provider.addr);
    let v = verifier(&moto);
    let deliveries = provider.requests();
    assert!(deliveries.len() >= 2, "the event was split into parts");
    for d in &deliveries {
        let id = header(d, signing::HEADER_ID);
        let expected = Expected {
            audience: &audience,
            event_id: id,
            body: &d.body,
            partition: "aws",
            account_id: ACCOUNT,
        };
        let caller = v.verify(header(d, proof::HEADER), &expected).await.unwrap();
        assert_eq!(caller.arn, session.arn);
        // hmac-and-proof: the Standard Webhooks signature is there too.
        assert!(signing::verify(
            &SigningSecret::parse_list(SECRET).unwrap(),
            Some(id),
            Some(header(d, signing::HEADER_TIMESTAMP)),
            Some(header(d, signing::HEADER_SIGNATURE)),
            &d.body,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            300
        )
        .is_ok());
        // One delivery's proof does not vouch for another's body.
        let other = deliveries.iter().find(|o| o.body != d.body).unwrap();
        let err = v
            .verify(
                header(d, proof::HEADER),
                &Expected {
                    body: &other.body,
                    ..expected
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }

    let messages: Vec<Value> = serde_json::from_str(&moto.fixture(&[
        "sqs-drain",
        "--queue-url",
        topic["queueUrl"].as_str().unwrap(),
    ]))
    .unwrap();
    assert!(!messages.is_empty());
    for m in &messages {
        let body = m["body"].as_str().unwrap();
        let event: LinkEvent = serde_json::from_str(body).unwrap();
        let delivery_id = event.data.delivery_id();
        let caller = v
            .verify(
                m["attributes"][proof::SNS_ATTRIBUTE].as_str().unwrap(),
                &Expected {
                    audience: &audience,
                    event_id: &delivery_id,
                    body: body.as_bytes(),
                    partition: "aws",
                    account_id: ACCOUNT,
                },
            )
            .await
            .unwrap();
        assert_eq!(caller.account_id, ACCOUNT);
    }
    common::assert_no_secrets_in_logs(&[
        SECRET,
        &session.session_token,
        &session.secret_access_key,
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn proof_only_sends_no_signature_and_needs_no_secret() {
    let moto = Moto::start();
    let session = assume_role(&moto, "fn-role");
    let provider = Server::always(Reply::status(200)).await;
    let sdk = sdk_with(&moto, &session).await;
    let app = Arc::new(App::new(
        &sdk,
        Ok(common::config(&[
            ("PROVIDER_CALLBACK_URL", &provider.url("/h")),
            ("PROVIDER_AUTH_MODE", "proof-only"),
            ("PROVIDER_AUDIENCE", "urn:acme:account-links"),
        ])),
    ));
    let s3 = Server::always(Reply::status(200)).await;
    create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(answer(&s3)["Status"], "SUCCESS", "{}", answer(&s3));
    let d = &provider.requests()[0];
    assert!(d.header(signing::HEADER_SIGNATURE).is_none());
    let caller = verifier(&moto)
        .verify(
            header(d, proof::HEADER),
            &Expected {
                audience: "urn:acme:account-links",
                event_id: header(d, signing::HEADER_ID),
                body: &d.body,
                partition: "aws",
                account_id: ACCOUNT,
            },
        )
        .await
        .unwrap();
    assert_eq!(caller.arn, session.arn);
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_only_sends_no_proof() {
    let moto = Moto::start();
    let provider = Server::always(Reply::status(200)).await;
    let app = Arc::new(App::new(
        &common::sdk_config(&moto.endpoint).await,
        Ok(common::config(&[
            ("PROVIDER_CALLBACK_URL", &provider.url("/h")),
            ("PROVIDER_SIGNING_SECRET", SECRET),
            ("PROVIDER_AUTH_MODE", "hmac-only"),
        ])),
    ));
    let s3 = Server::always(Reply::status(200)).await;
    let answer = create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let delivered = provider.requests();
    assert_eq!(delivered.len(), 1);
    let d = &delivered[0];
    assert!(d.header(proof::HEADER).is_none() && d.header(signing::HEADER_SIGNATURE).is_some());
    // ... and that signature is valid: the provider can accept the event without a proof.
    assert!(signing::verify(
        &SigningSecret::parse_list(SECRET).unwrap(),
        d.header(signing::HEADER_ID),
        d.header(signing::HEADER_TIMESTAMP),
        d.header(signing::HEADER_SIGNATURE),
        &d.body,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        300
    )
    .is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signing_secret_comes_from_secrets_manager_once_per_process() {
    common::capture_logs();
    let moto = Moto::start();
    let arn = moto
        .fixture(&[
            "secret",
            "--name",
            "account-link-signing",
            "--value",
            SECRET,
        ])
        .trim()
        .to_string();
    let provider = Server::always(Reply::status(200)).await;
    let vars = [
        ("PROVIDER_CALLBACK_URL", provider.url("/h")),
        ("PROVIDER_SIGNING_SECRET_ARN", arn.clone()),
        ("PROVIDER_AUTH_MODE", "hmac-only".to_string()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let new_app = || async {
        Arc::new(App::new(
            &common::sdk_config(&moto.endpoint).await,
            Ok(common::config(&vars)),
        ))
    };
    let signed_with = |d: &Recorded, secret: &str| {
        signing::verify(
            &SigningSecret::parse_list(secret).unwrap(),
            d.header(signing::HEADER_ID),
            d.header(signing::HEADER_TIMESTAMP),
            d.header(signing::HEADER_SIGNATURE),
            &d.body,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            300,
        )
        .is_ok()
    };
    let app = new_app().await;
    let s3 = Server::always(Reply::status(200)).await;
    create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(answer(&s3)["Status"], "SUCCESS", "{}", answer(&s3));
    assert!(signed_with(&provider.requests()[0], SECRET));

    // Rotation is an update of the secret. A running process keeps what it read (once per process);
    // the next process reads the new value.
    let rotated = SigningSecret::from_bytes(vec![42; 32]).to_whsec();
    moto.fixture(&[
        "secret",
        "--name",
        "account-link-signing",
        "--value",
        &rotated,
    ]);
    let s3 = Server::always(Reply::status(200)).await;
    let a = create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");
    assert!(signed_with(&provider.requests()[1], SECRET));
    let fresh = new_app().await;
    let s3 = Server::always(Reply::status(200)).await;
    let a = create(&fresh, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");
    assert!(signed_with(&provider.requests()[2], &rotated));
    assert!(!signed_with(&provider.requests()[2], SECRET));

    // A secret that cannot be read fails the Create, naming the secret (never its value).
    let missing = arn.replace("account-link-signing", "no-such-secret");
    let vars = [
        ("PROVIDER_CALLBACK_URL", provider.url("/h")),
        ("PROVIDER_SIGNING_SECRET_ARN", missing.clone()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let broken = Arc::new(App::new(
        &common::sdk_config(&moto.endpoint).await,
        Ok(common::config(&vars)),
    ));
    let s3 = Server::always(Reply::status(200)).await;
    create(&broken, &s3, common::FUNCTION_ARN, |_| {}).await;
    let a = answer(&s3);
    assert_eq!(a["Status"], "FAILED");
    let reason = a["Reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("the signing secret {missing} could not be read")),
        "{reason}"
    );
    assert_eq!(provider.requests().len(), 3, "nothing unsigned was sent");
    common::assert_no_secrets_in_logs(&[SECRET, &rotated]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sns_publishes_to_a_topic_in_another_region() {
    let moto = Moto::start();
    let topic: Value = serde_json::from_str(&moto.fixture(&[
        "sns-topic",
        "--name",
        "eu-links",
        "--region",
        "eu-west-1",
    ]))
    .unwrap();
    assert!(topic["topicArn"].as_str().unwrap().contains(":eu-west-1:"));
    let app = Arc::new(App::new(
        &common::sdk_config(&moto.endpoint).await, // the function's region: us-west-2
        Ok(common::config(&[
            (
                "PROVIDER_SNS_TOPIC_ARN",
                topic["topicArn"].as_str().unwrap(),
            ),
            ("PROVIDER_AUDIENCE", "https://hooks.provider.example"),
        ])),
    ));
    let s3 = Server::always(Reply::status(200)).await;
    create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(answer(&s3)["Status"], "SUCCESS", "{}", answer(&s3));
    let messages: Vec<Value> = serde_json::from_str(&moto.fixture(&[
        "sqs-drain",
        "--queue-url",
        topic["queueUrl"].as_str().unwrap(),
        "--region",
        "eu-west-1",
    ]))
    .unwrap();
    assert_eq!(messages.len(), 1);
    assert!(messages[0]["attributes"][proof::SNS_ATTRIBUTE]
        .as_str()
        .unwrap()
        .starts_with("v1."));
}

/// The function with a callback to `provider` (mocked EC2 with one VPC).
fn forged_target(provider: &Server) -> Arc<App> {
    let callback = Callback {
        url: url::Url::parse(&provider.url("/h")).unwrap(),
        secret: None,
        max_body_bytes: account_link::config::DEFAULT_MAX_BODY_BYTES,
    };
    let webhook = Webhook::new(
        http_client(),
        callback,
        common::hmac_auth(SigningSecret::parse_list(SECRET).unwrap()),
    );
    common::app_on(
        common::one_vpc_ec2(),
        Arc::new(Channels {
            webhook: Some(webhook),
            sns: None,
        }),
    )
}

#[tokio::test]
async fn forged_invocations_tell_the_provider_nothing() {
    let provider = Server::always(Reply::status(200)).await;
    let app = forged_target(&provider);
    let other = "arn:aws:cloudformation:us-west-2:210987654321:stack/victim/1";
    type Patch = Box<dyn Fn(&mut Value)>;
    let failed: [(&str, &str, Patch, &str); 6] = [
        (
            "another account's stack",
            common::FUNCTION_ARN,
            Box::new(|p| p["StackId"] = other.into()),
            "serves only stacks of its own account and region",
        ),
        (
            "invoked as a function of another region",
            "arn:aws:lambda:eu-west-1:123456789012:function:account-link",
            Box::new(|_| {}),
            "serves only stacks of its own account and region",
        ),
        (
            "a role of another account",
            common::FUNCTION_ARN,
            Box::new(|p| {
                p["ResourceProperties"]["Roles"]["RemoteRole"] =
                    "arn:aws:iam::210987654321:role/Admin".into()
            }),
            "Roles.RemoteRole: 'arn:aws:iam::210987654321:role/Admin' is a role of account 210987654321",
        ),
        (
            "no ExternalId",
            common::FUNCTION_ARN,
            Box::new(|p| p["ResourceProperties"]["ExternalId"] = "".into()),
            "ExternalId: is required",
        ),
        (
            "a short ExternalId",
            common::FUNCTION_ARN,
            Box::new(|p| p["ResourceProperties"]["ExternalId"] = "guessable".into()),
            "ExternalId: is 9 characters long",
        ),
        (
            "a Delete of another account's stack",
            common::FUNCTION_ARN,
            Box::new(|p| {
                p["RequestType"] = "Delete".into();
                p["PhysicalResourceId"] = "link-0123456789abcdef0123456789abcdef".into();
                p["StackId"] = other.into();
            }),
            "serves only stacks of its own account and region",
        ),
    ];
    for (what, function_arn, patch, reason) in failed {
        let s3 = Server::always(Reply::status(200)).await;
        create(&app, &s3, function_arn, patch).await;
        let a = answer(&s3);
        assert_eq!(a["Status"], "FAILED", "{what}: {a}");
        assert!(
            a["Reason"].as_str().unwrap().contains(reason),
            "{what}: {a}"
        );
    }
    // An answer aimed at a bucket CloudFormation does not own is not sent at all (with the loopback
    // switch off, as in a stack).
    let mut strict = forged_target(&provider);
    Arc::get_mut(&mut strict).unwrap().outbound =
        account_link::outbound::OutboundPolicy::new(false);
    let mut payload = common::event(
        "create.json",
        "https://attacker-bucket.s3.us-west-2.amazonaws.com/inventory?X-Amz-Signature=x",
    );
    payload["ResourceProperties"]["Regions"] = json!(["us-west-2"]);
    let err = handle_payload(
        strict.clone(),
        payload,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("response bucket"), "{err}");
    // A runtime that passes no function ARN (a local emulator) is trusted only with the local-runs
    // switch, which a stack never sets.
    let mut payload = common::event(
        "create.json",
        "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k",
    );
    payload["ResourceProperties"]["Regions"] = json!(["us-west-2"]);
    let err = handle_payload(
        strict.clone(),
        payload,
        "function-arn",
        Deadline::after(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("not a Lambda function ARN"),
        "{err}"
    );
    assert!(
        provider.requests().is_empty(),
        "the provider heard of none of them"
    );

    // The genuine request still links, and so does a local run under an emulator.
    let s3 = Server::always(Reply::status(200)).await;
    create(&app, &s3, common::FUNCTION_ARN, |_| {}).await;
    assert_eq!(answer(&s3)["Status"], "SUCCESS");
    let s3 = Server::always(Reply::status(200)).await;
    create(&app, &s3, "function-arn", |_| {}).await;
    assert_eq!(answer(&s3)["Status"], "SUCCESS");
    assert_eq!(provider.requests().len(), 2);
}
