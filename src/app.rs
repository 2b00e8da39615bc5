//! What the function keeps between invocations: the clients built once at init (EC2 per region, HTTPS,
//! the notifier) and the configuration they were built from. The handler runs an invocation with it; the
//! modules doing the work take only the parts they need (peering: the EC2 clients and the region).

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::http::Http;
pub use crate::inventory::Ec2Clients;
use crate::notify::{Auth, Channels, Notifier, SnsPublisher, Webhook};
use crate::outbound::OutboundPolicy;
use crate::proof::Prover;
use crate::secret::SigningKeys;

/// What the function keeps between invocations: clients built once at init.
pub struct App {
    pub ec2: Ec2Clients,
    /// Started by [`App::new`] on a blocking thread, awaited on first use.
    pub http: Http,
    pub outbound: OutboundPolicy,
    pub notifier: Arc<dyn Notifier>,
    /// The function's own region: the default for `Regions`.
    pub region: String,
    /// A configuration problem found at init; Create and Update report it.
    pub config_error: Option<ConfigError>,
}

impl App {
    /// Builds the clients from the SDK configuration (region, endpoint, credentials) and the environment.
    pub fn new(sdk: &aws_config::SdkConfig, config: Result<Config, ConfigError>) -> Self {
        let region = sdk
            .region()
            .map_or_else(|| "us-east-1".to_string(), |r| r.to_string());
        let http = Http::lazy();
        // Inside a runtime (main's, a test's) the client is built in the background from now on.
        if tokio::runtime::Handle::try_current().is_ok() {
            http.warm_up();
        }
        let (config, config_error) = match config {
            Ok(c) => (c, None),
            Err(e) => (Config::default(), Some(e)),
        };
        let prover = config
            .audience
            .clone()
            .map(|audience| Arc::new(Prover::new(sdk, audience)));
        let channels = Channels {
            webhook: config.callback.clone().map(|c| {
                let auth = Auth {
                    keys: c
                        .secret
                        .clone()
                        .map(|s| Arc::new(SigningKeys::from_source(s, sdk))),
                    prover: prover.clone(),
                };
                Webhook::new(http.clone(), c, auth)
            }),
            sns: config
                .sns_topic_arn
                .clone()
                .map(|arn| SnsPublisher::for_topic(sdk, arn, prover.clone())),
        };
        let ec2 = Ec2Clients::new(aws_sdk_ec2::Config::from(sdk));
        // The usual region's client is built at init; others on first use, then kept for the process.
        ec2.client(&region);
        Self {
            ec2,
            http,
            outbound: config.outbound,
            notifier: Arc::new(channels),
            region,
            config_error,
        }
    }
}
