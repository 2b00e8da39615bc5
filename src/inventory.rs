//! The account's networks: VPCs, subnets and route tables in every requested region, listed by the
//! shared `link-ec2` crate (the provider's registry lists a linked account with the same code). Only
//! `ec2:DescribeVpcs`, `ec2:DescribeSubnets` and `ec2:DescribeRouteTables` are called (the function's role
//! allows nothing else); all regions and all three calls run concurrently and every page is followed.

pub use link_ec2::{collect, route_target, Calls, Ec2Clients, InventoryError};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::deadline::{InFlight, InFlightGuard};

/// The calls still running are named when the function's deadline comes.
impl Calls for InFlight {
    type Guard = InFlightGuard;
    fn start(&self, what: String) -> InFlightGuard {
        InFlight::start(self, what)
    }
}

/// Why an EC2 call failed, naming the function's role and credentials.
pub(crate) fn describe_sdk_error<E, R>(err: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    link_ec2::describe_sdk_error_for(err, link_ec2::Caller::FUNCTION)
}
