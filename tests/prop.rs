//! Property tests: whatever arrives, parsing never panics, errors name a field, the answer fits in 4096
//! bytes, signatures catch any change, and SNS parts hold everything.

mod common;

use account_link::cfn::{self, Answer, ReplyTo, RequestError};
use account_link::outbound::OutboundPolicy;
use account_link::properties;
use link_contract::event::LinkEvent;
use link_contract::inventory::{Inventory, RegionInventory, RouteTable, Subnet, Vpc};
use link_contract::parts;
use link_contract::signing::{sign, verify, SigningSecret};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "us-west-2",
            "eu-west-1",
            "",
            "vpc-0123abcd",
            "arn:aws:iam::123456789012:role/R"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "Regions",
                    "ExternalId",
                    "Roles",
                    "VpcId",
                    "ServiceToken",
                    "R",
                    "x"
                ])
                .prop_map(String::from),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn create_with(props: Value) -> Value {
    let mut v = common::event(
        "create.json",
        "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k",
    );
    v["ResourceProperties"] = props;
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = cfn::parse_bytes(&bytes, &OutboundPolicy::new(false), &common::origin());
    }

    #[test]
    fn arbitrary_envelopes_are_answerable_or_refused(fields in json_value()) {
        let mut v = common::event("create.json", "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k");
        if let (Value::Object(extra), Value::Object(obj)) = (fields, &mut v) {
            for (k, val) in extra {
                obj.insert(k, val);
            }
        }
        match cfn::parse(&v, &OutboundPolicy::new(false), &common::origin()) {
            Ok(req) => prop_assert_eq!(req.reply.response_url.as_str(), "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k"),
            Err(RequestError::Invalid { message, .. }) => prop_assert!(message.starts_with("invalid request")),
            Err(RequestError::Unanswerable(m)) => prop_assert!(false, "the URL was fine: {}", m),
        }
    }

    #[test]
    fn property_errors_always_name_a_field(props in json_value()) {
        let req = cfn::parse(&create_with(props.clone()), &OutboundPolicy::new(false), &common::origin()).unwrap();
        match properties::parse(&req.properties, "us-west-2", "aws", "123456789012") {
            Ok(p) => prop_assert!(!p.regions.is_empty()),
            Err(e) => {
                let known = ["ResourceProperties", "Regions", "ExternalId", "Roles", "VpcId"];
                prop_assert!(known.iter().any(|k| e.field.starts_with(k)), "{}", e);
                prop_assert!(!e.message.is_empty() && e.to_string().len() < 600);
            }
        }
    }

    #[test]
    fn the_answer_always_fits(reason in ".{0,3000}", values in prop::collection::vec(".{0,600}", 0..12), id in "[ -~]{1,1024}") {
        let reply = ReplyTo {
            response_url: url::Url::parse("https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k").unwrap(),
            stack_id: "arn:aws:cloudformation:us-west-2:123456789012:stack/s/guid".into(),
            request_id: "r".into(),
            logical_resource_id: "Link".into(),
            physical_resource_id: None,
        };
        let mut answer = Answer::failed(id, reason);
        answer.data.insert("LinkId".into(), "link-1".into());
        answer.optional_data = values.into_iter().enumerate().map(|(i, v)| (format!("K{i}"), v)).collect();
        let body = cfn::render(&reply, &answer);
        prop_assert!(body.len() <= cfn::MAX_RESPONSE_BYTES, "{}", body.len());
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(&parsed["Data"]["LinkId"], "link-1");
    }

    #[test]
    fn any_change_breaks_the_signature(body in prop::collection::vec(any::<u8>(), 1..256), flip in any::<prop::sample::Index>(), ts in 1u64..4_000_000_000) {
        let secrets = SigningSecret::parse_list(common::SECRET).unwrap();
        let sig = sign(&secrets, "msg_1", ts, &body);
        prop_assert!(verify(&secrets, Some("msg_1"), Some(&ts.to_string()), Some(&sig), &body, ts, 300).is_ok());
        let mut tampered = body.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert!(verify(&secrets, Some("msg_1"), Some(&ts.to_string()), Some(&sig), &tampered, ts, 300).is_err());
        prop_assert!(verify(&secrets, Some("msg_2"), Some(&ts.to_string()), Some(&sig), &body, ts, 300).is_err());
    }

    #[test]
    fn sns_parts_fit_and_hold_everything(shape in prop::collection::vec((0usize..60, 0usize..8), 0..12), max in 6_000usize..40_000) {
        let vpcs = shape.iter().enumerate().map(|(v, (subnets, tables))| Vpc {
            vpc_id: format!("vpc-{v:08x}"),
            subnets: (0..*subnets).map(|s| Subnet { subnet_id: format!("subnet-{v:04x}{s:04x}"), ..Subnet::default() }).collect(),
            route_tables: (0..*tables).map(|t| RouteTable { route_table_id: format!("rtb-{v:04x}{t:04x}"), ..RouteTable::default() }).collect(),
            ..Vpc::default()
        }).collect();
        let req = cfn::parse(&common::event("create.json", "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/k"), &OutboundPolicy::new(false), &common::origin()).unwrap();
        let inv = Inventory(vec![RegionInventory { region: "us-west-2".into(), vpcs }, RegionInventory { region: "eu-west-1".into(), vpcs: vec![] }]);
        let event = account_link::report::link_event(&req, "link-x", &properties::defaults("us-west-2"), None, Some(inv.clone()));
        let parts: Vec<LinkEvent> = parts::split(&event, max).iter().map(|p| {
            assert!(p.json.len() <= max, "{} > {max}", p.json.len());
            serde_json::from_str(&p.json).unwrap()
        }).collect();
        let mut got: Vec<String> = parts.iter().flat_map(|p| &p.data.inventory).flat_map(|r| &r.vpcs)
            .flat_map(|v| v.subnets.iter().map(|s| s.subnet_id.clone()).chain(v.route_tables.iter().map(|t| t.route_table_id.clone())))
            .collect();
        got.sort();
        let mut want: Vec<String> = inv.0.iter().flat_map(|r| &r.vpcs)
            .flat_map(|v| v.subnets.iter().map(|s| s.subnet_id.clone()).chain(v.route_tables.iter().map(|t| t.route_table_id.clone())))
            .collect();
        want.sort();
        prop_assert_eq!(got, want);
        let mut vpcs: Vec<&str> = parts.iter().flat_map(|p| &p.data.inventory).flat_map(|r| &r.vpcs).map(|v| v.vpc_id.as_str()).collect();
        vpcs.sort();
        vpcs.dedup();
        prop_assert_eq!(vpcs.len(), shape.len(), "every VPC appears");
        let regions: std::collections::BTreeSet<&str> = parts.iter().flat_map(|p| &p.data.inventory).map(|r| r.region.as_str()).collect();
        prop_assert!(regions.contains("eu-west-1"), "empty regions are kept");
        prop_assert_eq!(parts::reassemble(parts).unwrap(), event, "the parts put back together are the event");
    }
}
