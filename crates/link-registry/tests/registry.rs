//! The registry on both engines (SQLite in a temporary directory, a real PostgreSQL started here):
//! deliveries stored once, events applied in timestamp order, split events reassembled, replay protection
//! that survives a restart, and the read API behind its token.

mod support;

use link_contract::inventory::{RegionInventory, Subnet, Vpc};
use link_contract::parts;
use serde_json::Value;
use support::{event_at, get, http, post, Postgres, Receiver, Signed};

const TOKEN: &str = "test-token-0123456789abcdef";

async fn exercise(database: &str) {
    let receiver = Receiver::start(database, &["--api-token", TOKEN]);
    let http = http();
    let hook = receiver.hook_url();
    let api = |path: &str| format!("{}/api{path}", receiver.url);
    let link = "registry-a";
    let id = support::link_id(link);

    // Linked, then a duplicate delivery of the same event.
    let linked = event_at("linked", link, "msg_a", "2026-11-29T10:00:00.000Z");
    assert_eq!(post(&http, &hook, &Signed::of(&linked)).await.0, 200);
    let (status, message) = post(&http, &hook, &Signed::of(&linked)).await;
    assert_eq!(
        (status, message.contains("duplicate")),
        (200, true),
        "{message}"
    );

    let (status, body) = get(&http, &api(&format!("/links/{id}")), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "linked");
    assert_eq!(body["accountId"], linked.data.account_id.as_str());
    assert_eq!(body["linkedAt"], "2026-11-29T10:00:00.000Z");
    assert_eq!(
        body["inventory"],
        serde_json::to_value(&linked.data.inventory).unwrap(),
        "the inventory is the event's"
    );
    let subnets: usize = linked
        .data
        .inventory
        .iter()
        .flat_map(|r| &r.vpcs)
        .map(|v| v.subnets.len())
        .sum();
    assert_eq!(body["subnetCount"], subnets as i64);

    // Unlinked at 10:05, then a re-sent Create (older timestamp, other id) arrives late: it goes into the
    // history but the link stays unlinked.
    let unlinked = event_at("unlinked", link, "msg_c", "2026-11-29T10:05:00.000Z");
    assert_eq!(post(&http, &hook, &Signed::of(&unlinked)).await.0, 200);
    let late = event_at("linked", link, "msg_b", "2026-11-29T10:01:00.000Z");
    let (status, message) = post(&http, &hook, &Signed::of(&late)).await;
    assert_eq!(status, 200);
    assert!(message.contains("newer event"), "{message}");
    let (_, body) = get(&http, &api(&format!("/links/{id}")), Some(TOKEN)).await;
    assert_eq!(
        body["state"], "unlinked",
        "a late Create does not resurrect the link"
    );
    assert_eq!(body["unlinkedAt"], "2026-11-29T10:05:00.000Z");
    assert_eq!(body["lastEventId"], "msg_c");
    let (_, events) = get(&http, &api(&format!("/links/{id}/events")), Some(TOKEN)).await;
    let ids: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["webhookId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["msg_c", "msg_b", "msg_a"],
        "every event is in the history, once, newest first"
    );

    // A split event (10 000 subnets, parts of 256 KiB) delivered out of order: the inventory is replaced
    // only once every part has arrived.
    let big_link = "registry-big";
    let big_id = support::link_id(big_link);
    let mut big = event_at("linked", big_link, "msg_big", "2026-11-29T11:00:00.000Z");
    big.data.inventory = vec![RegionInventory {
        region: "us-west-2".into(),
        vpcs: (0..4)
            .map(|v| Vpc {
                vpc_id: format!("vpc-{v:017x}"),
                subnets: (0..2500)
                    .map(|s| Subnet {
                        subnet_id: format!("subnet-{v:02x}{s:015x}"),
                        cidr_block: Some(format!("10.{v}.{}.{}/28", s / 16, (s % 16) * 16)),
                        availability_zone: Some("us-west-2a".into()),
                        available_ip_address_count: Some(11),
                        ..Subnet::default()
                    })
                    .collect(),
                ..Vpc::default()
            })
            .collect(),
    }];
    let messages = parts::split(&big, 256 * 1024);
    assert!(messages.len() > 3, "{}", messages.len());
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.reverse();
    for (n, i) in order.iter().enumerate() {
        let m = &messages[*i];
        let (status, message) =
            post(&http, &hook, &Signed::raw(&m.delivery_id, m.json.clone())).await;
        assert_eq!(status, 200, "{message}");
        let (status, body) = get(&http, &api(&format!("/links/{big_id}")), Some(TOKEN)).await;
        if n + 1 < messages.len() {
            assert!(message.contains("part stored"), "{message}");
            assert_eq!(status, 404, "no link until the event is whole");
        } else {
            assert_eq!(status, 200);
            assert_eq!(body["subnetCount"], 10_000);
            let got: Vec<RegionInventory> =
                serde_json::from_value(body["inventory"].clone()).unwrap();
            assert_eq!(got, big.data.inventory, "reassembled exactly");
        }
    }
    // A part delivered again after completion is a duplicate and changes nothing.
    let again = &messages[0];
    let (_, message) = post(
        &http,
        &hook,
        &Signed::raw(&again.delivery_id, again.json.clone()),
    )
    .await;
    assert!(message.contains("duplicate"), "{message}");

    // Listing, filtered and paged.
    let (_, page) = get(&http, &api("/links?state=linked"), Some(TOKEN)).await;
    let listed: Vec<&str> = page["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["linkId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [big_id.as_str()]);
    let (_, first) = get(&http, &api("/links?limit=1"), Some(TOKEN)).await;
    assert_eq!(first["links"].as_array().unwrap().len(), 1);
    let next = first["next"].as_str().expect("a second page");
    let (_, second) = get(
        &http,
        &api(&format!("/links?limit=1&after={next}")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(second["links"][0]["linkId"], id.as_str());
    assert!(second["next"].is_null());
    let (_, by_account) = get(&http, &api("/links?account=999999999999"), Some(TOKEN)).await;
    assert_eq!(by_account["links"], Value::Array(vec![]));

    // The API needs the token; health does not.
    assert_eq!(get(&http, &api("/links"), None).await.0, 401);
    assert_eq!(
        get(&http, &api("/links"), Some("wrong-token-0123456789"))
            .await
            .0,
        401
    );
    assert_eq!(get(&http, &api("/links?limit=0"), Some(TOKEN)).await.0, 400);
    assert_eq!(
        get(&http, &format!("{}/healthz", receiver.url), None)
            .await
            .0,
        200
    );

    // Replay protection is the database's: after a restart the same delivery is still a duplicate.
    receiver.kill();
    let receiver = Receiver::start(database, &["--api-token", TOKEN]);
    let (status, message) = post(&http, &receiver.hook_url(), &Signed::of(&linked)).await;
    assert_eq!(
        (status, message.contains("duplicate")),
        (200, true),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_registry() {
    exercise(&support::sqlite_url("engine")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_registry() {
    let pg = Postgres::start();
    let db = pg.database("registry");
    exercise(&db).await;
    // One row per link and per delivery, checked in the database itself.
    assert_eq!(pg.query("registry", "SELECT count(*) FROM links"), "2");
    assert_eq!(
        pg.query(
            "registry",
            "SELECT count(*) - count(DISTINCT webhook_id) FROM events"
        ),
        "0"
    );
}

#[test]
fn refuses_to_expose_the_api_without_a_token() {
    let (code, stderr) = support::receiver_exit(&[
        "--listen",
        "0.0.0.0:0",
        "--auth-mode",
        "hmac-only",
        "--secret",
        support::SECRET,
        "--database",
        &support::sqlite_url("refuse"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--api-token"), "{stderr}");
    let (code, stderr) = support::receiver_exit(&[
        "--database",
        "mysql://u:hunter2@h/db",
        "--auth-mode",
        "hmac-only",
        "--secret",
        support::SECRET,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("sqlite://PATH") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}
