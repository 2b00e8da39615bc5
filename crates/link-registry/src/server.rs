//! The listener: HTTP/1 with a cap on connections and on each client's share of them, time limits on request
//! heads and on idle keep-alive connections, a minimum rate for request bodies, a size limit on heads, and
//! graceful shutdown. axum routes; hyper, [`Guarded`] and [`Paced`] enforce the limits before a request
//! reaches any handler (an over-long head gets 431, a head that never ends is dropped).
//!
//! Why the two time limits are ours rather than hyper's: hyper's header timeout starts as soon as it waits
//! for the next request, so it is also the idle limit of a keep-alive connection. A 10 s idle limit closes
//! connections under a load balancer that keeps them for 60 s, which then sends a request on a connection
//! being closed and answers 502. So the head has `header_timeout` from its first byte (or from connecting),
//! and a connection between requests may wait `idle_timeout`.
//!
//! Room at the cap: every live connection is in [`Conns`] with its phase and since when. When a new client
//! needs a slot, the listener closes, at that moment, the connection idle the longest, else the one whose
//! head has been arriving the longest (past [`SLOW_HEAD`]); a connection busy with a request or still
//! sending an answer (a stream of changes) is never chosen. Nothing is remembered for later: if no
//! connection can make room, the listener decides again when one becomes idle.
//!
//! One client (a peer address; an IPv6 /64) holds at most `max_connections_per_client` of them, unless its
//! peer is exempt (a trusted proxy carries many clients). A client at its share gets a new connection only
//! in place of its own connection idle the longest; with none idle, it is answered 429 and closed at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::{Instant, Sleep};

use crate::config::Limits;

/// Peers whose connections carry many clients (trusted proxies): not held to the per-client cap.
pub(crate) type Exempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// No peer is exempt.
pub(crate) fn nobody_exempt() -> Exempt {
    Arc::new(|_| false)
}

/// A head arriving for longer than this may be closed to make room (a real client sends its head in
/// milliseconds; a browser's unused preconnection is reopened when needed).
const SLOW_HEAD: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish (bounded).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    exempt: Exempt,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = Arc::new(Conns::new(
        limits.max_connections_per_client,
        exempt,
        SLOW_HEAD,
    ));
    let pace = Pace {
        min_rate: limits.min_body_rate,
        grace: limits.body_rate_grace,
    };
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // Head and idle time limits are Guarded's (module docs).
    http.header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ip = peer.ip().to_canonical();
        // Before any room is made at the cap: a client at its share makes room among its own connections
        // or is refused, without closing anyone else's.
        let (client, made_room) = match conns.client(ip) {
            Ok(x) => x,
            Err(limit) => {
                refuse(tcp, limit);
                tracing::debug!(%peer, limit, "connection refused: the client holds its share");
                continue;
            }
        };
        // At the cap, further clients wait in the kernel's queue, costing nothing here.
        let Some(permit) = slot(&slots, &conns, made_room, shutdown.as_mut()).await else {
            break;
        };
        let _ = tcp.set_nodelay(true);
        let phase = Arc::new(Phase::new(conns.epoch, conns.idle.clone()));
        let entry = conns.admit(client, phase.clone(), permit);
        let app = app.clone();
        let io = Guarded::new(tcp, &limits, phase.clone());
        let svc = service_fn(move |req: Request<Incoming>| {
            phase.begin_request();
            let cut = Arc::new(AtomicBool::new(false));
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let req = Request::from_parts(parts, Body::new(Paced::new(body, pace, cut.clone())));
            let mut app = app.clone();
            let phase = phase.clone();
            async move {
                let Ok(mut answer) = tower_service::Service::call(&mut app, req).await;
                if cut.load(Ordering::Relaxed) {
                    answer = body_too_slow(answer, pace);
                }
                // The connection is busy until the answer's body has been sent (or dropped).
                Ok::<_, Infallible>(answer.map(|body| Body::new(Answer { body, phase })))
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, timeout = e.is_timeout(), "connection closed");
            }
            drop(entry);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; stopping anyway");
    }
}

/// A slot for a new connection: at once under the cap; at the cap, once a connection has closed (one is
/// chosen to make room when one can be, unless `made` says the client's own has been). `None` when
/// shutting down.
async fn slot(
    slots: &Arc<Semaphore>,
    conns: &Conns,
    mut made: bool,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        match slots.clone().try_acquire_owned() {
            Ok(p) => return Some(p),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        // Registered before looking, so that a connection becoming idle meanwhile is not missed.
        let became_idle = conns.idle.notified();
        tokio::pin!(became_idle);
        became_idle.as_mut().enable();
        let room = match made {
            true => Room::Made,
            false => conns.make_room(),
        };
        let look_again = match room {
            // The chosen connection closes on its next poll; should it not (it was between two reads of
            // a pipelined request), decide again.
            Room::Made => Some(Instant::now() + Duration::from_secs(1)),
            Room::NotBefore(t) => Some(t),
            Room::None => None,
        };
        made = room == Room::Made;
        let later = tokio::time::sleep_until(
            look_again.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        );
        tokio::select! {
            p = slots.clone().acquire_owned() => return p.ok(),
            () = &mut became_idle, if !made => {}
            () = later, if look_again.is_some() => made = false,
            () = shutdown.as_mut() => return None,
        }
    }
}

/// Answers 429 on a connection over its client's share and closes it, without waiting for anything.
fn refuse(tcp: TcpStream, limit: usize) {
    let text =
        format!("too many connections from your address: at most {limit} at once; retry later\n");
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    // Whatever already arrived is read first, so that closing sends the answer rather than a reset.
    let _ = tcp.try_read(&mut [0u8; 4096]);
    let _ = tcp.try_write(answer.as_bytes());
}

/// The client a peer address stands for: itself, or for IPv6 its /64 (what one host is usually given).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The live connections: their phases (to choose one to make room) and how many each client holds.
struct Conns {
    epoch: Instant,
    per_client: usize,
    /// [`SLOW_HEAD`] (tests choose their own).
    slow_head: Duration,
    exempt: Exempt,
    live: Mutex<Live>,
    /// Woken when a connection becomes idle, for a listener waiting at the cap. Never stored: a wake-up
    /// that finds no listener waiting is lost, as it should be.
    idle: Arc<Notify>,
}

#[derive(Default)]
struct Live {
    next: u64,
    /// Each connection's client (`None`: exempt) and phase.
    phases: HashMap<u64, (Option<IpAddr>, Arc<Phase>)>,
    clients: HashMap<IpAddr, usize>,
}

/// What the listener could do for a new connection at the cap.
#[derive(Debug, PartialEq, Eq)]
enum Room {
    /// A connection was told to close.
    Made,
    /// None yet: a head will have been arriving for [`SLOW_HEAD`] at this instant.
    NotBefore(Instant),
    /// None until a connection becomes idle or ends.
    None,
}

impl Conns {
    fn new(per_client: usize, exempt: Exempt, slow_head: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            per_client,
            slow_head,
            exempt,
            live: Mutex::new(Live::default()),
            idle: Arc::new(Notify::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // A panic elsewhere while holding the lock leaves counts that are still usable.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client `ip` counts for (`None`: exempt) and whether one of its connections was closed for it,
    /// or `Err(cap)` when it already holds its share and
    /// none of its connections is idle. When one is (browsers behind one NAT keep connections open), the
    /// one idle the longest is closed for the new one: the client's count is over its share only until
    /// that connection has closed.
    fn client(&self, ip: IpAddr) -> Result<(Option<IpAddr>, bool), usize> {
        if (self.exempt)(ip) {
            return Ok((None, false));
        }
        let client = client_of(ip);
        let live = self.live();
        if live.clients.get(&client).copied().unwrap_or(0) < self.per_client {
            return Ok((Some(client), false));
        }
        let mut idle: Vec<(u64, u64, &Arc<Phase>)> = live
            .phases
            .values()
            .filter(|(c, _)| *c == Some(client))
            .filter_map(|(_, phase)| {
                let state = phase.state();
                let (now_in, since) = unpack(state);
                (now_in == WAITING).then_some((since, state, phase))
            })
            .collect();
        idle.sort_by_key(|&(since, ..)| since);
        match idle
            .into_iter()
            .any(|(_, state, phase)| phase.close_if(state))
        {
            true => Ok((Some(client), true)),
            false => Err(self.per_client),
        }
    }

    /// Records a connection being served; it is forgotten when the entry is dropped.
    fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        phase: Arc<Phase>,
        permit: OwnedSemaphorePermit,
    ) -> Entry {
        let mut live = self.live();
        let id = live.next;
        live.next += 1;
        live.phases.insert(id, (client, phase));
        if let Some(c) = client {
            *live.clients.entry(c).or_default() += 1;
        }
        Entry {
            conns: self.clone(),
            id,
            client,
            _permit: permit,
        }
    }

    /// Tells the connection idle the longest, else the one whose head has been arriving the longest (past
    /// `slow_head`), to close now.
    fn make_room(&self) -> Room {
        let live = self.live();
        let now = millis_since(self.epoch);
        let slow = self.slow_head.as_millis() as u64;
        let mut candidates = Vec::new();
        let mut next_slow: Option<u64> = None;
        for (_, phase) in live.phases.values() {
            let state = phase.state();
            let (now_in, since) = unpack(state);
            match now_in {
                WAITING => candidates.push((0u8, since, state, phase)),
                HEAD if now.saturating_sub(since) >= slow => {
                    candidates.push((1, since, state, phase))
                }
                HEAD => next_slow = Some(next_slow.map_or(since + slow, |t| t.min(since + slow))),
                _ => {}
            }
        }
        candidates.sort_by_key(|&(rank, since, ..)| (rank, since));
        // Decided now: the chosen connection closes only if it is still as it was seen (it may have
        // just begun a request), else the next one is asked.
        for (_, _, state, phase) in candidates {
            if phase.close_if(state) {
                return Room::Made;
            }
        }
        match next_slow {
            Some(t) => Room::NotBefore(self.epoch + Duration::from_millis(t)),
            None => Room::None,
        }
    }
}

/// A served connection's place in [`Conns`] and its slot.
struct Entry {
    conns: Arc<Conns>,
    id: u64,
    client: Option<IpAddr>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut live = self.conns.live();
        live.phases.remove(&self.id);
        if let Some(c) = self.client {
            if let Some(n) = live.clients.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    live.clients.remove(&c);
                }
            }
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// Where a connection is: waiting for the next request, receiving a request's head, busy with a request
/// (its body has a minimum rate and its answer may stall for `body_timeout`; an answer still streaming is
/// busy), or told to close to make room.
const WAITING: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;
const CLOSING: u8 = 3;

/// A connection's phase and since when, shared by its reads, its service, its answer and the listener.
struct Phase {
    /// The phase in the top byte, the milliseconds since `epoch` at which it began below: one word, so
    /// that the listener's choice holds only if neither changed since it looked.
    state: AtomicU64,
    epoch: Instant,
    /// The last pending read: hyper may already be waiting for the next request while the service is busy,
    /// so a change of phase wakes it to start the new phase's time limit (or to close).
    reader: AtomicWaker,
    idle: Arc<Notify>,
}

fn pack(phase: u8, since: u64) -> u64 {
    (u64::from(phase) << 56) | (since & ((1 << 56) - 1))
}

fn unpack(state: u64) -> (u8, u64) {
    ((state >> 56) as u8, state & ((1 << 56) - 1))
}

impl Phase {
    /// A new connection: its head is awaited.
    fn new(epoch: Instant, idle: Arc<Notify>) -> Self {
        Self {
            state: AtomicU64::new(pack(HEAD, millis_since(epoch))),
            epoch,
            reader: AtomicWaker::new(),
            idle,
        }
    }

    fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    fn get(&self) -> u8 {
        unpack(self.state()).0
    }

    /// Moves from `from` to `to` (since now) unless the phase is another.
    fn shift(&self, from: u8, to: u8) -> bool {
        let now = millis_since(self.epoch);
        let moved = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (unpack(s).0 == from).then(|| pack(to, now))
            })
            .is_ok();
        if moved {
            self.reader.wake();
        }
        moved
    }

    /// A request's head has arrived (a connection told to close stays so).
    fn begin_request(&self) {
        let now = millis_since(self.epoch);
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (unpack(s).0 != CLOSING).then(|| pack(BUSY, now))
            });
        self.reader.wake();
    }

    /// The answer is sent: idle until the next request.
    fn answered(&self) {
        if self.shift(BUSY, WAITING) {
            self.idle.notify_waiters();
        }
    }

    /// The listener's choice: close, if the connection is still as it was seen (`state`).
    fn close_if(&self, state: u64) -> bool {
        let closed = self
            .state
            .compare_exchange(
                state,
                pack(CLOSING, unpack(state).1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if closed {
            self.reader.wake();
        }
        closed
    }
}

/// An answer's body: the connection is busy until it has been sent or dropped, so a stream (server-sent
/// events) is never idle, never under the idle limit and never closed to make room.
struct Answer {
    body: Body,
    phase: Arc<Phase>,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.phase.answered();
    }
}

/// The minimum rate of request bodies.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Bytes per second; 0: none.
    min_rate: u64,
    grace: Duration,
}

/// A request body arriving slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {rate} bytes/s")]
pub(crate) struct BodyTooSlow {
    rate: u64,
}

/// Whether `e` (or what caused it) is [`BodyTooSlow`].
pub(crate) fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<BodyTooSlow>())
}

/// A request body held to the minimum rate: from the handler's first read, after `grace`, every further
/// second must have brought `min_rate` bytes on average (a stall on a bad link is absorbed by what came
/// before it; a client trickling a body is cut long before `body_timeout`).
struct Paced {
    body: Incoming,
    pace: Pace,
    started: Option<Instant>,
    received: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Set when the body is cut, so that the answer says 408 whatever the handler made of the error.
    cut: Arc<AtomicBool>,
}

impl Paced {
    fn new(body: Incoming, pace: Pace, cut: Arc<AtomicBool>) -> Self {
        Self {
            body,
            pace,
            started: None,
            received: 0,
            deadline: None,
            cut,
        }
    }
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.pace.min_rate == 0 => Poll::Pending,
            Poll::Pending => {
                // Behind from the instant `received` < min_rate × (elapsed − grace).
                let due = started
                    + this.pace.grace
                    + Duration::from_millis(
                        this.received.saturating_mul(1000) / this.pace.min_rate,
                    );
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if deadline.deadline() != due {
                    deadline.as_mut().reset(due);
                }
                if deadline.as_mut().poll(cx).is_ready() {
                    this.cut.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                        rate: this.pace.min_rate,
                    }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The answer to a request whose body was cut: 408 (unless the handler said so already), and the
/// connection closes (the rest of the body is not read).
fn body_too_slow(answer: Response, pace: Pace) -> Response {
    let mut answer = if answer.status() == StatusCode::REQUEST_TIMEOUT {
        answer
    } else {
        (
            StatusCode::REQUEST_TIMEOUT,
            BodyTooSlow {
                rate: pace.min_rate,
            }
            .to_string(),
        )
            .into_response()
    };
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// A client connection with the time limits of the phase it is in: `idle_timeout` while waiting for a
/// request, `header_timeout` from a head's first byte (a new connection starts in [`HEAD`]); and an answer
/// may not stall for `body_timeout` (a client that sends requests and never reads the answers would hold
/// its connection forever). Running out, or being told to close, fails the read or write, and hyper
/// closes the connection.
struct Guarded {
    io: TcpStream,
    /// Set to [`BUSY`] by the connection's service and back to [`WAITING`] once its answer is sent.
    phase: Arc<Phase>,
    /// The phase `deadline` was set for; `None` when no limit runs.
    timing: Option<u8>,
    deadline: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Runs while a write is pending.
    write_deadline: Option<Pin<Box<Sleep>>>,
    write_timeout: Duration,
}

impl Guarded {
    fn new(io: TcpStream, limits: &Limits, phase: Arc<Phase>) -> Self {
        Self {
            io,
            phase,
            timing: Some(HEAD),
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            write_deadline: None,
            write_timeout: limits.body_timeout,
        }
    }

    /// Fails a write that has made no progress for `write_timeout`.
    fn stalled<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.write_deadline = None;
            return r;
        }
        let limit = self.write_timeout;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if deadline.as_mut().poll(cx).is_ready() {
            self.write_deadline = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the answer",
            )));
        }
        Poll::Pending
    }

    fn time(&mut self, phase: u8) {
        let limit = match phase {
            WAITING => self.idle_timeout,
            HEAD => self.header_timeout,
            _ => {
                self.timing = None;
                return;
            }
        };
        if self.timing != Some(phase) {
            self.timing = Some(phase);
            self.deadline.as_mut().reset(Instant::now() + limit);
        }
    }
}

fn made_room() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "closed to make room for a new connection",
    )
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.phase.get();
        if phase == CLOSING {
            return Poll::Ready(Err(made_room()));
        }
        this.time(phase);
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if phase == WAITING && this.phase.shift(WAITING, HEAD) {
                    // The next request has begun: its head must arrive within the header timeout.
                    this.time(HEAD);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.phase.reader.register(cx.waker());
                // Looked at again after registering, so that the listener's wake-up is not lost.
                let why = if this.phase.get() == CLOSING {
                    return Poll::Ready(Err(made_room()));
                } else if this.timing.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
                    if phase == WAITING {
                        "keep-alive connection idle for too long"
                    } else {
                        "request head not received in time"
                    }
                } else {
                    return Poll::Pending;
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stalled(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stalled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn connect_from(to: SocketAddr, from: [u8; 4]) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Sends a GET on `tcp`; the first line of the answer ("" if the connection closed without one).
    async fn get_on(tcp: &mut TcpStream) -> String {
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn exempt_peers_are_not_held_to_the_per_client_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections_per_client: 2,
            header_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        // 127.0.0.2 stands for a trusted proxy.
        let exempt: Exempt = Arc::new(|ip| ip == IpAddr::from([127, 0, 0, 2]));
        let app = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, exempt, async {
            let _ = stopped.await;
        }));
        // The proxy's 6 connections, all open at once, are all served.
        let mut proxy = Vec::new();
        for _ in 0..6 {
            let mut tcp = connect_from(to, [127, 0, 0, 2]).await;
            assert_eq!(get_on(&mut tcp).await, "HTTP/1.1 200 OK");
            proxy.push(tcp);
        }
        // Another peer gets its 2 (their heads not sent yet), and 429 for a third.
        let mut other = Vec::new();
        for _ in 0..2 {
            other.push(connect_from(to, [127, 0, 0, 3]).await);
        }
        let mut third = connect_from(to, [127, 0, 0, 3]).await;
        let mut answer = String::new();
        let _ = third.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
        assert!(answer.contains("at most 2 at once"), "{answer:?}");
        // The proxy's connections still serve.
        for tcp in &mut proxy {
            assert_eq!(get_on(tcp).await, "HTTP/1.1 200 OK");
        }
        let _ = stop.send(());
        drop((proxy, other));
        server.await.unwrap();
    }

    /// True if the server closes `tcp` within `within` (whatever it sends first is dropped).
    async fn closes(tcp: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let until = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, tcp.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_client_at_its_share_gets_a_connection_in_place_of_its_own_idle_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections_per_client: 2,
            ..Limits::default()
        };
        // Requests held (their connections busy) so far.
        let held = Arc::new(Notify::new());
        let holding = held.clone();
        let app = Router::new().route("/", get(|| async { "ok" })).route(
            "/hold",
            get(move || async move {
                holding.notify_one();
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        );
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            nobody_exempt(),
            std::future::pending(),
        ));
        let from = [127, 0, 0, 4];
        // One connection idle, one busy.
        let mut idle = connect_from(to, from).await;
        assert_eq!(get_on(&mut idle).await, "HTTP/1.1 200 OK");
        let mut busy = connect_from(to, from).await;
        busy.write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        held.notified().await;
        // A third: served in place of the idle one (browsers behind one NAT keep idle connections).
        let mut third = connect_from(to, from).await;
        assert_eq!(get_on(&mut third).await, "HTTP/1.1 200 OK");
        assert!(closes(&mut idle, Duration::from_secs(10)).await);
        // Now both busy: a fourth is refused, and neither busy connection is touched.
        third
            .write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        held.notified().await;
        let mut fourth = connect_from(to, from).await;
        let mut answer = String::new();
        let _ = fourth.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
        assert!(!closes(&mut busy, Duration::from_millis(500)).await);
        assert!(!closes(&mut third, Duration::from_millis(500)).await);
        server.abort();
    }

    #[test]
    fn a_client_is_its_address_or_its_ipv6_64() {
        let v4 = IpAddr::from([203, 0, 113, 7]);
        assert_eq!(client_of(v4), v4);
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped());
        assert_eq!(client_of(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(c));
    }

    #[tokio::test]
    async fn room_is_made_by_the_longest_idle_then_the_slowest_head_never_a_busy_one() {
        let slots = Arc::new(Semaphore::new(8));
        let open = |conns: &Arc<Conns>, phase: &Arc<Phase>| {
            conns.admit(
                None,
                phase.clone(),
                slots.clone().try_acquire_owned().unwrap(),
            )
        };
        let new_phase = |conns: &Conns| Arc::new(Phase::new(conns.epoch, conns.idle.clone()));
        // Heads count as slow after an hour here: none is.
        let conns = Arc::new(Conns::new(32, nobody_exempt(), Duration::from_secs(3600)));
        // Busy (a request, or an answer still streaming) and a head just begun: no room now, and none
        // remembered; the head may make room once it has been arriving for `slow_head`.
        let (busy, head) = (new_phase(&conns), new_phase(&conns));
        busy.begin_request();
        let _e = (open(&conns, &busy), open(&conns, &head));
        match conns.make_room() {
            Room::NotBefore(t) => assert!(t > Instant::now() + Duration::from_secs(3000)),
            other => panic!("{other:?}"),
        }
        assert_eq!((busy.get(), head.get()), (BUSY, HEAD));
        // Two idle connections: the one idle the longest is told to close, and only it.
        let (first, second) = (new_phase(&conns), new_phase(&conns));
        for p in [&first, &second] {
            p.begin_request();
            tokio::time::sleep(Duration::from_millis(5)).await;
            p.answered();
        }
        let _f = (open(&conns, &first), open(&conns, &second));
        assert_eq!(conns.make_room(), Room::Made);
        assert_eq!(
            (first.get(), second.get(), busy.get(), head.get()),
            (CLOSING, WAITING, BUSY, HEAD)
        );
        // A connection told to close stays so when its request begins or its answer ends.
        first.begin_request();
        first.answered();
        assert_eq!(first.get(), CLOSING);
        // The other idle one next; then nothing while the head is not slow.
        assert_eq!(conns.make_room(), Room::Made);
        assert_eq!(second.get(), CLOSING);
        assert!(matches!(conns.make_room(), Room::NotBefore(_)));

        // Heads count as slow at once: a head makes room, a busy connection never.
        let conns = Arc::new(Conns::new(32, nobody_exempt(), Duration::ZERO));
        let (busy, head) = (new_phase(&conns), new_phase(&conns));
        busy.begin_request();
        let _e = (open(&conns, &busy), open(&conns, &head));
        assert_eq!(conns.make_room(), Room::Made);
        assert_eq!((busy.get(), head.get()), (BUSY, CLOSING));
        assert_eq!(conns.make_room(), Room::None);
        assert_eq!(busy.get(), BUSY);
    }

    #[tokio::test]
    async fn an_idle_connection_told_to_close_ends_its_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let conns = Conns::new(32, nobody_exempt(), SLOW_HEAD);
        let phase = Arc::new(Phase::new(conns.epoch, conns.idle.clone()));
        let mut io = Guarded::new(server, &Limits::default(), phase.clone());
        phase.begin_request();
        phase.answered();
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            io.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(phase.close_if(phase.state()));
        let e = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the pending read is woken")
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("make room"), "{e}");
        drop(client);
    }
}
