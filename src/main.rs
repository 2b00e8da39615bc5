use std::sync::Arc;

use account_link::config::{self, Config};
use account_link::App;
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = config::load_aws_config().await;
    let config = Config::from_env();
    if let Err(e) = &config {
        tracing::error!(error = %e, "misconfigured: Create and Update will fail until this is fixed");
    }
    let app = Arc::new(App::new(&sdk, config));
    lambda_runtime::run(service_fn(move |event| {
        account_link::handle(app.clone(), event)
    }))
    .await
}
