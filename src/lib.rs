//! account-link: the CloudFormation custom resource that links a customer's AWS account to a SaaS
//! provider. See `handler` for the flow of one invocation and README.md for the whole picture; the event
//! it sends is the `link-contract` crate's.

pub mod app;
pub mod cfn;
pub mod config;
pub mod deadline;
pub mod delivery;
pub mod handler;
pub mod http;
pub mod inventory;
pub mod notify;
pub mod outbound;
pub mod peering;
pub mod proof;
pub mod properties;
pub mod report;
pub mod secret;
pub mod text;

pub use app::App;
pub use handler::handle;
