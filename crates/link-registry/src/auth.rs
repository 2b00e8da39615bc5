//! Who may read the registry and change what it holds.
//!
//! - With an API token: API clients send `Authorization: Bearer <token>`; browsers log in once with the
//!   token and get a console session: a random id (32 bytes from the OS's CSPRNG) in an HttpOnly,
//!   SameSite=Strict cookie. The database keeps only a keyed hash of it (`store::sessions`), shared by every
//!   receiver on the database, with its login time and last use: a session ends at logout, after
//!   `--session-idle` unused or `--session-lifetime` after its login. The hash key and the CSRF key derive
//!   from the API token, so changing the token ends every session.
//! - Without one: the registry listens on loopback only (`config` refuses anything else), and requests must
//!   name a loopback host, so a web page cannot reach it through DNS rebinding. A proxy in front would make
//!   every client "local" (nginx sends `Host: 127.0.0.1:…` by default), so a request that carries a proxy's
//!   headers is refused.
//! - Every state-changing request made with a cookie (or on loopback without a token) must also carry the
//!   page's CSRF token: the cookie is ambient, the token is not. A session's token is an HMAC of its id, so
//!   it belongs to that session; on loopback it is random per process. The login page carries none.
//! - Failed logins are throttled per client (`client`): [`LOGIN_FAILURES`] per [`LOGIN_WINDOW`], counted in
//!   this process's memory for at most [`LOGIN_CLIENTS`] clients (see [`LoginThrottle`] for why not in the
//!   database).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderName};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use ipnet::Ipv6Net;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::client::{self, Client};
use crate::config::SessionLimits;
use crate::store::{now_millis, StoreError};
use crate::App;

pub(crate) const SESSION_COOKIE: &str = "link_console";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Random bytes in a session id (base64url: 43 characters).
const SESSION_ID_BYTES: usize = 32;
/// Failed logins a client may make per [`LOGIN_WINDOW`]; then it waits for the window to end.
pub(crate) const LOGIN_FAILURES: u32 = 5;
pub(crate) const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Clients whose failed logins are remembered at once (a few hundred KiB at most).
pub(crate) const LOGIN_CLIENTS: usize = 4096;
/// How often each receiver deletes the sessions that have expired.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// How a request is allowed in.
#[derive(Clone)]
pub(crate) enum Access {
    Bearer,
    /// A console session: its stored hash (to end it) and its pages' CSRF token.
    Session {
        hash: String,
        csrf: String,
    },
    /// No token configured: loopback only.
    Loopback,
}

/// Why a request is not let in.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No bearer token, session or loopback host.
    NotSignedIn,
    /// No API token configured, and the request came through a proxy (it carries this header).
    BehindProxy(HeaderName),
    /// Sessions could not be read.
    Unavailable(StoreError),
}

impl Refused {
    pub(crate) fn proxy_message(header: &HeaderName) -> String {
        format!(
            "this request came through a proxy (it carries {header}): behind a proxy the registry needs \
             --api-token, because without one it serves anyone whose request names a loopback host"
        )
    }
}

/// Keys, limits and the login throttle of console sessions.
pub(crate) struct Sessions {
    /// Derived from the API token (so every receiver with that token has them); random without one
    /// (loopback mode has no sessions).
    keys: SessionKeys,
    /// The CSRF token of loopback mode, random per process.
    loopback_csrf: String,
    limits: SessionLimits,
    /// Cookies are Secure for every client (the public URL is https).
    https_origin: bool,
    pub(crate) throttle: LoginThrottle,
}

struct SessionKeys {
    /// Hashes session ids before they reach the database.
    id: Vec<u8>,
    /// Makes a session's CSRF token from its id.
    csrf: Vec<u8>,
}

fn mac(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    B64URL.encode(mac.finalize().into_bytes())
}

impl Sessions {
    pub(crate) fn new(api_token: Option<&str>, limits: SessionLimits, https_origin: bool) -> Self {
        let secret = api_token.map_or_else(|| random_bytes(32), |t| t.as_bytes().to_vec());
        let keys = SessionKeys {
            id: mac(&secret, b"link-registry console session id v2").into_bytes(),
            csrf: mac(&secret, b"link-registry console csrf v2").into_bytes(),
        };
        Self {
            keys,
            loopback_csrf: B64URL.encode(random_bytes(32)),
            limits,
            https_origin,
            throttle: LoginThrottle::default(),
        }
    }

    fn lifetime_ms(&self) -> i64 {
        millis(self.limits.lifetime)
    }

    fn idle_ms(&self) -> i64 {
        millis(self.limits.idle)
    }

    /// A session's last use is written at most this often (a write per page view would be wasted): the
    /// idle limit may end a session this much early.
    fn touch_ms(&self) -> i64 {
        millis((self.limits.idle / 4).min(Duration::from_secs(60)))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Random bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the operating system's random source works");
    b
}

/// `n` random bytes as lowercase hex (names: receivers, lease owners, stack suffixes).
pub(crate) fn random_hex(n: usize) -> String {
    link_contract::hex::encode(&random_bytes(n))
}

fn eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The session id a browser sent, if it has the shape of one (anything else costs no database read).
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether the request names a loopback host (what a DNS-rebinding page cannot do).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How this request may come in, if at all.
pub(crate) async fn access(app: &App, headers: &HeaderMap) -> Result<Access, Refused> {
    let Some(token) = &app.api_token else {
        if let Some(h) = client::proxy_header(headers) {
            return Err(Refused::BehindProxy(h.clone()));
        }
        return if loopback_host(headers) {
            Ok(Access::Loopback)
        } else {
            Err(Refused::NotSignedIn)
        };
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| eq(b, token)) {
        return Ok(Access::Bearer);
    }
    let Some(id) = session_id(headers) else {
        return Err(Refused::NotSignedIn);
    };
    let s = &app.sessions;
    let hash = mac(&s.keys.id, id.as_bytes());
    let live = app
        .store
        .live_session(
            &hash,
            now_millis(),
            s.lifetime_ms(),
            s.idle_ms(),
            s.touch_ms(),
        )
        .await
        .map_err(Refused::Unavailable)?;
    if !live {
        return Err(Refused::NotSignedIn);
    }
    Ok(Access::Session {
        hash,
        csrf: mac(&s.keys.csrf, id.as_bytes()),
    })
}

/// Whether a login form's token is the API token.
pub(crate) fn token_matches(app: &App, given: &str) -> bool {
    app.api_token.as_deref().is_some_and(|t| eq(given, t))
}

/// Starts a session for `client` (whose token was right): the `Set-Cookie` value that carries it.
pub(crate) async fn start_session(app: &App, client: &Client) -> Result<String, StoreError> {
    let s = &app.sessions;
    let id = B64URL.encode(random_bytes(SESSION_ID_BYTES));
    let now = now_millis();
    // Expired sessions go when someone logs in, as well as every PURGE_EVERY.
    app.store
        .purge_sessions(now, s.lifetime_ms(), s.idle_ms())
        .await?;
    app.store
        .create_session(&mac(&s.keys.id, id.as_bytes()), now)
        .await?;
    let cookie = Cookie::build((SESSION_COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(s.https_origin || client.https)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(s.limits.lifetime.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    Ok(cookie.to_string())
}

/// Ends the session of `access` (if it is one) in the database.
pub(crate) async fn end_session(app: &App, access: &Access) -> Result<(), StoreError> {
    if let Access::Session { hash, .. } = access {
        app.store.delete_session(hash).await?;
    }
    Ok(())
}

/// The `Set-Cookie` value that removes the session cookie from the browser.
pub(crate) fn clear_cookie() -> String {
    Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// The CSRF token a page served to this caller carries (none for bearer clients, which need none).
pub(crate) fn page_csrf<'a>(app: &'a App, access: &'a Access) -> Option<&'a str> {
    match access {
        Access::Bearer => None,
        Access::Session { csrf, .. } => Some(csrf),
        Access::Loopback => Some(&app.sessions.loopback_csrf),
    }
}

/// State-changing requests from a browser must carry the page's CSRF token (header or form field).
pub(crate) fn csrf_ok(app: &App, access: &Access, headers: &HeaderMap, form: Option<&str>) -> bool {
    let Some(expected) = page_csrf(app, access) else {
        return true;
    };
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form)
        .unwrap_or_default();
    eq(given, expected)
}

/// Deletes expired sessions every [`PURGE_EVERY`] until the registry stops (each receiver does; the
/// deletes are idempotent).
pub(crate) fn purge_expired(app: Arc<App>) {
    if app.api_token.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut closing = app.closing.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(PURGE_EVERY) => {}
                _ = closing.changed() => return,
            }
            let s = &app.sessions;
            match app
                .store
                .purge_sessions(now_millis(), s.lifetime_ms(), s.idle_ms())
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "expired console sessions deleted"),
                Err(e) => tracing::warn!(error = %e, "could not delete expired console sessions"),
            }
        }
    });
}

/// Failed logins per client, in this process's memory.
///
/// Why not in the database, shared by every receiver: a flood of failed logins from anyone would then be a
/// flood of writes to the database that stores deliveries, and n receivers allowing n × [`LOGIN_FAILURES`]
/// per minute changes nothing for a token of at least 16 characters (`config`). Memory is bounded by
/// [`LOGIN_CLIENTS`]: when full, windows that ended go first, then the oldest one.
/// An attempt is counted when it starts and forgiven when it succeeds, so a burst of parallel attempts
/// cannot pass the limit.
#[derive(Default)]
pub(crate) struct LoginThrottle {
    clients: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    attempts: u32,
}

/// The key of a client: its address, or its /64 for IPv6 (one host usually has a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => Ipv6Net::new(v6, 64)
            .map(|n| IpAddr::V6(n.network()))
            .unwrap_or(ip),
        v4 => v4,
    }
}

impl LoginThrottle {
    /// Counts an attempt by `ip`, or says how long it must wait before its next one.
    pub(crate) fn attempt(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if !clients.contains_key(&key) && clients.len() >= LOGIN_CLIENTS {
            clients.retain(|_, w| now.duration_since(w.started) < LOGIN_WINDOW);
            if clients.len() >= LOGIN_CLIENTS {
                if let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| *k)
                {
                    clients.remove(&oldest);
                }
            }
        }
        let w = clients.entry(key).or_insert(Window {
            started: now,
            attempts: 0,
        });
        if now.duration_since(w.started) >= LOGIN_WINDOW {
            *w = Window {
                started: now,
                attempts: 0,
            };
        }
        if w.attempts >= LOGIN_FAILURES {
            return Err(LOGIN_WINDOW.saturating_sub(now.duration_since(w.started)));
        }
        w.attempts += 1;
        Ok(())
    }

    /// `ip` logged in: its failures are forgotten.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.remove(&client_key(ip));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

/// Whole seconds for `Retry-After`, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_throttle_counts_per_client_and_forgets_after_its_window() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..LOGIN_FAILURES {
            assert!(t.attempt(ip("198.51.100.1"), start).is_ok());
        }
        let wait = t
            .attempt(ip("198.51.100.1"), start + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert_eq!(retry_after_secs(wait), 40);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        // Another client is not affected; the window's end forgives.
        assert!(t.attempt(ip("198.51.100.2"), start).is_ok());
        assert!(t.attempt(ip("198.51.100.1"), start + LOGIN_WINDOW).is_ok());
        // A success forgives at once.
        for _ in 1..LOGIN_FAILURES {
            t.attempt(ip("198.51.100.1"), start + LOGIN_WINDOW).unwrap();
        }
        assert!(t.attempt(ip("198.51.100.1"), start + LOGIN_WINDOW).is_err());
        t.succeeded(ip("198.51.100.1"));
        assert!(t.attempt(ip("198.51.100.1"), start + LOGIN_WINDOW).is_ok());
    }

    #[test]
    fn one_ipv6_host_is_one_client() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..LOGIN_FAILURES {
            t.attempt(ip(&format!("2001:db8:1:2::{i:x}")), now).unwrap();
        }
        assert!(t.attempt(ip("2001:db8:1:2:ffff::1"), now).is_err());
        assert!(t.attempt(ip("2001:db8:1:3::1"), now).is_ok());
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_clients() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(LOGIN_CLIENTS as u32 + 100) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.attempt(IpAddr::V4(a), now + Duration::from_millis(u64::from(i)))
                .unwrap();
        }
        assert_eq!(t.len(), LOGIN_CLIENTS);
        // The newest clients are still counted.
        let last = IpAddr::V4(std::net::Ipv4Addr::from(
            0x0a00_0000 + LOGIN_CLIENTS as u32 + 99,
        ));
        for _ in 1..LOGIN_FAILURES {
            t.attempt(last, now + Duration::from_secs(1)).unwrap();
        }
        assert!(t.attempt(last, now + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_session_cookie_must_have_the_shape_of_one() {
        let mut h = HeaderMap::new();
        let id = B64URL.encode([7u8; SESSION_ID_BYTES]);
        h.insert(
            header::COOKIE,
            format!("other=1; {SESSION_COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(session_id(&h), Some(id));
        h.insert(
            header::COOKIE,
            format!("{SESSION_COOKIE}=short").parse().unwrap(),
        );
        assert_eq!(session_id(&h), None);
        h.insert(
            header::COOKIE,
            format!("{SESSION_COOKIE}={}", "a".repeat(43))
                .parse()
                .unwrap(),
        );
        assert!(session_id(&h).is_some());
    }
}
