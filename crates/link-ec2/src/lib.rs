//! An account's networks: VPCs, subnets and route tables in every requested region, in link-contract's
//! inventory types. Shared by the function (its own account, with its execution role) and the provider's
//! registry (a linked account, through the RemoteRole it assumed), so both list exactly alike. Only
//! `ec2:DescribeVpcs`, `ec2:DescribeSubnets` and `ec2:DescribeRouteTables` are called (the roles allow
//! nothing more for this); all regions and all three calls run concurrently and every page is followed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Tag, Vpc as SdkVpc};
use aws_sdk_ec2::Client;
use aws_smithy_async::future::pagination_stream::PaginationStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

use link_contract::inventory::{Inventory, RegionInventory, Route, RouteTable, Subnet, Vpc};

/// Tracks the calls in flight (the function names the ones still running when its deadline comes).
pub trait Calls {
    type Guard;
    fn start(&self, what: String) -> Self::Guard;
}

/// No tracking.
impl Calls for () {
    type Guard = ();
    fn start(&self, _: String) {}
}

/// A listing that has not ended after this many pages is treated as broken (a token cycle EC2 would
/// never produce).
const MAX_PAGES: usize = 10_000;

/// Whose credentials make the calls, as error messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Where a denied action must be allowed, e.g. "the function's execution role".
    pub role: &'static str,
    /// Whose credentials were refused, e.g. "the function's credentials".
    pub credentials: &'static str,
}

impl Caller {
    /// The customer's function, with its execution role.
    pub const FUNCTION: Self = Self {
        role: "the function's execution role",
        credentials: "the function's credentials",
    };
}

/// One EC2 client per region, built on first use and kept for the life of the process.
pub struct Ec2Clients {
    base: aws_sdk_ec2::Config,
    clients: Mutex<HashMap<String, Client>>,
    caller: Caller,
}

impl Ec2Clients {
    /// `base` carries credentials, endpoint, retry and HTTP settings; only the region varies. Errors name
    /// the function's role ([`Caller::FUNCTION`]).
    pub fn new(base: aws_sdk_ec2::Config) -> Self {
        Self::for_caller(base, Caller::FUNCTION)
    }

    pub fn for_caller(base: aws_sdk_ec2::Config, caller: Caller) -> Self {
        Self {
            base,
            clients: Mutex::new(HashMap::new()),
            caller,
        }
    }

    pub fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let conf = self
                    .base
                    .to_builder()
                    .region(aws_sdk_ec2::config::Region::new(region.to_string()))
                    .build();
                Client::from_conf(conf)
            })
            .clone()
    }
}

/// Why an EC2 call failed, in words a cloud admin can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("ec2:{action} in {region} {problem}")]
pub struct InventoryError {
    pub action: &'static str,
    pub region: String,
    pub problem: String,
}

/// Lists every region concurrently; the first failure ends the listing.
pub async fn collect(
    clients: &Ec2Clients,
    regions: &[String],
    in_flight: &impl Calls,
) -> Result<Inventory, InventoryError> {
    let per_region = regions
        .iter()
        .map(|r| collect_region(clients.client(r), clients.caller, r, in_flight));
    Ok(Inventory(futures::future::try_join_all(per_region).await?))
}

async fn collect_region(
    client: Client,
    caller: Caller,
    region: &str,
    in_flight: &impl Calls,
) -> Result<RegionInventory, InventoryError> {
    // The SDK's paginators follow the tokens; `all_pages` checks each one (see there), so the SDK's own
    // duplicate-token stop, which would end the listing silently, is turned off.
    let vpcs = all_pages(
        "DescribeVpcs",
        caller,
        region,
        in_flight,
        client
            .describe_vpcs()
            .into_paginator()
            .page_size(1000)
            .stop_on_duplicate_token(false)
            .send(),
        |out| (out.vpcs.unwrap_or_default(), out.next_token),
    );
    let subnets = all_pages(
        "DescribeSubnets",
        caller,
        region,
        in_flight,
        client
            .describe_subnets()
            .into_paginator()
            .page_size(1000)
            .stop_on_duplicate_token(false)
            .send(),
        |out| (out.subnets.unwrap_or_default(), out.next_token),
    );
    let tables = all_pages(
        "DescribeRouteTables",
        caller,
        region,
        in_flight,
        client
            .describe_route_tables()
            .into_paginator()
            .page_size(100)
            .stop_on_duplicate_token(false)
            .send(),
        |out| (out.route_tables.unwrap_or_default(), out.next_token),
    );
    let (vpcs, subnets, tables) = futures::try_join!(vpcs, subnets, tables)?;
    Ok(assemble(region, vpcs, subnets, tables))
}

/// Drains a paginator, page by page. A token seen before would restart the listing forever, so it ends
/// it with an error instead; so does a listing that never ends.
async fn all_pages<O, E, T>(
    action: &'static str,
    caller: Caller,
    region: &str,
    in_flight: &impl Calls,
    mut pages: PaginationStream<Result<O, SdkError<E, HttpResponse>>>,
    split: impl Fn(O) -> (Vec<T>, Option<String>),
) -> Result<Vec<T>, InventoryError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let _guard = in_flight.start(format!("ec2:{action} in {region}"));
    let fail = |problem: String| InventoryError {
        action,
        region: region.to_string(),
        problem,
    };
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let Some(page) = pages.next().await else {
            return Ok(items);
        };
        let (page, next) = split(page.map_err(|e| fail(describe_sdk_error_for(e, caller)))?);
        items.extend(page);
        match next.filter(|t| !t.is_empty()) {
            None => return Ok(items),
            Some(t) => {
                if !seen.insert(t) {
                    return Err(fail(
                        "returned a page token it had already returned: the listing would never end"
                            .into(),
                    ));
                }
            }
        }
    }
    Err(fail(format!("did not finish after {MAX_PAGES} pages")))
}

/// Why a call failed, in words a cloud admin can act on; `caller` says whose role or credentials.
pub fn describe_sdk_error_for<E, R>(err: SdkError<E, R>, caller: Caller) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = err.message().unwrap_or_default().to_string();
    match (&err, err.code()) {
        (_, Some(code @ ("UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException"))) => {
            format!(
                "was denied ({code}): {message} Allow this action on {}.",
                caller.role
            )
        }
        (
            _,
            Some(
                code @ ("AuthFailure"
                | "InvalidClientTokenId"
                | "UnrecognizedClientException"
                | "ExpiredToken"),
            ),
        ) => {
            format!(
                "was refused because {} were not accepted ({code}): {message}",
                caller.credentials
            )
        }
        (_, Some("OptInRequired")) => {
            format!("failed: the region is not enabled for this account (OptInRequired): {message}")
        }
        (_, Some(code @ ("RequestLimitExceeded" | "Throttling" | "ThrottlingException"))) => {
            format!("was still throttled after retries ({code}): {message}")
        }
        (_, Some(code)) => format!("failed ({code}): {message}"),
        (SdkError::TimeoutError(_), None) => "did not answer in time".to_string(),
        (SdkError::DispatchFailure(_), None) => {
            format!(
                "failed: the EC2 endpoint could not be reached: {}",
                DisplayErrorContext(&err)
            )
        }
        (_, None) => format!("failed: {}", DisplayErrorContext(&err)),
    }
}

/// The `Name` tag's value, taken out of the SDK's list.
fn tag_name(tags: Option<Vec<Tag>>) -> Option<String> {
    tags?
        .into_iter()
        .find(|t| t.key.as_deref() == Some("Name"))
        .and_then(|t| t.value)
}

/// The SDK's pages become the event's types. The SDK values are consumed: their strings move into the
/// event instead of being copied (10 000 subnets are some 100 000 strings).
fn assemble(
    region: &str,
    vpcs: Vec<SdkVpc>,
    subnets: Vec<aws_sdk_ec2::types::Subnet>,
    tables: Vec<aws_sdk_ec2::types::RouteTable>,
) -> RegionInventory {
    let mut by_id: BTreeMap<String, Vpc> = BTreeMap::new();
    for v in vpcs {
        let Some(id) = v.vpc_id else { continue };
        let mut cidr_blocks: Vec<String> = v
            .cidr_block_association_set
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.cidr_block)
            .collect();
        if let Some(primary) = &v.cidr_block {
            if !cidr_blocks.iter().any(|c| c == primary) {
                cidr_blocks.insert(0, primary.clone());
            }
        }
        by_id.insert(
            id.clone(),
            Vpc {
                vpc_id: id,
                name: tag_name(v.tags),
                cidr_block: v.cidr_block,
                cidr_blocks,
                ipv6_cidr_blocks: v
                    .ipv6_cidr_block_association_set
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| a.ipv6_cidr_block)
                    .collect(),
                is_default: v.is_default.unwrap_or(false),
                state: v.state.map(|s| s.as_str().to_string()),
                owner_id: v.owner_id,
                ..Vpc::default()
            },
        );
    }
    for s in subnets {
        let Some(subnet_id) = s.subnet_id else {
            continue;
        };
        vpc_entry(&mut by_id, s.vpc_id.as_deref())
            .subnets
            .push(Subnet {
                subnet_id,
                name: tag_name(s.tags),
                cidr_block: s.cidr_block,
                ipv6_cidr_blocks: s
                    .ipv6_cidr_block_association_set
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| a.ipv6_cidr_block)
                    .collect(),
                availability_zone: s.availability_zone,
                availability_zone_id: s.availability_zone_id,
                available_ip_address_count: s.available_ip_address_count,
                map_public_ip_on_launch: s.map_public_ip_on_launch.unwrap_or(false),
                default_for_az: s.default_for_az.unwrap_or(false),
                state: s.state.map(|x| x.as_str().to_string()),
            });
    }
    for t in tables {
        let Some(route_table_id) = t.route_table_id else {
            continue;
        };
        let associations = t.associations.unwrap_or_default();
        vpc_entry(&mut by_id, t.vpc_id.as_deref())
            .route_tables
            .push(RouteTable {
                route_table_id,
                name: tag_name(t.tags),
                main: associations.iter().any(|a| a.main.unwrap_or(false)),
                subnet_ids: associations
                    .into_iter()
                    .filter_map(|a| a.subnet_id)
                    .collect(),
                routes: t.routes.unwrap_or_default().iter().map(route).collect(),
            });
    }
    let mut vpcs: Vec<Vpc> = by_id.into_values().collect();
    for v in &mut vpcs {
        v.subnets.sort_by(|a, b| a.subnet_id.cmp(&b.subnet_id));
        v.route_tables
            .sort_by(|a, b| a.route_table_id.cmp(&b.route_table_id));
    }
    RegionInventory {
        region: region.to_string(),
        vpcs,
    }
}

/// A subnet or table created between the calls may name a VPC the VPC listing did not return: keep it
/// under a bare entry rather than drop it.
fn vpc_entry<'a>(by_id: &'a mut BTreeMap<String, Vpc>, id: Option<&str>) -> &'a mut Vpc {
    let id = id.unwrap_or("unknown");
    // Looked up before an entry is made: most subnets' VPC is listed, and the key would be a copy.
    if !by_id.contains_key(id) {
        by_id.insert(
            id.to_string(),
            Vpc {
                vpc_id: id.to_string(),
                ..Vpc::default()
            },
        );
    }
    by_id.get_mut(id).expect("inserted above")
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

fn route(r: &aws_sdk_ec2::types::Route) -> Route {
    let destination = r
        .destination_cidr_block()
        .or(r.destination_ipv6_cidr_block())
        .or(r.destination_prefix_list_id());
    Route {
        destination: owned(destination),
        target: owned(route_target(r)),
        state: r.state().map(|s| s.as_str().to_string()),
        origin: r.origin().map(|s| s.as_str().to_string()),
    }
}

/// Where a route sends its traffic: a gateway, peering connection, interface... id.
pub fn route_target(r: &aws_sdk_ec2::types::Route) -> Option<&str> {
    r.gateway_id()
        .or(r.nat_gateway_id())
        .or(r.transit_gateway_id())
        .or(r.vpc_peering_connection_id())
        .or(r.egress_only_internet_gateway_id())
        .or(r.network_interface_id())
        .or(r.instance_id())
        .or(r.local_gateway_id())
        .or(r.carrier_gateway_id())
        .or(r.core_network_arn())
}
