//! What a hostile sender (one that holds the signing secret, or proves an account of its own) cannot do
//! to the registry, on both engines: stop storage with one delivery, take another account's link over,
//! freeze a link with a timestamp from the future, claim another account's roles, break a split event, use
//! an external id another account connected, or store more than its account's quota. Each attack is sent
//! as the function would send a delivery (signed, over HTTP, to the real link-receiver).

mod support;

use link_contract::event::LinkEvent;
use link_contract::inventory::{RegionInventory, Subnet, Vpc};
use link_contract::parts;
use serde_json::Value;
use support::{event_at, get, http, link_id, post, Postgres, Receiver, Signed};

const TOKEN: &str = "test-token-0123456789abcdef";
const VICTIM: &str = "123456789012";
const ATTACKER: &str = "210987654321";

/// `event` as if account `account` had sent it about its own stack `stack` (its claims hold together).
fn of_account(mut e: LinkEvent, account: &str, stack: &str) -> LinkEvent {
    e.data.account_id = account.into();
    e.data.stack_id =
        format!("arn:aws:cloudformation:us-west-2:{account}:stack/{stack}/6f5c1a40-cb0e-11ef-9b7f-0a1b2c3d4e5f");
    e.data.physical_resource_id =
        link_contract::event::link_id(&e.data.stack_id, &e.data.logical_resource_id);
    for arn in e.data.roles.values_mut() {
        *arn = arn.replace(VICTIM, account);
    }
    e
}

async fn link(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let (status, body) = get(http, &format!("{base}/api/links/{id}"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A split event of `subnets` subnets, as the function sends it at `max_bytes` per part.
fn split(e: &LinkEvent, subnets: usize, max_bytes: usize) -> Vec<LinkEvent> {
    let mut big = e.clone();
    big.data.inventory = vec![RegionInventory {
        region: "us-west-2".into(),
        vpcs: vec![Vpc {
            vpc_id: "vpc-0a1b2c3d4e5f6a7b8".into(),
            subnets: (0..subnets)
                .map(|s| Subnet {
                    subnet_id: format!("subnet-{s:017x}"),
                    cidr_block: Some(format!("10.{}.{}.0/24", s / 256 % 256, s % 256)),
                    availability_zone: Some("us-west-2a".into()),
                    available_ip_address_count: Some(251),
                    ..Subnet::default()
                })
                .collect(),
            ..Vpc::default()
        }],
    }];
    big.data.regions = vec!["us-west-2".into()];
    parts::split(&big, max_bytes)
        .iter()
        .map(|m| serde_json::from_str(&m.json).unwrap())
        .collect()
}

async fn exercise(database: &str, count_rows: impl Fn(&str) -> i64) {
    let receiver = Receiver::start(
        database,
        &["--api-token", TOKEN, "--account-events-per-hour", "40"],
    );
    let http = http();
    let hook = receiver.hook_url();
    let base = receiver.url.clone();

    // 1. One part with an absurd count: refused naming the field, nothing stored, and storage goes on.
    let mut hostile = event_at("linked", "stop-all", "msg_stop", "2026-11-29T10:00:00.000Z");
    hostile.data.part = Some(link_contract::event::Part {
        index: 1,
        count: usize::MAX,
        set: "0123456789abcdef".into(),
    });
    let (status, message) = post(&http, &hook, &Signed::of(&hostile)).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("data.part.count"), "{message}");
    for (edit, field) in [
        ((0, 3, "0123456789abcdef"), "data.part.index"),
        ((4, 3, "0123456789abcdef"), "data.part.index"),
        ((1, 65, "0123456789abcdef"), "data.part.count"),
        ((1, 3, "../etc"), "data.part.set"),
    ] {
        let mut e = hostile.clone();
        e.data.part = Some(link_contract::event::Part {
            index: edit.0,
            count: edit.1,
            set: edit.2.into(),
        });
        let (status, message) = post(&http, &hook, &Signed::of(&e)).await;
        assert_eq!((status, message.contains(field)), (400, true), "{message}");
    }
    assert_eq!(
        count_rows("SELECT count(*) FROM events WHERE event_id = 'msg_stop'"),
        0
    );
    let victim = event_at("linked", "victim", "msg_victim", "2026-11-29T10:00:00.000Z");
    let victim_id = link_id("victim");
    let (status, message) = post(&http, &hook, &Signed::of(&victim)).await;
    assert_eq!(status, 200, "storage goes on: {message}");
    let (status, _) = get(&http, &format!("{base}/healthz"), None).await;
    assert_eq!(status, 200);

    // 2. Another account's event naming the victim's link: 409, kept apart with the reason, never applied.
    let mut takeover = of_account(
        event_at(
            "updated",
            "attacker",
            "msg_takeover",
            "2026-11-29T10:01:00.000Z",
        ),
        ATTACKER,
        "attacker",
    );
    takeover.data.physical_resource_id = victim_id.clone();
    let (status, message) = post(&http, &hook, &Signed::of(&takeover)).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("data.physicalResourceId"), "{message}");
    // ... or naming the victim's stack while claiming to be another account.
    let mut stack_thief = event_at("updated", "victim", "msg_thief", "2026-11-29T10:02:00.000Z");
    stack_thief.data.account_id = ATTACKER.into();
    for arn in stack_thief.data.roles.values_mut() {
        *arn = arn.replace(VICTIM, ATTACKER);
    }
    let (status, message) = post(&http, &hook, &Signed::of(&stack_thief)).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("data.accountId"), "{message}");
    let l = link(&http, &base, &victim_id).await;
    assert_eq!(
        (l["accountId"].as_str(), l["lastEventId"].as_str()),
        (Some(VICTIM), Some("msg_victim")),
        "the link is what its own events made it"
    );
    let (_, rejected) = get(
        &http,
        &format!("{base}/api/rejected-events?link={victim_id}"),
        Some(TOKEN),
    )
    .await;
    let rejected = rejected["rejectedEvents"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.iter().any(|r| r["webhookId"] == "msg_takeover"
        && r["accountId"] == ATTACKER
        && r["reason"].as_str().unwrap().contains("physicalResourceId")));
    assert_eq!(
        count_rows("SELECT count(*) FROM events WHERE webhook_id = 'msg_takeover'"),
        0
    );
    // Operators see it in the console, on the accounts page and the victim's link page.
    for page in ["/".to_string(), format!("/links/{victim_id}")] {
        let html = console_page(&http, &base, &page).await;
        assert!(
            html.contains("Rejected deliveries")
                && html.contains(r#"data-webhook-id="msg_takeover""#),
            "{page}"
        );
    }

    // 3. A timestamp from the future is refused; the real unlink afterwards applies.
    let frozen = event_at(
        "updated",
        "victim",
        "msg_future",
        "9999-12-31T23:59:59.999Z",
    );
    let (status, message) = post(&http, &hook, &Signed::of(&frozen)).await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("ahead of this receiver's clock"),
        "{message}"
    );
    let unlink = event_at(
        "unlinked",
        "victim",
        "msg_unlink",
        "2026-11-29T10:05:00.000Z",
    );
    let (status, message) = post(&http, &hook, &Signed::of(&unlink)).await;
    assert_eq!(
        (status, message.as_str().contains("\"stored\"")),
        (200, true),
        "{message}"
    );
    assert_eq!(link(&http, &base, &victim_id).await["state"], "unlinked");

    // 4. Roles of another account are refused, naming the role.
    let mut roles = event_at("linked", "roles", "msg_roles", "2026-11-29T10:00:00.000Z");
    roles.data.roles.insert(
        "RemoteRole".into(),
        format!("arn:aws:iam::{ATTACKER}:role/someone-elses-role"),
    );
    let (status, message) = post(&http, &hook, &Signed::of(&roles)).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("data.roles.RemoteRole"), "{message}");

    // Text PostgreSQL cannot store (a NUL) would fail every batch it is in: refused before the store.
    let mut nul = event_at("linked", "nul", "msg_nul", "2026-11-29T10:00:00.000Z");
    nul.data.external_id = Some("ext\u{0}ernal-id-0123456789".into());
    let (status, message) = post(&http, &hook, &Signed::of(&nul)).await;
    assert_eq!(
        (status, message.contains("data.externalId")),
        (400, true),
        "{message}"
    );

    // 8. Parts of a split must carry the first part's envelope; a set's bytes are capped.
    let base_event = event_at("linked", "split", "msg_split", "2026-11-29T11:00:00.000Z");
    let pieces = split(&base_event, 3000, 64 * 1024);
    assert!(pieces.len() >= 3, "{}", pieces.len());
    let (status, message) = post(&http, &hook, &Signed::of(&pieces[0])).await;
    assert_eq!(status, 200, "{message}");
    let mut other_roles = pieces[1].clone();
    other_roles.data.roles.insert(
        "RemoteRole".into(),
        format!("arn:aws:iam::{VICTIM}:role/other"),
    );
    let (status, message) = post(&http, &hook, &Signed::of(&other_roles)).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("data.roles"), "{message}");
    let mut other_count = pieces[1].clone();
    other_count.data.part.as_mut().unwrap().count += 1;
    let (status, message) = post(&http, &hook, &Signed::of(&other_count)).await;
    assert_eq!(
        (status, message.contains("data.part.count")),
        (400, true),
        "{message}"
    );
    assert_eq!(
        count_rows("SELECT count(*) FROM events WHERE event_id = 'msg_split'"),
        1,
        "nothing of a refused part is stored"
    );
    for p in &pieces[1..] {
        let (status, message) = post(&http, &hook, &Signed::of(p)).await;
        assert_eq!(status, 200, "{message}");
    }
    assert_eq!(
        link(&http, &base, &link_id("split")).await["subnetCount"],
        3000
    );
    // (A set's byte cap: store::write's `a_split_is_capped_in_bytes`.)

    // Quotas: the account has stored its 40 deliveries of the hour (the victim's, roles' and split's
    // above belong to the example's account); more get 429 with Retry-After, another account
    // still gets in.
    let mut answer = None;
    for n in 0..40 {
        let e = event_at(
            "updated",
            "quota",
            &format!("msg_quota_{n}"),
            "2026-11-29T12:00:00.000Z",
        );
        let d = Signed::of(&e);
        let mut req = http.post(&hook).body(d.body.clone());
        for (k, v) in d.headers() {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        if r.status() == 429 {
            answer = Some((
                r.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok()),
                r.text().await.unwrap(),
            ));
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let (retry_after, message) = answer.expect("the quota is reached");
    assert!(
        retry_after.is_some_and(|s| (1..=3600).contains(&s)),
        "{retry_after:?}"
    );
    assert!(
        message.contains(VICTIM) && message.contains("quota"),
        "{message}"
    );
    let other = of_account(
        event_at(
            "linked",
            "quota",
            "msg_other_account",
            "2026-11-29T12:00:00.000Z",
        ),
        ATTACKER,
        "quota",
    );
    assert_eq!(post(&http, &hook, &Signed::of(&other)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_refuses_what_a_hostile_sender_sends() {
    let url = support::sqlite_url("integrity");
    let path = url.trim_start_matches("sqlite://").to_string();
    exercise(&url, |sql| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])",
                &path,
                sql,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_refuses_what_a_hostile_sender_sends() {
    let pg = Postgres::start();
    let db = pg.database("integrity");
    exercise(&db, |sql| pg.query("integrity", sql).parse().unwrap()).await;
}

/// A console request connects exactly one account; another account naming its external id is stored as
/// unsolicited and flagged. A request for several accounts connects each expected one, and only those.
async fn external_ids(database: &str) {
    let receiver = Receiver::start(database, &["--api-token", TOKEN]);
    let http = http();
    let hook = receiver.hook_url();
    let base = receiver.url.clone();
    let create = |body: Value| {
        let http = http.clone();
        let url = format!("{base}/api/link-requests");
        async move {
            let r = http
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, single) = create(serde_json::json!({})).await;
    assert_eq!(status, 201, "{single}");
    let x = single["externalId"].as_str().unwrap().to_string();
    let named = |account: &str, stack: &str, id: &str| {
        let mut e = of_account(
            event_at("linked", stack, id, "2026-11-29T10:00:00.000Z"),
            account,
            stack,
        );
        e.data.external_id = Some(x.clone());
        e
    };
    assert_eq!(
        post(&http, &hook, &Signed::of(&named(VICTIM, "first", "msg_x1")))
            .await
            .0,
        200
    );
    // The same account's second stack (another region, say) belongs to the same request.
    assert_eq!(
        post(
            &http,
            &hook,
            &Signed::of(&named(VICTIM, "second", "msg_x2"))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &http,
            &hook,
            &Signed::of(&named(ATTACKER, "third", "msg_x3"))
        )
        .await
        .0,
        200
    );
    let first = link(&http, &base, &link_id_of(VICTIM, "first")).await;
    let second = link(&http, &base, &link_id_of(VICTIM, "second")).await;
    let third = link(&http, &base, &link_id_of(ATTACKER, "third")).await;
    assert_eq!(
        (first["requested"].as_bool(), second["requested"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(third["requested"], false);
    assert_eq!(
        third["externalIdIssue"],
        format!("external id already used by account {VICTIM}")
    );
    let html = console_page(
        &http,
        &base,
        &format!("/links/{}", link_id_of(ATTACKER, "third")),
    )
    .await;
    assert!(
        html.contains(&format!("external id already used by account {VICTIM}")),
        "{html}"
    );
    let (_, r) = get(&http, &format!("{base}/api/link-requests/{x}"), Some(TOKEN)).await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["accountId"].as_str(),
            r["connectedLinks"].as_i64()
        ),
        (Some("connected"), Some(VICTIM), Some(2))
    );

    // For several accounts, with the expected ones named: each connects, an unexpected one does not.
    let (status, _) = create(serde_json::json!({"expectedAccountIds": [VICTIM]})).await;
    assert_eq!(
        status, 400,
        "expected accounts need a request for several accounts"
    );
    let (status, bad) =
        create(serde_json::json!({"multiAccount": true, "expectedAccountIds": ["12345"]})).await;
    assert_eq!(status, 400);
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("expectedAccountIds[0]"),
        "{bad}"
    );
    let (status, multi) = create(serde_json::json!({
        "multiAccount": true,
        "expectedAccountIds": [VICTIM, "333333333333"]
    }))
    .await;
    assert_eq!(status, 201, "{multi}");
    let y = multi["externalId"].as_str().unwrap().to_string();
    for (account, stack, id) in [
        (VICTIM, "m1", "msg_y1"),
        ("333333333333", "m2", "msg_y2"),
        (ATTACKER, "m3", "msg_y3"),
    ] {
        let mut e = of_account(
            event_at("linked", stack, id, "2026-11-29T10:00:00.000Z"),
            account,
            stack,
        );
        e.data.external_id = Some(y.clone());
        assert_eq!(post(&http, &hook, &Signed::of(&e)).await.0, 200);
    }
    assert_eq!(
        link(&http, &base, &link_id_of(VICTIM, "m1")).await["requested"],
        true
    );
    assert_eq!(
        link(&http, &base, &link_id_of("333333333333", "m2")).await["requested"],
        true
    );
    let unexpected = link(&http, &base, &link_id_of(ATTACKER, "m3")).await;
    assert_eq!(unexpected["requested"], false);
    assert!(unexpected["externalIdIssue"]
        .as_str()
        .unwrap()
        .contains("not one this link request expects"));
    let (_, r) = get(&http, &format!("{base}/api/link-requests/{y}"), Some(TOKEN)).await;
    assert_eq!(r["connectedLinks"], 2);
}

async fn console_page(http: &reqwest::Client, base: &str, path: &str) -> String {
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

fn link_id_of(account: &str, stack: &str) -> String {
    of_account(support::example("linked"), account, stack)
        .data
        .physical_resource_id
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_external_ids_connect_one_account() {
    external_ids(&support::sqlite_url("external-ids")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_external_ids_connect_one_account() {
    let pg = Postgres::start();
    external_ids(&pg.database("external_ids")).await;
}

#[test]
fn the_test_accounts_differ() {
    assert_ne!(link_id("victim"), link_id_of(ATTACKER, "victim"));
}
