//! The template and the handler agree: the function's environment and the custom resources' properties
//! (Custom::AccountLink, Custom::PeeringAcceptance) in template.yaml are exactly what the handler reads.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::process::Command;

use account_link::config::{Config, LOCAL_ONLY_ENV_VARS, SIGNING_SECRET_ENV};
use account_link::outbound::ALLOW_LOOPBACK_ENV;
use account_link::peering;
use account_link::properties::PROPERTY_NAMES;

#[test]
fn template_passes_exactly_what_the_handler_reads() {
    let out = Command::new(common::venv_bin("python"))
        .arg(common::root().join("scripts/template_contract.py"))
        .arg(common::root().join("template.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contract: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let set = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    // Variables for local runs only (the loopback switch; the signing secret itself, which a stack keeps
    // in Secrets Manager) must never be set by the stack; every other one must be passed.
    let template_env = set(&contract["environment"]);
    assert!(
        LOCAL_ONLY_ENV_VARS.contains(&ALLOW_LOOPBACK_ENV)
            && LOCAL_ONLY_ENV_VARS.contains(&SIGNING_SECRET_ENV)
    );
    for local in LOCAL_ONLY_ENV_VARS {
        assert!(
            !template_env.contains(*local),
            "template.yaml sets {local}, which is for local runs only"
        );
    }
    let handler_env: BTreeSet<String> = variables_the_function_reads()
        .into_iter()
        .filter(|v| !LOCAL_ONLY_ENV_VARS.contains(&v.as_str()))
        .collect();
    assert_eq!(template_env, handler_env);
    let handler_props: BTreeSet<String> = PROPERTY_NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(set(&contract["properties"]), handler_props);
    let peering_props: BTreeSet<String> = peering::PROPERTY_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(set(&contract["peeringProperties"]), peering_props);
}

/// Every variable the function's configuration asks its environment for, recorded from the lookup
/// itself (not from a list kept by hand): the union over environments that reach every branch of it.
fn variables_the_function_reads() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let environments: [&[(&str, &str)]; 4] = [
        &[],
        &[
            (
                "PROVIDER_CALLBACK_URL",
                "https://hooks.provider.example/aws",
            ),
            (
                "PROVIDER_SIGNING_SECRET_ARN",
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:s-AbCdEf",
            ),
        ],
        &[
            ("PROVIDER_CALLBACK_URL", "http://127.0.0.1:9/aws"),
            ("PROVIDER_SIGNING_SECRET", common::SECRET),
            ("ACCOUNT_LINK_ALLOW_LOOPBACK", "true"),
            ("PROVIDER_MAX_BODY_BYTES", "65536"),
            ("PROVIDER_AUTH_MODE", "hmac-only"),
        ],
        &[
            (
                "PROVIDER_SNS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:links",
            ),
            ("PROVIDER_AUDIENCE", "https://hooks.provider.example"),
            ("PROVIDER_AUTH_MODE", "proof-only"),
        ],
    ];
    for vars in environments {
        let config = Config::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_string());
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        assert!(config.is_ok(), "{vars:?}: {config:?}");
    }
    let asked = asked.into_inner();
    // Sanity: the lookup was really recorded (the environments above set some of what it asks for).
    assert!(asked.contains("PROVIDER_CALLBACK_URL") && asked.contains("PROVIDER_AUDIENCE"));
    asked
}
