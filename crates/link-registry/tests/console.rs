//! The console's server side, without a browser (tests/console/test_console.py drives a real one): link
//! requests and how events connect them, expiry, unsolicited links, the network selection and its checks,
//! login, CSRF, loopback-only access without a token, and pages that load nothing from elsewhere.

mod support;

use std::time::{Duration, SystemTime};

use link_contract::event::LinkEvent;
use link_contract::inventory::{RegionInventory, Subnet, Vpc};
use serde_json::{json, Value};
use support::{event_at, get, http, post, Receiver, Signed};

const TOKEN: &str = "console-token-0123456789abcdef";

fn no_redirects() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn linked(link: &str, event_id: &str, external_id: &str) -> LinkEvent {
    let mut e = event_at("linked", link, event_id, "2026-11-29T12:00:00.000Z");
    e.data.external_id = Some(external_id.to_string());
    e
}

async fn create_request(base: &str) -> Value {
    let r = http()
        .post(format!("{base}/api/link-requests"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_connect_expire_or_stay_unsolicited() {
    let receiver = Receiver::start(
        &support::sqlite_url("console-requests"),
        &[
            "--api-token",
            TOKEN,
            // Long enough never to run out while the requests below are connected, however loaded the
            // machine; expiry is shown on a receiver of its own (further down).
            "--pending-ttl",
            "600",
            "--template-url",
            "https://templates.s3.eu-west-1.amazonaws.com/account-link/1.0.0/template.yaml",
            "--stack-region",
            "eu-west-1",
            "--stack-param",
            "ProviderAccountId=111122223333",
            "--public-url",
            "https://links.example.com",
        ],
    );
    let base = &receiver.url;
    let hook = receiver.hook_url();
    let http = http();

    // A request: a fresh external id from the CSPRNG, and the quick-create link carrying it.
    let first = create_request(base).await;
    let second = create_request(base).await;
    let id = first["externalId"].as_str().unwrap();
    assert_eq!(id.len(), 40);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_ne!(first["externalId"], second["externalId"]);
    assert_eq!(first["status"], "pending");
    let url = first["quickCreateUrl"].as_str().unwrap();
    assert!(url.starts_with("https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/quickcreate?templateURL=https%3A%2F%2Ftemplates.s3.eu-west-1.amazonaws.com"), "{url}");
    assert!(url.contains(&format!("&param_ExternalId={id}")), "{url}");
    assert!(
        url.contains(
            "&param_ProviderCallbackUrl=https%3A%2F%2Flinks.example.com%2Fhooks%2Faccount-link"
        ),
        "{url}"
    );
    assert!(url.contains("&param_ProviderAccountId=111122223333"));
    assert!(
        !url.contains("whsec_") && !url.contains("SigningSecret"),
        "{url}"
    );

    // The stack's account.linked names the external id: the request is connected.
    let link_stack = "console-link";
    let link = &support::link_id(link_stack);
    assert_eq!(
        post(&http, &hook, &Signed::of(&linked(link_stack, "msg_1", id)))
            .await
            .0,
        200
    );
    let (_, r) = get(
        &http,
        &format!("{base}/api/link-requests/{id}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["linkId"].as_str()),
        (Some("connected"), Some(link.as_str()))
    );
    let (_, l) = get(&http, &format!("{base}/api/links/{link}"), Some(TOKEN)).await;
    assert_eq!(l["requested"], true);

    // An event with an external id nobody asked for is stored, and shown as unsolicited.
    let stranger_stack = "console-stranger";
    let stranger = &support::link_id(stranger_stack);
    let unknown = linked(stranger_stack, "msg_2", "some-external-id-nobody-issued");
    assert_eq!(post(&http, &hook, &Signed::of(&unknown)).await.0, 200);
    let (_, l) = get(&http, &format!("{base}/api/links/{stranger}"), Some(TOKEN)).await;
    assert_eq!(l["requested"], false);
    let page = http
        .get(format!("{base}/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = page
        .split(&format!("data-link-id=\"{stranger}\""))
        .nth(1)
        .unwrap();
    assert!(row[..row.find("</tr>").unwrap()].contains("unsolicited"));

    // The second request, never used, is still pending.
    let (_, r) = get(
        &http,
        &format!(
            "{base}/api/link-requests/{}",
            second["externalId"].as_str().unwrap()
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r["status"], "pending");

    // A request that waited past its time expires, and its external id no longer connects. Its own
    // receiver with a 1 s time to live; the test waits until the request's own expiresAt (the deadline
    // the receiver gave it) has passed, by the same clock, so nothing depends on how fast this runs.
    let short = Receiver::start(
        &support::sqlite_url("console-expiry"),
        &["--api-token", TOKEN, "--pending-ttl", "1"],
    );
    let late_request = create_request(&short.url).await;
    let late_id = late_request["externalId"].as_str().unwrap();
    let expires_at = humantime::parse_rfc3339(late_request["expiresAt"].as_str().unwrap())
        .expect("expiresAt is an RFC 3339 time");
    while SystemTime::now() <= expires_at + Duration::from_millis(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request_url = format!("{}/api/link-requests/{late_id}", short.url);
    let (_, r) = get(&http, &request_url, Some(TOKEN)).await;
    assert_eq!(r["status"], "expired");
    let late_stack = "console-late";
    let late = &support::link_id(late_stack);
    assert_eq!(
        post(
            &http,
            &short.hook_url(),
            &Signed::of(&linked(late_stack, "msg_3", late_id))
        )
        .await
        .0,
        200
    );
    let (_, r) = get(&http, &request_url, Some(TOKEN)).await;
    assert_eq!(r["status"], "expired");
    let (_, l) = get(
        &http,
        &format!("{}/api/links/{late}", short.url),
        Some(TOKEN),
    )
    .await;
    assert_eq!(l["requested"], false);
}

fn subnet(id: &str, az: &str, cidr: Option<&str>, free: i32) -> Subnet {
    Subnet {
        subnet_id: id.into(),
        cidr_block: cidr.map(str::to_string),
        ipv6_cidr_blocks: if cidr.is_none() {
            vec!["2600:1f14::/64".into()]
        } else {
            vec![]
        },
        availability_zone: Some(az.into()),
        availability_zone_id: Some(format!("usw2-{az}")),
        available_ip_address_count: Some(free),
        ..Subnet::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn selections_are_checked_against_the_inventory_and_need_csrf_from_browsers() {
    let receiver = Receiver::start(
        &support::sqlite_url("console-selection"),
        &["--api-token", TOKEN, "--min-free-ips", "16"],
    );
    let base = &receiver.url;
    let link_stack = "console-link";
    let link = &support::link_id(link_stack);
    let mut e = linked(link_stack, "msg_sel", "ext-id-for-the-selection-test");
    e.data.inventory = vec![RegionInventory {
        region: "us-west-2".into(),
        vpcs: vec![
            Vpc {
                vpc_id: "vpc-11111111".into(),
                subnets: vec![
                    subnet("subnet-aaaaaaaa", "us-west-2a", Some("10.0.0.0/24"), 251),
                    subnet("subnet-bbbbbbbb", "us-west-2b", Some("10.0.1.0/28"), 3),
                    subnet("subnet-cccccccc", "us-west-2c", None, 0),
                    subnet("subnet-dddddddd", "us-west-2b", Some("10.0.2.0/24"), 200),
                ],
                ..Vpc::default()
            },
            Vpc {
                vpc_id: "vpc-22222222".into(),
                subnets: vec![subnet(
                    "subnet-eeeeeeee",
                    "us-west-2a",
                    Some("10.1.0.0/24"),
                    251,
                )],
                ..Vpc::default()
            },
        ],
    }];
    let http = http();
    assert_eq!(
        post(&http, &receiver.hook_url(), &Signed::of(&e)).await.0,
        200
    );
    let put = |body: Value, headers: Vec<(&'static str, String)>| {
        let mut req = http
            .put(format!("{base}/api/links/{link}/selection"))
            .json(&body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let bearer = || vec![("authorization", format!("Bearer {TOKEN}"))];
    let pick = |region: &str, vpc: &str, subnets: &[&str]| json!({"region": region, "vpcId": vpc, "subnetIds": subnets});
    for (body, words) in [
        (
            pick("eu-west-1", "vpc-11111111", &["subnet-aaaaaaaa"]),
            "region: eu-west-1",
        ),
        (
            pick("us-west-2", "vpc-33333333", &["subnet-aaaaaaaa"]),
            "vpcId: vpc-33333333",
        ),
        (
            pick("us-west-2", "vpc-11111111", &[]),
            "subnetIds: pick at least one",
        ),
        (
            pick("us-west-2", "vpc-11111111", &["subnet-eeeeeeee"]),
            "subnetIds[0]: subnet-eeeeeeee is not a subnet of vpc-11111111",
        ),
        (
            pick(
                "us-west-2",
                "vpc-11111111",
                &["subnet-aaaaaaaa", "subnet-bbbbbbbb"],
            ),
            "subnetIds[1]: subnet-bbbbbbbb cannot be used: 3 free addresses",
        ),
        (
            pick("us-west-2", "vpc-11111111", &["subnet-cccccccc"]),
            "IPv6-only",
        ),
        (
            pick(
                "us-west-2",
                "vpc-11111111",
                &["subnet-aaaaaaaa", "subnet-aaaaaaaa"],
            ),
            "listed twice",
        ),
        (json!({"vpc": "x"}), "the body must be"),
    ] {
        let (status, message) = put(body.clone(), bearer()).await;
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(words), "{body}: {message}");
    }
    let good = pick(
        "us-west-2",
        "vpc-11111111",
        &["subnet-dddddddd", "subnet-aaaaaaaa"],
    );
    assert_eq!(put(good.clone(), bearer()).await.0, 200);
    let (_, l) = get(&http, &format!("{base}/api/links/{link}"), Some(TOKEN)).await;
    assert_eq!(l["selection"], good);
    assert_eq!(l["minFreeIps"], 16);
    assert_eq!(
        serde_json::from_value::<Vec<RegionInventory>>(l["inventory"].clone()).unwrap(),
        e.data.inventory,
        "the inventory as stored"
    );
    // Browsers get it compressed (a 10 000-subnet inventory is megabytes of JSON).
    let gz = http
        .get(format!("{base}/api/links/{link}"))
        .bearer_auth(TOKEN)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");

    // A browser session: log in, then changes need the page's CSRF token as well as the cookie.
    let browser = no_redirects();
    let r = browser.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let r = browser
        .post(format!("{base}/login"))
        .form(&[("token", "not-the-token-at-all")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = browser
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(TOKEN),
        "the cookie is not the token itself"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = browser
        .get(format!("{base}/links/{link}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // The headers are one layer over the whole console: errors and assets carry them too, and an asset
    // keeps its own caching.
    let missing = browser
        .get(format!("{base}/links/no-such-link"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-frame-options"], "DENY");
    assert_eq!(missing.headers()["content-security-policy"], csp.as_str());
    let script = browser
        .get(format!("{base}/console/assets/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.headers()["cache-control"], "no-cache");
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    let csrf = html
        .split("data-csrf=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let other = pick("us-west-2", "vpc-22222222", &["subnet-eeeeeeee"]);
    let (status, message) = put(other.clone(), vec![("cookie", cookie.clone())]).await;
    assert_eq!(status, 403, "{message}");
    let (status, _) = put(
        other.clone(),
        vec![
            ("cookie", cookie.clone()),
            ("x-csrf-token", "forged".into()),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let (status, message) = put(
        other.clone(),
        vec![("cookie", cookie.clone()), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(status, 200, "{message}");
    let (status, _) = put(other, vec![]).await;
    assert_eq!(status, 401, "neither a token nor a session");

    // An unlinked link's network can no longer be changed.
    let unlinked = event_at(
        "unlinked",
        link_stack,
        "msg_sel_2",
        "2026-11-29T13:00:00.000Z",
    );
    assert_eq!(
        post(&http, &receiver.hook_url(), &Signed::of(&unlinked))
            .await
            .0,
        200
    );
    let (status, message) = put(good, bearer()).await;
    assert_eq!(status, 409, "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_only_loopback_hosts_are_served_and_nothing_loads_from_elsewhere() {
    let receiver = Receiver::start(&support::sqlite_url("console-open"), &[]);
    let base = &receiver.url;
    let client = no_redirects();
    let ok = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // A page on another site resolving its own name to 127.0.0.1 (DNS rebinding) sends its own Host.
    for path in ["/", "/api/links"] {
        let r = client
            .get(format!("{base}{path}"))
            .header("host", "attacker.example:8080")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    // Starting a link from a form needs the page's token: a cross-site form post cannot do it.
    let r = client
        .post(format!("{base}/console/requests"))
        .form(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let html = ok.text().await.unwrap();
    let csrf = html
        .split("data-csrf=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = client
        .post(format!("{base}/console/requests"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/requests/"));
    // Every asset is embedded: no page or asset refers to another origin.
    for path in [
        "/",
        "/console/assets/console.js",
        "/console/assets/console.css",
    ] {
        let body = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for origin in ["http://", "https://", "//fonts.", "cdn"] {
            assert!(!body.contains(origin), "{path} refers to {origin}");
        }
    }
}
