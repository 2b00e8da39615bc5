//! The HTTPS client for what the function sends itself: the answer to CloudFormation and the provider
//! callback. Building it loads and parses the system's root certificates, the largest piece of a cold
//! start's init (bench/PROFILE.md). [`Http::warm_up`] (called by `App::new`) starts that on a blocking
//! thread at init, so it runs while the runtime waits for the first event and the first invocation lists
//! the account; whoever needs the client first waits only for what is left of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

/// A client for everything the function sends over HTTP: no redirects, bounded connects.
pub fn client() -> reqwest::Client {
    // reqwest is built without a crypto provider of its own: use ring, process-wide (idempotent).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("the TLS backend initialises")
}

/// The client, built once per process on first use (or ahead of it, see [`Http::warm_up`]). Clones share it.
#[derive(Clone, Default)]
pub struct Http(Arc<OnceCell<reqwest::Client>>);

impl Http {
    /// Not built yet.
    pub fn lazy() -> Self {
        Self::default()
    }

    /// Starts building the client in the background (needs a Tokio runtime).
    pub fn warm_up(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            this.get().await;
        });
    }

    /// The client; built here if nobody has started it, otherwise awaited.
    pub async fn get(&self) -> &reqwest::Client {
        self.0
            .get_or_init(|| async {
                // Off the async workers: parsing the certificates is a few milliseconds of CPU.
                match tokio::task::spawn_blocking(client).await {
                    Ok(c) => c,
                    // The blocking pool is shutting down (or the build panicked, which then repeats here).
                    Err(_) => client(),
                }
            })
            .await
    }
}

impl From<reqwest::Client> for Http {
    fn from(client: reqwest::Client) -> Self {
        Self(Arc::new(OnceCell::new_with(Some(client))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn built_once_and_shared_by_clones() {
        let http = Http::lazy();
        let other = http.clone();
        http.warm_up();
        let a: *const reqwest::Client = other.get().await;
        let b: *const reqwest::Client = http.get().await;
        assert_eq!(a, b, "one client per process, whoever asks first");
        let ready = Http::from(client());
        assert!(ready.0.initialized());
    }
}
