//! The account-link wire format, shared by both ends: the function builds events with it, a provider's
//! receiver verifies and reads them with it. Nothing here talks to AWS or a database.
//!
//! - [`event`], [`inventory`]: the link event and the network inventory it carries (JSON Schema:
//!   `schema/link-event.v1.json`).
//! - [`signing`]: Standard Webhooks signatures.
//! - [`proof`]: proof of the account (a signed `sts:GetCallerIdentity`), checked without I/O.
//! - [`parts`]: events split into numbered parts, and put back together.
//! - [`reason`]: the short words naming the check a delivery failed, shared with the verifiers in other
//!   languages (`verifiers/`).
//! - [`hex`]: lowercase hex, for digests and ids.
//! - [`partition`], [`arn`]: the AWS partition table (with `regions`, generated from botocore's endpoint
//!   data) and the one ARN parser.

pub mod arn;
pub mod event;
pub mod hex;
pub mod inventory;
pub mod partition;
pub mod parts;
pub mod proof;
pub mod reason;
mod regions;
pub mod signing;
