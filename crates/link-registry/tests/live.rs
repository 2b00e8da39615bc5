//! A live link, on moto: the registry assumes the link's roles with its own credentials (moto accepts any
//! AssumeRole and answers as the role's account, 123456789012 here), lists the account's networks through
//! the RemoteRole, records what changed, and flags a saved selection that names what is gone. Refusals
//! and stalls come from a small proxy in front of moto.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::common::Moto;
use support::{event_at, get, http, link_id, post, Postgres, Receiver, Signed};

const TOKEN: &str = "live-tests-api-token-0123456789";
const REGIONS: [&str; 2] = ["us-west-2", "us-east-1"];

/// What the proxy does with a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Forward,
    /// Answers as STS does when the role's trust policy refuses the caller.
    DenyAssumeRole,
    /// Holds the request until the proxy is told to let go (then forwards it).
    Stall,
    /// Answers as EC2 does when the caller's policy does not allow the action.
    DenyEc2,
}

/// A proxy in front of moto that acts on each request by its form body (the STS and EC2 query APIs).
struct Proxy {
    url: String,
    /// Requests seen whose body names this action, e.g. "Action=AssumeRole".
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    /// Lets stalled requests go on.
    release: Arc<AtomicBool>,
    /// Requests stalled so far.
    stalled: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(target: &str, rule: impl Fn(&str) -> Action + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rule = Arc::new(rule);
        let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let release = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let target = target.to_string();
        let client = support::http();
        let (s, r, st) = (seen.clone(), release.clone(), stalled.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rule, seen, release, stalled, target, client) = (
                    rule.clone(),
                    s.clone(),
                    r.clone(),
                    st.clone(),
                    target.clone(),
                    client.clone(),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let (rule, seen, release, stalled, target, client) = (
                            rule.clone(),
                            seen.clone(),
                            release.clone(),
                            stalled.clone(),
                            target.clone(),
                            client.clone(),
                        );
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let text = String::from_utf8_lossy(&body).to_string();
                            seen.lock().unwrap().push(text.clone());
                            let action = rule(&text);
                            if action == Action::DenyAssumeRole {
                                let xml = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                                    <Code>AccessDenied</Code><Message>User: arn:aws:iam::111122223333:user/provider is not authorized \
                                    to perform: sts:AssumeRole on resource: the role</Message></Error><RequestId>fault-1</RequestId></ErrorResponse>";
                                return Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(403)
                                        .header("content-type", "text/xml")
                                        .body(Full::new(bytes::Bytes::from(xml)))
                                        .unwrap(),
                                );
                            }
                            if action == Action::DenyEc2 {
                                let xml = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not \
                                    authorized to perform this operation.</Message></Error></Errors><RequestID>fault-2</RequestID></Response>";
                                return Ok(hyper::Response::builder()
                                    .status(403)
                                    .header("content-type", "text/xml")
                                    .body(Full::new(bytes::Bytes::from(xml)))
                                    .unwrap());
                            }
                            if action == Action::Stall {
                                stalled.fetch_add(1, Ordering::SeqCst);
                                while !release.load(Ordering::SeqCst) {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                            let mut fwd =
                                client.request(parts.method.clone(), format!("{target}{path}"));
                            for (k, v) in &parts.headers {
                                if k != "host" && k != "content-length" {
                                    fwd = fwd.header(k, v);
                                }
                            }
                            let answer = fwd.body(body.to_vec()).send().await.unwrap();
                            let mut out = hyper::Response::builder().status(answer.status());
                            for (k, v) in answer.headers() {
                                if k != "content-length" && k != "transfer-encoding" {
                                    out = out.header(k, v);
                                }
                            }
                            let bytes = answer.bytes().await.unwrap();
                            Ok(out.body(Full::new(bytes)).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            url,
            seen,
            release,
            stalled,
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.contains(needle))
            .count()
    }
}

/// The provider's AWS settings for a receiver: moto for EC2, `sts` for STS.
fn aws_env<'a>(ec2: &'a str, sts: &'a str) -> Vec<(&'static str, Option<&'a str>)> {
    vec![
        ("AWS_ACCESS_KEY_ID", Some("testing")),
        ("AWS_SECRET_ACCESS_KEY", Some("testing")),
        ("AWS_SESSION_TOKEN", None),
        ("AWS_PROFILE", None),
        ("AWS_EC2_METADATA_DISABLED", Some("true")),
        ("AWS_ENDPOINT_URL", Some(ec2)),
        ("AWS_ENDPOINT_URL_EC2", Some(ec2)),
        ("AWS_ENDPOINT_URL_STS", Some(sts)),
    ]
}

/// An EC2 client on moto's default account (the link's, 123456789012).
async fn ec2(moto: &Moto, region: &str) -> aws_sdk_ec2::Client {
    let conf = support::common::sdk_config(&moto.endpoint).await;
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&conf)
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .build(),
    )
}

async fn link_of(http: &reqwest::Client, r: &Receiver, link: &str) -> Value {
    let (status, body) = get(http, &format!("{}/api/links/{link}", r.url), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (at most a minute) until the link satisfies `done`.
async fn until(
    http: &reqwest::Client,
    r: &Receiver,
    link: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..600 {
        let v = link_of(http, r, link).await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the link never got there: {}", link_of(http, r, link).await);
}

async fn refresh(http: &reqwest::Client, r: &Receiver, link: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{}/api/links/{link}/refresh?wait=true", r.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn page(http: &reqwest::Client, r: &Receiver, link: &str) -> String {
    http.get(format!("{}/links/{link}", r.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Subnet ids of an inventory (the API's JSON), sorted.
fn subnets_of(inventory: &Value) -> Vec<String> {
    let mut ids: Vec<String> = inventory
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["vpcs"].as_array().cloned().unwrap_or_default())
        .flat_map(|v| v["subnets"].as_array().cloned().unwrap_or_default())
        .map(|s| s["subnetId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// What moto lists (through boto3), as {subnetId: (vpcId, cidr, zone, zoneId, free, public)}, and the
/// VPC and route table ids.
fn moto_view(moto: &Moto) -> (Vec<(String, Value)>, Vec<String>, Vec<String>) {
    let v: Value =
        serde_json::from_str(&moto.fixture(&["inventory", "--regions", &REGIONS.join(",")]))
            .unwrap();
    let (mut subnets, mut vpcs, mut tables) = (Vec::new(), Vec::new(), Vec::new());
    for (_, region) in v.as_object().unwrap() {
        for (vpc_id, vpc) in region.as_object().unwrap() {
            vpcs.push(vpc_id.clone());
            for (id, s) in vpc["subnets"].as_object().unwrap() {
                subnets.push((
                    id.clone(),
                    json!([
                        vpc_id,
                        s["cidrBlock"],
                        s["availabilityZone"],
                        s["availabilityZoneId"],
                        s["availableIpAddressCount"],
                        s["mapPublicIpOnLaunch"]
                    ]),
                ));
            }
            for t in vpc["routeTables"].as_array().unwrap() {
                tables.push(t.as_str().unwrap().to_string());
            }
        }
    }
    subnets.sort_by(|a, b| a.0.cmp(&b.0));
    vpcs.sort();
    tables.sort();
    (subnets, vpcs, tables)
}

/// The same view of the registry's inventory.
fn registry_view(inventory: &Value) -> (Vec<(String, Value)>, Vec<String>, Vec<String>) {
    let (mut subnets, mut vpcs, mut tables) = (Vec::new(), Vec::new(), Vec::new());
    for r in inventory.as_array().unwrap() {
        for v in r["vpcs"].as_array().unwrap() {
            let vpc_id = v["vpcId"].as_str().unwrap().to_string();
            for s in v["subnets"].as_array().unwrap() {
                subnets.push((
                    s["subnetId"].as_str().unwrap().to_string(),
                    json!([
                        vpc_id,
                        s["cidrBlock"],
                        s["availabilityZone"],
                        s["availabilityZoneId"],
                        s["availableIpAddressCount"],
                        s["mapPublicIpOnLaunch"]
                    ]),
                ));
            }
            for t in v["routeTables"].as_array().unwrap() {
                tables.push(t["routeTableId"].as_str().unwrap().to_string());
            }
            vpcs.push(vpc_id);
        }
    }
    subnets.sort_by(|a, b| a.0.cmp(&b.0));
    vpcs.sort();
    tables.sort();
    (subnets, vpcs, tables)
}

async fn deliver(
    http: &reqwest::Client,
    r: &Receiver,
    kind: &str,
    stack: &str,
    id: &str,
    at: &str,
) {
    let e = event_at(kind, stack, id, at);
    let (status, body) = post(http, &r.hook_url(), &Signed::of(&e)).await;
    assert_eq!(status, 200, "{body}");
}

/// Now, moved by `offset_secs`, as an event's timestamp.
fn now_rfc3339(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let d = Duration::from_secs(offset_secs.unsigned_abs());
    let t = if offset_secs >= 0 { now + d } else { now - d };
    humantime::format_rfc3339_millis(t).to_string()
}

/// A receiver for one refresh test: the API token, no scheduled refresh (the test asks for its own), and
/// `extra` flags.
fn on_demand_receiver(name: &str, extra: &[&str], env: &[(&str, Option<&str>)]) -> Receiver {
    let mut args = vec!["--api-token", TOKEN, "--refresh-every", "0"];
    args.extend_from_slice(extra);
    Receiver::start_env(&support::sqlite_url(name), &args, env)
}

/// Links `stack` with one event, then asks for a refresh, which must fail. Returns the refresh's report
/// and the link as the API shows it afterwards.
async fn failed_refresh(http: &reqwest::Client, r: &Receiver, stack: &str) -> (Value, Value) {
    let link = link_id(stack);
    deliver(
        http,
        r,
        "linked",
        stack,
        &format!("msg_{}_1", stack.replace('-', "_")),
        &now_rfc3339(-60),
    )
    .await;
    let (status, report) = refresh(http, r, &link).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("failed")),
        "{report}"
    );
    (report, link_of(http, r, &link).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_verified_and_a_refresh_follows_the_account() {
    let moto = Moto::start();
    let sts = Proxy::start(&moto.endpoint, |_| Action::Forward).await;
    let env = aws_env(&moto.endpoint, &sts.url);
    let r = Receiver::start_env(
        &support::sqlite_url("live-refresh"),
        &["--api-token", TOKEN, "--refresh-every", "0"],
        &env,
    );
    let http = http();
    let stack = "live-refresh";
    let link = link_id(stack);
    deliver(&http, &r, "linked", stack, "msg_live_1", &now_rfc3339(-60)).await;

    // The first event sets off a role check: every role assumable, with the link's external id.
    let v = until(&http, &r, &link, |v| v["rolesState"] == "verified").await;
    let checks = v["roleChecks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{v}");
    assert!(
        checks
            .iter()
            .all(|c| c["assumable"] == true && c["errorCode"].is_null()),
        "{v}"
    );
    assert_eq!(v["inventorySource"], "stack");
    assert_eq!(sts.count("ExternalId=provider-ext-7f3a9c"), 3);
    assert!(page(&http, &r, &link).await.contains("roles verified"));

    // The account changes after the stack reported it: a VPC with two subnets.
    let west = ec2(&moto, "us-west-2").await;
    let vpc = west
        .create_vpc()
        .cidr_block("10.40.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut made = Vec::new();
    for cidr in ["10.40.1.0/24", "10.40.2.0/24"] {
        let s = west
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .send()
            .await
            .unwrap();
        made.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    let (status, report) = refresh(&http, &r, &link).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("ok")),
        "{report}"
    );
    // The example event's inventory has none of moto's networks (its default VPCs included): all new.
    assert!(
        report["changes"]["vpcs"]["added"]
            .as_array()
            .unwrap()
            .contains(&json!(vpc_id)),
        "{report}"
    );
    let mut added: Vec<String> =
        serde_json::from_value(report["changes"]["subnets"]["added"].clone()).unwrap();
    added.sort();
    made.sort();
    assert!(made.iter().all(|s| added.contains(s)), "{report}");

    let v = link_of(&http, &r, &link).await;
    assert_eq!(v["inventorySource"], "refresh", "{v}");
    assert_eq!(registry_view(&v["inventory"]), moto_view(&moto));
    assert!(page(&http, &r, &link).await.contains("· refreshed"));
    let (_, history) = get(
        &http,
        &format!("{}/api/links/{link}/events", r.url),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        history["events"][0]["type"], "registry.refreshed",
        "{history}"
    );

    // The customer picks the first subnet; then it is deleted and the second one's neighbour added.
    let resp = http
        .put(format!("{}/api/links/{link}/selection", r.url))
        .bearer_auth(TOKEN)
        .json(&json!({ "region": "us-west-2", "vpcId": vpc_id, "subnetIds": [made[0]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    west.delete_subnet()
        .subnet_id(&made[0])
        .send()
        .await
        .unwrap();
    let third = west
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.40.3.0/24")
        .send()
        .await
        .unwrap();
    let third = third.subnet().unwrap().subnet_id().unwrap().to_string();
    let (status, report) = refresh(&http, &r, &link).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["changes"]["subnets"]["added"],
        json!([third]),
        "{report}"
    );
    assert_eq!(
        report["changes"]["subnets"]["removed"],
        json!([made[0]]),
        "{report}"
    );
    assert!(report["summary"]
        .as_str()
        .unwrap()
        .contains(&format!("removed subnet {}", made[0])));
    let v = link_of(&http, &r, &link).await;
    assert_eq!(registry_view(&v["inventory"]), moto_view(&moto));
    // The selection is kept as saved, and flagged.
    assert_eq!(v["selection"]["subnetIds"], json!([made[0]]));
    assert_eq!(v["selectionMissing"], json!([made[0]]), "{v}");
    assert!(page(&http, &r, &link).await.contains("selection-missing"));

    // Newest wins: an update the stack sent before the refresh changes the link but not its inventory;
    // one sent after replaces it.
    let refreshed = subnets_of(&v["inventory"]);
    deliver(&http, &r, "updated", stack, "msg_live_2", &now_rfc3339(-30)).await;
    let v = link_of(&http, &r, &link).await;
    assert_eq!(v["lastEventId"], "msg_live_2");
    assert_eq!(
        (v["inventorySource"].as_str(), subnets_of(&v["inventory"])),
        (Some("refresh"), refreshed.clone())
    );
    deliver(&http, &r, "updated", stack, "msg_live_3", &now_rfc3339(30)).await;
    let v = link_of(&http, &r, &link).await;
    assert_eq!(v["inventorySource"], "stack");
    assert_ne!(subnets_of(&v["inventory"]), refreshed);

    // An unlinked link is never assumed again.
    deliver(&http, &r, "unlinked", stack, "msg_live_4", &now_rfc3339(40)).await;
    let before = sts.count("Action=AssumeRole");
    let (status, body) = refresh(&http, &r, &link).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(sts.count("Action=AssumeRole"), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_role_is_shown_in_words_the_customer_can_act_on() {
    let moto = Moto::start();
    let sts = Proxy::start(&moto.endpoint, |body| {
        if body.contains("Action=AssumeRole") {
            Action::DenyAssumeRole
        } else {
            Action::Forward
        }
    })
    .await;
    let env = aws_env(&moto.endpoint, &sts.url);
    let r = Receiver::start_env(
        &support::sqlite_url("live-refused"),
        &["--api-token", TOKEN, "--refresh-every", "0"],
        &env,
    );
    let http = http();
    let stack = "live-refused";
    let link = link_id(stack);
    deliver(
        &http,
        &r,
        "linked",
        stack,
        "msg_refused_1",
        &now_rfc3339(-60),
    )
    .await;
    let v = until(&http, &r, &link, |v| v["rolesState"] == "refused").await;
    let remote = v["roleChecks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "RemoteRole")
        .cloned()
        .unwrap();
    assert_eq!(
        (remote["assumable"].as_bool(), remote["errorCode"].as_str()),
        (Some(false), Some("AccessDenied")),
        "{v}"
    );
    let words = "AccessDenied assuming RemoteRole: the stack's ExternalId must be the one this console issued";
    assert!(
        remote["problem"].as_str().unwrap().starts_with(words),
        "{remote}"
    );
    assert!(page(&http, &r, &link).await.contains(words));

    // A refresh cannot list without the RemoteRole: it fails with the same reason, the inventory stays.
    let (status, report) = refresh(&http, &r, &link).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("failed")),
        "{report}"
    );
    assert!(
        report["problem"].as_str().unwrap().starts_with(words),
        "{report}"
    );
    let v = link_of(&http, &r, &link).await;
    assert_eq!(v["inventorySource"], "stack");
    assert_eq!(v["refresh"]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_credentials_the_registry_runs_and_says_checks_are_off() {
    let r = Receiver::start_env(
        &support::sqlite_url("live-off"),
        &["--api-token", TOKEN],
        &[
            ("AWS_ACCESS_KEY_ID", None),
            ("AWS_SECRET_ACCESS_KEY", None),
            ("AWS_SESSION_TOKEN", None),
            ("AWS_PROFILE", None),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                Some("/nonexistent/credentials"),
            ),
            ("AWS_CONFIG_FILE", Some("/nonexistent/config")),
            ("AWS_EC2_METADATA_DISABLED", Some("true")),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", None),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", None),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", None),
        ],
    );
    let http = http();
    let stack = "live-off";
    let link = link_id(stack);
    deliver(&http, &r, "linked", stack, "msg_off_1", &now_rfc3339(-60)).await;
    let v = until(&http, &r, &link, |v| v["awsAccess"] != "checking").await;
    assert!(v["awsAccess"].as_str().unwrap().starts_with("off: "), "{v}");
    let (status, body) = refresh(&http, &r, &link).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("role checks and refreshes are off"));
    assert!(page(&http, &r, &link)
        .await
        .contains("Role checks and refreshes are off"));
}

/// The start times of a link's refreshes (its history's `registry.refreshed` entries), in order.
async fn refreshes_of(http: &reqwest::Client, r: &Receiver, link: &str) -> Vec<i64> {
    let (_, history) = get(
        http,
        &format!("{}/api/links/{link}/events?limit=500", r.url),
        Some(TOKEN),
    )
    .await;
    let mut at: Vec<i64> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "registry.refreshed")
        .map(|e| {
            let t = humantime::parse_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
        })
        .collect();
    at.sort_unstable();
    at
}

#[tokio::test(flavor = "multi_thread")]
async fn receivers_sharing_postgresql_refresh_each_due_link_once_per_period() {
    let moto = Moto::start();
    let pg = Postgres::start();
    let db = pg.database("live_schedule");
    let env = aws_env(&moto.endpoint, &moto.endpoint);
    let flags = ["--api-token", TOKEN, "--refresh-every", "3s"];
    let a = Receiver::start_env(&db, &flags, &env);
    let b = Receiver::start_env(&db, &flags, &env);
    let http = http();
    let stacks = ["live-sched-1", "live-sched-2"];
    for (i, stack) in stacks.iter().enumerate() {
        let r = if i == 0 { &a } else { &b };
        deliver(
            &http,
            r,
            "linked",
            stack,
            &format!("msg_sched_{i}"),
            &now_rfc3339(-60),
        )
        .await;
    }
    // Each link gets at least three scheduled refreshes.
    for stack in stacks {
        let link = link_id(stack);
        for _ in 0..400 {
            if refreshes_of(&http, &a, &link).await.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let at = refreshes_of(&http, &a, &link).await;
        assert!(at.len() >= 3, "{link}: {at:?}");
        // A refresh is due a jittered period (at least 0.9 x 3 s) after the previous one ended, and only
        // the receiver holding the lease does it: never two in one period, whichever receiver ran them.
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= 2700, "{link}: refreshes at {at:?}");
        }
    }
    let logs = a.logs() + &b.logs();
    assert!(logs.contains("refreshed"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_killed_mid_refresh_loses_its_lease_and_another_completes_it() {
    let moto = Moto::start();
    let pg = Postgres::start();
    let db = pg.database("live_lease");
    // The first receiver's EC2 never answers a listing: its refresh stays open until it is killed.
    let stall = Proxy::start(&moto.endpoint, |body| {
        if body.contains("Action=Describe") {
            Action::Stall
        } else {
            Action::Forward
        }
    })
    .await;
    let env_a = aws_env(&stall.url, &moto.endpoint);
    let a = Receiver::start_env(
        &db,
        &[
            "--api-token",
            TOKEN,
            "--refresh-every",
            "2s",
            "--refresh-timeout",
            "8",
        ],
        &env_a,
    );
    let http = http();
    let stack = "live-lease";
    let link = link_id(stack);
    deliver(&http, &a, "linked", stack, "msg_lease_1", &now_rfc3339(-60)).await;
    until(&http, &a, &link, |v| v["refresh"]["running"] == true).await;
    while stall.stalled.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();

    // Another receiver, whose EC2 answers, takes the link once the dead one's lease has expired.
    let env_b = aws_env(&moto.endpoint, &moto.endpoint);
    let b = Receiver::start_env(&db, &["--refresh-every", "2s"], &env_b);
    let v = until(&http, &b, &link, |v| v["refresh"]["status"] == "ok").await;
    stall.release.store(true, Ordering::SeqCst);
    assert_eq!(v["inventorySource"], "refresh", "{v}");
    // The killed receiver never finished its run: the one that counts is the second receiver's.
    assert_eq!(v["refresh"]["runs"], 1, "{v}");
    assert_eq!(registry_view(&v["inventory"]), moto_view(&moto));
    assert!(b.logs().contains("refreshed"));

    // The console's Refresh button needs the page's CSRF token (the receiver serves loopback callers
    // without a token, as browsers on the same host).
    let html = http
        .get(format!("{}/links/{link}", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"refresh\""), "{html}");
    let csrf = html
        .split("data-csrf=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |token: &str| {
        no_redirects
            .post(format!("{}/links/{link}/refresh", b.url))
            .form(&[("csrf", token.to_string())])
            .send()
    };
    let before = refreshes_of(&http, &b, &link).await.len();
    assert_eq!(form("forged").await.unwrap().status().as_u16(), 403);
    let pressed = form(&csrf).await.unwrap();
    assert_eq!(pressed.status().as_u16(), 303);
    assert!(refreshes_of(&http, &b, &link).await.len() > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_past_its_time_limit_is_cut_off_and_reported() {
    let moto = Moto::start();
    let stall = Proxy::start(&moto.endpoint, |body| {
        if body.contains("Action=DescribeSubnets") {
            Action::Stall
        } else {
            Action::Forward
        }
    })
    .await;
    let env = aws_env(&stall.url, &moto.endpoint);
    let r = on_demand_receiver("live-timeout", &["--refresh-timeout", "2"], &env);
    let (report, v) = failed_refresh(&http(), &r, "live-timeout").await;
    stall.release.store(true, Ordering::SeqCst);
    assert_eq!(
        report["problem"], "cut off after 2 s (--refresh-timeout)",
        "{report}"
    );
    assert!(stall.stalled.load(Ordering::SeqCst) > 0);
    // The lease is released with the outcome; the stack's inventory stays.
    assert_eq!(
        (
            v["refresh"]["running"].as_bool(),
            v["refresh"]["status"].as_str()
        ),
        (Some(false), Some("failed")),
        "{v}"
    );
    assert_eq!(v["inventorySource"], "stack");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_over_the_byte_cap_is_not_stored() {
    // An account is input: one with more networks than a stack may report (16 MiB by default; here 1 KiB,
    // below moto's default VPC alone) fails its refresh, and the stack's inventory stays.
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint, &moto.endpoint);
    let r = on_demand_receiver("live-max-bytes", &["--refresh-max-bytes", "1024"], &env);
    let (report, v) = failed_refresh(&http(), &r, "live-max-bytes").await;
    let problem = report["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("over --refresh-max-bytes (1024): not stored"),
        "{report}"
    );
    assert_eq!(v["inventorySource"], "stack", "{v}");
    assert_eq!(v["refresh"]["status"], "failed", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ec2_action_the_remote_role_may_not_call_fails_the_refresh_naming_it() {
    let moto = Moto::start();
    let ec2 = Proxy::start(&moto.endpoint, |body| {
        if body.contains("Action=DescribeRouteTables") {
            Action::DenyEc2
        } else {
            Action::Forward
        }
    })
    .await;
    let env = aws_env(&ec2.url, &moto.endpoint);
    let r = on_demand_receiver("live-denied", &[], &env);
    let (report, v) = failed_refresh(&http(), &r, "live-denied").await;
    let problem = report["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("ec2:DescribeRouteTables in "),
        "{problem}"
    );
    assert!(
        problem.contains("was denied (UnauthorizedOperation)"),
        "{problem}"
    );
    assert!(
        problem.contains("Allow this action on the stack's RemoteRole"),
        "{problem}"
    );
    // The roles were assumable: only the listing failed, and the stack's inventory stays.
    assert_eq!(
        (v["rolesState"].as_str(), v["inventorySource"].as_str()),
        (Some("verified"), Some("stack")),
        "{v}"
    );
}
