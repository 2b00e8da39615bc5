//! `link-receiver healthcheck`: asks the receiver on this host for `GET /healthz` and tells whether it
//! answered 2xx. A container built `FROM scratch` has no curl or shell, so its health check is the binary
//! itself. Blocking std I/O with deadlines: one request, no runtime needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The status line fits in this; more of the answer is never read.
const MAX_READ: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot connect to {addr}: {source} (is link-receiver running and listening there?)")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr} answered /healthz with HTTP {status} (503: the database is unreachable)")]
    Status { addr: SocketAddr, status: u16 },
    #[error("{addr} did not answer with HTTP: {problem}")]
    Protocol { addr: SocketAddr, problem: String },
}

/// Where to ask: the listen address, with an unspecified IP (0.0.0.0, [::]) replaced by loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks `addr` for `/healthz` within `timeout` in all; the status on 2xx.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<u16, HealthError> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HealthError::Timeout { addr, timeout })
    };
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            HealthError::Timeout { addr, timeout }
        }
        _ => HealthError::Connect { addr, source },
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?).map_err(io)?;
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: link-receiver-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < MAX_READ {
        stream.set_read_timeout(Some(left()?)).map_err(io)?;
        match stream.read(&mut buf).map_err(io)? {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    let status = parse_status(&answer).ok_or_else(|| HealthError::Protocol {
        addr,
        problem: match answer.is_empty() {
            true => "the connection closed without an answer".to_string(),
            false => format!(
                "unexpected status line {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(64)])
            ),
        },
    })?;
    match status {
        200..=299 => Ok(status),
        _ => Err(HealthError::Status { addr, status }),
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn parse_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `answer` (or nothing, holding the connection, when `None`).
    fn serve_once(answer: Option<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).unwrap();
            assert!(req[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
            match answer {
                Some(a) => {
                    let _ = s.write_all(a);
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        });
        addr
    }

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        assert_eq!(
            target("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            target("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            target("10.0.0.5:9000".parse().unwrap()),
            "10.0.0.5:9000".parse().unwrap()
        );
    }

    #[test]
    fn only_2xx_is_healthy() {
        let ok = serve_once(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert_eq!(check(ok, Duration::from_secs(2)).unwrap(), 200);
        let down = serve_once(Some(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"));
        let e = check(down, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, HealthError::Status { status: 503, .. }), "{e}");
        let garbage = serve_once(Some(b"SSH-2.0-OpenSSH\r\n"));
        let e = check(garbage, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, HealthError::Protocol { .. }), "{e}");
        let closed = serve_once(Some(b""));
        assert!(matches!(
            check(closed, Duration::from_secs(2)).unwrap_err(),
            HealthError::Protocol { .. }
        ));
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_is_named() {
        let silent = serve_once(None);
        let started = Instant::now();
        let e = check(silent, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, HealthError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = check(port, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, HealthError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    }
}
