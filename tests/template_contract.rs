//! The template and the handler agree: the function's environment and the custom resources' properties
//! (Custom::AccountLink, Custom::PeeringAcceptance) in template.yaml are exactly what the handler reads.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use account_link::config::{ENV_VARS, LOCAL_ONLY_ENV_VARS, SIGNING_SECRET_ENV};
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
    let handler_env: BTreeSet<String> = ENV_VARS
        .iter()
        .filter(|v| !LOCAL_ONLY_ENV_VARS.contains(v))
        .map(|s| s.to_string())
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
