//! Shared test support: moto started on a loopback port of its choosing, a scriptable local HTTP server (fake S3,
//! fake provider, fake EC2 faults), captured logs, and an `App` wired to them.
#![allow(dead_code)]

pub(crate) mod http;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use account_link::config::Config;
use account_link::App;
use serde_json::Value;

/// The workspace's root (these helpers are shared by the registry's tests too).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .expect("the workspace root has Cargo.lock")
        .to_path_buf()
}

/// A tool from the project's virtualenv (installed by `make test`), or from the one `ACCOUNT_LINK_VENV`
/// names (a git worktree sharing the main checkout's).
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    let venv =
        std::env::var_os("ACCOUNT_LINK_VENV").map_or_else(|| root().join(".venv"), PathBuf::from);
    let p = venv.join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make test`, which installs the Python tools into .venv",
        p.display()
    );
    p
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto server for this test, stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// On a port moto chooses (`-p 0`), read back from the line it prints once it listens: no free port is
    /// picked, closed and passed on, which another test could take in between.
    pub(crate) fn start() -> Self {
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let stderr = child.stderr.take().expect("moto's stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads moto's log to its end: the endpoint from its "Running on" line, then every request line,
        // so that moto never blocks on a full pipe.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, url)) = line.split_once("Running on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("moto did not say where it listens within 30 s");
            }
        };
        Self { child, endpoint }
    }

    /// Runs scripts/moto_fixture.py against this server and returns its stdout.
    pub(crate) fn fixture(&self, args: &[&str]) -> String {
        let out = Command::new(venv_bin("python"))
            .arg(root().join("scripts/moto_fixture.py"))
            .args(["--endpoint", &self.endpoint])
            .args(args)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "moto_fixture {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn presign(&self, key: &str) -> String {
        self.fixture(&["presign", "--bucket", "cfn-responses", "--key", key])
            .trim()
            .to_string()
    }

    /// The answer CloudFormation would read, as uploaded to moto's S3.
    pub(crate) fn read_answer(&self, key: &str) -> Value {
        serde_json::from_str(&self.fixture(&["read", "--bucket", "cfn-responses", "--key", key]))
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// events/<name>.json with its ResponseURL replaced.
pub(crate) fn event(name: &str, response_url: &str) -> Value {
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(root().join("events").join(name)).unwrap()).unwrap();
    v["ResponseURL"] = response_url.into();
    v
}

pub(crate) fn config(vars: &[(&str, &str)]) -> Config {
    let mut all: Vec<(&str, &str)> = vec![("ACCOUNT_LINK_ALLOW_LOOPBACK", "true")];
    all.extend_from_slice(vars);
    Config::from_lookup(|k| {
        all.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

/// SDK configuration pointing every service at `endpoint`, as `AWS_ENDPOINT_URL` would.
pub(crate) async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(account_link::config::aws_https_client())
        .region(Region::new("us-west-2"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}

pub(crate) async fn app(endpoint: &str, vars: &[(&str, &str)]) -> Arc<App> {
    Arc::new(App::new(&sdk_config(endpoint).await, Ok(config(vars))))
}

/// Every log line written by any test in this binary (JSON, as in Lambda).
pub(crate) fn logs() -> String {
    let buf = log_buffer();
    let bytes = buf.lock().unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
    .clone()
}

/// Call first in every test that wants its logs captured.
pub(crate) fn capture_logs() {
    let _ = log_buffer();
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// No log line carries a pre-signed URL's signature or a signing secret.
pub(crate) fn assert_no_secrets_in_logs(secrets: &[&str]) {
    let logs = logs();
    assert!(!logs.is_empty(), "logs were captured");
    for needle in ["X-Amz-Signature", "X-Amz-Credential", "Signature="]
        .iter()
        .chain(secrets)
    {
        assert!(!logs.contains(needle), "a log line contains {needle}");
    }
}

/// A helper process that announces "... listening on http://ADDR" on stderr; killed when dropped.
pub(crate) struct Listening {
    child: Child,
    pub url: String,
}

impl Listening {
    pub(crate) fn start(cmd: &mut Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("process starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if !sent {
                    if let Some(i) = line.find("listening on ") {
                        let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the process announces its address");
        Self { child, url }
    }

    /// The Python `standardwebhooks` verifier writing verified payloads to `out`.
    pub(crate) fn py_receiver(secret: &str, out: &std::path::Path) -> Self {
        Self::start(
            Command::new(venv_bin("python"))
                .arg(root().join("scripts/py_receiver.py"))
                .args(["--secret", secret, "--out"])
                .arg(out),
        )
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// JSON lines written by a receiver.
pub(crate) fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A fresh temporary file path (removed by the OS's tmp cleaning; names are unique per test run).
pub(crate) fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("account-link-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The function the sample events' stack (events/*.json) runs: same partition, region and account.
pub(crate) const FUNCTION_ARN: &str = "arn:aws:lambda:us-west-2:123456789012:function:account-link";

pub(crate) fn origin() -> account_link::cfn::Origin {
    account_link::cfn::Origin::from_function_arn(FUNCTION_ARN).unwrap()
}

/// Deliveries signed with these secrets only (no proof of the account).
pub(crate) fn hmac_auth(
    secrets: Vec<link_contract::signing::SigningSecret>,
) -> account_link::notify::Auth {
    account_link::notify::Auth {
        keys: Some(Arc::new(account_link::secret::SigningKeys::inline(secrets))),
        prover: None,
    }
}

/// An `App` on the given EC2 configuration and notifier, allowed to call the tests' loopback fakes.
pub(crate) fn app_on(
    ec2: aws_sdk_ec2::Config,
    notifier: Arc<dyn account_link::notify::Notifier>,
) -> Arc<App> {
    Arc::new(App {
        ec2: account_link::inventory::Ec2Clients::new(ec2),
        http: account_link::handler::http_client().into(),
        outbound: account_link::outbound::OutboundPolicy::new(true),
        notifier,
        region: "us-west-2".into(),
        config_error: None,
    })
}

/// EC2 faked (aws-smithy-mocks) with one VPC, `vpc-11111111`, and nothing else, in every region.
pub(crate) fn one_vpc_ec2() -> aws_sdk_ec2::Config {
    use aws_sdk_ec2::operation::{
        describe_route_tables::DescribeRouteTablesOutput, describe_subnets::DescribeSubnetsOutput,
        describe_vpcs::DescribeVpcsOutput,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    let rules = [
        mock!(aws_sdk_ec2::Client::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(
                    aws_sdk_ec2::types::Vpc::builder()
                        .vpc_id("vpc-11111111")
                        .build(),
                )
                .build()
        }),
        mock!(aws_sdk_ec2::Client::describe_subnets)
            .then_output(|| DescribeSubnetsOutput::builder().build()),
        mock!(aws_sdk_ec2::Client::describe_route_tables)
            .then_output(|| DescribeRouteTablesOutput::builder().build()),
    ];
    mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        &[&rules[0], &rules[1], &rules[2]]
    )
    .config()
    .clone()
}

/// Subnets per page of the fake EC2.
const PAGE: usize = 1000;

/// EC2 with `vpcs` VPCs and `subnets` subnets spread over them, served `PAGE` subnets at a time.
pub(crate) fn paged_ec2(
    vpcs: usize,
    subnets: usize,
) -> (aws_sdk_ec2::Client, aws_smithy_mocks::Rule) {
    use aws_sdk_ec2::operation::{
        describe_route_tables::DescribeRouteTablesOutput, describe_subnets::DescribeSubnetsOutput,
        describe_vpcs::DescribeVpcsOutput,
    };
    use aws_sdk_ec2::types::{RouteTable, Subnet, Vpc};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    let vpc_rule = mock!(aws_sdk_ec2::Client::describe_vpcs).then_compute_output(move |_| {
        DescribeVpcsOutput::builder()
            .set_vpcs(Some(
                (0..vpcs)
                    .map(|i| {
                        Vpc::builder()
                            .vpc_id(format!("vpc-{i:08x}"))
                            .cidr_block("10.0.0.0/16")
                            .build()
                    })
                    .collect(),
            ))
            .build()
    });
    let subnet_rule =
        mock!(aws_sdk_ec2::Client::describe_subnets).then_compute_output(move |req| {
            let start: usize = req
                .next_token()
                .map_or(0, |t| t.trim_start_matches("page-").parse().unwrap());
            let end = (start + PAGE).min(subnets);
            DescribeSubnetsOutput::builder()
                .set_subnets(Some(
                    (start..end)
                        .map(|i| {
                            Subnet::builder()
                                .subnet_id(format!("subnet-{i:017x}"))
                                .vpc_id(format!("vpc-{:08x}", i % vpcs.max(1)))
                                .cidr_block("10.0.0.0/28")
                                .availability_zone("us-west-2a")
                                .build()
                        })
                        .collect(),
                ))
                .set_next_token((end < subnets).then(|| format!("page-{end}")))
                .build()
        });
    let rt_rule =
        mock!(aws_sdk_ec2::Client::describe_route_tables).then_compute_output(move |_| {
            DescribeRouteTablesOutput::builder()
                .route_tables(
                    RouteTable::builder()
                        .route_table_id("rtb-00000001")
                        .vpc_id("vpc-00000000")
                        .build(),
                )
                .build()
        });
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        &[&vpc_rule, &subnet_rule, &rt_rule]
    );
    (client, subnet_rule)
}

pub(crate) struct Session {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub arn: String,
}

/// Temporary credentials of an assumed role in moto: what a Lambda function runs with.
pub(crate) fn assume_role(moto: &Moto, role: &str) -> Session {
    let v: Value = serde_json::from_str(&moto.fixture(&[
        "assume-role",
        "--role-name",
        role,
        "--session",
        "account-link",
    ]))
    .unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Session {
        access_key_id: s("accessKeyId"),
        secret_access_key: s("secretAccessKey"),
        session_token: s("sessionToken"),
        arn: s("arn"),
    }
}

pub(crate) async fn sdk_with(moto: &Moto, session: &Session) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(account_link::config::aws_https_client())
        .region(Region::new("us-west-2"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            &session.access_key_id,
            &session.secret_access_key,
            Some(session.session_token.clone()),
            None,
            "moto-assumed-role",
        ))
        .load()
        .await
}

/// Keeps every event handed to the provider-notification step.
#[derive(Default)]
pub(crate) struct Recorder(pub Mutex<Vec<link_contract::event::LinkEvent>>);

impl account_link::notify::Notifier for Recorder {
    fn notify<'a>(
        &'a self,
        event: &'a link_contract::event::LinkEvent,
        _: account_link::deadline::Deadline,
    ) -> futures::future::BoxFuture<'a, Result<(), account_link::notify::NotifyError>> {
        self.0.lock().unwrap().push(event.clone());
        Box::pin(async { Ok(()) })
    }
}

/// Gives the request a RequestId of its own (so its log lines can be told from other tests'), and
/// returns it.
pub(crate) fn own_request_id(payload: &mut Value, tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    payload["RequestId"] = id.clone().into();
    id
}

/// The time the function had left, by its own clock, when it started answering request `request_id`
/// (its "answering CloudFormation" log line; logs must be captured). Compared with
/// `handler::ANSWER_MARGIN`, this checks the deadline the function was given, not how fast a loaded
/// machine then delivered the answer.
pub(crate) fn time_left_when_answering(request_id: &str) -> Duration {
    let lines: Vec<Value> = logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "answering CloudFormation")
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["cfn_request_id"] == request_id))
        })
        .collect();
    assert_eq!(lines.len(), 1, "one answer logged for {request_id}");
    Duration::from_millis(
        lines[0]["fields"]["time_left_ms"]
            .as_u64()
            .expect("the answer's log line says how much time was left"),
    )
}
