//! The provider's side of account-link: `link-receiver` receives the events the customer's stack sends,
//! verifies who sent them, stores them durably, and serves what it knows.
//!
//! - [`config`]: the command line, checked at start (what would expose data or weaken checks is refused).
//! - `server`: the listener and its limits (connections, header size and time).
//! - `receiver`: `POST /hooks/account-link`, verified in the order that keeps unauthenticated work small.
//! - [`store`]: links, inventories and every delivery in SQLite or PostgreSQL; 2xx only after commit.
//! - `api`: the read API under `/api`, behind the bearer token.
//!
//! Receivers keep no state of their own: several can share one PostgreSQL behind a load balancer.

pub mod config;
pub mod store;

mod api;
mod receiver;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};

use config::{Auth, Limits, Settings};
use store::{Delivery, Store};

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
}

impl App {
    pub(crate) fn notify_stored(&self, d: &Delivery) {
        let _ = self.changes.send(d.event.data.physical_resource_id.clone());
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
    #[error("{0}")]
    Unsupported(String),
}

/// A bound, ready registry.
pub struct Registry {
    listener: TcpListener,
    router: Router,
    limits: Limits,
}

impl Registry {
    /// Opens the database (migrating it) and binds the listen address.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        if settings.auth.mode.proof() {
            check_proof_support()?;
        }
        let store = Store::open(&settings.database).await?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let app = Arc::new(App {
            store,
            auth: settings.auth,
            limits: settings.limits,
            api_token: settings.api_token,
            verify_slots: Arc::new(Semaphore::new(cpus * 2)),
            changes: broadcast::channel(1024).0,
        });
        let api = api::router().layer(axum::middleware::from_fn_with_state(
            app.clone(),
            api::require_token,
        ));
        let router = Router::new()
            .route("/hooks/account-link", post(receiver::receive))
            .route("/healthz", get(api::health))
            .nest("/api", api)
            .with_state(app);
        Ok(Self {
            listener,
            router,
            limits: settings.limits,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        server::serve(self.listener, self.router, self.limits, shutdown).await;
    }
}

// Until the account proof's verifier lands (issue 12), proof modes refuse to start rather than accept
// unverified deliveries.
fn check_proof_support() -> Result<(), StartError> {
    Err(StartError::Unsupported(
        "--auth-mode with proofs needs proof verification, which this build does not have yet; use --auth-mode hmac-only".into(),
    ))
}

pub(crate) fn proof_header() -> &'static str {
    "account-link-proof"
}

pub(crate) async fn check_proof(
    _app: &App,
    _proof: &str,
    _event: &link_contract::event::LinkEvent,
    _body: &[u8],
) -> Result<String, Rejected> {
    Err(Rejected::Proof(
        "proof verification is not available".into(),
    ))
}
