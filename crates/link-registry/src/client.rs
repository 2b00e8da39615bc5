//! Who is at the other end of a request: the client's address (for limits and logs) and whether it came
//! over https (for Secure cookies).
//!
//! The address is the TCP peer's, unless the peer is a trusted proxy (`--trusted-proxy`): then it is read
//! from the forwarding headers the proxy adds. A proxy appends the address it saw to what the request
//! already carried, and a client can put anything there first, so the list is read from the right: the
//! first address that is not itself a trusted proxy is the client (what the outermost trusted proxy saw).
//! `X-Forwarded-For` (with `X-Forwarded-Proto`) is read when present, `Forwarded` (RFC 7239) otherwise:
//! every common proxy sets X-Forwarded-For (AWS ALB, nginx's `$proxy_add_x_forwarded_for`, HAProxy,
//! Envoy), and a client cannot remove one a proxy adds.
//! From any other peer these headers are the client's own words and count for nothing.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::App;

/// The client of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    /// The peer's address, or the client's as a trusted proxy reported it.
    pub(crate) ip: IpAddr,
    /// A trusted proxy says the client used https (the receiver itself speaks plain HTTP).
    pub(crate) https: bool,
    /// The TCP peer (the proxy, when there is one).
    pub(crate) peer: IpAddr,
}

impl Client {
    /// The client of a request from `peer` with these headers, trusting the forwarding headers only of a
    /// peer in `trusted`.
    pub(crate) fn of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let peer = peer.to_canonical();
        let direct = Self {
            ip: peer,
            https: false,
            peer,
        };
        if !is_trusted(trusted, peer) {
            return direct;
        }
        let hops = if headers.contains_key("x-forwarded-for") {
            let proto = joined(headers, "x-forwarded-proto")
                .rsplit(',')
                .map(str::trim)
                .find(|p| !p.is_empty())
                .map(str::to_string);
            joined(headers, "x-forwarded-for")
                .split(',')
                .map(|node| Hop {
                    ip: node_ip(node),
                    proto: proto.clone(),
                })
                .collect::<Vec<_>>()
        } else if headers.contains_key("forwarded") {
            forwarded_elements(&joined(headers, "forwarded"))
        } else {
            return direct;
        };
        // From the right, past the trusted proxies; an entry that names no address ("unknown", an
        // obfuscated node) stops the walk at the trusted proxy that wrote it.
        let mut ip = peer;
        let mut hop = None;
        for h in hops.iter().rev() {
            hop = Some(h);
            match h.ip {
                Some(addr) if is_trusted(trusted, addr) => ip = addr,
                Some(addr) => {
                    ip = addr;
                    break;
                }
                None => break,
            }
        }
        let https = hop
            .and_then(|h| h.proto.as_deref())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        Self { ip, https, peer }
    }
}

impl FromRequestParts<Arc<App>> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Infallible> {
        // The listener (server.rs) gives every request its peer; without one nothing is trusted.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(Self::of(peer, &parts.headers, &app.trusted_proxies))
    }
}

/// The first header that says a proxy handled this request, if any: `Forwarded`, `Via` or any
/// `X-Forwarded-*`.
pub(crate) fn proxy_header(headers: &HeaderMap) -> Option<&HeaderName> {
    headers.keys().find(|name| {
        let n = name.as_str();
        n == "forwarded" || n == "via" || n.starts_with("x-forwarded-")
    })
}

/// Whether `ip` (canonical: an IPv4-mapped IPv6 address as IPv4) is a trusted proxy.
pub(crate) fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Every value of a header that may be repeated, as one comma-separated list.
fn joined(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// One proxy's report: the address it saw (None when it names none) and the scheme the request came in with.
#[derive(Debug)]
struct Hop {
    ip: Option<IpAddr>,
    proto: Option<String>,
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`,
/// possibly quoted.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    let ip = node
        .parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            node.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })?;
    Some(ip.to_canonical())
}

/// RFC 7239 `Forwarded`: comma-separated elements of `;`-separated `key=value` pairs, values possibly
/// quoted strings (which may hold `,` `;` `=`).
fn forwarded_elements(value: &str) -> Vec<Hop> {
    split_unquoted(value, ',')
        .iter()
        .map(|element| {
            let mut hop = Hop {
                ip: None,
                proto: None,
            };
            for pair in split_unquoted(element, ';') {
                let Some((key, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = unquote(v.trim());
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.ip = node_ip(&v),
                    "proto" => hop.proto = Some(v),
                    _ => {}
                }
            }
            hop
        })
        .collect()
}

fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        let part = parts.last_mut().expect("never empty");
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
            continue;
        }
        part.push(c);
    }
    parts
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if c == '\\' && !escaped {
                    escaped = true;
                    continue;
                }
                escaped = false;
                out.push(c);
            }
            out
        }
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, pairs: &[(&str, &str)], trusted: &[&str]) -> Client {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        Client::of(peer.parse().unwrap(), &h, &trusted)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let c = client(
            "203.0.113.9",
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=198.51.100.2;proto=https"),
            ],
            &["10.0.0.0/16"],
        );
        assert_eq!(
            (c.ip, c.https, c.peer),
            (ip("203.0.113.9"), false, ip("203.0.113.9"))
        );
        let c = client("10.0.3.4", &[], &["10.0.0.0/16"]);
        assert_eq!((c.ip, c.https), (ip("10.0.3.4"), false));
    }

    #[test]
    fn through_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        let alb = ["10.0.0.0/16"];
        // What the client wrote comes first; each proxy appends what it saw.
        let c = client(
            "10.0.1.5",
            &[
                ("x-forwarded-for", "1.2.3.4, 198.51.100.7"),
                ("x-forwarded-proto", "https"),
            ],
            &alb,
        );
        assert_eq!(
            (c.ip, c.https, c.peer),
            (ip("198.51.100.7"), true, ip("10.0.1.5"))
        );
        // Two trusted hops (CloudFront-like edge in the VPC, then the ALB), repeated headers, ports.
        let c = client(
            "10.0.1.5",
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-for", "198.51.100.7:5123, 10.0.9.9"),
                ("x-forwarded-proto", "http, https"),
            ],
            &alb,
        );
        assert_eq!((c.ip, c.https), (ip("198.51.100.7"), true));
        // Every hop trusted: the left-most is the client. Garbage stops the walk at the proxy that wrote it.
        let c = client(
            "10.0.1.5",
            &[("x-forwarded-for", "10.0.7.7, 10.0.1.6")],
            &alb,
        );
        assert_eq!(c.ip, ip("10.0.7.7"));
        let c = client(
            "10.0.1.5",
            &[("x-forwarded-for", "1.2.3.4, unknown, 10.0.1.6")],
            &alb,
        );
        assert_eq!(c.ip, ip("10.0.1.6"));
        let c = client("10.0.1.5", &[("x-forwarded-for", "")], &alb);
        assert_eq!(c.ip, ip("10.0.1.5"));
        // An IPv4 peer seen through an IPv6 socket is the same address.
        let c = client(
            "::ffff:10.0.1.5",
            &[("x-forwarded-for", "::ffff:198.51.100.7")],
            &alb,
        );
        assert_eq!((c.ip, c.peer), (ip("198.51.100.7"), ip("10.0.1.5")));
        // No X-Forwarded-Proto: not https.
        let c = client("10.0.1.5", &[("x-forwarded-for", "198.51.100.7")], &alb);
        assert!(!c.https);
    }

    #[test]
    fn forwarded_is_read_like_x_forwarded_for_when_that_is_absent() {
        let lb = ["127.0.0.1/32", "2001:db8:ffff::/48"];
        let c = client(
            "127.0.0.1",
            &[(
                "Forwarded",
                "for=1.2.3.4;proto=http, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=\"[2001:db8:ffff::1]\", for=\"[2001:db8:ffff::2]\";proto=https",
            )],
            &lb,
        );
        assert_eq!((c.ip, c.https), (ip("2001:db8:cafe::17"), true));
        // Quoted commas and semicolons do not split; parameter names are case-insensitive.
        let c = client(
            "127.0.0.1",
            &[(
                "forwarded",
                "For=\"_hidden,;x\";Proto=https, FOR=198.51.100.3;PROTO=HTTPS",
            )],
            &lb,
        );
        assert_eq!((c.ip, c.https), (ip("198.51.100.3"), true));
        // An obfuscated node stops at the trusted proxy that reported it, with its scheme.
        let c = client(
            "127.0.0.1",
            &[("forwarded", "for=198.51.100.3, for=_gazonk;proto=https")],
            &lb,
        );
        assert_eq!((c.ip, c.https), (ip("127.0.0.1"), true));
        // X-Forwarded-For wins: a client behind an ALB cannot choose its address with Forwarded.
        let c = client(
            "127.0.0.1",
            &[
                ("forwarded", "for=192.0.2.1"),
                ("x-forwarded-for", "198.51.100.4"),
            ],
            &lb,
        );
        assert_eq!(c.ip, ip("198.51.100.4"));
    }

    #[test]
    fn proxy_headers_are_recognised() {
        for name in [
            "forwarded",
            "via",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "X-Forwarded-Port",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "x".parse().unwrap(),
            );
            assert!(proxy_header(&h).is_some(), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "x".parse().unwrap());
        h.insert("host", "127.0.0.1:8080".parse().unwrap());
        assert_eq!(proxy_header(&h), None);
    }
}
