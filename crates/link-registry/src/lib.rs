//! The provider's side of account-link: `link-receiver` receives the events the customer's stack sends,
//! verifies who sent them, stores them durably, and serves what it knows.
//!
//! - [`config`]: the command line, checked at start (what would expose data or weaken checks is refused).
//! - [`healthcheck`], [`migrate`]: the `healthcheck` and `migrate` subcommands a deployment runs.
//! - `server`: the listener and its limits (connections, each client's share, header size and time, body
//!   rate).
//! - `receiver`: `POST /hooks/account-link`, verified in the order that keeps unauthenticated work small;
//!   [`proof`]: the proof of the sending account, replayed to AWS STS.
//! - `live`: the provider's own AWS access: checks that it can assume each link's roles, and refreshes
//!   each linked account's networks through its RemoteRole (on demand and on a schedule, one receiver per
//!   link at a time).
//! - `store`: links, inventories and every delivery in SQLite or PostgreSQL; 2xx only after commit.
//! - `api`: the API under `/api`; `console`: the provider's console (pages, live changes, embedded assets);
//!   `auth`: who may use either (bearer token, console sessions, loopback) and CSRF; `client`: the client's
//!   address and scheme, through trusted proxies.
//!
//! Receivers keep no state of their own (console sessions are in the database too; only failed logins are
//! counted in memory): several can share one PostgreSQL behind a load balancer.

pub mod config;
pub mod healthcheck;
pub mod proof;

mod store;

mod api;
mod auth;
mod client;
mod console;
mod error;
mod live;
mod receiver;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};

use config::{Auth, Console, Limits, Settings};
use store::Store;

pub use receiver::Rejected;

/// What every request handler shares.
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) auth: Auth,
    pub(crate) limits: Limits,
    pub(crate) api_token: Option<String>,
    /// Signature checks running at once (CPU work on the blocking pool).
    pub(crate) verify_slots: Arc<Semaphore>,
    /// Link ids as deliveries are stored, for pages that follow changes live.
    pub(crate) changes: broadcast::Sender<String>,
    /// Browsers following changes (each holds a connection open).
    pub(crate) followers: Arc<Semaphore>,
    /// Set when the registry stops, so that open change streams end.
    pub(crate) closing: watch::Sender<bool>,
    pub(crate) console: Console,
    pub(crate) sessions: auth::Sessions,
    /// Peers whose forwarding headers name the client (`client`).
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Present when deliveries must prove their account.
    pub(crate) proofs: Option<proof::ProofVerifier>,
    /// Role checks and refreshes (the provider's AWS access).
    pub(crate) live: Arc<live::Live>,
}

impl App {
    pub(crate) fn notify_stored(&self, link_id: String) {
        let _ = self.changes.send(link_id);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--sts-endpoint: {0}")]
    Sts(#[from] proof::ProofError),
}

/// Applies the migrations `database` lacks (`link-receiver migrate`); the versions applied now, empty
/// when the schema was current.
pub async fn migrate(database: &str) -> Result<Vec<i64>, StartError> {
    Ok(store::migrate(database).await?)
}

/// A bound, ready registry.
pub struct Registry {
    listener: TcpListener,
    router: Router,
    limits: Limits,
    app: Arc<App>,
}

/// Deletes what is no longer kept, once an hour (jittered, so receivers sharing a database spread out).
async fn purge_every_hour(store: Store, retain: Option<std::time::Duration>) {
    loop {
        let jitter = u64::from(auth::random_bytes(2)[0]) * 4;
        tokio::time::sleep(std::time::Duration::from_secs(3600 - 512 + jitter)).await;
        match store.purge(retain).await {
            Ok(n) => tracing::info!(deleted = n, "purged expired rows"),
            Err(e) => tracing::warn!(error = %e, "purge failed; retried in an hour"),
        }
    }
}

impl Registry {
    /// Opens the database (migrating it) and binds the listen address.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let proofs = match settings.auth.mode.proof() {
            true => Some(proof::ProofVerifier::with_options(
                proof::VerifierOptions {
                    endpoint_override: settings.auth.sts_endpoint.as_ref().map(|u| u.to_string()),
                    limits: settings.auth.proof_limits,
                    role_pattern: settings.auth.proof_role_pattern.clone(),
                    ..proof::VerifierOptions::default()
                },
            )?),
            false => None,
        };
        let store = Store::open_with(&settings.database, settings.store.clone()).await?;
        tracing::info!(engine = ?store.engine(), "database ready, migrations applied");
        tokio::spawn(purge_every_hour(store.clone(), settings.retain_events));
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        let live = live::Live::start(settings.live).await;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let secure_cookie = settings.console.public_url.scheme() == "https";
        let app = Arc::new(App {
            store,
            sessions: auth::Sessions::new(
                settings.api_token.as_deref(),
                settings.sessions,
                secure_cookie,
            ),
            trusted_proxies: settings.trusted_proxies,
            auth: settings.auth,
            limits: settings.limits,
            api_token: settings.api_token,
            verify_slots: Arc::new(Semaphore::new(cpus * 2)),
            changes: broadcast::channel(1024).0,
            followers: Arc::new(Semaphore::new(console::MAX_FOLLOWERS)),
            closing: watch::channel(false).0,
            console: settings.console,
            proofs,
            live,
        });
        auth::purge_expired(app.clone());
        live::schedule(app.clone());
        let api = api::router().layer(axum::middleware::from_fn_with_state(
            app.clone(),
            api::require_access,
        ));
        let router = Router::new()
            .route("/hooks/account-link", post(receiver::receive))
            .route("/healthz", get(api::health))
            .nest("/api", api)
            .merge(console::router())
            .with_state(app.clone())
            // Responses to clients that accept gzip (event streams and tiny bodies are left alone).
            .layer(tower_http::compression::CompressionLayer::new().gzip(true));
        Ok(Self {
            listener,
            router,
            limits: settings.limits,
            app,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let app = self.app.clone();
        let shutdown = async move {
            shutdown.await;
            // Pages following changes hold their connections open: end them so shutdown can finish.
            let _ = app.closing.send(true);
        };
        // Trusted proxies (--trusted-proxy) carry many clients: exempt from the per-client connection cap.
        let trusted = self.app.trusted_proxies.clone();
        let exempt: server::Exempt = if trusted.is_empty() {
            server::nobody_exempt()
        } else {
            Arc::new(move |ip| client::is_trusted(&trusted, ip.to_canonical()))
        };
        server::serve(self.listener, self.router, self.limits, exempt, shutdown).await;
    }
}
