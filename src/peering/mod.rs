//! `Custom::PeeringAcceptance`: the provider's VPC peering request, accepted only when it is exactly the one
//! agreed (pending acceptance, requested from the provider's account and CIDR, into the stack's VPC), then
//! routed. Every check, route tables included, runs before anything changes, so a mismatch accepts nothing.
//! Delete removes the routes through the connection (and the connection itself when asked).
//!
//! The function behind this resource has its own execution role (template.yaml, `PeeringFunctionRole`):
//! accept only into the stack's VPC from the provider's account, routes only in that VPC's route tables.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, RouteTable, VpcPeeringConnection, VpcPeeringConnectionVpcInfo};
use aws_sdk_ec2::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde_json::Value;

use crate::cfn::{self, Answer, CfnRequest, RequestType};
use crate::deadline::{Deadline, InFlight};
use crate::handler::App;
use crate::properties::{
    check_ec2_id, err, is_ec2_id, kind, parse_ipv4_cidr, property_object, scalar, PropertyError,
};
use crate::text::truncate_chars;

pub const RESOURCE_TYPE: &str = "Custom::PeeringAcceptance";
/// The properties this resource reads (the template passes exactly these).
pub const PROPERTY_NAMES: &[&str] = &[
    "PeeringConnectionId",
    "ProviderAccountId",
    "ProviderCidr",
    "VpcId",
    "RouteTableIds",
    "DeleteConnectionOnDelete",
];
/// Longest wait between two looks at a connection that is becoming active.
const MAX_POLL: Duration = Duration::from_secs(5);
const MAX_PAGES: usize = 1000;

/// Set to the connection id once an invocation has changed the account (accepted the connection or added
/// a route): a Create that fails afterwards answers with it, so the rollback Delete removes the routes.
pub type Changed = Arc<OnceLock<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringProperties {
    pub connection_id: String,
    pub provider_account_id: String,
    /// Canonical form (`10.8.0.0/16`).
    pub provider_cidr: String,
    pub vpc_id: String,
    /// Empty: every route table of `vpc_id`.
    pub route_table_ids: Vec<String>,
    pub delete_connection_on_delete: bool,
}

/// Parses `ResourceProperties`; every error names the property to fix.
pub fn parse(value: &Value) -> Result<PeeringProperties, PropertyError> {
    let empty = serde_json::Map::new();
    let obj = property_object(value, RESOURCE_TYPE, PROPERTY_NAMES)?.unwrap_or(&empty);
    let required = |k: &str| -> Result<String, PropertyError> {
        scalar(obj.get(k), k)?.ok_or_else(|| err(k, "is required"))
    };
    let connection_id = required("PeeringConnectionId")?;
    check_ec2_id(&connection_id, "pcx", "a VPC peering connection id")
        .map_err(|m| err("PeeringConnectionId", m))?;
    let provider_account_id = required("ProviderAccountId")?;
    if !link_contract::arn::is_account_id(&provider_account_id) {
        return Err(err(
            "ProviderAccountId",
            format!(
                "'{}' is not an AWS account id (12 digits)",
                truncate_chars(&provider_account_id, 40)
            ),
        ));
    }
    let provider_cidr =
        parse_ipv4_cidr(&required("ProviderCidr")?).map_err(|m| err("ProviderCidr", m))?;
    let vpc_id = required("VpcId")?;
    check_ec2_id(&vpc_id, "vpc", "a VPC id").map_err(|m| err("VpcId", m))?;
    let route_table_ids = parse_route_table_ids(obj.get("RouteTableIds"))?;
    let delete_connection_on_delete = match scalar(
        obj.get("DeleteConnectionOnDelete"),
        "DeleteConnectionOnDelete",
    )?
    .as_deref()
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(err(
                "DeleteConnectionOnDelete",
                format!("must be true or false, got '{}'", truncate_chars(other, 20)),
            ))
        }
    };
    Ok(PeeringProperties {
        connection_id,
        provider_account_id,
        provider_cidr,
        vpc_id,
        route_table_ids,
        delete_connection_on_delete,
    })
}

fn parse_route_table_ids(v: Option<&Value>) -> Result<Vec<String>, PropertyError> {
    const F: &str = "RouteTableIds";
    let items: Vec<Value> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(err(
                F,
                format!("must be a list of route table ids, got {}", kind(other)),
            ))
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let field = format!("{F}[{i}]");
        let id = scalar(Some(v), &field)?.ok_or_else(|| err(&field, "is empty"))?;
        check_ec2_id(&id, "rtb", "a route table id").map_err(|m| err(&field, m))?;
        if out.contains(&id) {
            return Err(err(field, format!("{id} is listed more than once")));
        }
        out.push(id);
    }
    Ok(out)
}

/// One Create, Update or Delete of the resource.
pub async fn run(
    app: &App,
    req: &CfnRequest,
    in_flight: &InFlight,
    changed: &Changed,
    until: Deadline,
) -> Answer {
    let ec2 = Ec2 {
        client: app.ec2.client(&app.region),
        region: &app.region,
        in_flight,
    };
    match req.request_type {
        RequestType::Create | RequestType::Update => accept(&ec2, req, changed, until).await,
        RequestType::Delete => remove(&ec2, req).await,
    }
}

struct Ec2<'a> {
    client: Client,
    region: &'a str,
    in_flight: &'a InFlight,
}

/// An EC2 call that failed, in words a cloud admin can act on, with EC2's error code.
struct CallError {
    code: Option<String>,
    message: String,
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

    /// The connection as this account sees it; None when EC2 does not know it.
    async fn connection(&self, id: &str) -> Result<Option<VpcPeeringConnection>, String> {
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
    async fn tables_of(&self, vpc_id: &str) -> Result<Vec<RouteTable>, String> {
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
}

fn status(c: &VpcPeeringConnection) -> String {
    c.status()
        .and_then(|s| s.code())
        .map_or_else(|| "unknown".to_string(), |c| c.as_str().to_string())
}

/// The requester's IPv4 blocks: the whole set when EC2 lists one, else the primary block.
fn ipv4_blocks(info: Option<&VpcPeeringConnectionVpcInfo>) -> Vec<String> {
    let Some(info) = info else { return Vec::new() };
    let mut blocks: Vec<String> = info
        .cidr_block_set()
        .iter()
        .filter_map(|b| b.cidr_block())
        .map(str::to_string)
        .collect();
    if let Some(primary) = info.cidr_block() {
        if !blocks.iter().any(|b| b == primary) {
            blocks.insert(0, primary.to_string());
        }
    }
    blocks
}

/// What differs between the connection and what was agreed; empty when it may be accepted.
/// `owned` is true when this resource accepted it before (an Update of the same connection).
fn differences(
    c: &VpcPeeringConnection,
    p: &PeeringProperties,
    account_id: &str,
    region: &str,
    owned: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let st = status(c);
    match st.as_str() {
        "pending-acceptance" => {}
        "active" | "provisioning" if owned => {}
        "active" | "provisioning" => out.push(format!(
            "it is {st}, not pending-acceptance: it was accepted outside this stack"
        )),
        other => out.push(format!("it is {other}, not pending-acceptance")),
    }
    let requester = c.requester_vpc_info();
    let owner = requester.and_then(|r| r.owner_id()).unwrap_or("unknown");
    if owner != p.provider_account_id {
        out.push(format!(
            "the requester is account {owner}, not the provider's account {}",
            p.provider_account_id
        ));
    }
    let requester_vpc = requester.and_then(|r| r.vpc_id()).unwrap_or("unknown");
    let blocks = ipv4_blocks(requester);
    if !blocks.contains(&p.provider_cidr) {
        out.push(format!(
            "the requester VPC {requester_vpc} has CIDR {}, not the agreed ProviderCidr {}",
            if blocks.is_empty() {
                "unknown".to_string()
            } else {
                blocks.join(", ")
            },
            p.provider_cidr
        ));
    } else if blocks.len() > 1 {
        let extra: Vec<&str> = blocks
            .iter()
            .filter(|b| **b != p.provider_cidr)
            .map(String::as_str)
            .collect();
        out.push(format!(
            "the requester VPC {requester_vpc} also has CIDR {}, which was not agreed",
            extra.join(", ")
        ));
    }
    let accepter = c.accepter_vpc_info();
    let accepter_vpc = accepter.and_then(|a| a.vpc_id()).unwrap_or("unknown");
    if accepter_vpc != p.vpc_id {
        out.push(format!(
            "the accepter VPC is {accepter_vpc}, not this stack's VPC {}",
            p.vpc_id
        ));
    }
    let accepter_owner = accepter.and_then(|a| a.owner_id()).unwrap_or("unknown");
    if accepter_owner != account_id {
        out.push(format!(
            "the accepter is account {accepter_owner}, not this stack's account {account_id}"
        ));
    }
    if let Some(r) = accepter.and_then(|a| a.region()) {
        if r != region {
            out.push(format!(
                "the accepter VPC is in {r}, not this stack's region {region}"
            ));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Create,
    /// The route exists through another connection this resource owned (or is a blackhole).
    Replace,
    Keep,
}

/// What each route table needs so that `cidr` goes through `pcx`; an error for a route through
/// anything else (never overwritten).
fn plan(
    tables: &[RouteTable],
    cidr: &str,
    pcx: &str,
    previous: Option<&str>,
) -> Result<Vec<(String, Step)>, Vec<String>> {
    let mut steps = Vec::new();
    let mut conflicts = Vec::new();
    for t in tables {
        let id = t.route_table_id().unwrap_or("unknown").to_string();
        let existing = t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(cidr));
        let step = match existing {
            None => Step::Create,
            Some(r) if r.vpc_peering_connection_id() == Some(pcx) => {
                if r.state().map(|s| s.as_str()) == Some("blackhole") {
                    Step::Replace
                } else {
                    Step::Keep
                }
            }
            Some(r) if previous.is_some() && r.vpc_peering_connection_id() == previous => {
                Step::Replace
            }
            Some(r) => {
                let target = crate::inventory::route_target(r).unwrap_or("an unknown target");
                conflicts.push(format!("{id} already routes {cidr} to {target}"));
                continue;
            }
        };
        steps.push((id, step));
    }
    if conflicts.is_empty() {
        Ok(steps)
    } else {
        Err(conflicts)
    }
}

async fn accept(ec2: &Ec2<'_>, req: &CfnRequest, changed: &Changed, until: Deadline) -> Answer {
    let failure_id = || match req.request_type {
        RequestType::Create => changed
            .get()
            .cloned()
            .unwrap_or_else(|| cfn::failed_create_id(&req.reply.request_id)),
        _ => req
            .reply
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| cfn::failed_create_id(&req.reply.request_id)),
    };
    let fail = |reason: String| Answer::failed(failure_id(), reason);
    let p = match parse(&req.properties) {
        Ok(p) => p,
        Err(e) => return fail(format!("invalid property {e}")),
    };
    let old = req.old_properties.as_ref().and_then(|o| parse(o).ok());
    let pcx = p.connection_id.as_str();
    // This resource accepted the connection before: an Update of the same connection, or a rollback to it.
    let owned = req.request_type == RequestType::Update
        && req.reply.physical_resource_id.as_deref() == Some(pcx);

    let connection = match ec2.connection(pcx).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return fail(format!(
                "PeeringConnectionId: {pcx} was not found in {}; accept it in this stack's region, \
                 the accepter VPC's",
                ec2.region
            ))
        }
        Err(e) => return fail(e),
    };
    let differs = differences(&connection, &p, &req.stack.account_id, ec2.region, owned);
    if !differs.is_empty() {
        return fail(format!("{pcx} was not accepted: {}", differs.join("; ")));
    }
    let tables = match chosen_tables(ec2, &p).await {
        Ok(t) => t,
        Err(e) => return fail(format!("{pcx} was not accepted: {e}")),
    };
    let previous = old
        .as_ref()
        .map(|o| o.connection_id.as_str())
        .filter(|o| *o != pcx);
    let steps = match plan(&tables, &p.provider_cidr, pcx, previous) {
        Ok(s) => s,
        Err(conflicts) => {
            return fail(format!(
                "{pcx} was not accepted: {}; remove those routes or choose other RouteTableIds",
                conflicts.join("; ")
            ))
        }
    };

    // Everything matches: change the account.
    let mut connection = connection;
    if status(&connection) == "pending-acceptance" {
        let accepted = ec2
            .call(
                "AcceptVpcPeeringConnection",
                pcx,
                ec2.client
                    .accept_vpc_peering_connection()
                    .vpc_peering_connection_id(pcx)
                    .send(),
            )
            .await;
        if let Err(e) = accepted {
            return fail(e.message);
        }
        let _ = changed.set(pcx.to_string());
        tracing::info!(vpc_peering_connection_id = pcx, "accepted");
    }
    if status(&connection) != "active" {
        connection = match wait_active(ec2, pcx, until).await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
    }
    for (table, step) in &steps {
        let done = match step {
            Step::Keep => continue,
            Step::Create => ec2
                .call(
                    "CreateRoute",
                    &format!("{} via {pcx} in {table}", p.provider_cidr),
                    ec2.client
                        .create_route()
                        .route_table_id(table)
                        .destination_cidr_block(&p.provider_cidr)
                        .vpc_peering_connection_id(pcx)
                        .send(),
                )
                .await
                .map(|_| ()),
            Step::Replace => ec2
                .call(
                    "ReplaceRoute",
                    &format!("{} via {pcx} in {table}", p.provider_cidr),
                    ec2.client
                        .replace_route()
                        .route_table_id(table)
                        .destination_cidr_block(&p.provider_cidr)
                        .vpc_peering_connection_id(pcx)
                        .send(),
                )
                .await
                .map(|_| ()),
        };
        if let Err(e) = done {
            return fail(format!("{pcx} is active, but {}", e.message));
        }
        let _ = changed.set(pcx.to_string());
    }
    let table_ids: Vec<String> = steps.iter().map(|(t, _)| t.clone()).collect();
    let mut notes = Vec::new();
    if owned {
        if let Some(old) = old.as_ref().filter(|o| o.connection_id == pcx) {
            notes.extend(remove_stale(ec2, old, &p, &table_ids).await);
        }
    }
    let requester = connection.requester_vpc_info();
    let requester_vpc = requester.and_then(|r| r.vpc_id()).unwrap_or_default();
    let requester_account = requester.and_then(|r| r.owner_id()).unwrap_or_default();
    let mut reason = format!(
        "{pcx} from {requester_vpc} (account {requester_account}) is {} in {}; {} routes through it in {}",
        status(&connection),
        p.vpc_id,
        p.provider_cidr,
        table_ids.join(", ")
    );
    if !notes.is_empty() {
        reason.push_str(&format!(" (warnings: {})", notes.join("; ")));
    }
    let mut answer = Answer::success(pcx.to_string(), reason);
    answer.data = BTreeMap::from([
        ("VpcPeeringConnectionId".into(), pcx.to_string()),
        ("Status".into(), status(&connection)),
        ("ProviderCidr".into(), p.provider_cidr.clone()),
        ("RouteTableIds".into(), table_ids.join(",")),
        ("RequesterVpcId".into(), requester_vpc.to_string()),
        ("AccepterVpcId".into(), p.vpc_id.clone()),
    ]);
    answer
}

/// The route tables to route through the connection: those named (each must be in the VPC), or every
/// table of the VPC.
async fn chosen_tables(ec2: &Ec2<'_>, p: &PeeringProperties) -> Result<Vec<RouteTable>, String> {
    let mut all = ec2.tables_of(&p.vpc_id).await?;
    // In id order, so the answer and the event name them the same way every time.
    all.sort_by(|a, b| a.route_table_id().cmp(&b.route_table_id()));
    if p.route_table_ids.is_empty() {
        if all.is_empty() {
            return Err(format!(
                "VpcId: {} has no route tables in {}",
                p.vpc_id, ec2.region
            ));
        }
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for (i, id) in p.route_table_ids.iter().enumerate() {
        match all.iter().find(|t| t.route_table_id() == Some(id)) {
            Some(t) => chosen.push(t.clone()),
            None => {
                return Err(format!(
                    "RouteTableIds[{i}]: {id} is not a route table of {} in {}",
                    p.vpc_id, ec2.region
                ))
            }
        }
    }
    Ok(chosen)
}

/// Waits until the connection is active, looking less often as time goes on; gives up in time for the
/// answer, naming the state it was left in.
async fn wait_active(
    ec2: &Ec2<'_>,
    pcx: &str,
    until: Deadline,
) -> Result<VpcPeeringConnection, String> {
    let _pending = ec2
        .in_flight
        .start(format!("{pcx} to become active after acceptance"));
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        let c = ec2
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

/// After an Update of the same connection: routes this resource added before that the new properties no
/// longer want (another CIDR, or a table no longer listed). Returns warnings; never fails the Update.
async fn remove_stale(
    ec2: &Ec2<'_>,
    old: &PeeringProperties,
    new: &PeeringProperties,
    new_tables: &[String],
) -> Vec<String> {
    let tables = match ec2.tables_of(&old.vpc_id).await {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let mut notes = Vec::new();
    for t in &tables {
        let id = t.route_table_id().unwrap_or_default();
        if !old.route_table_ids.is_empty() && !old.route_table_ids.iter().any(|o| o == id) {
            continue;
        }
        let still_wanted =
            old.provider_cidr == new.provider_cidr && new_tables.iter().any(|n| n == id);
        if still_wanted {
            continue;
        }
        for r in t.routes() {
            if r.vpc_peering_connection_id() == Some(old.connection_id.as_str())
                && r.destination_cidr_block() == Some(old.provider_cidr.as_str())
            {
                if let Err(e) = delete_route(ec2, id, &old.provider_cidr, &old.connection_id).await
                {
                    notes.push(e);
                }
            }
        }
    }
    notes
}

async fn delete_route(ec2: &Ec2<'_>, table: &str, cidr: &str, pcx: &str) -> Result<(), String> {
    ec2.call(
        "DeleteRoute",
        &format!("{cidr} via {pcx} in {table}"),
        ec2.client
            .delete_route()
            .route_table_id(table)
            .destination_cidr_block(cidr)
            .send(),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.message)
}

/// Delete never fails for reasons outside the request: a stack must always be deletable. Problems are
/// reported as warnings in the Reason.
async fn remove(ec2: &Ec2<'_>, req: &CfnRequest) -> Answer {
    let physical = req
        .reply
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| cfn::failed_create_id(&req.reply.request_id));
    if !is_ec2_id(&physical, "pcx") {
        return Answer::success(
            physical,
            "nothing to undo: this resource never accepted a peering connection",
        );
    }
    let pcx = physical.as_str();
    let mut notes = Vec::new();
    // The properties of the resource that accepted `pcx`; without them, every route through it in the
    // accepter VPC is removed.
    let props = match parse(&req.properties) {
        Ok(p) if p.connection_id == pcx => Some(p),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "invalid properties on Delete; removing every route through the connection");
            notes.push(format!("invalid property {e}"));
            None
        }
    };
    let connection = match ec2.connection(pcx).await {
        Ok(c) => c,
        Err(e) => {
            notes.push(e);
            None
        }
    };
    let vpc_id = props.as_ref().map(|p| p.vpc_id.clone()).or_else(|| {
        connection
            .as_ref()
            .and_then(|c| c.accepter_vpc_info())
            .and_then(|a| a.vpc_id())
            .map(str::to_string)
    });
    let mut removed = Vec::new();
    if let Some(vpc_id) = &vpc_id {
        match ec2.tables_of(vpc_id).await {
            Err(e) => notes.push(e),
            Ok(tables) => {
                for t in &tables {
                    let id = t.route_table_id().unwrap_or_default();
                    if let Some(p) = &props {
                        if !p.route_table_ids.is_empty()
                            && !p.route_table_ids.iter().any(|x| x == id)
                        {
                            continue;
                        }
                    }
                    for r in t.routes() {
                        let Some(dest) = r.destination_cidr_block() else {
                            continue;
                        };
                        let ours = r.vpc_peering_connection_id() == Some(pcx)
                            && props.as_ref().is_none_or(|p| p.provider_cidr == dest);
                        if !ours {
                            continue;
                        }
                        match delete_route(ec2, id, dest, pcx).await {
                            Ok(()) => removed.push(format!("{dest} in {id}")),
                            Err(e) => notes.push(e),
                        }
                    }
                }
            }
        }
    } else {
        notes.push(format!(
            "{pcx}'s accepter VPC is unknown, so no route was removed"
        ));
    }
    let delete_connection = props
        .as_ref()
        .is_some_and(|p| p.delete_connection_on_delete);
    let live = connection.as_ref().map(status).is_some_and(|s| {
        matches!(
            s.as_str(),
            "pending-acceptance" | "provisioning" | "active" | "initiating-request"
        )
    });
    let connection_note = if !delete_connection {
        format!("{pcx} was left in place (DeleteConnectionOnDelete is false)")
    } else if !live {
        format!("{pcx} was already gone")
    } else {
        match ec2
            .call(
                "DeleteVpcPeeringConnection",
                pcx,
                ec2.client
                    .delete_vpc_peering_connection()
                    .vpc_peering_connection_id(pcx)
                    .send(),
            )
            .await
        {
            Ok(_) => format!("{pcx} was deleted"),
            Err(e) => {
                notes.push(e.message);
                format!("{pcx} could not be deleted")
            }
        }
    };
    let routes = if removed.is_empty() {
        "no route to remove".to_string()
    } else {
        format!("removed the routes to {}", removed.join(", "))
    };
    let mut reason = format!("{routes}; {connection_note}");
    if !notes.is_empty() {
        tracing::warn!(warnings = %notes.join("; "), "peering Delete finished with warnings");
        reason.push_str(&format!("; warnings: {}", notes.join("; ")));
    }
    Answer::success(physical, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props() -> Value {
        json!({
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:peering",
            "PeeringConnectionId": "pcx-0123456789abcdef0",
            "ProviderAccountId": "111111111111",
            "ProviderCidr": "10.8.0.0/16",
            "VpcId": "vpc-12345678",
            "RouteTableIds": "",
            "DeleteConnectionOnDelete": "false"
        })
    }

    #[test]
    fn properties_parse() {
        let p = parse(&props()).unwrap();
        assert_eq!(p.connection_id, "pcx-0123456789abcdef0");
        assert!(p.route_table_ids.is_empty() && !p.delete_connection_on_delete);
        let mut v = props();
        v["RouteTableIds"] = json!(["rtb-12345678", "rtb-87654321"]);
        v["DeleteConnectionOnDelete"] = "true".into();
        let p = parse(&v).unwrap();
        assert_eq!(p.route_table_ids, ["rtb-12345678", "rtb-87654321"]);
        assert!(p.delete_connection_on_delete);
    }

    #[test]
    fn property_errors_name_the_field() {
        for (key, value, field, words) in [
            (
                "PeeringConnectionId",
                json!(""),
                "PeeringConnectionId",
                "required",
            ),
            (
                "PeeringConnectionId",
                json!("pcx-1"),
                "PeeringConnectionId",
                "not a VPC peering",
            ),
            (
                "ProviderAccountId",
                json!("1111"),
                "ProviderAccountId",
                "12 digits",
            ),
            (
                "ProviderCidr",
                json!("10.8.0.0/40"),
                "ProviderCidr",
                "not an IPv4 CIDR",
            ),
            ("VpcId", json!("subnet-12345678"), "VpcId", "not a VPC id"),
            (
                "RouteTableIds",
                json!(["rtb-12345678", "rtb-12345678"]),
                "RouteTableIds[1]",
                "more than once",
            ),
            (
                "RouteTableIds",
                json!({"a": 1}),
                "RouteTableIds",
                "list of route table ids",
            ),
            (
                "DeleteConnectionOnDelete",
                json!("yes"),
                "DeleteConnectionOnDelete",
                "true or false",
            ),
            (
                "Peering",
                json!("x"),
                "ResourceProperties.Peering",
                "not a property",
            ),
        ] {
            let mut v = props();
            v[key] = value;
            let e = parse(&v).unwrap_err();
            assert_eq!(e.field, field, "{key}");
            assert!(e.message.contains(words), "{key}: {e}");
        }
    }
}
