//! Console sessions and proxies, each attack sent as an attacker would: a proxy in front of a registry
//! without a token, forged forwarding headers, session ids reused after logout or across sessions, CSRF
//! tokens taken from the login page or from another session, expired sessions, a database reader using the
//! stored sessions, and brute force on /login. Sessions live in the database, so two receivers on one
//! PostgreSQL share them.

mod support;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use support::{Postgres, Receiver};

const TOKEN: &str = "sessions-token-0123456789abcdef";

/// A browser that sees redirects instead of following them, and sends the headers given.
struct Browser {
    http: reqwest::Client,
    base: String,
}

/// What a login answered.
struct Login {
    status: u16,
    /// `link_console=<id>`, ready for a Cookie header.
    cookie: Option<String>,
    /// The whole Set-Cookie value (its attributes).
    set_cookie: String,
    retry_after: Option<u64>,
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

impl Browser {
    fn of(receiver: &Receiver) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: receiver.url.clone(),
        }
    }

    async fn login_with(&self, token: &str, extra: &[(&str, &str)]) -> Login {
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .headers(headers(extra))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let set_cookie = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let cookie = set_cookie
            .split(';')
            .next()
            .filter(|c| c.starts_with("link_console=") && c.len() > "link_console=".len())
            .map(str::to_string);
        Login {
            status: r.status().as_u16(),
            cookie,
            set_cookie,
            retry_after: r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok()),
        }
    }

    /// Logs in with the right token; the session cookie.
    async fn login(&self) -> String {
        let l = self.login_with(TOKEN, &[]).await;
        assert_eq!(l.status, 303, "login: {}", l.set_cookie);
        l.cookie.expect("a session cookie")
    }

    /// GET of a page with this cookie: the status and the page.
    async fn page(&self, path: &str, cookie: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The accounts page opens with this cookie (no redirect to /login).
    async fn signed_in(&self, cookie: &str) -> bool {
        let (status, _) = self.page("/", cookie).await;
        assert!(status == 200 || status == 303, "{status}");
        status == 200
    }

    /// The CSRF token of this session's pages.
    async fn csrf(&self, cookie: &str) -> String {
        let (status, html) = self.page("/", cookie).await;
        assert_eq!(status, 200);
        csrf_in(&html).expect("a logged-in page carries its CSRF token")
    }

    /// Starts a link from the accounts page's form: the status (303 when done).
    async fn start_link(&self, cookie: &str, csrf: &str) -> u16 {
        self.http
            .post(format!("{}/console/requests", self.base))
            .header("cookie", cookie)
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn logout(&self, cookie: &str, csrf: Option<&str>) -> u16 {
        let mut req = self
            .http
            .post(format!("{}/logout", self.base))
            .header("cookie", cookie);
        if let Some(c) = csrf {
            req = req.form(&[("csrf", c)]);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

fn csrf_in(html: &str) -> Option<String> {
    let token = html.split("data-csrf=\"").nth(1)?.split('"').next()?;
    (!token.is_empty()).then(|| token.to_string())
}

/// The receiver's log as plain text (without terminal colours).
fn plain_logs(receiver: &Receiver) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in receiver.logs().chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (false, c) => out.push(c),
            (true, 'm') => escape = false,
            (true, _) => {}
        }
    }
    out
}

/// Waits (bounded) for the receiver's log to contain `what`: log lines are written by a thread of their own.
async fn logged(receiver: &Receiver, what: &str) -> bool {
    for _ in 0..50 {
        if plain_logs(receiver).contains(what) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_a_proxied_request_is_refused_naming_the_token() {
    // Loopback mode: "local" is the Host header. A TLS proxy on this machine sends nginx's default
    // `Host: 127.0.0.1:<port>`, and one of these headers.
    let receiver = Receiver::start(&support::sqlite_url("sessions-proxy"), &[]);
    let b = Browser::of(&receiver);
    let (status, _) = b.page("/", "").await;
    assert_eq!(status, 200, "loopback mode works without a proxy");
    for (path, header, value) in [
        ("/", "x-forwarded-for", "203.0.113.9"),
        ("/api/links", "x-forwarded-for", "203.0.113.9"),
        ("/api/links", "forwarded", "for=203.0.113.9;proto=https"),
        ("/", "via", "1.1 proxy.example"),
        ("/api/links", "x-forwarded-proto", "https"),
        ("/", "x-forwarded-host", "links.example.com"),
    ] {
        let r = b
            .http
            .get(format!("{}{path}", b.base))
            .header(header, value)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 403, "{path} with {header}: {body}");
        assert!(body.contains("--api-token"), "{path} with {header}: {body}");
    }
    // Starting a link through the proxy is refused too, CSRF token or not.
    let csrf = csrf_in(&b.page("/", "").await.1).unwrap();
    let r = b
        .http
        .post(format!("{}/console/requests", b.base))
        .header("x-forwarded-for", "203.0.113.9")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    // The test connects from 127.0.0.1. Here it is not a trusted proxy: its forwarding headers are the
    // client's own words, and the client is 127.0.0.1 whatever they say.
    let direct = Receiver::start(
        &support::sqlite_url("sessions-untrusted"),
        &["--api-token", TOKEN, "--trusted-proxy", "10.0.0.0/8"],
    );
    let b = Browser::of(&direct);
    for i in 0..5 {
        let forged = format!("198.51.100.{}", 10 + i);
        let l = b
            .login_with(
                "not-the-token-0123456789",
                &[
                    ("x-forwarded-for", forged.as_str()),
                    ("x-forwarded-proto", "https"),
                ],
            )
            .await;
        assert_eq!(l.status, 401, "failure {i}");
    }
    let l = b
        .login_with(TOKEN, &[("x-forwarded-for", "198.51.100.99")])
        .await;
    assert_eq!(
        l.status, 429,
        "a new X-Forwarded-For does not make a new client"
    );
    assert!(logged(&direct, "client=127.0.0.1").await);
    let logs = plain_logs(&direct);
    assert!(!logs.contains("198.51.100."), "{logs}");
    // Nor does it make the connection https: no Secure cookie from a claimed scheme.
    let other = Receiver::start(
        &support::sqlite_url("sessions-untrusted-https"),
        &["--api-token", TOKEN],
    );
    let l = Browser::of(&other)
        .login_with(TOKEN, &[("x-forwarded-proto", "https")])
        .await;
    assert_eq!(l.status, 303);
    assert!(!l.set_cookie.contains("Secure"), "{}", l.set_cookie);

    // Here 127.0.0.1 is the load balancer: the client is the right-most address it did not add itself.
    let proxied = Receiver::start(
        &support::sqlite_url("sessions-trusted"),
        &["--api-token", TOKEN, "--trusted-proxy", "127.0.0.1/32"],
    );
    let b = Browser::of(&proxied);
    let attacker = "198.51.100.1";
    for i in 0..5 {
        // What the attacker writes comes first; the proxy appends the address it saw.
        let chain = format!("192.0.2.{i}, {attacker}");
        let l = b
            .login_with(
                "not-the-token-0123456789",
                &[("x-forwarded-for", chain.as_str())],
            )
            .await;
        assert_eq!(l.status, 401, "failure {i}");
    }
    for chain in [
        attacker.to_string(),
        format!("192.0.2.200, {attacker}"),
        // A trusted hop at the right is skipped.
        format!("{attacker}, 127.0.0.1"),
    ] {
        let l = b.login_with(TOKEN, &[("x-forwarded-for", &chain)]).await;
        assert_eq!(l.status, 429, "{chain}: the attacker is throttled");
        let wait = l.retry_after.expect("Retry-After");
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    }
    // RFC 7239's header too, IPv6 and quoted.
    for _ in 0..5 {
        let l = b
            .login_with(
                "not-the-token-0123456789",
                &[("forwarded", "for=\"[2001:db8::7]:4711\";proto=http")],
            )
            .await;
        assert_eq!(l.status, 401);
    }
    let l = b
        .login_with(TOKEN, &[("forwarded", "for=\"[2001:db8::7]\"")])
        .await;
    assert_eq!(l.status, 429);
    assert!(
        logged(&proxied, "client=198.51.100.1 peer=127.0.0.1").await,
        "{}",
        plain_logs(&proxied)
    );
    // Another client behind the same proxy still logs in, and its https reaches the cookie.
    let l = b
        .login_with(
            TOKEN,
            &[
                ("x-forwarded-for", "203.0.113.50"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(l.status, 303);
    assert!(l.set_cookie.contains("Secure"), "{}", l.set_cookie);
    let l = b
        .login_with(
            TOKEN,
            &[("forwarded", "for=203.0.113.51;proto=https;by=10.0.0.1")],
        )
        .await;
    assert_eq!(l.status, 303);
    assert!(l.set_cookie.contains("Secure"), "{}", l.set_cookie);
    let l = b
        .login_with(
            TOKEN,
            &[
                ("x-forwarded-for", "203.0.113.52"),
                ("x-forwarded-proto", "http"),
            ],
        )
        .await;
    assert_eq!(l.status, 303);
    assert!(!l.set_cookie.contains("Secure"), "{}", l.set_cookie);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_random_own_their_csrf_token_and_end_at_logout() {
    let receiver = Receiver::start(
        &support::sqlite_url("sessions-basics"),
        &["--api-token", TOKEN],
    );
    let b = Browser::of(&receiver);

    // The login page is served to anyone: it carries no CSRF token.
    let (status, login_page) = b.page("/login", "").await;
    assert_eq!(status, 200);
    assert_eq!(csrf_in(&login_page), None, "{login_page}");

    // Two logins, two sessions, each with a token of its own.
    let a = b.login().await;
    let c = b.login().await;
    assert_ne!(a, c, "every login gets a session id of its own");
    let (csrf_a, csrf_c) = (b.csrf(&a).await, b.csrf(&c).await);
    assert_ne!(csrf_a, csrf_c);
    assert!(!login_page.contains(&csrf_a) && !login_page.contains(&csrf_c));
    assert_eq!(
        b.start_link(&c, &csrf_a).await,
        403,
        "session A's CSRF token with session B"
    );
    assert_eq!(b.start_link(&a, &csrf_a).await, 303);

    // Logout needs the CSRF token (a cross-site form cannot log an operator out) ...
    assert_eq!(b.logout(&a, None).await, 403);
    assert_eq!(b.logout(&a, Some(&csrf_c)).await, 403);
    assert!(b.signed_in(&a).await);
    // ... and ends the session on the server: the cookie, replayed, opens nothing.
    assert_eq!(b.logout(&a, Some(&csrf_a)).await, 303);
    assert!(!b.signed_in(&a).await);
    let (status, _) = b.page("/api/links", &a).await;
    assert_eq!(status, 401);
    assert_eq!(b.start_link(&a, &csrf_a).await, 303, "to the login form");
    assert!(b.signed_in(&c).await, "the other session goes on");
    // A made-up session id opens nothing either.
    assert!(
        !b.signed_in("link_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_expires_and_use_keeps_it_alive() {
    let receiver = Receiver::start(
        &support::sqlite_url("sessions-idle"),
        &[
            "--api-token",
            TOKEN,
            "--session-idle",
            "4",
            "--session-lifetime",
            "3600",
        ],
    );
    let b = Browser::of(&receiver);
    let s = b.login().await;
    // Used every 1.5 s, it outlives its idle limit counted from the login ...
    for _ in 0..4 {
        assert!(b.signed_in(&s).await);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert!(b.signed_in(&s).await, "6 s after login, used all along");
    // ... and left alone longer than the limit, it is refused.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        !b.signed_in(&s).await,
        "idle for longer than --session-idle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_expires_at_its_lifetime_even_in_use() {
    let receiver = Receiver::start(
        &support::sqlite_url("sessions-absolute"),
        &[
            "--api-token",
            TOKEN,
            "--session-idle",
            "3600",
            "--session-lifetime",
            "3",
        ],
    );
    let b = Browser::of(&receiver);
    let s = b.login().await;
    assert!(b.signed_in(&s).await);
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = b.signed_in(&s).await;
    }
    assert!(
        !b.signed_in(&s).await,
        "in use all along, but older than --session-lifetime"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_shared_by_receivers_on_postgres_stored_hashed_and_purged() {
    let pg = Postgres::start();
    let db = pg.database("sessions");
    let flags = ["--api-token", TOKEN, "--session-idle", "2"];
    let one = Receiver::start(&db, &flags);
    let two = Receiver::start(&db, &flags);
    let (b1, b2) = (Browser::of(&one), Browser::of(&two));

    // Made on receiver 1, used on receiver 2 (a load balancer sends each request anywhere).
    let s = b1.login().await;
    assert!(b2.signed_in(&s).await);
    let csrf = b1.csrf(&s).await;
    assert_eq!(b2.csrf(&s).await, csrf, "one session, one token");
    assert_eq!(b2.start_link(&s, &csrf).await, 303);

    // A database reader learns nothing it can use: the table holds no session id.
    let stored = pg.query("sessions", "SELECT id_hash FROM console_sessions");
    let id = s.trim_start_matches("link_console=");
    assert_eq!(stored.lines().count(), 1, "{stored}");
    assert!(!stored.contains(id), "{stored}");
    assert!(!b1.signed_in(&format!("link_console={stored}")).await);

    // Logged out on receiver 2, refused on receiver 1.
    assert_eq!(b2.logout(&s, Some(&csrf)).await, 303);
    assert!(!b1.signed_in(&s).await);
    assert_eq!(
        pg.query("sessions", "SELECT count(*) FROM console_sessions"),
        "0"
    );

    // An idle session is refused by both, and purged.
    let idle = b2.login().await;
    assert!(b1.signed_in(&idle).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!b1.signed_in(&idle).await);
    assert!(!b2.signed_in(&idle).await);
    let fresh = b1.login().await;
    assert_eq!(
        pg.query("sessions", "SELECT count(*) FROM console_sessions"),
        "1",
        "only the fresh session is left"
    );
    assert!(b2.signed_in(&fresh).await);
}

/// A connection to `receiver` from the loopback address `from` (all of 127.0.0.0/8 is loopback on Linux).
async fn connect_from(receiver: &Receiver, from: [u8; 4]) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let to = receiver.url.trim_start_matches("http://").parse().unwrap();
    socket.connect(to).await.unwrap()
}

/// How many of `conns` the receiver closes within `at_most` (reading what they are sent).
async fn closed_within(conns: &mut [tokio::net::TcpStream], at_most: Duration) -> usize {
    use tokio::io::AsyncReadExt;
    let ends = futures::future::join_all(conns.iter_mut().map(|tcp| async move {
        let mut buf = vec![0u8; 4096];
        let started = std::time::Instant::now();
        while started.elapsed() < at_most {
            match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                _ => {}
            }
        }
        false
    }))
    .await;
    ends.into_iter().filter(|closed| *closed).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_is_not_held_to_the_per_client_connection_cap() {
    // A load balancer carries many clients' connections: --trusted-proxy exempts it from the per-client
    // cap; any other peer is held to it.
    let receiver = Receiver::start(
        &support::sqlite_url("sessions-proxy-connections"),
        &[
            "--api-token",
            TOKEN,
            "--trusted-proxy",
            "127.0.0.2",
            "--max-connections-per-client",
            "2",
            "--header-timeout",
            "60",
        ],
    );
    let mut proxy = Vec::new();
    let mut other = Vec::new();
    for _ in 0..4 {
        proxy.push(connect_from(&receiver, [127, 0, 0, 2]).await);
        other.push(connect_from(&receiver, [127, 0, 0, 3]).await);
    }
    let (proxy_closed, other_closed) = tokio::join!(
        closed_within(&mut proxy, Duration::from_secs(3)),
        closed_within(&mut other, Duration::from_secs(3)),
    );
    assert_eq!(proxy_closed, 0, "the trusted proxy keeps its 4 connections");
    assert_eq!(other_closed, 2, "another peer is held to 2");
}
