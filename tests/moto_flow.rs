//! The link flow against a real moto server: EC2 seeded in two regions, the answer PUT to a real
//! pre-signed S3 URL from the same server and read back.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use account_link::deadline::Deadline;
use account_link::handler::handle_payload;
use link_contract::event::EventType;
use serde_json::{json, Value};

const REGIONS: [&str; 2] = ["us-west-2", "eu-west-1"];

fn ids(v: &Value, key: &str) -> BTreeSet<String> {
    v["Data"][key]
        .as_str()
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_update_delete_against_moto() {
    common::capture_logs();
    let moto = common::Moto::start();
    let seeded: Value =
        serde_json::from_str(&moto.fixture(&["seed", "--regions", &REGIONS.join(",")])).unwrap();
    let expect_vpcs: BTreeSet<String> = REGIONS
        .iter()
        .flat_map(|r| seeded[r].as_object().unwrap().keys().cloned())
        .collect();
    let expect_subnets: BTreeSet<String> = REGIONS
        .iter()
        .flat_map(|r| seeded[r].as_object().unwrap().values())
        .flat_map(|v| {
            v["subnets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        expect_vpcs.len() >= 6 && expect_subnets.len() >= 12,
        "seeded {expect_vpcs:?}"
    );

    let recorder = Arc::new(common::Recorder::default());
    let app = common::app_on(
        aws_sdk_ec2::Config::from(&common::sdk_config(&moto.endpoint).await),
        recorder.clone(),
    );

    let mut link_id = None;
    for name in ["create.json", "update.json", "delete.json"] {
        let key = format!("answers/{name}");
        let mut payload = common::event(name, &moto.presign(&key));
        payload["ResourceProperties"]["Regions"] = json!(REGIONS);
        if let Some(old) = payload.get_mut("OldResourceProperties") {
            old["Regions"] = json!(REGIONS);
        }
        let returned = handle_payload(
            app.clone(),
            payload.clone(),
            common::FUNCTION_ARN,
            Deadline::after(Duration::from_secs(30)),
        )
        .await
        .unwrap();
        let answer = moto.read_answer(&key);
        assert_eq!(returned, answer, "{name}: the handler returns what it sent");
        assert_eq!(answer["Status"], "SUCCESS", "{name}: {answer}");
        for k in ["StackId", "RequestId", "LogicalResourceId"] {
            assert_eq!(answer[k], payload[k], "{name}: {k} echoed");
        }
        let id = answer["PhysicalResourceId"].as_str().unwrap().to_string();
        assert_eq!(
            id,
            *link_id.get_or_insert_with(|| id.clone()),
            "{name}: PhysicalResourceId is stable"
        );
        if name != "delete.json" {
            assert_eq!(answer["Data"]["LinkId"], id.as_str());
            assert_eq!(ids(&answer, "VpcIds"), expect_vpcs, "{name}");
            assert_eq!(ids(&answer, "SubnetIds"), expect_subnets, "{name}");
            assert_eq!(answer["Data"]["VpcCount"], expect_vpcs.len().to_string());
            assert_eq!(
                answer["Data"]["SubnetCount"],
                expect_subnets.len().to_string()
            );
            assert_eq!(answer["Data"]["Regions"], "us-west-2,eu-west-1");
        }
    }

    // The notification step got the full inventory, route tables included, per region and VPC.
    let events = recorder.0.lock().unwrap().clone();
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [EventType::Linked, EventType::Updated, EventType::Unlinked]
    );
    for e in &events {
        assert!(e.data.inventory_complete);
        for region in &e.data.inventory {
            let want = seeded[&region.region].as_object().unwrap();
            assert_eq!(region.vpcs.len(), want.len(), "{}", region.region);
            for vpc in &region.vpcs {
                let w = &want[&vpc.vpc_id];
                let subnets: Vec<&str> = vpc.subnets.iter().map(|s| s.subnet_id.as_str()).collect();
                let tables: Vec<&str> = vpc
                    .route_tables
                    .iter()
                    .map(|t| t.route_table_id.as_str())
                    .collect();
                assert_eq!(json!(subnets), w["subnets"], "{}", vpc.vpc_id);
                assert_eq!(json!(tables), w["routeTables"], "{}", vpc.vpc_id);
            }
        }
    }
    let update = &events[1].data;
    assert_eq!(
        update.changes.as_ref().unwrap().changed_properties,
        ["ExternalId"]
    );
    assert_eq!(
        update.external_id.as_deref(),
        Some("provider-ext-rotated-2b1d")
    );

    common::assert_no_secrets_in_logs(&[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_rolls_back_without_an_unlink() {
    let moto = common::Moto::start();
    let recorder = Arc::new(common::Recorder::default());
    let app = common::app_on(
        aws_sdk_ec2::Config::from(&common::sdk_config(&moto.endpoint).await),
        recorder.clone(),
    );
    // A VpcId that does not exist: Create fails with a placeholder id.
    let mut create = common::event("create.json", &moto.presign("failed/create"));
    create["ResourceProperties"]["VpcId"] = "vpc-0123456789abcdef0".into();
    handle_payload(
        app.clone(),
        create.clone(),
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let answer = moto.read_answer("failed/create");
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        answer["Reason"]
            .as_str()
            .unwrap()
            .contains("VpcId: vpc-0123456789abcdef0 was not found"),
        "{answer}"
    );
    let placeholder = answer["PhysicalResourceId"].as_str().unwrap();
    assert!(placeholder.starts_with("create-failed-"));

    // CloudFormation's rollback Delete carries the placeholder: SUCCESS, and the provider hears nothing.
    let mut delete = common::event("delete.json", &moto.presign("failed/delete"));
    delete["PhysicalResourceId"] = placeholder.into();
    delete["ResourceProperties"] = create["ResourceProperties"].clone();
    handle_payload(
        app.clone(),
        delete,
        common::FUNCTION_ARN,
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let answer = moto.read_answer("failed/delete");
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["PhysicalResourceId"], placeholder);
    assert!(
        recorder.0.lock().unwrap().is_empty(),
        "no event for a link that never existed"
    );
}
