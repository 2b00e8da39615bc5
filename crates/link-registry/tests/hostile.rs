//! What an unauthenticated client can do to the receiver: thousands of signature candidates, bodies over
//! the limit, headers and bodies that never end, answers never read, and a flood of forged deliveries while
//! valid ones keep being stored; and keep-alive connections that outlive the header timeout. Connections:
//! one client's share, heads and bodies trickled from many addresses, bodies under the minimum rate, a
//! stream of changes at the idle timeout and at the cap, room made only when needed (127.0.0.0/8 is
//! loopback on Linux: each address is another client). Also the Python `standardwebhooks` package's
//! signatures, accepted and refused as they should be.

mod support;

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{event_at, http, post, Receiver, Signed, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(receiver: &Receiver) -> String {
    receiver.url.trim_start_matches("http://").to_string()
}

/// Writes `head` and then nothing; returns what the server answered before closing, and whether it
/// closed within `within`.
async fn send_and_wait(
    receiver: &Receiver,
    head: &[u8],
    trickle: bool,
    within: Duration,
) -> (String, bool) {
    let mut tcp = TcpStream::connect(addr(receiver)).await.unwrap();
    tcp.write_all(head).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if started.elapsed() > within {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
        if trickle {
            // One more header byte every 200 ms: slow, but never finished.
            if tcp.write_all(b"x").await.is_err() {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
        }
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}

/// Sends `request` on a new connection while reading from it; everything the server wrote before the
/// connection ended (closed or reset), or within 10 s.
async fn answer_while_sending(receiver: &Receiver, request: Vec<u8>) -> String {
    let tcp = TcpStream::connect(addr(receiver)).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the connection open (no FIN) until the server ends it.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    // A refusal ends the connection; anything else (a keep-alive answer) is returned after a while.
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    writer.abort();
    String::from_utf8_lossy(&got).into_owned()
}

fn start() -> Receiver {
    Receiver::start(
        &support::sqlite_url("hostile"),
        &[
            "--header-timeout",
            "2",
            "--body-timeout",
            "2",
            "--max-body-bytes",
            "1048576",
        ],
    )
}

fn valid(i: usize) -> Signed {
    Signed::of(&event_at(
        "linked",
        &format!("link-{i:032x}"),
        &format!("msg_hostile_{i}"),
        "2026-11-29T12:00:00.000Z",
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_candidates_and_sizes_are_bounded() {
    let receiver = start();
    let http = http();
    let d = valid(0);
    let mut forged_headers = d.headers();
    let wrong = format!("v1,{}", "A".repeat(43) + "=");
    // 1 000 well-formed wrong candidates (48 KB of header), then the right one: only the first few are
    // examined, so the delivery is refused without 1 000 HMACs.
    let right = d
        .headers()
        .into_iter()
        .find(|(k, _)| *k == "webhook-signature")
        .unwrap()
        .1;
    forged_headers.retain(|(k, _)| *k != "webhook-signature");
    let send = |sig: String| {
        let mut req = http.post(receiver.hook_url()).body(d.body.clone());
        for (k, v) in &forged_headers {
            req = req.header(*k, v);
        }
        req.header("webhook-signature", sig).send()
    };
    let r = send(format!("{} {right}", vec![wrong.as_str(); 1000].join(" ")))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("no signature"));
    // 7 000 candidates (336 KB): refused by the listener before any handler runs. Written on a raw
    // connection that is read at the same time, so the 431 is seen even though the server closes the
    // connection before the client has finished writing its head.
    let head = format!(
        "POST /hooks/account-link HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n{}webhook-signature: {}\r\n\r\n",
        d.body.len(),
        forged_headers
            .iter()
            .filter(|(k, _)| *k != "content-type")
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>(),
        vec![wrong.as_str(); 7000].join(" ")
    );
    let answer =
        answer_while_sending(&receiver, [head.as_bytes(), d.body.as_bytes()].concat()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A body declared over the limit is refused before it is sent.
    let (answer, closed) = send_and_wait(
        &receiver,
        format!(
            "POST /hooks/account-link HTTP/1.1\r\nhost: x\r\ncontent-length: 3000000\r\n{}\r\n",
            d.headers()
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect::<String>()
        )
        .as_bytes(),
        false,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{answer} (closed: {closed})"
    );
    // And a chunked body that grows past it.
    let mut tcp = TcpStream::connect(addr(&receiver)).await.unwrap();
    let head = format!(
        "POST /hooks/account-link HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n{}\r\n",
        d.headers()
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..40 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    writer.abort();
    // The receiver is still serving.
    assert_eq!(post(&http, &receiver.hook_url(), &valid(1)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_and_bodies_that_never_end_are_cut_off() {
    let receiver = start();
    // A header that never ends (one byte every 200 ms): the connection is closed after the header timeout.
    let (answer, closed) = send_and_wait(
        &receiver,
        b"POST /hooks/account-link HTTP/1.1\r\nhost: x\r\nx-slow: ",
        true,
        Duration::from_secs(20),
    )
    .await;
    assert!(closed, "the connection is dropped (got {answer:?})");
    // A body that never ends: 408 after the body timeout.
    let d = valid(2);
    let head = format!(
        "POST /hooks/account-link HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n{}\r\n{}",
        d.body.len(),
        d.headers()
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>(),
        &d.body[..10]
    );
    let (answer, _) =
        send_and_wait(&receiver, head.as_bytes(), false, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        post(&http(), &receiver.hook_url(), &d).await.0,
        200,
        "the same delivery, sent whole, is stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_deliveries_are_stored_during_a_flood_of_forged_ones() {
    let receiver = start();
    let hook = receiver.hook_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // (installs the TLS provider that building a reqwest client needs)
    let _ = http();
    // 48 clients sending 1 MiB deliveries with forged signatures as fast as they can.
    let flood: Vec<_> = (0..48)
        .map(|c| {
            let (hook, stop, refused) = (hook.clone(), stop.clone(), refused.clone());
            tokio::spawn(async move {
                // 12 clients on each of 4 addresses (each address may hold 32 connections).
                let http = reqwest::Client::builder()
                    .local_address(std::net::IpAddr::from([127, 0, 0, 2 + (c % 4) as u8]))
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let body = "y".repeat(1_000_000);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http
                        .post(&hook)
                        .header("webhook-id", format!("msg_forged_{c}"))
                        .header("webhook-timestamp", support::now().to_string())
                        .header("webhook-signature", format!("v1,{}", "B".repeat(43) + "="))
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(r) = r {
                        assert_eq!(r.status(), 401);
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = http();
    for i in 0..40 {
        let (status, message) = post(&http, &hook, &valid(100 + i)).await;
        assert_eq!(
            status, 200,
            "valid delivery {i} during the flood: {message}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    assert!(
        refused.load(std::sync::atomic::Ordering::Relaxed) > 40,
        "the flood really ran"
    );
}

/// Signs `body` with the Python package.
fn python_signed(body: &str, secret: &str, id: &str, ts: u64) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(support::common::venv_bin("python"))
        .arg(root.join("scripts/webhook_sign.py"))
        .args([
            "--secret",
            secret,
            "--id",
            id,
            "--timestamp",
            &ts.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the project's .venv (make test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_signed_deliveries_are_accepted_or_refused() {
    let receiver = start();
    let token_free_api = format!("{}/api/links", receiver.url);
    let event: Value =
        serde_json::from_str(include_str!("../../../docs/examples/account.linked.json")).unwrap();
    let id = event["data"]["eventId"].as_str().unwrap().to_string();
    let link_id = event["data"]["physicalResourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let body = event.to_string();
    let now = support::now();
    let other_secret = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
    let http = http();
    let post = |headers: Value, body: String| {
        let mut req = http.post(receiver.hook_url()).body(body);
        for (k, v) in headers.as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let valid = python_signed(&body, SECRET, &id, now);
    let mut empty = valid.clone();
    empty["webhook-signature"] = "v1,".into();
    let cases = [
        (
            "tampered body",
            valid.clone(),
            body.replace("123456789012", "999999999999"),
            401,
            "no signature",
        ),
        (
            "wrong secret",
            python_signed(&body, other_secret, &id, now),
            body.clone(),
            401,
            "no signature",
        ),
        (
            "empty signature",
            empty,
            body.clone(),
            401,
            "no v1 signature",
        ),
        (
            "stale timestamp",
            python_signed(&body, SECRET, &id, now - 301),
            body.clone(),
            401,
            "outside the tolerance",
        ),
        (
            "not an event",
            python_signed("{}", SECRET, &id, now),
            "{}".into(),
            400,
            "not a link event",
        ),
        ("valid", valid.clone(), body.clone(), 200, "stored"),
        ("replay", valid.clone(), body.clone(), 200, "duplicate"),
    ];
    for (what, headers, body, want, words) in cases {
        let (status, message) = post(headers, body).await;
        assert_eq!(status, want, "{what}: {message}");
        assert!(message.contains(words), "{what}: {message}");
    }
    let (_, stored) = support::get(&http, &format!("{token_free_api}/{link_id}"), None).await;
    assert_eq!(
        stored["inventory"], event["data"]["inventory"],
        "the valid delivery is stored, once"
    );
    assert_eq!(
        http.get(receiver.hook_url()).send().await.unwrap().status(),
        405
    );
    assert!(!receiver
        .logs()
        .contains(SECRET.trim_start_matches("whsec_")));
}

/// Reads one answer (head and `content-length` body) from `tcp`; returns its head.
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return head;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed before the answer was complete");
        got.extend_from_slice(&buf[..n]);
    }
}

fn raw_delivery(d: &Signed) -> Vec<u8> {
    format!(
        "POST /hooks/account-link HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{}",
        d.body.len(),
        d.headers()
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>(),
        d.body
    )
    .into_bytes()
}

/// Sends valid delivery `i` on `tcp` and expects it stored (200).
async fn deliver(tcp: &mut TcpStream, i: usize) {
    tcp.write_all(&raw_delivery(&valid(i))).await.unwrap();
    let head = read_answer(tcp).await;
    assert!(head.starts_with("http/1.1 200"), "delivery {i}: {head}");
}

/// Seconds until the server closes `tcp` (reading and dropping whatever it sends).
async fn closed_after(tcp: &mut TcpStream, at_most: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    while started.elapsed() < at_most {
        match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_outlives_the_header_timeout_and_ends_at_the_idle_timeout() {
    let receiver = Receiver::start(
        &support::sqlite_url("idle"),
        &["--header-timeout", "1", "--idle-timeout", "6"],
    );
    let mut tcp = TcpStream::connect(addr(&receiver)).await.unwrap();
    deliver(&mut tcp, 300).await;
    // Idle for twice the header timeout, as a load balancer keeps its connections: still served.
    tokio::time::sleep(Duration::from_secs(2)).await;
    deliver(&mut tcp, 301).await;
    let idle_since = Instant::now();
    // Now idle. A new connection that sends nothing is opened 2 s later: with the header timeout (1 s)
    // it closes about 3 s into the idle one's wait, well before the idle one (6 s); were it given the
    // idle timeout instead it would close at about 8 s, after it. Orders of close times and lower bounds
    // only, each with seconds to spare: a slow machine can only make the closes seem later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut silent = TcpStream::connect(addr(&receiver)).await.unwrap();
    let (idle, silent) = tokio::join!(
        closed_at(&mut tcp, Duration::from_secs(30)),
        closed_at(&mut silent, Duration::from_secs(30))
    );
    let (idle, silent) = (
        idle.expect("the idle connection is closed at the idle timeout"),
        silent.expect("a silent new connection is closed at the header timeout"),
    );
    assert!(
        silent < idle,
        "the silent new connection (closed {:?} into the idle one's wait) outlived the idle one ({:?}): \
         it had the idle timeout, not the header timeout",
        silent - idle_since,
        idle - idle_since
    );
    assert!(
        idle - idle_since >= Duration::from_secs(3),
        "the idle connection closed after {:?}, not after the 6 s idle timeout",
        idle - idle_since
    );
}

/// When the server closes `tcp` (reading and dropping whatever it sends).
async fn closed_at(tcp: &mut TcpStream, at_most: Duration) -> Option<Instant> {
    closed_after(tcp, at_most).await.map(|_| Instant::now())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    let receiver = Receiver::start(&support::sqlite_url("unread"), &["--body-timeout", "2"]);
    let mut tcp = TcpStream::connect(addr(&receiver)).await.unwrap();
    // 4 000 pipelined requests for the 12 KB script (48 MB of answers), none of them read.
    let requests =
        b"GET /console/assets/console.js HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".repeat(4000);
    let (mut reader, mut writer) = tcp.split();
    let write = async {
        // The server stops reading while its answers wait, so this may never finish.
        let _ = tokio::time::timeout(Duration::from_secs(8), writer.write_all(&requests)).await;
    };
    let stalled = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::join!(write, stalled);
    // Whatever was queued arrives, then the connection is closed: far less than every answer.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received += n,
            Err(_) => panic!("the connection is still open after {:?}", started.elapsed()),
        }
    }
    assert!(
        received < 4000 * 11_000,
        "the server sent every answer ({received} bytes) instead of giving up"
    );
    drop(tcp);
    // The receiver still serves others.
    assert_eq!(
        post(&http(), &receiver.hook_url(), &valid(302)).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_the_longest_idle_connection_makes_room() {
    let receiver = Receiver::start(
        &support::sqlite_url("cap"),
        &["--max-connections", "2", "--idle-timeout", "60"],
    );
    let mut first = TcpStream::connect(addr(&receiver)).await.unwrap();
    deliver(&mut first, 400).await;
    let mut second = TcpStream::connect(addr(&receiver)).await.unwrap();
    deliver(&mut second, 401).await;
    // Both idle, the cap reached: a third client is served now, not when an idle limit runs out.
    let started = Instant::now();
    let mut third = TcpStream::connect(addr(&receiver)).await.unwrap();
    deliver(&mut third, 402).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the third client waited {:?}",
        started.elapsed()
    );
    // The connection idle the longest was the one closed; the other still serves.
    assert!(closed_after(&mut first, Duration::from_secs(2))
        .await
        .is_some());
    deliver(&mut second, 403).await;
}

// ---- connections: per-client cap, minimum body rate, streams, eviction decided when room is needed ----

/// A connection to `receiver` from the loopback address `from` (127.0.0.0/8 is all loopback on Linux, so
/// each address is another client).
async fn connect_from(receiver: &Receiver, from: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket
        .connect(addr(receiver).parse().unwrap())
        .await
        .unwrap()
}

/// What the server sent within `at_most`, and whether it then closed `tcp`.
async fn sent_within(tcp: &mut TcpStream, at_most: Duration) -> (String, bool) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut closed = false;
    while started.elapsed() < at_most {
        match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_holds_at_most_its_share_of_connections() {
    // Heads may take 60 s: nothing here ends by a time limit.
    let receiver = Receiver::start(
        &support::sqlite_url("per-client"),
        &["--header-timeout", "60"],
    );
    let mut held = Vec::new();
    for _ in 0..33 {
        held.push(connect_from(&receiver, [127, 0, 0, 2]).await);
    }
    // The default cap is 32 per client: exactly one of the 33 is refused, at once, with 429.
    let ends = futures::future::join_all(
        held.iter_mut()
            .map(|t| sent_within(t, Duration::from_secs(5))),
    )
    .await;
    let refused: Vec<_> = ends
        .iter()
        .filter(|(_, closed)| *closed)
        .map(|(sent, _)| sent)
        .collect();
    assert_eq!(refused.len(), 1, "connections closed: {refused:?}");
    assert!(refused[0].starts_with("HTTP/1.1 429"), "{}", refused[0]);
    // Another client still gets in, at once.
    let mut other = connect_from(&receiver, [127, 0, 0, 3]).await;
    deliver(&mut other, 500).await;
    // And the first client, once one of its connections ends, gets that one back (as soon as the
    // receiver has seen it end).
    let open = ends.iter().position(|(_, closed)| !closed).unwrap();
    drop(held.swap_remove(open));
    let mut answers = Vec::new();
    for _ in 0..50 {
        let mut tcp = connect_from(&receiver, [127, 0, 0, 2]).await;
        let _ = tcp.write_all(&raw_delivery(&valid(501))).await;
        let (sent, closed) = sent_within(&mut tcp, Duration::from_millis(500)).await;
        answers.push(sent.lines().next().unwrap_or_default().to_string());
        if !closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answers.last().map(String::as_str),
        Some("HTTP/1.1 200 OK"),
        "the client's 32nd connection is served again: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trickling_clients_on_many_addresses_do_not_block_a_delivery() {
    // Heads and bodies may take 60 s: only the per-client cap, eviction and the minimum body rate can
    // make room.
    let receiver = Receiver::start(
        &support::sqlite_url("trickle"),
        &["--header-timeout", "60", "--body-timeout", "60"],
    );
    let target = addr(&receiver);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // 16 clients (127.0.0.2 to 127.0.0.17), 40 connections each (more than the 512 the receiver serves at
    // once): half trickle a head, half a body, a byte every 500 ms; each reconnects when closed.
    let body_head = {
        let d = valid(600);
        format!(
            "POST /hooks/account-link HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n{}\r\n{{",
            d.headers()
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect::<String>()
        )
    };
    let mut attackers = Vec::new();
    for client in 2..=17u8 {
        for i in 0..40 {
            let (target, stop, refused) = (target.clone(), stop.clone(), refused.clone());
            let first: Vec<u8> = if i % 2 == 0 {
                b"POST /hooks/account-link HTTP/1.1\r\nhost: x\r\nx-slow: ".to_vec()
            } else {
                body_head.clone().into_bytes()
            };
            attackers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket
                        .bind(std::net::SocketAddr::from(([127, 0, 0, client], 0)))
                        .unwrap();
                    let Ok(mut tcp) = socket.connect(target.parse().unwrap()).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let mut ok = tcp.write_all(&first).await.is_ok();
                    let mut buf = [0u8; 1024];
                    while ok && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf))
                            .await
                        {
                            Ok(Ok(0)) | Ok(Err(_)) => ok = false,
                            Ok(Ok(n)) => {
                                if buf[..n].starts_with(b"HTTP/1.1 429") {
                                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                            Err(_) => ok = tcp.write_all(b"x").await.is_ok(),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
    }
    // Let every slot fill.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Five deliveries, each on a new connection, are stored long before any of the attack's time limits.
    let started = Instant::now();
    let delivered = tokio::time::timeout(Duration::from_secs(30), async {
        for i in 0..5 {
            let mut tcp = connect_from(&receiver, [127, 0, 0, 1]).await;
            deliver(&mut tcp, 610 + i).await;
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.abort();
    }
    assert!(
        delivered.is_ok(),
        "5 deliveries not stored within 30 s of trickling (took {:?})",
        started.elapsed()
    );
    assert!(
        refused.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the attack really exceeded the per-client cap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_slower_than_the_minimum_rate_is_cut_before_the_body_timeout() {
    let receiver = Receiver::start(&support::sqlite_url("rate"), &["--body-timeout", "60"]);
    let d = valid(700);
    let head = |d: &Signed| {
        format!(
            "POST /hooks/account-link HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n{}\r\n",
            d.body.len(),
            d.headers()
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect::<String>(),
        )
    };
    // A body trickled at 5 bytes/s (the default minimum is 1 KiB/s after a 5 s grace): 408 long before
    // the 60 s body timeout.
    let mut tcp = TcpStream::connect(addr(&receiver)).await.unwrap();
    tcp.write_all(head(&d).as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in d.body.bytes() {
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        let _ = tcp.write_all(&[byte]).await;
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&got);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?} (body timeout 60 s): {answer:?}",
        started.elapsed()
    );
    // A slow but honest client: half the body, a 3 s stall on a bad link, then the rest. Stored.
    let d = valid(701);
    let mut tcp = TcpStream::connect(addr(&receiver)).await.unwrap();
    let (first, rest) = d.body.split_at(d.body.len() / 2);
    tcp.write_all(format!("{}{first}", head(&d)).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tcp.write_all(rest.as_bytes()).await.unwrap();
    let answer = read_answer(&mut tcp).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
}

/// Reads from `tcp` until `what` has arrived (after whatever came before); false if the connection closed
/// or nothing came within `within`.
async fn read_until(tcp: &mut TcpStream, what: &str, within: Duration) -> bool {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains(what) {
                    return true;
                }
            }
            Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_changes_outlives_the_idle_timeout_and_is_not_evicted() {
    let receiver = Receiver::start(
        &support::sqlite_url("stream"),
        &["--idle-timeout", "2", "--max-connections", "2"],
    );
    // The console's live changes: an answer that streams.
    let mut stream = TcpStream::connect(addr(&receiver)).await.unwrap();
    stream
        .write_all(b"GET /console/changes HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_until(&mut stream, "text/event-stream", Duration::from_secs(10)).await,
        "the stream started"
    );
    // Three idle timeouts without a byte (keep-alive comments come every 15 s): still streaming.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut second = TcpStream::connect(addr(&receiver)).await.unwrap();
    deliver(&mut second, 800).await;
    assert!(
        read_until(&mut stream, "event: change", Duration::from_secs(10)).await,
        "the stream outlives the 2 s idle timeout and reports the delivery"
    );
    // At the cap (the stream and an idle keep-alive connection), a third client is served: the idle
    // connection makes room, never the stream.
    let mut third = TcpStream::connect(addr(&receiver)).await.unwrap();
    deliver(&mut third, 801).await;
    assert!(
        read_until(&mut stream, "event: change", Duration::from_secs(10)).await,
        "the stream is still there after the third client's delivery"
    );
    assert!(closed_after(&mut second, Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_connection_is_closed_for_a_room_request_made_when_none_was_idle() {
    let receiver = Receiver::start(
        &support::sqlite_url("stored-signal"),
        &["--max-connections", "2", "--header-timeout", "60"],
    );
    // The cap reached by two connections that are not idle (their heads have not arrived).
    let _first = TcpStream::connect(addr(&receiver)).await.unwrap();
    let second = TcpStream::connect(addr(&receiver)).await.unwrap();
    // A third client waits for room.
    let mut third = TcpStream::connect(addr(&receiver)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Room comes another way: the second client leaves. The third is served.
    drop(second);
    deliver(&mut third, 900).await;
    // Nobody needs room any more, so nothing is closed to make it: the third connection, now idle, keeps
    // serving.
    let (_, closed) = sent_within(&mut third, Duration::from_millis(1500)).await;
    assert!(
        !closed,
        "the third connection was closed while idle, though nobody needed room"
    );
    deliver(&mut third, 901).await;
}
