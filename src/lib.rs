//! account-link: the CloudFormation custom resource that links a customer's AWS account to a SaaS
//! provider. See `handler` for the flow of one invocation and README.md for the whole picture.

pub mod cfn;
pub mod config;
pub mod deadline;
pub mod delivery;
pub mod event;
pub mod handler;
pub mod inventory;
pub mod notify;
pub mod outbound;
pub mod properties;
pub mod receiver;
pub mod signing;
pub mod text;

pub use handler::{handle, App};
