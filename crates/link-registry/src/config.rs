//! The command line and environment of `link-receiver`, checked once at start: a setting that would
//! expose customers' networks or accept unverifiable events stops the process with a message naming the
//! flag, instead of serving.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use link_contract::signing::SigningSecret;
use url::Url;

/// How deliveries must be authenticated (the function's `PROVIDER_AUTH_MODE` must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// A Standard Webhooks signature and a proof of the sending account (the default).
    HmacAndProof,
    /// Only the proof of the account: no shared secret anywhere.
    ProofOnly,
    /// Only the signature, for receivers that cannot reach AWS STS.
    HmacOnly,
}

impl AuthMode {
    pub fn hmac(self) -> bool {
        matches!(self, Self::HmacAndProof | Self::HmacOnly)
    }
    pub fn proof(self) -> bool {
        matches!(self, Self::HmacAndProof | Self::ProofOnly)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// link-receiver: the provider's side of account-link. Receives signed link events at
/// POST /hooks/account-link, stores them durably, and serves the read API (/api) and the console (/) on
/// the same address. Without a subcommand it serves (the flags below); `migrate` and `healthcheck` are
/// for deployments (a container image has no shell or curl).
#[derive(Debug, Parser)]
#[command(
    name = "link-receiver",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on (port 0 picks a free one). Any address other than loopback needs --api-token.
    #[arg(long, env = "LINK_RECEIVER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: Database,

    /// A Standard Webhooks secret (whsec_...); repeat, or space-separate in the environment, during a
    /// rotation.
    #[arg(
        long = "secret",
        env = "PROVIDER_SIGNING_SECRET",
        value_delimiter = ' ',
        hide_env_values = true
    )]
    pub secrets: Vec<String>,

    /// What a delivery must carry to be accepted.
    #[arg(
        long,
        env = "LINK_RECEIVER_AUTH_MODE",
        value_enum,
        default_value = "hmac-and-proof"
    )]
    pub auth_mode: AuthMode,

    /// The audience the function binds into every proof (its PROVIDER_AUDIENCE; by default the origin of
    /// its callback URL, e.g. https://hooks.example.com). Required with proofs.
    #[arg(long, env = "LINK_RECEIVER_AUDIENCE")]
    pub audience: Option<String>,

    /// Bearer token for the read API and the console. Without it they answer only on a loopback address.
    #[arg(long, env = "LINK_REGISTRY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// A load balancer or proxy in front whose forwarding headers (X-Forwarded-For, X-Forwarded-Proto,
    /// Forwarded) are believed: an address or CIDR; repeat, or comma-separate in the environment. Behind an
    /// AWS ALB: the VPC's CIDR (its nodes' addresses change). From any other peer these headers are ignored.
    /// Needs --api-token.
    #[arg(
        long = "trusted-proxy",
        env = "LINK_REGISTRY_TRUSTED_PROXY",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<String>,

    /// Seconds a console session lasts from its login, however much it is used.
    #[arg(long, default_value_t = 12 * 3600)]
    pub session_lifetime: u64,

    /// Seconds a console session may go unused before it ends.
    #[arg(long, default_value_t = 30 * 60)]
    pub session_idle: u64,

    /// Accepted distance in seconds between webhook-timestamp and this host's clock.
    #[arg(long, default_value_t = link_contract::signing::DEFAULT_TOLERANCE_SECS)]
    pub tolerance: u64,

    /// Largest delivery body accepted (the function splits larger events into parts of at most its
    /// PROVIDER_MAX_BODY_BYTES, 1 MiB by default).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Connections served at once; more wait in the kernel's accept queue.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,

    /// Connections one client (a peer address; an IPv6 /64) may hold at once; more are answered 429.
    /// Peers that are trusted proxies are not held to it (they carry many clients).
    #[arg(long, default_value_t = 32)]
    pub max_connections_per_client: usize,

    /// Seconds a client has to send a request's headers, from its first byte (or from connecting).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,

    /// Seconds a keep-alive connection may wait for its next request. Keep it above the idle timeout of any
    /// load balancer in front (AWS ALB: 60 s), so that it never sends a request on a connection being closed.
    #[arg(long, default_value_t = 75)]
    pub idle_timeout: u64,

    /// Seconds a client has to send a request's body; also how long an answer may wait for the client to
    /// read it.
    #[arg(long, default_value_t = 30)]
    pub body_timeout: u64,

    /// Bytes per second a request body must average once --body-rate-grace has passed; a slower body is
    /// cut with 408 (0: only --body-timeout applies).
    #[arg(long, default_value_t = 1024)]
    pub min_body_rate: u64,

    /// Seconds a request body may take before --min-body-rate applies (latency, a stall on a bad link).
    #[arg(long, default_value_t = 5)]
    pub body_rate_grace: u64,

    /// Replaces AWS STS for proof checks: loopback URLs only (tests, local runs).
    #[arg(long, env = "LINK_RECEIVER_STS_ENDPOINT")]
    pub sts_endpoint: Option<Url>,

    /// Only sessions of roles whose name matches may prove an event (`*` matches anything), e.g.
    /// `*-BasicLambdaRole-*`, the customer stack's function role. Default: any assumed role of the account.
    #[arg(long, env = "LINK_RECEIVER_PROOF_ROLE_PATTERN")]
    pub proof_role_pattern: Option<String>,

    /// Proofs sent to STS per second from one client (bursts of 4x); more are answered 429.
    #[arg(long, default_value_t = 5.0)]
    pub proof_rate_per_client: f64,

    /// Proofs sent to STS per second by this receiver in all (bursts of 2x); more are answered 429.
    #[arg(long, default_value_t = 100.0)]
    pub proof_rate: f64,

    /// Deliveries one AWS account may have stored per hour (0: no limit); more are answered 429 with
    /// Retry-After until the hour ends.
    #[arg(
        long,
        env = "LINK_REGISTRY_ACCOUNT_EVENTS_PER_HOUR",
        default_value_t = 3600
    )]
    pub account_events_per_hour: u64,

    /// Bytes of deliveries one AWS account may have stored per hour (0: no limit).
    #[arg(long, env = "LINK_REGISTRY_ACCOUNT_BYTES_PER_HOUR", default_value_t = 256 * 1024 * 1024)]
    pub account_bytes_per_hour: u64,

    /// Delete deliveries (and rejected ones) received more than this many days ago, except the one
    /// holding a link's current inventory. Default: keep everything.
    #[arg(long, env = "LINK_REGISTRY_RETAIN_EVENTS_DAYS")]
    pub retain_events_days: Option<u64>,

    /// The registry's public origin (https://links.example.com): the callback URL in quick-create links
    /// is <public-url>/hooks/account-link, and console cookies are Secure when it is https. Default:
    /// http://<listen address>.
    #[arg(long, env = "LINK_REGISTRY_PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// The published template (an S3 https URL) that the console's quick-create links launch.
    #[arg(long, env = "LINK_REGISTRY_TEMPLATE_URL")]
    pub template_url: Option<Url>,

    /// The region the console proposes for the customer's stack.
    #[arg(long, env = "LINK_REGISTRY_STACK_REGION", default_value = "us-east-1")]
    pub stack_region: String,

    /// A template parameter the provider knows, put into every quick-create link (repeat):
    /// ProviderAccountId=111122223333. Never a secret: the link is shown to customers.
    #[arg(long = "stack-param", value_name = "NAME=VALUE")]
    pub stack_params: Vec<String>,

    /// Stack names proposed in quick-create links start with this.
    #[arg(long, default_value = "account-link")]
    pub stack_name_prefix: String,

    /// Seconds a console link request waits for its stack before it expires.
    #[arg(long, default_value_t = 24 * 3600)]
    pub pending_ttl: u64,

    /// Subnets with fewer free IPv4 addresses are shown but cannot be picked.
    #[arg(long, default_value_t = 16)]
    pub min_free_ips: i64,

    /// How often each linked account's networks are refreshed through its RemoteRole (e.g. 6h, 30m, 90s;
    /// jittered by ±10%; 0: never on a schedule, only on demand). Needs the provider's AWS credentials.
    #[arg(long, env = "LINK_REGISTRY_REFRESH_EVERY", default_value = "6h")]
    pub refresh_every: String,

    /// Refreshes this receiver runs at once (one per link at any time, across receivers).
    #[arg(long, env = "LINK_REGISTRY_REFRESH_CONCURRENCY", default_value_t = 4)]
    pub refresh_concurrency: usize,

    /// Seconds a refresh (role checks and listing) may take before it is cut off and reported failed.
    #[arg(long, default_value_t = 120)]
    pub refresh_timeout: u64,

    /// Bytes of JSON a refreshed inventory may have at most; a larger one is not stored and the refresh is
    /// reported failed. The default is the bound link-receiver puts on a stack's split event (16 MiB).
    #[arg(long, default_value_t = link_contract::parts::MAX_SET_BYTES)]
    pub refresh_max_bytes: usize,

    /// Log lines as text or JSON.
    #[arg(
        long,
        env = "LINK_RECEIVER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// What a deployment runs besides the server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations that are not applied yet, then exit (0: the schema is current).
    Migrate(Database),
    /// Exit 0 when the receiver on this host answers GET /healthz with 2xx (its database is reachable),
    /// non-zero with the reason otherwise: a container health check for an image without curl.
    Healthcheck(Healthcheck),
}

/// The registry's database (the server's flags and `migrate`'s).
#[derive(Debug, Clone, Args)]
pub struct Database {
    /// sqlite://PATH (created when missing) or postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
    #[arg(
        long = "database",
        env = "LINK_REGISTRY_DATABASE",
        default_value = "sqlite://link-registry.db",
        hide_env_values = true
    )]
    pub url: String,

    /// The PostgreSQL password, put into the --database URL (which then must not have one). For secret
    /// stores that hand over the password alone (an ECS secret from the RDS-managed secret's `password`
    /// key): give it in the environment, not on the command line.
    #[arg(
        long = "database-password",
        env = "LINK_REGISTRY_DATABASE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

impl Database {
    /// The URL to connect to, with the password when one is given separately.
    pub fn url(&self) -> Result<String, ConfigError> {
        let password = match self.password.as_deref() {
            Some(p) if !p.is_empty() => p,
            _ => return Ok(self.url.clone()),
        };
        // Never echo the URL: it may hold a password of its own.
        let postgres = self.url.starts_with("postgres://") || self.url.starts_with("postgresql://");
        let mut url = match Url::parse(&self.url) {
            Ok(u) if postgres && u.has_host() && !u.username().is_empty() => u,
            _ => {
                return Err(err(
                    "--database-password",
                    "needs a --database URL of the form postgres://USER@HOST[:PORT]/DB",
                ))
            }
        };
        if url.password().is_some() {
            return Err(err(
                "--database-password",
                "the --database URL has a password already: give it in one place only",
            ));
        }
        // Percent-encoded here, every byte but letters and digits ('%' included, which set_password would
        // take for an escape); the driver decodes it.
        let encoded =
            percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        url.set_password(Some(&encoded)).map_err(|()| {
            err(
                "--database-password",
                "cannot be put into the --database URL",
            )
        })?;
        Ok(url.into())
    }
}

/// Where `healthcheck` finds the receiver.
#[derive(Debug, Clone, Args)]
pub struct Healthcheck {
    /// The receiver's --listen address (the same flag and environment variable); an unspecified address
    /// (0.0.0.0, [::]) is asked on loopback.
    #[arg(long, env = "LINK_RECEIVER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Seconds the whole check may take (connect, ask, read the answer).
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// Bounds on what any client, authenticated or not, can make the receiver do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// Bytes per second a request body must average after `body_rate_grace` (0: no minimum).
    pub min_body_rate: u64,
    pub body_rate_grace: Duration,
    /// The request line and headers together.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_connections: 512,
            max_connections_per_client: 32,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            body_rate_grace: Duration::from_secs(5),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Everything the registry needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database: String,
    pub auth: Auth,
    pub api_token: Option<String>,
    pub limits: Limits,
    pub console: Console,
    pub store: crate::store::StoreOptions,
    /// Deliveries older than this are deleted (see `--retain-events-days`).
    pub retain_events: Option<Duration>,
    /// Peers whose forwarding headers name the client.
    pub trusted_proxies: Vec<IpNet>,
    pub sessions: SessionLimits,
    /// Role checks and refreshes.
    pub live: crate::live::LiveSettings,
}

/// How long a console session lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// From its login.
    pub lifetime: Duration,
    /// Without use.
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 3600),
            idle: Duration::from_secs(30 * 60),
        }
    }
}

/// What the console offers a provider's customer.
#[derive(Debug, Clone)]
pub struct Console {
    pub public_url: Url,
    pub template_url: Option<Url>,
    pub stack_region: String,
    pub stack_params: Vec<(String, String)>,
    pub stack_name_prefix: String,
    pub pending_ttl: Duration,
    pub min_free_ips: i64,
}

/// Template parameters that hold secrets and so never go into a link.
const SECRET_PARAMETERS: &[&str] = &["ProviderSigningSecret"];
/// Parameters the console sets itself in every link.
const CONSOLE_PARAMETERS: &[&str] = &["ExternalId", "ProviderCallbackUrl"];

/// How deliveries are authenticated.
#[derive(Debug, Clone)]
pub struct Auth {
    pub mode: AuthMode,
    pub secrets: Vec<SigningSecret>,
    pub audience: Option<String>,
    pub tolerance_secs: u64,
    pub sts_endpoint: Option<Url>,
    pub proof_role_pattern: Option<String>,
    pub proof_limits: crate::proof::RateLimits,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub problem: String,
}

fn err(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        problem: problem.into(),
    }
}

impl Cli {
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let secrets: Vec<String> = self.secrets.into_iter().filter(|s| !s.is_empty()).collect();
        let secrets = if secrets.is_empty() {
            Vec::new()
        } else {
            SigningSecret::parse_list(&secrets.join(" "))
                .map_err(|e| err("--secret", format!("the signing secret {e}")))?
        };
        if self.auth_mode.hmac() && secrets.is_empty() {
            return Err(err(
                "--secret",
                format!(
                    "auth mode {} needs at least one signing secret (or use --auth-mode proof-only)",
                    mode_name(self.auth_mode)
                ),
            ));
        }
        let audience = self.audience.filter(|a| !a.trim().is_empty());
        if self.auth_mode.proof() && audience.is_none() {
            return Err(err(
                "--audience",
                format!(
                    "auth mode {} needs the audience the function binds into its proofs (its PROVIDER_AUDIENCE)",
                    mode_name(self.auth_mode)
                ),
            ));
        }
        if let Some(sts) = &self.sts_endpoint {
            if !crate::proof::is_loopback(sts) {
                return Err(err(
                    "--sts-endpoint",
                    "only a loopback URL may replace AWS STS (it decides which account sent an event)",
                ));
            }
        }
        let api_token = self.api_token.filter(|t| !t.is_empty());
        if let Some(t) = &api_token {
            if t.len() < 16 {
                return Err(err("--api-token", "must be at least 16 characters"));
            }
        }
        if api_token.is_none() && !self.listen.ip().is_loopback() {
            return Err(err(
                "--api-token",
                format!(
                    "is required to listen on {}: the read API and console expose customers' network layouts; \
                     without a token they are served on a loopback address only",
                    self.listen
                ),
            ));
        }
        let trusted_proxies = parse_proxies(&self.trusted_proxies)?;
        if !trusted_proxies.is_empty() && api_token.is_none() {
            return Err(err(
                "--trusted-proxy",
                "needs --api-token: without a token the registry trusts requests that name a loopback host, \
                 which every request through a proxy can do",
            ));
        }
        if self.session_lifetime == 0 || self.session_idle == 0 {
            return Err(err(
                if self.session_lifetime == 0 {
                    "--session-lifetime"
                } else {
                    "--session-idle"
                },
                "must be at least 1 second",
            ));
        }
        if self.max_body_bytes < 16 * 1024 {
            return Err(err("--max-body-bytes", "must be at least 16384"));
        }
        if self.max_connections == 0 {
            return Err(err("--max-connections", "must be at least 1"));
        }
        let proof_role_pattern = self.proof_role_pattern.filter(|p| !p.is_empty());
        if let Some(p) = &proof_role_pattern {
            if p.len() > 64
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-*".contains(&b))
            {
                return Err(err(
                    "--proof-role-pattern",
                    "must be an IAM role name with * wildcards (at most 64 characters)",
                ));
            }
        }
        for (flag, rate) in [
            ("--proof-rate-per-client", self.proof_rate_per_client),
            ("--proof-rate", self.proof_rate),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(err(flag, "must be a number of proofs per second above 0"));
            }
        }
        if self.retain_events_days == Some(0) {
            return Err(err(
                "--retain-events-days",
                "must be at least 1 (leave it out to keep every delivery)",
            ));
        }
        let refresh_every = match self.refresh_every.trim() {
            "0" => None,
            text => match humantime::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) => Some(d),
                Ok(_) => return Err(err("--refresh-every", "must be at least 1s (or 0: off)")),
                Err(e) => {
                    return Err(err(
                        "--refresh-every",
                        format!("must be a duration such as 6h or 30m, or 0: {e}"),
                    ))
                }
            },
        };
        if self.refresh_concurrency == 0 {
            return Err(err("--refresh-concurrency", "must be at least 1"));
        }
        if self.refresh_timeout == 0 {
            return Err(err("--refresh-timeout", "must be at least 1 second"));
        }
        if self.refresh_max_bytes == 0 {
            return Err(err("--refresh-max-bytes", "must be at least 1"));
        }
        let live = crate::live::LiveSettings {
            every: refresh_every,
            concurrency: self.refresh_concurrency,
            timeout: Duration::from_secs(self.refresh_timeout),
            max_bytes: self.refresh_max_bytes,
        };
        if self.max_connections_per_client == 0 {
            return Err(err("--max-connections-per-client", "must be at least 1"));
        }
        let console = Console {
            public_url: match self.public_url {
                Some(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
                Some(_) => return Err(err("--public-url", "must be an http(s) origin")),
                None => Url::parse(&format!("http://{}", self.listen))
                    .map_err(|e| err("--listen", e.to_string()))?,
            },
            template_url: match self.template_url {
                Some(u) if u.scheme() == "https" => Some(u),
                Some(_) => {
                    return Err(err(
                        "--template-url",
                        "must be an https URL (the AWS console loads templates from S3)",
                    ))
                }
                None => None,
            },
            stack_region: if link_contract::partition::is_region_name(&self.stack_region) {
                self.stack_region
            } else {
                return Err(err(
                    "--stack-region",
                    "must be a region name such as eu-west-1",
                ));
            },
            stack_params: self
                .stack_params
                .iter()
                .map(|p| parse_stack_param(p))
                .collect::<Result<_, _>>()?,
            stack_name_prefix: match self.stack_name_prefix {
                p if !p.is_empty()
                    && p.len() <= 64
                    && p.starts_with(|c: char| c.is_ascii_alphabetic())
                    && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                {
                    p
                }
                _ => return Err(err(
                    "--stack-name-prefix",
                    "must start with a letter and hold only letters, digits and '-' (at most 64)",
                )),
            },
            pending_ttl: Duration::from_secs(self.pending_ttl.max(1)),
            min_free_ips: self.min_free_ips.max(0),
        };
        Ok(Settings {
            console,
            listen: self.listen,
            database: self.database.url()?,
            auth: Auth {
                mode: self.auth_mode,
                secrets,
                audience,
                tolerance_secs: self.tolerance,
                sts_endpoint: self.sts_endpoint,
                proof_role_pattern,
                proof_limits: crate::proof::RateLimits {
                    per_client_per_second: self.proof_rate_per_client,
                    per_client_burst: (self.proof_rate_per_client * 4.0).max(1.0),
                    global_per_second: self.proof_rate,
                    global_burst: (self.proof_rate * 2.0).max(1.0),
                },
            },
            store: crate::store::StoreOptions {
                quotas: crate::store::Quotas {
                    events_per_hour: self.account_events_per_hour,
                    bytes_per_hour: self.account_bytes_per_hour,
                },
            },
            retain_events: self
                .retain_events_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
            api_token,
            trusted_proxies,
            live,
            sessions: SessionLimits {
                lifetime: Duration::from_secs(self.session_lifetime),
                idle: Duration::from_secs(self.session_idle),
            },
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_connections: self.max_connections,
                max_connections_per_client: self.max_connections_per_client,
                header_timeout: Duration::from_secs(self.header_timeout.max(1)),
                idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
                body_timeout: Duration::from_secs(self.body_timeout.max(1)),
                min_body_rate: self.min_body_rate,
                body_rate_grace: Duration::from_secs(self.body_rate_grace),
                ..Limits::default()
            },
        })
    }
}

/// `--trusted-proxy` values: CIDRs or single addresses.
fn parse_proxies(raw: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    raw.iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(|r| {
            let net = r
                .parse::<IpNet>()
                .or_else(|_| r.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    err(
                        "--trusted-proxy",
                        format!("'{r}' is not an address or a CIDR such as 10.0.0.0/16"),
                    )
                })?;
            if net.prefix_len() == 0 {
                return Err(err(
                    "--trusted-proxy",
                    format!("'{r}' would trust every client to name its own address"),
                ));
            }
            Ok(net.trunc())
        })
        .collect()
}

fn parse_stack_param(raw: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| err("--stack-param", format!("'{raw}' is not NAME=VALUE")))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(err(
            "--stack-param",
            format!("'{name}' is not a template parameter name"),
        ));
    }
    if SECRET_PARAMETERS.contains(&name) {
        return Err(err(
            "--stack-param",
            format!("{name} is a secret: it never goes into a link customers see"),
        ));
    }
    if CONSOLE_PARAMETERS.contains(&name) {
        return Err(err(
            "--stack-param",
            format!("{name} is set by the console itself in every link"),
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

fn mode_name(m: AuthMode) -> String {
    m.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn cli(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut all = vec!["link-receiver"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").settings()
    }

    #[test]
    fn defaults_need_a_secret_and_an_audience() {
        assert_eq!(cli(&[]).unwrap_err().flag, "--secret");
        assert_eq!(cli(&["--secret", SECRET]).unwrap_err().flag, "--audience");
        let s = cli(&[
            "--secret",
            SECRET,
            "--audience",
            "https://hooks.example.com",
        ])
        .unwrap();
        assert_eq!(s.auth.mode, AuthMode::HmacAndProof);
        assert!(s.listen.ip().is_loopback());
        assert_eq!(s.database, "sqlite://link-registry.db");
        assert_eq!(s.limits.max_connections_per_client, 32);
        assert_eq!(s.limits.min_body_rate, 1024);
        assert_eq!(s.limits.body_rate_grace, Duration::from_secs(5));
        assert!(cli(&["--auth-mode", "hmac-only", "--secret", SECRET]).is_ok());
        assert!(cli(&["--auth-mode", "proof-only", "--audience", "a"]).is_ok());
    }

    #[test]
    fn serving_needs_no_subcommand_and_the_subcommands_take_their_own_flags() {
        let c = Cli::try_parse_from([
            "link-receiver",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "sqlite://x.db",
        ])
        .unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.database.url, "sqlite://x.db");
        let c = Cli::try_parse_from(["link-receiver", "migrate", "--database", "sqlite://y.db"])
            .unwrap();
        match c.command {
            Some(Command::Migrate(db)) => assert_eq!(db.url, "sqlite://y.db"),
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["link-receiver", "healthcheck", "--listen", "0.0.0.0:9000"])
            .unwrap();
        match c.command {
            Some(Command::Healthcheck(h)) => {
                assert_eq!(h.listen, "0.0.0.0:9000".parse().unwrap());
                assert_eq!(h.timeout, 3);
            }
            other => panic!("{other:?}"),
        }
        // A server flag before a subcommand would be silently ignored by it: refused instead.
        assert!(
            Cli::try_parse_from(["link-receiver", "--database", "sqlite://z.db", "migrate"])
                .is_err()
        );
    }

    #[test]
    fn the_database_password_goes_into_the_url_encoded() {
        let db = |url: &str, password: Option<&str>| Database {
            url: url.to_string(),
            password: password.map(str::to_string),
        };
        let url = db(
            "postgres://registry@db.internal:5432/registry",
            Some("p@ss/w%rd:x?"),
        )
        .url()
        .unwrap();
        let parsed = Url::parse(&url).unwrap();
        assert_eq!(parsed.username(), "registry");
        assert_eq!(parsed.password(), Some("p%40ss%2Fw%25rd%3Ax%3F"));
        // What the driver decodes is the password as given.
        let decoded = percent_encoding::percent_decode_str(parsed.password().unwrap());
        assert_eq!(decoded.decode_utf8().unwrap(), "p@ss/w%rd:x?");
        assert_eq!(
            (parsed.host_str(), parsed.port(), parsed.path()),
            (Some("db.internal"), Some(5432), "/registry")
        );
        // Without a separate password (or an empty one) the URL is used as given.
        assert_eq!(db("sqlite://a.db", None).url().unwrap(), "sqlite://a.db");
        assert_eq!(
            db("postgres://u:pw@h/d", Some("")).url().unwrap(),
            "postgres://u:pw@h/d"
        );
        for (url, problem) in [
            ("sqlite:///data/r.db", "postgres://USER@HOST"),
            ("postgres://h/d", "postgres://USER@HOST"),
            ("postgres://u:old@h/d", "password already"),
        ] {
            let e = db(url, Some("secret-value")).url().unwrap_err();
            assert_eq!(e.flag, "--database-password");
            assert!(e.to_string().contains(problem), "{e}");
            assert!(
                !e.to_string().contains("secret-value") && !e.to_string().contains("old"),
                "{e}"
            );
        }
    }

    #[test]
    fn refuses_what_would_expose_or_weaken() {
        let base = ["--auth-mode", "hmac-only", "--secret", SECRET];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            cli(&v)
        };
        let e = with(&["--listen", "0.0.0.0:8080"]).unwrap_err();
        assert_eq!(e.flag, "--api-token");
        assert!(e.to_string().contains("0.0.0.0:8080"), "{e}");
        assert!(with(&[
            "--listen",
            "0.0.0.0:8080",
            "--api-token",
            "0123456789abcdef0123"
        ])
        .is_ok());
        assert_eq!(
            with(&["--api-token", "short"]).unwrap_err().flag,
            "--api-token"
        );
        assert_eq!(
            with(&["--sts-endpoint", "https://sts.evil.example/"])
                .unwrap_err()
                .flag,
            "--sts-endpoint"
        );
        assert!(with(&["--sts-endpoint", "http://127.0.0.1:5000/"]).is_ok());
        assert_eq!(
            with(&["--stack-param", "ProviderSigningSecret=whsec_x"])
                .unwrap_err()
                .flag,
            "--stack-param"
        );
        assert_eq!(
            with(&["--stack-param", "ExternalId=x"]).unwrap_err().flag,
            "--stack-param"
        );
        assert_eq!(
            with(&["--template-url", "http://b.s3.amazonaws.com/t.yaml"])
                .unwrap_err()
                .flag,
            "--template-url"
        );
        assert_eq!(
            with(&["--max-connections-per-client", "0"])
                .unwrap_err()
                .flag,
            "--max-connections-per-client"
        );
        let ok = with(&["--stack-param", "ProviderAccountId=111122223333"]).unwrap();
        assert_eq!(
            ok.console.stack_params,
            [("ProviderAccountId".to_string(), "111122223333".to_string())]
        );
        assert_eq!(ok.console.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            with(&["--trusted-proxy", "10.0.0.0/16"]).unwrap_err().flag,
            "--trusted-proxy",
            "a proxy needs a token"
        );
        let token = ["--api-token", "0123456789abcdef0123"];
        let proxied = |p: &str| with(&[token[0], token[1], "--trusted-proxy", p]);
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.0/33", "nginx"] {
            let e = proxied(bad).unwrap_err();
            assert_eq!(e.flag, "--trusted-proxy", "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        let ok = with(&[
            token[0],
            token[1],
            "--trusted-proxy",
            "10.0.7.9/16",
            "--trusted-proxy",
            "127.0.0.1,2001:db8::/56",
        ])
        .unwrap();
        assert_eq!(
            ok.trusted_proxies,
            ["10.0.0.0/16", "127.0.0.1/32", "2001:db8::/56"].map(|n| n.parse::<IpNet>().unwrap())
        );
        assert_eq!(ok.sessions, SessionLimits::default());
        assert_eq!(
            with(&["--session-idle", "0"]).unwrap_err().flag,
            "--session-idle"
        );
        let e = cli(&["--auth-mode", "hmac-only", "--secret", "whsec_AAAA"]).unwrap_err();
        assert_eq!(e.flag, "--secret");
        assert!(!e.to_string().contains("AAAA"), "{e}");
    }
}
