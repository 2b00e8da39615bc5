//! The registry's test support: `link-receiver` as a process (so tests can kill -9 and restart it), a real
//! PostgreSQL cluster started for the test, signed deliveries, and the read API.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use link_contract::event::LinkEvent;
use link_contract::signing::{sign, SigningSecret};
use serde_json::Value;

/// The function's test support (moto, fake endpoints, free ports), shared with the root package's tests.
#[path = "../../../../tests/common/mod.rs"]
pub(crate) mod common;

pub(crate) use common::free_port;

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn secrets() -> Vec<SigningSecret> {
    SigningSecret::parse_list(SECRET).unwrap()
}

/// A fresh directory for one test.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "link-registry-tests-{}-{name}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sqlite://` URL of a fresh database file.
pub(crate) fn sqlite_url(name: &str) -> String {
    format!("sqlite://{}", temp_dir(name).join("registry.db").display())
}

/// A running `link-receiver`; killed (SIGKILL) when dropped.
pub(crate) struct Receiver {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Receiver {
    /// Starts the receiver on `database` with HMAC-only verification and the given extra flags.
    pub(crate) fn start(database: &str, extra: &[&str]) -> Self {
        Self::start_on(database, "127.0.0.1:0", extra)
    }

    pub(crate) fn start_on(database: &str, listen: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--auth-mode", "hmac-only", "--secret", SECRET];
        args.extend_from_slice(extra);
        Self::spawn(database, listen, &args, &[])
    }

    /// [`Receiver::start`] with environment variables set (`Some`) or removed (`None`): the provider's
    /// AWS credentials and endpoints.
    pub(crate) fn start_env(database: &str, extra: &[&str], env: &[(&str, Option<&str>)]) -> Self {
        let mut args = vec!["--auth-mode", "hmac-only", "--secret", SECRET];
        args.extend_from_slice(extra);
        Self::spawn(database, "127.0.0.1:0", &args, env)
    }

    /// The default mode, signatures and proofs of the account; STS is `sts` (moto), the audience is the
    /// receiver's own origin (what the function binds by default: its callback URL's origin).
    pub(crate) fn start_with_proofs(database: &str, sts: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let audience = format!("http://{listen}");
        let mut args = vec![
            "--secret",
            SECRET,
            "--audience",
            &audience,
            "--sts-endpoint",
            sts,
        ];
        args.extend_from_slice(extra);
        Self::spawn(database, &listen, &args, &[])
    }

    fn spawn(database: &str, listen: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> Self {
        let log = temp_dir("receiver-log").join("stderr.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_link-receiver"));
        command
            .args(["--listen", listen, "--database", database])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            match v {
                Some(v) => command.env(k, v),
                None => command.env_remove(k),
            };
        }
        let mut child = command.spawn().expect("link-receiver starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&log_path).unwrap();
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = writeln!(file, "{line}");
                if !sent {
                    if let Some(i) = line.find("listening on ") {
                        let _ = tx.send(Ok(line[i + "listening on ".len()..].trim().to_string()));
                        sent = true;
                    } else if line.starts_with("link-receiver: ") {
                        let _ = tx.send(Err(line.clone()));
                        sent = true;
                    }
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => panic!("link-receiver did not start: {e}"),
            Err(_) => panic!("link-receiver did not announce its address"),
        };
        Self { child, url, log }
    }

    pub(crate) fn hook_url(&self) -> String {
        format!("{}/hooks/account-link", self.url)
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `link-receiver` with these arguments to its end (for start-up refusals).
pub(crate) fn receiver_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_link-receiver"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A PostgreSQL cluster of its own, initialised as the unprivileged `postgres` user in a temporary
/// directory and listening on a free loopback port; stopped (and its files removed) when dropped.
pub(crate) struct Postgres {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .max();
    found.unwrap_or_else(|| {
        panic!("PostgreSQL's {name} is missing: `make test` installs Debian's postgresql package")
    })
}

/// Runs a command as the unprivileged `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    let root = unsafe_is_root();
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub(crate) fn start() -> Self {
        let dir = temp_dir("pg");
        let data = dir.join("data");
        if unsafe_is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster directory to postgres");
        }
        let out = as_postgres(&pg_bin("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Self::spawn_server(&dir, port);
        let pg = Self { child, dir, port };
        pg.wait_ready();
        pg
    }

    fn spawn_server(dir: &Path, port: u16) -> Child {
        as_postgres(&pg_bin("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts")
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: connections are cut), keeping its data.
    pub(crate) fn stop(&mut self) {
        let ok = as_postgres(&pg_bin("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl stop");
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same port and data.
    pub(crate) fn restart(&mut self) {
        self.child = Self::spawn_server(&self.dir, self.port);
        self.wait_ready();
    }

    /// Runs one SQL statement with psql in `database`; its unaligned output.
    fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-At"])
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new, empty database in this cluster.
    pub(crate) fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement and returns psql's unaligned output.
    pub(crate) fn query(&self, database: &str, sql: &str) -> String {
        self.psql(database, sql)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The documented example event, as a template.
pub(crate) fn example(kind: &str) -> LinkEvent {
    let path = format!(
        "{}/../../docs/examples/account.{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A delivery as the function would send it: body, and the headers signed with [`SECRET`].
pub(crate) struct Signed {
    pub id: String,
    pub body: String,
}

impl Signed {
    pub(crate) fn of(event: &LinkEvent) -> Self {
        Self {
            id: event.data.delivery_id(),
            body: serde_json::to_string(event).unwrap(),
        }
    }

    pub(crate) fn raw(id: &str, body: String) -> Self {
        Self {
            id: id.to_string(),
            body,
        }
    }

    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let ts = now();
        vec![
            ("webhook-id", self.id.clone()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                sign(&secrets(), &self.id, ts, self.body.as_bytes()),
            ),
            ("content-type", "application/json".into()),
        ]
    }
}

pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs a signed delivery; the status and the message.
pub(crate) async fn post(http: &reqwest::Client, url: &str, d: &Signed) -> (u16, String) {
    let mut req = http.post(url).body(d.body.clone());
    for (k, v) in d.headers() {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// GET on the read API (with the bearer token, when given); the status and the JSON body.
pub(crate) async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The stack of the example's account named `stack` (letters, digits and '-').
pub(crate) fn stack_id(stack: &str) -> String {
    format!("arn:aws:cloudformation:us-west-2:123456789012:stack/{stack}/6f5c1a40-cb0e-11ef-9b7f-0a1b2c3d4e5f")
}

/// The link id of the example's resource in stack `stack` (what [`event_at`] makes).
pub(crate) fn link_id(stack: &str) -> String {
    link_contract::event::link_id(&stack_id(stack), "AccountLink")
}

/// An event of `kind` for the link of stack `stack` ([`link_id`]), at the given timestamp, with its own
/// event id. Its claims hold together as the function's do (the receiver checks them).
pub(crate) fn event_at(kind: &str, stack: &str, event_id: &str, timestamp: &str) -> LinkEvent {
    let mut e = example(kind);
    e.data.stack_id = stack_id(stack);
    e.data.logical_resource_id = "AccountLink".into();
    e.data.physical_resource_id = link_id(stack);
    e.data.event_id = event_id.to_string();
    e.timestamp = timestamp.to_string();
    e
}
