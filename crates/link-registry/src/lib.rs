//! The provider's side of account-link: `link-receiver` receives the events the customer's stack sends,
//! verifies who sent them, stores them durably, and serves what it knows.
//!
//! - [`config`]: the command line, checked at start (what would expose data or weaken checks is refused).
//! - [`healthcheck`], [`migrate`]: the `healthcheck` and `migrate` subcommands a deployment runs.
//! - `server`: the listener and its limits (connections, header size and time).
//! - `receiver`: `POST /hooks/account-link`, verified in the order that keeps unauthenticated work small;
//!   [`proof`]: the proof of the sending account, replayed to AWS STS.
//! - `store`: links, inventories and every delivery in SQLite or PostgreSQL; 2xx only after commit.
//! - `api`: the API under `/api`; `console`: the provider's console (pages, live changes, embedded assets);
//!   `auth`: who may use either (bearer token, session cookie, loopback) and CSRF.
//!
//! Receivers keep no state of their own: several can share one PostgreSQL behind a load balancer.

pub mod config;
pub mod healthcheck;
pub mod proof;

mod store;

mod api;
mod auth;
mod console;
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
    pub(crate) keys: auth::Keys,
    /// Present when deliveries must prove their account.
    pub(crate) proofs: Option<proof::ProofVerifier>,
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

impl Registry {
    /// Opens the database (migrating it) and binds the listen address.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let proofs = match settings.auth.mode.proof() {
            true => Some(proof::ProofVerifier::with_options(
                proof::VerifierOptions {
                    endpoint_override: settings.auth.sts_endpoint.as_ref().map(|u| u.to_string()),
                    ..proof::VerifierOptions::default()
                },
            )?),
            false => None,
        };
        let store = Store::open(&settings.database).await?;
        tracing::info!(engine = ?store.engine(), "database ready, migrations applied");
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let secure_cookie = settings.console.public_url.scheme() == "https";
        let app = Arc::new(App {
            store,
            keys: auth::Keys::new(settings.api_token.as_deref(), secure_cookie),
            auth: settings.auth,
            limits: settings.limits,
            api_token: settings.api_token,
            verify_slots: Arc::new(Semaphore::new(cpus * 2)),
            changes: broadcast::channel(1024).0,
            followers: Arc::new(Semaphore::new(console::MAX_FOLLOWERS)),
            closing: watch::channel(false).0,
            console: settings.console,
            proofs,
        });
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
        server::serve(self.listener, self.router, self.limits, shutdown).await;
    }
}
