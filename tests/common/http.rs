//! A scriptable loopback HTTP server: records every request and answers from a script (status, headers,
//! body, delay, or never). Stands in for S3 pre-signed URLs, a provider's endpoint, and EC2 faults.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
    /// Never answer (the connection stays open).
    pub hang: bool,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
            hang: false,
        }
    }
    pub(crate) fn body(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }
    pub(crate) fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub(crate) fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub(crate) fn hang() -> Self {
        Self {
            hang: true,
            ..Self::status(200)
        }
    }
}

type Script = Arc<dyn Fn(usize, &Recorded) -> Reply + Send + Sync>;

pub(crate) struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// `script(n, request)` decides the answer to the n-th request (0-based).
    pub(crate) async fn start(
        script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let script: Script = Arc::new(script);
        let reqs = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let reqs = reqs.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let reqs = reqs.clone();
                        let script = script.clone();
                        async move { Ok::<_, Infallible>(answer(req, reqs, script).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// Answers every request with the same reply.
    pub(crate) async fn always(reply: Reply) -> Self {
        Self::start(move |_, _| reply.clone()).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    reqs: Arc<Mutex<Vec<Recorded>>>,
    script: Script,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
    };
    let n = {
        let mut r = reqs.lock().unwrap();
        r.push(rec.clone());
        r.len() - 1
    };
    let reply = script(n, &rec);
    if reply.hang {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(reply.delay).await;
    let mut resp = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    resp.body(Full::new(Bytes::from(reply.body))).unwrap()
}

/// A loopback listener that records the first line of every connection made to it (a request line, or a
/// proxy's `CONNECT host:443`) and closes it. Used as the proxy of an HTTP client, it sees every request
/// that client makes to any host, so "nothing was sent" is an observation, not an assumption.
pub(crate) struct Trap {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    pub(crate) async fn start() -> Self {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0;
                    // Whatever arrives within a second; a connection is recorded even if nothing does.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while got < buf.len() && !buf[..got].contains(&b'\n') {
                            match stream.read(&mut buf[got..]).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got += n,
                            }
                        }
                    })
                    .await;
                    let text = String::from_utf8_lossy(&buf[..got]);
                    log.lock()
                        .unwrap()
                        .push(text.lines().next().unwrap_or("").to_string());
                });
            }
        });
        Self { addr, seen, task }
    }

    /// An HTTP client that sends every request through this trap, except to loopback addresses (the
    /// tests' own fakes).
    pub(crate) fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let proxy = reqwest::Proxy::all(format!("http://{}", self.addr))
            .unwrap()
            .no_proxy(reqwest::NoProxy::from_string("127.0.0.1,localhost"));
        reqwest::Client::builder()
            .proxy(proxy)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    }

    /// The first line of every connection so far.
    pub(crate) async fn seen(&self) -> Vec<String> {
        // A connection accepted just now is recorded once its first line is read.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
