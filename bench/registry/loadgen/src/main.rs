//! The load process of the registry benchmark (`make bench`, bench/registry/run.py), separate from the
//! receivers it measures:
//!
//! - `gen`: writes N deliveries, signed once (Standard Webhooks, with link-contract's signer), to a JSONL
//!   file. Bodies and ids depend only on the event index, so every target gets byte-identical events; the
//!   signatures carry the time of generation, so a file is made right before each run (receivers accept
//!   5 minutes of skew, and the Python `standardwebhooks` package has that window hard-coded).
//! - `closed`: maximum throughput. C keep-alive connections, each sending the next event as soon as its
//!   previous answer arrives; only 2xx answers whose message says "stored" count.
//! - `open`: latency at a fixed offered rate. Request i is due at t0 + i/R whatever happened before it
//!   (a dispatcher thread keeps the timetable; a request waits for a free connection if there is none), and
//!   its latency is measured from that due time, so queueing is not hidden (no coordinated omission).
//!
//! Requests are rendered to bytes before the clock starts and written on plain TCP with HTTP/1.1, so the
//! load process spends little CPU of the two cores it shares with the receiver under test. Both load modes
//! write the webhook-ids that were acknowledged as stored (`--acked`), for the check in the database.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use link_contract::event::{EventType, LinkEvent};
use link_contract::signing::{sign, SigningSecret};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const USAGE: &str = "usage:
  registry-loadgen gen --examples DIR --out FILE --count N [--first I] [--links L] --secret whsec_...
  registry-loadgen closed --events FILE --url http://HOST:PORT/PATH --connections C [--warmup K] [--acked FILE]
  registry-loadgen open --events FILE --url http://HOST:PORT/PATH --rate R [--warmup K] [--connections C]
                        [--max-connections M] [--acked FILE]";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => generate(&Args::parse(&args[1..])),
        Some("closed") => runtime().block_on(closed(Args::parse(&args[1..]))),
        Some("open") => runtime().block_on(open(Args::parse(&args[1..]))),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("registry-loadgen: {e}");
            std::process::exit(2);
        }
    }
}

/// One thread for all connections: the load process should take as little of the machine as it can.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

struct Args(BTreeMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Self {
        let mut map = BTreeMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                eprintln!("registry-loadgen: unexpected argument {k}\n{USAGE}");
                std::process::exit(2);
            };
            let Some(v) = it.next() else {
                eprintln!("registry-loadgen: --{name} needs a value\n{USAGE}");
                std::process::exit(2);
            };
            map.insert(name.to_string(), v.clone());
        }
        Self(map)
    }

    fn str(&self, k: &str) -> Result<&str, String> {
        self.0
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("--{k} is required\n{USAGE}"))
    }

    fn num<T: std::str::FromStr>(&self, k: &str, default: Option<T>) -> Result<T, String> {
        match self.0.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v}")),
            None => default.ok_or_else(|| format!("--{k} is required\n{USAGE}")),
        }
    }
}

/// One pre-signed delivery, as the events file holds it.
#[derive(Serialize, Deserialize)]
struct Signed {
    id: String,
    ts: u64,
    sig: String,
    body: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest16(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes())[..16])
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (what the function writes).
fn rfc3339_millis(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `gen`: event i belongs to link i % L; a link's first event is account.linked, the rest account.updated;
/// timestamps grow with i (1 ms apart), so each is newer than the link's previous one.
fn generate(a: &Args) -> Result<String, String> {
    let dir = a.str("examples")?;
    let out = a.str("out")?;
    let count: u64 = a.num("count", None)?;
    let first: u64 = a.num("first", Some(0))?;
    let links: u64 = a.num("links", Some(1000))?;
    let secrets = SigningSecret::parse_list(a.str("secret")?)
        .map_err(|e| format!("--secret: the signing secret {e}"))?;
    let load = |kind: &str| -> Result<LinkEvent, String> {
        let path = format!("{dir}/account.{kind}.json");
        let raw = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        serde_json::from_slice(&raw).map_err(|e| format!("{path}: {e}"))
    };
    let (linked, updated) = (load("linked")?, load("updated")?);
    let template_account = linked.data.account_id.clone();
    // 2026-11-23T12:00:00Z, the examples' time.
    let base_ms: u64 = 1_795_435_200_000;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let file = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut w = BufWriter::new(file);
    let mut digest = Sha256::new();
    let mut bytes = 0usize;
    for i in first..first + count {
        let link = i % links;
        let mut e = if i < links {
            linked.clone()
        } else {
            updated.clone()
        };
        let account = format!("{:012}", 200_000_000_000u64 + link);
        let d = &mut e.data;
        d.event_id = format!("msg_{}", digest16(&format!("bench-event-{i}")));
        d.request_id = digest16(&format!("bench-request-{i}"));
        d.stack_id = d.stack_id.replace(&template_account, &account);
        // The receiver recomputes the link id from the stack, as the function derives it.
        d.physical_resource_id = link_contract::event::link_id(&d.stack_id, &d.logical_resource_id);
        for arn in d.roles.values_mut() {
            *arn = arn.replace(&template_account, &account);
        }
        d.account_id = account;
        e.timestamp = rfc3339_millis(base_ms + i);
        debug_assert!(matches!(
            e.event_type,
            EventType::Linked | EventType::Updated
        ));
        let body = serde_json::to_string(&e).map_err(|e| e.to_string())?;
        let id = e.data.delivery_id();
        digest.update(id.as_bytes());
        digest.update(b"\n");
        digest.update(body.as_bytes());
        digest.update(b"\n");
        bytes += body.len();
        let sig = sign(&secrets, &id, now, body.as_bytes());
        let line = serde_json::to_string(&Signed {
            id,
            ts: now,
            sig,
            body,
        })
        .map_err(|e| e.to_string())?;
        writeln!(w, "{line}").map_err(|e| format!("{out}: {e}"))?;
    }
    w.flush().map_err(|e| format!("{out}: {e}"))?;
    Ok(serde_json::json!({
        "count": count,
        "first": first,
        "links": links,
        "signed_at": now,
        "body_bytes_mean": (bytes as u64).checked_div(count).unwrap_or(0),
        "digest": hex(&digest.finalize()),
    })
    .to_string())
}

/// The events file as ready-to-write HTTP/1.1 requests.
struct Requests {
    ids: Vec<String>,
    raw: Vec<Vec<u8>>,
}

struct Target {
    addr: String,
    path: String,
}

fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must be http://HOST:PORT/PATH, got {url}"))?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(Target {
        addr: addr.to_string(),
        path: format!("/{path}"),
    })
}

fn load_requests(file: &str, t: &Target) -> Result<Requests, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let (mut ids, mut raw) = (Vec::new(), Vec::new());
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| format!("{file}: {e}"))?;
        if line.is_empty() {
            continue;
        }
        let s: Signed = serde_json::from_str(&line).map_err(|e| format!("{file}: {e}"))?;
        let mut r = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             webhook-id: {}\r\nwebhook-timestamp: {}\r\nwebhook-signature: {}\r\n\r\n",
            t.path,
            t.addr,
            s.body.len(),
            s.id,
            s.ts,
            s.sig
        )
        .into_bytes();
        r.extend_from_slice(s.body.as_bytes());
        ids.push(s.id);
        raw.push(r);
    }
    if raw.is_empty() {
        return Err(format!("{file} holds no events"));
    }
    Ok(Requests { ids, raw })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// 2xx and the message says the delivery was stored.
    Stored,
    /// 2xx "duplicate": stored before (never expected here: every event is new).
    Duplicate,
    /// Another 2xx message.
    OtherOk,
    Status(u16),
    /// No answer: connection refused, reset or closed, or no answer within 30 s.
    Failed,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    used: bool,
}

enum ExchangeError {
    /// Closed before the first byte of the answer, on a connection that waited in the pool: the server
    /// dropped it while idle; the request is sent again on a new one.
    Stale,
    Io,
}

impl Conn {
    /// On loopback, each new connection comes from the next of 64 source addresses (127.0.0.2 to
    /// 127.0.0.65), as deliveries come from many customers' functions: link-receiver holds one client to
    /// 32 connections, and the benchmark measures the store, not that cap.
    async fn connect(addr: &str) -> std::io::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let target: std::net::SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(_) => tokio::net::lookup_host(addr)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{addr} has no address")))?,
        };
        let stream = match target {
            std::net::SocketAddr::V4(v4) if v4.ip().is_loopback() => {
                let n = NEXT.fetch_add(1, Ordering::Relaxed) % 64;
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(std::net::SocketAddr::from(([127, 0, 0, 2 + n as u8], 0)))?;
                socket.connect(target).await?
            }
            _ => TcpStream::connect(target).await?,
        };
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
            used: false,
        })
    }

    /// Writes one request and reads its answer: (status, body, server closes).
    async fn exchange(&mut self, req: &[u8]) -> Result<(u16, Vec<u8>, bool), ExchangeError> {
        let reused = self.used;
        self.used = true;
        let early = |e: std::io::ErrorKind| {
            if reused
                && matches!(
                    e,
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::UnexpectedEof
                )
            {
                ExchangeError::Stale
            } else {
                ExchangeError::Io
            }
        };
        self.stream
            .write_all(req)
            .await
            .map_err(|e| early(e.kind()))?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            match self.stream.read(&mut chunk).await {
                Ok(0) if self.buf.is_empty() => {
                    return Err(early(std::io::ErrorKind::UnexpectedEof))
                }
                Ok(0) => return Err(ExchangeError::Io),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if self.buf.is_empty() => return Err(early(e.kind())),
                Err(_) => return Err(ExchangeError::Io),
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| ExchangeError::Io)?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(ExchangeError::Io)?;
        let (mut length, mut close) = (0usize, status_line.starts_with("HTTP/1.0"));
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().map_err(|_| ExchangeError::Io)?;
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                // Both receivers send a Content-Length; anything else is a setup error.
                return Err(ExchangeError::Io);
            }
        }
        while self.buf.len() < head_end + length {
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(ExchangeError::Io),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        Ok((
            status,
            self.buf[head_end..head_end + length].to_vec(),
            close,
        ))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn classify(status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return Outcome::Status(status);
    }
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_default();
    if message.starts_with("stored") {
        Outcome::Stored
    } else if message.starts_with("duplicate") {
        Outcome::Duplicate
    } else {
        Outcome::OtherOk
    }
}

/// Sends one request on `conn` (reconnecting once if the server had closed it while idle); returns the
/// outcome and whether the connection can be used again.
async fn send(addr: &str, conn: &mut Option<Conn>, req: &[u8]) -> Outcome {
    let attempt = async {
        for _ in 0..2 {
            if conn.is_none() {
                *conn = Some(Conn::connect(addr).await.ok()?);
            }
            let c = conn.as_mut()?;
            match c.exchange(req).await {
                Ok((status, body, close)) => {
                    if close {
                        *conn = None;
                    }
                    return Some(classify(status, &body));
                }
                Err(ExchangeError::Stale) => *conn = None,
                Err(ExchangeError::Io) => {
                    *conn = None;
                    return None;
                }
            }
        }
        None
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(Some(o)) => o,
        Ok(None) => Outcome::Failed,
        Err(_) => {
            *conn = None;
            Outcome::Failed
        }
    }
}

/// (event index, outcome, latency in microseconds)
type Record = (usize, Outcome, u64);

fn outcome_name(o: Outcome) -> String {
    match o {
        Outcome::Stored => "stored".into(),
        Outcome::Duplicate => "duplicate".into(),
        Outcome::OtherOk => "other_2xx".into(),
        Outcome::Status(s) => format!("http_{s}"),
        Outcome::Failed => "no_answer".into(),
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
}

/// Counts by outcome and latency percentiles (ms) of the stored ones.
fn summarize(records: &[Record]) -> serde_json::Value {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut lat: Vec<u64> = Vec::with_capacity(records.len());
    for &(_, o, us) in records {
        *counts.entry(outcome_name(o)).or_default() += 1;
        if o == Outcome::Stored {
            lat.push(us);
        }
    }
    lat.sort_unstable();
    serde_json::json!({
        "sent": records.len(),
        "outcomes": counts,
        "stored": lat.len(),
        "latency_ms": {
            "p50": percentile(&lat, 50.0),
            "p90": percentile(&lat, 90.0),
            "p99": percentile(&lat, 99.0),
            "p99_9": percentile(&lat, 99.9),
            "max": lat.last().map(|&us| us as f64 / 1000.0),
            "mean": if lat.is_empty() { None } else { Some(lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0) },
        },
    })
}

fn write_acked(path: Option<&str>, reqs: &Requests, records: &[Record]) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let f = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let mut w = BufWriter::new(f);
    for &(i, o, _) in records {
        if o == Outcome::Stored {
            writeln!(w, "{}", reqs.ids[i]).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    w.flush().map_err(|e| format!("{path}: {e}"))
}

/// Closed loop over `range`: every connection sends the next unsent event as soon as it has its answer.
async fn closed_phase(
    addr: &Arc<String>,
    reqs: &Arc<Requests>,
    conns: Vec<Option<Conn>>,
    range: std::ops::Range<usize>,
) -> (Vec<Record>, Duration, Vec<Option<Conn>>) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (addr, reqs, next, end) = (addr.clone(), reqs.clone(), next.clone(), range.end);
        tasks.spawn(async move {
            let mut records = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let t = Instant::now();
                let o = send(&addr, &mut conn, &reqs.raw[i]).await;
                records.push((i, o, t.elapsed().as_micros() as u64));
            }
            (records, conn)
        });
    }
    let (mut records, mut conns) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (r, c) = done.expect("a load task");
        records.extend(r);
        conns.push(c);
    }
    (records, started.elapsed(), conns)
}

async fn closed(a: Args) -> Result<String, String> {
    let t = target(a.str("url")?)?;
    let reqs = Arc::new(load_requests(a.str("events")?, &t)?);
    let connections: usize = a.num("connections", Some(64))?;
    let warmup: usize = a.num::<usize>("warmup", Some(0))?.min(reqs.raw.len());
    let addr = Arc::new(t.addr.clone());
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Some(
            Conn::connect(&addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?,
        ));
    }
    let (warm, _, conns) = closed_phase(&addr, &reqs, conns, 0..warmup).await;
    let (records, elapsed, _) = closed_phase(&addr, &reqs, conns, warmup..reqs.raw.len()).await;
    let mut all = warm.clone();
    all.extend_from_slice(&records);
    write_acked(a.0.get("acked").map(String::as_str), &reqs, &all)?;
    let mut report = summarize(&records);
    let stored = report["stored"].as_u64().unwrap_or(0);
    report["mode"] = "closed".into();
    report["connections"] = connections.into();
    report["warmup"] = summarize(&warm);
    report["elapsed_s"] = elapsed.as_secs_f64().into();
    report["stored_per_s"] = (stored as f64 / elapsed.as_secs_f64()).into();
    Ok(report.to_string())
}

async fn open(a: Args) -> Result<String, String> {
    let t = target(a.str("url")?)?;
    let reqs = Arc::new(load_requests(a.str("events")?, &t)?);
    let rate: f64 = a.num("rate", None)?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err("--rate must be positive".into());
    }
    let warmup: usize = a.num::<usize>("warmup", Some(0))?.min(reqs.raw.len());
    let initial: usize = a.num("connections", Some(16))?;
    let max_conns: usize = a.num("max-connections", Some(1024))?;
    let addr = Arc::new(t.addr.clone());
    // Idle connections, most recently used on top (so few stay idle long enough to be dropped).
    let idle: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..initial {
        let mut c = Conn::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        // Opened ahead of any request, it may wait past the server's limit for a first request (10 s
        // for link-receiver) and be closed: like a used one, it is then replaced.
        c.used = true;
        idle.lock().expect("idle pool").push(c);
    }
    let slots = Arc::new(Semaphore::new(max_conns));
    let (in_flight, in_flight_max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let n = reqs.raw.len();
    // The timetable is kept by a thread of its own that sleeps to each due time (nanosleep: tens of
    // microseconds late at most), so the runtime's 1 ms timer granularity does not add to latencies.
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let t0 = Instant::now() + Duration::from_millis(20);
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let late = lateness.clone();
    let dispatcher = std::thread::spawn(move || {
        for i in 0..n {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            late.lock()
                .expect("lateness")
                .push(due.elapsed().as_micros() as u64);
            if due_tx.send((i, due)).is_err() {
                break;
            }
        }
    });
    let records: Arc<Mutex<Vec<Record>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((i, due)) = due_rx.recv().await {
        let (addr, reqs, idle, slots, records) = (
            addr.clone(),
            reqs.clone(),
            idle.clone(),
            slots.clone(),
            records.clone(),
        );
        let (in_flight, in_flight_max) = (in_flight.clone(), in_flight_max.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("slots");
            let now_in_flight = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            in_flight_max.fetch_max(now_in_flight, Ordering::Relaxed);
            let mut conn = idle.lock().expect("idle pool").pop();
            let o = send(&addr, &mut conn, &reqs.raw[i]).await;
            let us = due.elapsed().as_micros() as u64;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Some(c) = conn {
                idle.lock().expect("idle pool").push(c);
            }
            records.lock().expect("records").push((i, o, us));
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let finished = t0.elapsed();
    dispatcher.join().map_err(|_| "the dispatcher panicked")?;
    let all = std::mem::take(&mut *records.lock().expect("records"));
    write_acked(a.0.get("acked").map(String::as_str), &reqs, &all)?;
    let (warm, measured): (Vec<Record>, Vec<Record>) =
        all.into_iter().partition(|&(i, _, _)| i < warmup);
    let mut report = summarize(&measured);
    let mut late = std::mem::take(&mut *lateness.lock().expect("lateness"));
    late.sort_unstable();
    report["mode"] = "open".into();
    report["rate"] = rate.into();
    report["warmup"] = summarize(&warm);
    report["schedule_s"] = (n as f64 / rate).into();
    report["elapsed_s"] = finished.as_secs_f64().into();
    report["in_flight_max"] = in_flight_max.load(Ordering::Relaxed).into();
    report["dispatch_lateness_ms"] = serde_json::json!({
        "p50": percentile(&late, 50.0),
        "p99": percentile(&late, 99.0),
        "max": late.last().map(|&us| us as f64 / 1000.0),
    });
    Ok(report.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            rfc3339_millis(1_795_435_200_000),
            "2026-11-23T12:00:00.000Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=1000).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500.0));
        assert_eq!(percentile(&v, 99.9), Some(999.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn classifies_answers() {
        assert_eq!(
            classify(200, br#"{"status":200,"message":"stored"}"#),
            Outcome::Stored
        );
        assert_eq!(
            classify(
                200,
                br#"{"status":200,"message":"duplicate: stored before"}"#
            ),
            Outcome::Duplicate
        );
        assert_eq!(classify(503, b"{}"), Outcome::Status(503));
    }
}
