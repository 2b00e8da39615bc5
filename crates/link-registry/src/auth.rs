//! Who may read the registry and change what it holds.
//!
//! - With an API token: API clients send `Authorization: Bearer <token>`; browsers log in once with the
//!   token and get an HttpOnly, SameSite=Strict session cookie derived from it.
//! - Without one: the registry listens on loopback only (`config` refuses anything else), and requests must
//!   name a loopback host, so a web page cannot reach it through DNS rebinding.
//! - Every state-changing request made with a cookie (or on loopback without a token) must also carry the
//!   page's CSRF token: the cookie is ambient, the token is not.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::App;

pub(crate) const SESSION_COOKIE: &str = "link_console";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// A console session lasts this long, then the token is asked for again.
const SESSION_SECS: u64 = 12 * 3600;

/// How a request is allowed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Bearer,
    Session,
    /// No token configured: loopback only.
    Loopback,
}

/// Values derived once from the API token (or, without one, from a random key for this process).
pub(crate) struct Keys {
    session: String,
    csrf: String,
    secure_cookie: bool,
}

impl Keys {
    pub(crate) fn new(api_token: Option<&str>, secure_cookie: bool) -> Self {
        let key: Vec<u8> = match api_token {
            Some(t) => t.as_bytes().to_vec(),
            None => random_bytes(32),
        };
        let derive = |label: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            mac.update(label.as_bytes());
            B64URL.encode(mac.finalize().into_bytes())
        };
        Self {
            session: derive("link-registry console session v1"),
            csrf: derive("link-registry console csrf v1"),
            secure_cookie,
        }
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The `Set-Cookie` value that starts a session.
    pub(crate) fn session_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{}",
            self.session,
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    pub(crate) fn clear_cookie(&self) -> String {
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// Random bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the operating system's random source works");
    b
}

fn eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
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
pub(crate) fn access(app: &App, headers: &HeaderMap) -> Option<Access> {
    let Some(token) = &app.api_token else {
        return loopback_host(headers).then_some(Access::Loopback);
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| eq(b, token)) {
        return Some(Access::Bearer);
    }
    cookie(headers, SESSION_COOKIE)
        .is_some_and(|c| eq(c, &app.keys.session))
        .then_some(Access::Session)
}

/// Whether a login form's token is the API token.
pub(crate) fn token_matches(app: &App, given: &str) -> bool {
    app.api_token.as_deref().is_some_and(|t| eq(given, t))
}

/// State-changing requests from a browser must carry the page's CSRF token (header or form field).
pub(crate) fn csrf_ok(app: &App, access: Access, headers: &HeaderMap, form: Option<&str>) -> bool {
    if access == Access::Bearer {
        return true;
    }
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form)
        .unwrap_or_default();
    eq(given, &app.keys.csrf)
}
