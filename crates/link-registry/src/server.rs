//! The listener: HTTP/1 with a cap on connections (at the cap, the connection idle the longest makes
//! room), time limits on request heads and on idle keep-alive connections, a size limit on heads, and
//! graceful shutdown. axum routes; hyper and [`Guarded`] enforce the limits before a request reaches any
//! handler (an over-long head gets 431, a head that never ends is dropped).
//!
//! Why the two time limits are ours rather than hyper's: hyper's header timeout starts as soon as it waits
//! for the next request, so it is also the idle limit of a keep-alive connection. A 10 s idle limit closes
//! connections under a load balancer that keeps them for 60 s, which then sends a request on a connection
//! being closed and answers 502. So the head has `header_timeout` from its first byte (or from connecting),
//! and a connection between requests may wait `idle_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use futures::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::time::{Instant, Sleep};

use crate::config::Limits;

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish (bounded).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // Head and idle time limits are Guarded's (module docs).
    http.header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .keep_alive(true);
    // At the cap, the connection idle the longest closes to make room for a new one.
    let room = Arc::new(Notify::new());
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
        // At the cap, stop accepting until a connection ends (an idle one is asked to): further clients
        // wait in the kernel's queue, costing nothing here.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                room.notify_one();
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let io = Guarded::new(tcp, &limits, room.clone());
        let phase = io.phase.clone();
        let svc = service_fn(move |mut req: Request<Incoming>| {
            phase.set(BUSY);
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            let phase = phase.clone();
            async move {
                let answer = tower_service::Service::call(&mut app, req).await;
                phase.set(WAITING);
                answer
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, timeout = e.is_timeout(), "connection closed");
            }
            drop(permit);
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

/// Where a connection is: waiting for the next request, receiving a request's head, or busy with a request
/// (its body and answer have time limits of their own).
const WAITING: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// A connection's phase, shared by its reads and its service.
struct Phase {
    now: AtomicU8,
    /// The last pending read: hyper may already be waiting for the next request while the service is busy,
    /// so a change of phase wakes it to start the new phase's time limit.
    reader: AtomicWaker,
}

impl Phase {
    fn get(&self) -> u8 {
        self.now.load(Ordering::Relaxed)
    }

    fn set(&self, phase: u8) {
        self.now.store(phase, Ordering::Relaxed);
        self.reader.wake();
    }
}

/// A client connection with the time limits of the phase it is in: `idle_timeout` while waiting for a
/// request, `header_timeout` from a head's first byte (a new connection starts in [`HEAD`]); and an answer
/// may not stall for `body_timeout` (a client that sends requests and never reads the answers would hold
/// its connection forever). Running out fails the read or write, and hyper closes the connection.
struct Guarded {
    io: TcpStream,
    /// Set to [`BUSY`] and back to [`WAITING`] by the connection's service.
    phase: Arc<Phase>,
    /// The phase `deadline` was set for; `None` when no limit runs.
    timing: Option<u8>,
    deadline: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Runs while a write is pending.
    write_deadline: Option<Pin<Box<Sleep>>>,
    write_timeout: Duration,
    /// Notified (oldest waiter first) when the listener is at its cap: an idle connection then closes.
    room: Arc<Notify>,
    asked: Option<Pin<Box<OwnedNotified>>>,
}

impl Guarded {
    fn new(io: TcpStream, limits: &Limits, room: Arc<Notify>) -> Self {
        Self {
            io,
            phase: Arc::new(Phase {
                now: AtomicU8::new(HEAD),
                reader: AtomicWaker::new(),
            }),
            timing: Some(HEAD),
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            write_deadline: None,
            write_timeout: limits.body_timeout,
            room,
            asked: None,
        }
    }

    /// While idle: whether the listener, at its cap, has asked this connection to make room.
    fn asked_to_make_room(&mut self, cx: &mut Context<'_>, phase: u8) -> bool {
        if phase != WAITING {
            self.asked = None;
            return false;
        }
        let room = &self.room;
        self.asked
            .get_or_insert_with(|| Box::pin(room.clone().notified_owned()))
            .as_mut()
            .poll(cx)
            .is_ready()
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

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.phase.get();
        this.time(phase);
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.asked = None;
                if this
                    .phase
                    .now
                    .compare_exchange(WAITING, HEAD, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    // The next request has begun: its head must arrive within the header timeout.
                    this.time(HEAD);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.phase.reader.register(cx.waker());
                let why = if this.asked_to_make_room(cx, phase) {
                    "idle connection closed to make room for a new one"
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
