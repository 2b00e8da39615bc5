//! `Custom::PeeringAcceptance` against a real moto server: the provider's side (a VPC in another account
//! requesting peering into the customer's VPC) is made with boto3 (scripts/moto_fixture.py, moto's
//! per-account backends), the function accepts, routes and undoes through the Rust SDK, and the answer is
//! read back from moto's S3. moto makes an accepted connection active at once, so the wait for "active"
//! running out of time is shown against a local fake EC2.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use account_link::deadline::Deadline;
use account_link::handler::handle_payload;
use account_link::notify::Channels;
use common::http::{Reply, Server};
use common::Moto;
use link_contract::event::EventType;
use serde_json::{json, Value};

const STACK: &str =
    "arn:aws:cloudformation:us-west-2:123456789012:stack/account-link/6f5c1a40-cb0e-11ef-9b7f-0a1b2c3d4e5f";
const PROVIDER: &str = "111111111111";
const PROVIDER_CIDR: &str = "10.8.0.0/16";

/// What the fixture made: the customer's VPC and route tables, the provider's VPC, the request.
struct Setup {
    vpc: String,
    tables: Vec<String>,
    provider_vpc: String,
    pcx: String,
}

fn setup(moto: &Moto, args: &[&str]) -> Setup {
    let mut all = vec![
        "peering",
        "--provider-account",
        PROVIDER,
        "--provider-cidr",
        PROVIDER_CIDR,
    ];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&moto.fixture(&all)).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Setup {
        vpc: s("vpcId"),
        tables: v["routeTableIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        provider_vpc: s("providerVpcId"),
        pcx: s("peeringConnectionId"),
    }
}

/// {routeTableId: {destination: target}} as boto3 reads it.
fn routes(moto: &Moto, vpc: &str) -> Value {
    serde_json::from_str(&moto.fixture(&["routes", "--vpc", vpc])).unwrap()
}

fn status(moto: &Moto, pcx: &str) -> String {
    moto.fixture(&["peering-status", "--id", pcx])
        .trim()
        .to_string()
}

fn props(s: &Setup) -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:account-link-peering",
        "ServiceTimeout": "600",
        "PeeringConnectionId": s.pcx,
        "ProviderAccountId": PROVIDER,
        "ProviderCidr": PROVIDER_CIDR,
        "VpcId": s.vpc,
        "RouteTableIds": "",
        "DeleteConnectionOnDelete": "false"
    })
}

fn request(
    kind: &str,
    url: &str,
    props: &Value,
    physical: Option<&str>,
    old: Option<&Value>,
) -> Value {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut v = json!({
        "RequestType": kind,
        "ServiceToken": props["ServiceToken"],
        "ResponseURL": url,
        "StackId": STACK,
        "RequestId": format!("req-{kind}-{}", N.fetch_add(1, Ordering::SeqCst)),
        "LogicalResourceId": "PeeringAcceptance",
        "ResourceType": "Custom::PeeringAcceptance",
        "ResourceProperties": props,
    });
    if let Some(p) = physical {
        v["PhysicalResourceId"] = p.into();
    }
    if let Some(o) = old {
        v["OldResourceProperties"] = o.clone();
    }
    v
}

/// Sends one request to the handler (as CloudFormation would) and returns the answer moto's S3 received.
async fn send(moto: &Moto, app: &Arc<account_link::App>, key: &str, req: Value) -> Value {
    let mut req = req;
    req["ResponseURL"] = moto.presign(key).into();
    let returned = handle_payload(
        app.clone(),
        req.clone(),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let answer = moto.read_answer(key);
    assert_eq!(returned, answer, "{key}: the handler returns what it sent");
    answer
}

fn reason(answer: &Value) -> &str {
    answer["Reason"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn accepts_routes_narrows_and_removes() {
    common::capture_logs();
    let moto = Moto::start();
    let s = setup(&moto, &[]);
    assert_eq!(s.tables.len(), 2);
    assert_eq!(status(&moto, &s.pcx), "pending-acceptance");
    let app = common::app(&moto.endpoint, &[]).await;

    // Create: every route table of the VPC by default.
    let p = props(&s);
    let a = send(
        &moto,
        &app,
        "p/create",
        request("Create", "", &p, None, None),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");
    assert_eq!(a["PhysicalResourceId"], s.pcx.as_str());
    let d = &a["Data"];
    assert_eq!(d["VpcPeeringConnectionId"], s.pcx.as_str());
    assert_eq!(d["Status"], "active");
    assert_eq!(d["ProviderCidr"], PROVIDER_CIDR);
    assert_eq!(d["RouteTableIds"], s.tables.join(",").as_str());
    assert_eq!(d["RequesterVpcId"], s.provider_vpc.as_str());
    assert_eq!(d["AccepterVpcId"], s.vpc.as_str());
    assert_eq!(status(&moto, &s.pcx), "active");
    let r = routes(&moto, &s.vpc);
    for t in &s.tables {
        assert_eq!(r[t][PROVIDER_CIDR], s.pcx.as_str(), "{r}");
    }

    // A re-sent Update with the same properties changes nothing and succeeds.
    let a = send(
        &moto,
        &app,
        "p/update-same",
        request("Update", "", &p, Some(&s.pcx), Some(&p)),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");

    // Update to one route table: the route in the other one goes.
    let mut narrow = p.clone();
    narrow["RouteTableIds"] = json!([s.tables[0]]);
    let a = send(
        &moto,
        &app,
        "p/update",
        request("Update", "", &narrow, Some(&s.pcx), Some(&p)),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");
    assert_eq!(a["Data"]["RouteTableIds"], s.tables[0].as_str());
    let r = routes(&moto, &s.vpc);
    assert_eq!(r[&s.tables[0]][PROVIDER_CIDR], s.pcx.as_str(), "{r}");
    assert!(r[&s.tables[1]].get(PROVIDER_CIDR).is_none(), "{r}");

    // The AccountLink resource's Update carries the peering (fed from !GetAtt) to the provider.
    let recorder = Arc::new(common::Recorder::default());
    let link_app = common::app_on(
        aws_sdk_ec2::Config::from(&common::sdk_config(&moto.endpoint).await),
        recorder.clone(),
    );
    let mut update = common::event("update.json", &moto.presign("p/link-update"));
    update["ResourceProperties"]["Regions"] = json!(["us-west-2"]);
    update["OldResourceProperties"]["Regions"] = json!(["us-west-2"]);
    update["ResourceProperties"]["Peering"] = json!({
        "VpcPeeringConnectionId": a["Data"]["VpcPeeringConnectionId"],
        "Status": a["Data"]["Status"],
        "ProviderCidr": a["Data"]["ProviderCidr"],
        "RouteTableIds": a["Data"]["RouteTableIds"],
        "RequesterVpcId": a["Data"]["RequesterVpcId"],
        "AccepterVpcId": a["Data"]["AccepterVpcId"],
    });
    handle_payload(
        link_app,
        update,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(moto.read_answer("p/link-update")["Status"], "SUCCESS");
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::Updated);
    let peering = events[0].data.peering.as_ref().unwrap();
    assert_eq!(peering.vpc_peering_connection_id, s.pcx);
    assert_eq!(peering.status, "active");
    assert_eq!(peering.provider_cidr, PROVIDER_CIDR);
    assert_eq!(peering.route_table_ids, [s.tables[0].clone()]);
    assert_eq!(peering.requester_vpc_id.as_deref(), Some(&*s.provider_vpc));
    let changes = events[0].data.changes.as_ref().unwrap();
    assert!(changes.changed_properties.contains(&"Peering".to_string()));

    // Delete: the route goes, the connection stays (DeleteConnectionOnDelete=false).
    let a = send(
        &moto,
        &app,
        "p/delete",
        request("Delete", "", &narrow, Some(&s.pcx), None),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");
    assert!(reason(&a).contains("left in place"), "{a}");
    let r = routes(&moto, &s.vpc);
    for t in &s.tables {
        assert!(r[t].get(PROVIDER_CIDR).is_none(), "{r}");
    }
    assert_eq!(status(&moto, &s.pcx), "active");
    common::assert_no_secrets_in_logs(&[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_can_remove_the_connection_and_ignores_placeholders() {
    let moto = Moto::start();
    let s = setup(&moto, &[]);
    let app = common::app(&moto.endpoint, &[]).await;
    let mut p = props(&s);
    p["DeleteConnectionOnDelete"] = "true".into();
    let a = send(
        &moto,
        &app,
        "d/create",
        request("Create", "", &p, None, None),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");

    // The rollback Delete of a Create that failed before changing anything does nothing.
    let a = send(
        &moto,
        &app,
        "d/placeholder",
        request("Delete", "", &p, Some("create-failed-req-1"), None),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS");
    assert!(reason(&a).contains("nothing to undo"), "{a}");
    assert_eq!(status(&moto, &s.pcx), "active");

    let a = send(
        &moto,
        &app,
        "d/delete",
        request("Delete", "", &p, Some(&s.pcx), None),
    )
    .await;
    assert_eq!(a["Status"], "SUCCESS", "{a}");
    assert!(
        reason(&a).contains(&format!("{} was deleted", s.pcx)),
        "{a}"
    );
    assert_eq!(status(&moto, &s.pcx), "deleted");
    let r = routes(&moto, &s.vpc);
    for t in &s.tables {
        assert!(r[t].get(PROVIDER_CIDR).is_none(), "{r}");
    }
}

/// Runs a Create that must fail: returns its answer after checking that nothing was accepted or routed.
async fn refused(moto: &Moto, s: &Setup, p: &Value, key: &str, before: &str) -> Value {
    let app = common::app(&moto.endpoint, &[]).await;
    let a = send(moto, &app, key, request("Create", "", p, None, None)).await;
    assert_eq!(a["Status"], "FAILED", "{a}");
    assert!(
        a["PhysicalResourceId"]
            .as_str()
            .unwrap()
            .starts_with("create-failed-"),
        "{a}"
    );
    assert!(
        reason(&a).contains(&format!("{} was not accepted", s.pcx)),
        "{a}"
    );
    assert_eq!(
        status(moto, &s.pcx),
        before,
        "the connection was left as it was"
    );
    let r = routes(moto, &s.vpc);
    for t in &s.tables {
        assert_ne!(r[t].get(PROVIDER_CIDR), Some(&json!(s.pcx)), "{r}");
    }
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_request_from_another_account() {
    let moto = Moto::start();
    let s = setup(&moto, &[]);
    // The provider said 222222222222 is not its account: the request came from 111111111111.
    let mut p = props(&s);
    p["ProviderAccountId"] = "222222222222".into();
    let a = refused(&moto, &s, &p, "a/create", "pending-acceptance").await;
    assert!(
        reason(&a).contains(
            "the requester is account 111111111111, not the provider's account 222222222222"
        ),
        "{a}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_another_cidr_and_names_every_difference() {
    let moto = Moto::start();
    let s = setup(&moto, &[]);
    let other_vpc = setup(&moto, &[]).vpc;
    let mut p = props(&s);
    p["ProviderCidr"] = "10.9.0.0/16".into();
    p["VpcId"] = other_vpc.clone().into();
    let a = refused(&moto, &s, &p, "c/create", "pending-acceptance").await;
    let r = reason(&a);
    assert!(
        r.contains(&format!(
            "the requester VPC {} has CIDR 10.8.0.0/16, not the agreed ProviderCidr 10.9.0.0/16",
            s.provider_vpc
        )),
        "{r}"
    );
    assert!(
        r.contains(&format!(
            "the accepter VPC is {}, not this stack's VPC {other_vpc}",
            s.vpc
        )),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_an_active_or_rejected_connection() {
    let moto = Moto::start();
    let active = setup(&moto, &["--state", "accepted"]);
    let a = refused(&moto, &active, &props(&active), "s/active", "active").await;
    assert!(
        reason(&a)
            .contains("it is active, not pending-acceptance: it was accepted outside this stack"),
        "{a}"
    );
    let rejected = setup(&moto, &["--state", "rejected"]);
    let a = refused(
        &moto,
        &rejected,
        &props(&rejected),
        "s/rejected",
        "rejected",
    )
    .await;
    assert!(
        reason(&a).contains("it is rejected, not pending-acceptance"),
        "{a}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_unknown_connections_foreign_tables_and_conflicting_routes() {
    let moto = Moto::start();
    let s = setup(&moto, &["--conflicting-route"]);
    let other = setup(&moto, &[]);
    let app = common::app(&moto.endpoint, &[]).await;

    let mut p = props(&s);
    p["PeeringConnectionId"] = "pcx-0123456789abcdef0".into();
    let a = send(
        &moto,
        &app,
        "u/create",
        request("Create", "", &p, None, None),
    )
    .await;
    assert_eq!(a["Status"], "FAILED");
    assert!(
        reason(&a)
            .contains("PeeringConnectionId: pcx-0123456789abcdef0 was not found in us-west-2"),
        "{a}"
    );

    let mut p = props(&s);
    p["RouteTableIds"] = json!([s.tables[0], other.tables[0]]);
    let a = refused(&moto, &s, &p, "u/foreign", "pending-acceptance").await;
    assert!(
        reason(&a).contains(&format!(
            "RouteTableIds[1]: {} is not a route table of {}",
            other.tables[0], s.vpc
        )),
        "{a}"
    );

    // The last table already sends the provider's CIDR to an internet gateway: never overwritten.
    let a = refused(&moto, &s, &props(&s), "u/conflict", "pending-acceptance").await;
    assert!(
        reason(&a).contains(&format!(
            "{} already routes 10.8.0.0/16 to igw-",
            s.tables[1]
        )),
        "{a}"
    );

    let mut p = props(&s);
    p["ProviderCidr"] = "10.8.0.0/33".into();
    let a = send(
        &moto,
        &app,
        "u/invalid",
        request("Create", "", &p, None, None),
    )
    .await;
    assert_eq!(a["Status"], "FAILED");
    assert!(reason(&a).contains("invalid property ProviderCidr:"), "{a}");
}

// --- the wait for "active", against a fake EC2 -----------------------------------------------------

fn connection_xml(status: &str) -> String {
    format!(
        "<vpcPeeringConnectionId>pcx-11111111</vpcPeeringConnectionId>\
         <requesterVpcInfo><ownerId>{PROVIDER}</ownerId><vpcId>vpc-22222222</vpcId><cidrBlock>{PROVIDER_CIDR}</cidrBlock><region>us-west-2</region></requesterVpcInfo>\
         <accepterVpcInfo><ownerId>123456789012</ownerId><vpcId>vpc-11111111</vpcId><cidrBlock>10.20.0.0/16</cidrBlock><region>us-west-2</region></accepterVpcInfo>\
         <status><code>{status}</code><message>{status}</message></status>"
    )
}

fn ec2_answer(action: &str, inner: &str) -> Reply {
    Reply::status(200).body(&format!(
        "<{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId>{inner}</{action}Response>"
    ))
}

#[tokio::test]
async fn the_wait_for_active_ends_in_time_and_names_it() {
    common::capture_logs();
    let accepted = Arc::new(AtomicBool::new(false));
    let seen = accepted.clone();
    let ec2 = Server::start(move |_, r| {
        let body = String::from_utf8_lossy(&r.body);
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("")
            .to_string();
        match action.as_str() {
            "DescribeVpcPeeringConnections" => {
                let st = if seen.load(Ordering::SeqCst) {
                    "provisioning"
                } else {
                    "pending-acceptance"
                };
                ec2_answer(
                    &action,
                    &format!(
                        "<vpcPeeringConnectionSet><item>{}</item></vpcPeeringConnectionSet>",
                        connection_xml(st)
                    ),
                )
            }
            "AcceptVpcPeeringConnection" => {
                seen.store(true, Ordering::SeqCst);
                ec2_answer(
                    &action,
                    &format!(
                        "<vpcPeeringConnection>{}</vpcPeeringConnection>",
                        connection_xml("provisioning")
                    ),
                )
            }
            "DescribeRouteTables" => ec2_answer(
                &action,
                "<routeTableSet><item><routeTableId>rtb-11111111</routeTableId><vpcId>vpc-11111111</vpcId>\
                 <routeSet><item><destinationCidrBlock>10.20.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId><state>active</state></item></routeSet>\
                 </item></routeTableSet>",
            ),
            other => Reply::status(400).body(&format!(
                "<Response><Errors><Error><Code>Unexpected</Code><Message>{other}</Message></Error></Errors></Response>"
            )),
        }
    })
    .await;
    let s3 = Server::always(Reply::status(200)).await;
    let app = common::app_on(
        aws_sdk_ec2::Config::from(&common::sdk_config(&ec2.url("")).await),
        Arc::new(Channels {
            webhook: None,
            sns: None,
        }),
    );
    let p = json!({
        "PeeringConnectionId": "pcx-11111111",
        "ProviderAccountId": PROVIDER,
        "ProviderCidr": PROVIDER_CIDR,
        "VpcId": "vpc-11111111",
    });
    let url = s3.url("/bucket/answer?X-Amz-Signature=S3CR3T");
    let deadline = Deadline::after(Duration::from_secs(6));
    handle_payload(
        app,
        request("Create", &url, &p, None, None),
        common::FUNCTION_ARN,
        deadline,
    )
    .await
    .unwrap();
    let puts = s3.requests();
    assert_eq!(puts.len(), 1, "exactly one answer");
    let left = deadline
        .instant()
        .into_std()
        .saturating_duration_since(puts[0].at);
    assert!(
        left >= Duration::from_secs(1),
        "answered {left:?} before the deadline"
    );
    let a: Value = serde_json::from_slice(&puts[0].body).unwrap();
    assert_eq!(a["Status"], "FAILED", "{a}");
    let r = reason(&a);
    assert!(
        r.contains("pcx-11111111 was accepted but was still provisioning after"),
        "{r}"
    );
    // Accepted: the rollback Delete must be able to undo it, so the id is the connection's.
    assert_eq!(a["PhysicalResourceId"], "pcx-11111111");
    let actions: Vec<String> = ec2
        .requests()
        .iter()
        .filter_map(|r| {
            String::from_utf8_lossy(&r.body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
        })
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "AcceptVpcPeeringConnection")
            .count(),
        1
    );
    assert!(
        actions
            .iter()
            .filter(|a| *a == "DescribeVpcPeeringConnections")
            .count()
            >= 3,
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "CreateRoute"), "{actions:?}");
    common::assert_no_secrets_in_logs(&["S3CR3T"]);
}
