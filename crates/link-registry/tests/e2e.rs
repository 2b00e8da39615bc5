//! The function and the registry together: Create, Update and Delete against moto reach `link-receiver`,
//! whose API then returns exactly the inventory moto holds (as boto3, an independent client, lists it);
//! a 10 000-subnet account arrives in parts and reassembles completely.

mod support;

use std::sync::Arc;
use std::time::Duration;

use account_link::config::Callback;
use account_link::deadline::Deadline;
use account_link::handler::{handle_payload, http_client};
use account_link::notify::{Channels, Webhook};
use link_contract::inventory::RegionInventory;
use serde_json::{json, Map, Value};
use support::common::{self, Moto};
use support::{get, http, Receiver, SECRET};

const REGIONS: [&str; 2] = ["us-west-2", "eu-west-1"];
const TOKEN: &str = "e2e-token-0123456789abcdef";

/// The registry's inventory in the shape `moto_fixture.py inventory` prints.
fn as_listed(inventory: &[RegionInventory]) -> Value {
    let mut out = Map::new();
    for r in inventory {
        let mut vpcs = Map::new();
        for v in &r.vpcs {
            let subnets: Map<String, Value> = v
                .subnets
                .iter()
                .map(|s| {
                    (
                        s.subnet_id.clone(),
                        json!({
                            "cidrBlock": s.cidr_block,
                            "availabilityZone": s.availability_zone,
                            "availabilityZoneId": s.availability_zone_id,
                            "availableIpAddressCount": s.available_ip_address_count,
                            "mapPublicIpOnLaunch": s.map_public_ip_on_launch,
                        }),
                    )
                })
                .collect();
            let mut tables: Vec<&str> = v
                .route_tables
                .iter()
                .map(|t| t.route_table_id.as_str())
                .collect();
            tables.sort();
            vpcs.insert(
                v.vpc_id.clone(),
                json!({"cidrBlock": v.cidr_block, "isDefault": v.is_default, "ownerId": v.owner_id,
                       "subnets": subnets, "routeTables": tables}),
            );
        }
        out.insert(r.region.clone(), Value::Object(vpcs));
    }
    Value::Object(out)
}

async fn link_state(receiver: &Receiver, link_id: &str) -> Value {
    let (status, body) = get(
        &http(),
        &format!("{}/api/links/{link_id}", receiver.url),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn create_update_delete_reach_the_registry_with_moto_s_inventory() {
    let moto = Moto::start();
    moto.fixture(&["seed", "--regions", &REGIONS.join(",")]);
    let listed: Value =
        serde_json::from_str(&moto.fixture(&["inventory", "--regions", &REGIONS.join(",")]))
            .unwrap();
    // The default mode: a signature and a proof of the account, which the registry replays to moto's STS
    // (moto does not check the SigV4 signature; tests/trust.rs compares ours with botocore's).
    let receiver = Receiver::start_with_proofs(
        &support::sqlite_url("e2e"),
        &moto.endpoint,
        &["--api-token", TOKEN],
    );
    let session = common::assume_role(&moto, "account-link-BasicLambdaRole");
    let sdk = common::sdk_with(&moto, &session).await;
    let app = Arc::new(account_link::App::new(
        &sdk,
        Ok(common::config(&[
            ("PROVIDER_CALLBACK_URL", &receiver.hook_url()),
            ("PROVIDER_SIGNING_SECRET", SECRET),
        ])),
    ));
    let mut link_id = String::new();
    for (name, state) in [
        ("create.json", "linked"),
        ("update.json", "linked"),
        ("delete.json", "unlinked"),
    ] {
        let key = format!("e2e/{name}");
        let mut payload = common::event(name, &moto.presign(&key));
        payload["ResourceProperties"]["Regions"] = json!(REGIONS);
        if let Some(old) = payload.get_mut("OldResourceProperties") {
            old["Regions"] = json!(REGIONS);
        }
        handle_payload(
            app.clone(),
            payload,
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap();
        let answer = moto.read_answer(&key);
        assert_eq!(answer["Status"], "SUCCESS", "{name}: {answer}");
        link_id = answer["PhysicalResourceId"].as_str().unwrap().to_string();
        let link = link_state(&receiver, &link_id).await;
        assert_eq!(link["state"], state, "{name}");
        assert_eq!(link["accountId"], "123456789012");
        assert_eq!(link["regions"], json!(REGIONS));
        assert_eq!(
            link["callerArn"],
            session.arn.as_str(),
            "the account was proven by the function's role"
        );
        let inventory: Vec<RegionInventory> =
            serde_json::from_value(link["inventory"].clone()).unwrap();
        assert_eq!(
            as_listed(&inventory),
            listed,
            "{name}: the registry holds what moto lists"
        );
        assert_eq!(
            link["subnetCount"],
            inventory
                .iter()
                .flat_map(|r| &r.vpcs)
                .map(|v| v.subnets.len())
                .sum::<usize>()
        );
    }
    let (_, events) = get(
        &http(),
        &format!("{}/api/links/{link_id}/events", receiver.url),
        Some(TOKEN),
    )
    .await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["account.unlinked", "account.updated", "account.linked"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_subnets_arrive_in_parts_and_reassemble() {
    let receiver = Receiver::start(&support::sqlite_url("e2e-big"), &["--api-token", TOKEN]);
    let (ec2, _) = common::paged_ec2(40, 10_000);
    let callback = Callback {
        url: url::Url::parse(&receiver.hook_url()).unwrap(),
        secret: None,
        max_body_bytes: account_link::config::DEFAULT_MAX_BODY_BYTES,
    };
    let app = common::app_on(
        ec2.config().clone(),
        Arc::new(Channels {
            webhook: Some(Webhook::new(
                http_client(),
                callback,
                common::hmac_auth(support::secrets()),
            )),
            sns: None,
        }),
    );
    let s3 = common::http::Server::always(common::http::Reply::status(200)).await;
    let mut payload = common::event("create.json", &s3.url("/bucket/key"));
    payload["ResourceProperties"]["Regions"] = json!(["us-west-2"]);
    let sent = handle_payload(
        app,
        payload,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(sent["Status"], "SUCCESS", "{sent}");
    let link_id = sent["PhysicalResourceId"].as_str().unwrap();
    let link = link_state(&receiver, link_id).await;
    assert_eq!(link["subnetCount"], 10_000);
    let inventory: Vec<RegionInventory> =
        serde_json::from_value(link["inventory"].clone()).unwrap();
    let mut ids: Vec<&str> = inventory
        .iter()
        .flat_map(|r| &r.vpcs)
        .flat_map(|v| &v.subnets)
        .map(|s| s.subnet_id.as_str())
        .collect();
    ids.sort();
    let want: Vec<String> = (0..10_000).map(|i| format!("subnet-{i:017x}")).collect();
    assert_eq!(ids, want, "every subnet, once");
    let (_, events) = get(
        &http(),
        &format!("{}/api/links/{link_id}/events", receiver.url),
        Some(TOKEN),
    )
    .await;
    let parts = events["events"].as_array().unwrap();
    assert!(parts.len() > 1, "the event came in parts: {}", parts.len());
    assert!(parts.iter().all(|p| p["part"].is_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_create_twice_is_one_link() {
    // CloudFormation (or Lambda's retry of the invocation) delivers the same Create twice.
    let receiver = Receiver::start(&support::sqlite_url("e2e-twice"), &["--api-token", TOKEN]);
    let callback = Callback {
        url: url::Url::parse(&receiver.hook_url()).unwrap(),
        secret: None,
        max_body_bytes: account_link::config::DEFAULT_MAX_BODY_BYTES,
    };
    let app = common::app_on(
        common::one_vpc_ec2(),
        Arc::new(Channels {
            webhook: Some(Webhook::new(
                http_client(),
                callback,
                common::hmac_auth(support::secrets()),
            )),
            sns: None,
        }),
    );
    let mut answers = Vec::new();
    for _ in 0..2 {
        let s3 = common::http::Server::always(common::http::Reply::status(200)).await;
        let sent = handle_payload(
            app.clone(),
            common::event("create.json", &s3.url("/bucket/key")),
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(20)),
        )
        .await
        .unwrap();
        let puts = s3.requests();
        assert_eq!(puts.len(), 1, "exactly one answer");
        let answer: Value = serde_json::from_slice(&puts[0].body).unwrap();
        assert_eq!(answer, sent);
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        answers.push(answer);
    }
    assert_eq!(
        answers[0]["PhysicalResourceId"],
        answers[1]["PhysicalResourceId"]
    );
    assert_eq!(
        answers[0]["Data"]["EventId"], answers[1]["Data"]["EventId"],
        "the same webhook-id"
    );
    let (_, links) = get(&http(), &format!("{}/api/links", receiver.url), Some(TOKEN)).await;
    let links = links["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "one link: {links:?}");
    let link_id = links[0]["linkId"].as_str().unwrap();
    assert_eq!(link_id, answers[0]["PhysicalResourceId"]);
    assert_eq!(links[0]["state"], "linked");
    let (_, events) = get(
        &http(),
        &format!("{}/api/links/{link_id}/events", receiver.url),
        Some(TOKEN),
    )
    .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one event row: {events:?}");
    assert_eq!(events[0]["webhookId"], answers[0]["Data"]["EventId"]);
}
