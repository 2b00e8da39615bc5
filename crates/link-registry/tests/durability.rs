//! Nothing acknowledged is lost, nothing is stored twice: `kill -9` in the middle of a stream of
//! deliveries with retries, and two receivers on one PostgreSQL given the same deliveries at once.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use link_contract::parts;
use serde_json::Value;
use support::{event_at, get, http, post, Postgres, Receiver, Signed};

const TOKEN: &str = "durability-token-0123456789";

/// Every link the API lists (all pages).
async fn all_links(base: &str) -> Vec<Value> {
    let http = http();
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let url = format!("{base}/api/links?limit=500{after}");
        let (status, page) = get(&http, &url, Some(TOKEN)).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["links"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => return out,
        }
    }
}

/// Sends `d` until it gets a 2xx (retrying refused connections and 5xx, as the function does); returns
/// how many attempts that took.
async fn deliver_until_acked(
    http: &reqwest::Client,
    url: &str,
    d: &Signed,
    until: Instant,
) -> usize {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, message) = post(http, url, d).await;
        if (200..300).contains(&status) {
            return attempts;
        }
        assert!(
            status == 0 || status >= 500,
            "only outages may refuse a valid delivery: {status} {message}"
        );
        assert!(Instant::now() < until, "{} was never acknowledged", d.id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_nothing_acknowledged() {
    let database = support::sqlite_url("crash");
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let hook = format!("http://{listen}/hooks/account-link");
    let receiver = Receiver::start_on(&database, &listen, &["--api-token", TOKEN]);
    const N: usize = 400;
    let deliveries: Vec<Signed> = (0..N)
        .map(|i| {
            let e = event_at(
                "linked",
                &format!("link-{i:032x}"),
                &format!("msg_crash_{i}"),
                "2026-11-29T12:00:00.000Z",
            );
            Signed::of(&e)
        })
        .collect();
    let deliveries = Arc::new(deliveries);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let retried = Arc::new(Mutex::new(BTreeSet::new()));
    let until = Instant::now() + Duration::from_secs(120);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (deliveries, acked, retried, hook) = (
                deliveries.clone(),
                acked.clone(),
                retried.clone(),
                hook.clone(),
            );
            tokio::spawn(async move {
                let http = http();
                for i in (w..N).step_by(8) {
                    let attempts = deliver_until_acked(&http, &hook, &deliveries[i], until).await;
                    acked.lock().unwrap().insert(i);
                    if attempts > 1 {
                        retried.lock().unwrap().insert(i);
                    }
                }
            })
        })
        .collect();
    // Let a good share through, then kill the receiver without warning and start it again.
    while acked.lock().unwrap().len() < N / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before_kill: BTreeSet<usize> = acked.lock().unwrap().clone();
    receiver.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receiver = Receiver::start_on(&database, &listen, &["--api-token", TOKEN]);
    for w in workers {
        w.await.unwrap();
    }
    let retried = retried.lock().unwrap().clone();
    assert!(
        !retried.is_empty(),
        "some deliveries met the crash and were retried"
    );
    assert_eq!(acked.lock().unwrap().len(), N);

    let links = all_links(&receiver.url).await;
    let stored: BTreeSet<String> = links
        .iter()
        .map(|l| l["linkId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(links.len(), N, "one link per delivery, none twice");
    for i in &before_kill {
        assert!(
            stored.contains(&support::link_id(&format!("link-{i:032x}"))),
            "delivery {i} was acknowledged before the kill"
        );
    }
    // Each link has exactly one event in its history.
    let http = http();
    for i in retried.iter().take(20) {
        let (_, events) = get(
            &http,
            &format!(
                "{}/api/links/{}/events",
                receiver.url,
                support::link_id(&format!("link-{i:032x}"))
            ),
            Some(TOKEN),
        )
        .await;
        assert_eq!(
            events["events"].as_array().unwrap().len(),
            1,
            "retried delivery {i} stored once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_receivers_on_one_postgres_store_each_delivery_once() {
    let pg = Postgres::start();
    let db = pg.database("shared");
    let a = Receiver::start(&db, &["--api-token", TOKEN]);
    let b = Receiver::start(&db, &["--api-token", TOKEN]);
    let http = http();
    const N: usize = 150;
    let mut all: Vec<Signed> = (0..N)
        .map(|i| {
            Signed::of(&event_at(
                "linked",
                &format!("link-{i:032x}"),
                &format!("msg_pair_{i}"),
                "2026-11-29T12:00:00.000Z",
            ))
        })
        .collect();
    // And a split event whose parts both receivers get at once.
    let mut big = event_at(
        "linked",
        "link-big",
        "msg_pair_big",
        "2026-11-29T12:00:00.000Z",
    );
    let vpc = big.data.inventory[0].vpcs[0].clone();
    big.data.inventory[0].vpcs = (0..200)
        .map(|v| link_contract::inventory::Vpc {
            vpc_id: format!("vpc-{v:017x}"),
            ..vpc.clone()
        })
        .collect();
    let messages = parts::split(&big, 32 * 1024);
    assert!(messages.len() > 2);
    all.extend(
        messages
            .iter()
            .map(|m| Signed::raw(&m.delivery_id, m.json.clone())),
    );

    let mut stored_answers = 0;
    let (hook_a, hook_b) = (a.hook_url(), b.hook_url());
    for d in &all {
        let (ra, rb) = tokio::join!(post(&http, &hook_a, d), post(&http, &hook_b, d));
        assert_eq!((ra.0, rb.0), (200, 200), "{} / {}", ra.1, rb.1);
        stored_answers += [&ra.1, &rb.1]
            .iter()
            .filter(|m| !m.contains("duplicate"))
            .count();
    }
    assert_eq!(
        stored_answers,
        all.len(),
        "exactly one receiver stored each delivery"
    );
    assert_eq!(
        pg.query("shared", "SELECT count(*) FROM events"),
        all.len().to_string()
    );
    assert_eq!(
        pg.query("shared", "SELECT count(*) FROM links"),
        (N + 1).to_string()
    );
    let (_, big_link) = get(
        &http,
        &format!("{}/api/links/{}", b.url, support::link_id("link-big")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        big_link["vpcCount"], 200,
        "the split event was reassembled once, completely"
    );
}

/// The receiver's writers on PostgreSQL commit batches at once: every delivery is stored once, each link
/// ends at its newest event whatever order the batches committed in, and no two batches deadlock on the
/// links they share (each statement locks its rows in key order).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_batches_on_postgres_store_once_in_order_without_deadlocks() {
    use futures::StreamExt;
    let pg = Postgres::start();
    let db = pg.database("writers");
    let receiver = Receiver::start(&db, &["--api-token", TOKEN]);
    let http = http();
    let hook = receiver.hook_url();
    const LINKS: usize = 6;
    const PER_LINK: usize = 60;
    // Event k of every link, links in turn; every other round in reverse link order, so that batches
    // formed from the queue name the same links in opposite orders.
    let mut all = Vec::new();
    for k in 0..PER_LINK {
        let mut round: Vec<Signed> = (0..LINKS)
            .map(|l| {
                Signed::of(&event_at(
                    "linked",
                    &format!("link-w{l}"),
                    &format!("msg_w{l}_{k:03}"),
                    &format!("2026-11-29T12:{:02}:{:02}.000Z", k / 60, k % 60),
                ))
            })
            .collect();
        if k % 2 == 1 {
            round.reverse();
        }
        all.extend(round);
    }
    let answers: Vec<(u16, String)> = futures::stream::iter(all.iter())
        .map(|d| post(&http, &hook, d))
        .buffer_unordered(24)
        .collect()
        .await;
    for (status, message) in &answers {
        assert_eq!(*status, 200, "{message}");
    }
    assert_eq!(
        pg.query("writers", "SELECT count(DISTINCT webhook_id) FROM events"),
        (LINKS * PER_LINK).to_string()
    );
    for l in 0..LINKS {
        let link = support::link_id(&format!("link-w{l}"));
        assert_eq!(
            pg.query(
                "writers",
                &format!("SELECT last_event_id FROM links WHERE link_id = '{link}'")
            ),
            format!("msg_w{l}_{:03}", PER_LINK - 1),
            "link {l} reflects its newest event"
        );
    }
    // A deadlock aborts a batch, which the writer then stores one delivery at a time (still 200): only
    // its log says so.
    let logs = receiver.logs();
    assert!(
        !logs.contains("batch commit failed"),
        "a batch failed: {}",
        logs.lines()
            .find(|l| l.contains("batch commit failed"))
            .unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_that_fails_answers_503_and_the_retry_stores_it() {
    let mut pg = Postgres::start();
    let db = pg.database("outage");
    let receiver = Receiver::start(&db, &["--api-token", TOKEN]);
    let http = http();
    let hook = receiver.hook_url();
    let first = Signed::of(&event_at(
        "linked",
        "link-before",
        "msg_before",
        "2026-11-29T12:00:00.000Z",
    ));
    assert_eq!(post(&http, &hook, &first).await.0, 200);

    // The database goes away: the delivery is not acknowledged, and health says why.
    pg.stop();
    let during = Signed::of(&event_at(
        "linked",
        "link-during",
        "msg_during",
        "2026-11-29T12:01:00.000Z",
    ));
    let (status, message) = post(&http, &hook, &during).await;
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("retry"), "{message}");
    let (status, health) = get(&http, &format!("{}/healthz", receiver.url), None).await;
    assert_eq!(
        (status, health["database"].as_str()),
        (503, Some("unavailable"))
    );

    // It comes back: the sender's retry of the same delivery is stored, once.
    pg.restart();
    let until = Instant::now() + Duration::from_secs(60);
    deliver_until_acked(&http, &hook, &during, until).await;
    let (_, message) = post(&http, &hook, &during).await;
    assert!(message.contains("duplicate"), "{message}");
    assert_eq!(
        pg.query(
            "outage",
            "SELECT count(*) FROM events WHERE webhook_id = 'msg_during'"
        ),
        "1"
    );
    let (status, link) = get(
        &http,
        &format!(
            "{}/api/links/{}",
            receiver.url,
            support::link_id("link-during")
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, link["state"].as_str()), (200, Some("linked")));
}
