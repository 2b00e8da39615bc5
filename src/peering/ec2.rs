//! The EC2 calls of the peering resource, each named in the in-flight list while it runs and, when it
//! fails, in the reason (action, what, region, EC2's words).

use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, RouteTable, VpcPeeringConnection};
use aws_sdk_ec2::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::plan::{status, Step};
use crate::deadline::{Deadline, InFlight};
use crate::text::truncate_chars;

/// Longest wait between two looks at a connection that is becoming active.
const MAX_POLL: Duration = Duration::from_secs(5);
const MAX_PAGES: usize = 1000;

/// The region's client, for one invocation.
pub(super) struct Ec2<'a> {
    pub(super) client: Client,
    pub(super) region: &'a str,
    pub(super) in_flight: &'a InFlight,
}

/// An EC2 call that failed, in words a cloud admin can act on, with EC2's error code.
pub(super) struct CallError {
    code: Option<String>,
    pub(super) message: String,
}

impl Ec2<'_> {
    async fn call<T, E, F>(&self, action: &'static str, what: &str, fut: F) -> Result<T, CallError>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let _pending = self
            .in_flight
            .start(format!("ec2:{action} {what} in {}", self.region));
        fut.await.map_err(|e| CallError {
            code: e.code().map(str::to_string),
            message: format!(
                "ec2:{action} {what} in {} {}",
                self.region,
                crate::inventory::describe_sdk_error(e)
            ),
        })
    }

    /// A call that changes the account, where only whether it succeeded matters.
    async fn change<T, E, F>(&self, action: &'static str, what: &str, fut: F) -> Result<(), String>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call(action, what, fut)
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }

    /// The connection as this account sees it; None when EC2 does not know it.
    pub(super) async fn connection(
        &self,
        id: &str,
    ) -> Result<Option<VpcPeeringConnection>, String> {
        let found = self
            .call(
                "DescribeVpcPeeringConnections",
                id,
                self.client
                    .describe_vpc_peering_connections()
                    .vpc_peering_connection_ids(id)
                    .send(),
            )
            .await;
        match found {
            Ok(out) => Ok(out
                .vpc_peering_connections()
                .iter()
                .find(|c| c.vpc_peering_connection_id() == Some(id))
                .cloned()),
            Err(e) if e.code.as_deref() == Some("InvalidVpcPeeringConnectionID.NotFound") => {
                Ok(None)
            }
            Err(e) => Err(e.message),
        }
    }

    /// Every route table of `vpc_id`, every page.
    pub(super) async fn tables_of(&self, vpc_id: &str) -> Result<Vec<RouteTable>, String> {
        let mut tables = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .call(
                    "DescribeRouteTables",
                    &format!("of {vpc_id}"),
                    self.client
                        .describe_route_tables()
                        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
                        .set_next_token(token.clone())
                        .send(),
                )
                .await
                .map_err(|e| e.message)?;
            tables.extend(out.route_tables().iter().cloned());
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) if token.as_deref() != Some(t) => token = Some(t.to_string()),
                _ => return Ok(tables),
            }
        }
        Err(format!(
            "ec2:DescribeRouteTables of {vpc_id} did not finish after {MAX_PAGES} pages"
        ))
    }

    pub(super) async fn accept(&self, pcx: &str) -> Result<(), String> {
        self.change(
            "AcceptVpcPeeringConnection",
            pcx,
            self.client
                .accept_vpc_peering_connection()
                .vpc_peering_connection_id(pcx)
                .send(),
        )
        .await
    }

    /// Points `cidr` in `table` at `pcx` as the plan's step says (CreateRoute or ReplaceRoute, which take
    /// the same three fields); nothing for a route already there.
    pub(super) async fn route(
        &self,
        step: Step,
        table: &str,
        cidr: &str,
        pcx: &str,
    ) -> Result<(), String> {
        macro_rules! through_pcx {
            ($request:expr) => {
                $request
                    .route_table_id(table)
                    .destination_cidr_block(cidr)
                    .vpc_peering_connection_id(pcx)
                    .send()
            };
        }
        let what = format!("{cidr} via {pcx} in {table}");
        match step {
            Step::Keep => Ok(()),
            Step::Create => {
                self.change(
                    "CreateRoute",
                    &what,
                    through_pcx!(self.client.create_route()),
                )
                .await
            }
            Step::Replace => {
                self.change(
                    "ReplaceRoute",
                    &what,
                    through_pcx!(self.client.replace_route()),
                )
                .await
            }
        }
    }

    pub(super) async fn delete_route(
        &self,
        table: &str,
        cidr: &str,
        pcx: &str,
    ) -> Result<(), String> {
        self.change(
            "DeleteRoute",
            &format!("{cidr} via {pcx} in {table}"),
            self.client
                .delete_route()
                .route_table_id(table)
                .destination_cidr_block(cidr)
                .send(),
        )
        .await
    }

    pub(super) async fn delete_connection(&self, pcx: &str) -> Result<(), String> {
        self.change(
            "DeleteVpcPeeringConnection",
            pcx,
            self.client
                .delete_vpc_peering_connection()
                .vpc_peering_connection_id(pcx)
                .send(),
        )
        .await
    }

    /// Waits until the connection is active, looking less often as time goes on; gives up in time for
    /// the answer, naming the state it was left in.
    pub(super) async fn wait_active(
        &self,
        pcx: &str,
        until: Deadline,
    ) -> Result<VpcPeeringConnection, String> {
        let _pending = self
            .in_flight
            .start(format!("{pcx} to become active after acceptance"));
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let c = self
                .connection(pcx)
                .await?
                .ok_or_else(|| format!("{pcx} disappeared after it was accepted"))?;
            let st = status(&c);
            match st.as_str() {
                "active" => return Ok(c),
                "pending-acceptance" | "provisioning" | "initiating-request" => {}
                other => {
                    let why = c.status().and_then(|s| s.message()).unwrap_or_default();
                    return Err(format!(
                        "{pcx} became {other} instead of active after it was accepted{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", truncate_chars(why, 200))
                        }
                    ));
                }
            }
            // Stop while there is still time for one more look and the answer.
            if until.remaining() <= delay + Duration::from_millis(500) {
                return Err(format!(
                    "{pcx} was accepted but was still {st} after {} s, when the function had to answer; \
                     no route was added. Update the stack again once it is active",
                    started.elapsed().as_secs()
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL);
        }
    }
}
