//! `Custom::PeeringAcceptance`: the provider's VPC peering request, accepted only when it is exactly the one
//! agreed (pending acceptance, requested from the provider's account and CIDR, into the stack's VPC), then
//! routed. Every check, route tables included, runs before anything changes, so a mismatch accepts nothing.
//! Delete removes the routes through the connection (and the connection itself when asked).
//!
//! The function behind this resource has its own execution role (template.yaml, `PeeringFunctionRole`):
//! accept only into the stack's VPC from the provider's account, routes only in that VPC's route tables.
//!
//! In parts: `properties` (what the template passes, validated), `plan` (the decisions, pure and unit
//! tested), `ec2` (the calls); this module runs them in order. It needs only the EC2 clients and the
//! function's region, not the whole `App`.

mod ec2;
mod plan;
mod properties;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::cfn::{self, Answer, CfnRequest, RequestType};
use crate::deadline::{Deadline, InFlight};
use crate::inventory::Ec2Clients;
use crate::properties::is_ec2_id;
use ec2::Ec2;
use plan::{
    choose_tables, differences, is_live, plan, routes_to_remove, stale_routes, status, Step,
};
pub use properties::{parse, PeeringProperties, PROPERTY_NAMES};

pub const RESOURCE_TYPE: &str = "Custom::PeeringAcceptance";

/// Set to the connection id once an invocation has changed the account (accepted the connection or added
/// a route): a Create that fails afterwards answers with it, so the rollback Delete removes the routes.
pub type Changed = Arc<OnceLock<String>>;

/// One Create, Update or Delete of the resource, in the function's own region (`region`).
pub async fn run(
    clients: &Ec2Clients,
    region: &str,
    req: &CfnRequest,
    in_flight: &InFlight,
    changed: &Changed,
    until: Deadline,
) -> Answer {
    let ec2 = Ec2 {
        client: clients.client(region),
        region,
        in_flight,
    };
    match req.request_type {
        RequestType::Create | RequestType::Update => accept(&ec2, req, changed, until).await,
        RequestType::Delete => remove(&ec2, req).await,
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
    let tables = match ec2
        .tables_of(&p.vpc_id)
        .await
        .and_then(|all| choose_tables(all, &p, ec2.region))
    {
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
        if let Err(e) = ec2.accept(pcx).await {
            return fail(e);
        }
        let _ = changed.set(pcx.to_string());
        tracing::info!(vpc_peering_connection_id = pcx, "accepted");
    }
    if status(&connection) != "active" {
        connection = match ec2.wait_active(pcx, until).await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
    }
    for (table, step) in &steps {
        if *step == Step::Keep {
            continue;
        }
        if let Err(e) = ec2.route(*step, table, &p.provider_cidr, pcx).await {
            return fail(format!("{pcx} is active, but {e}"));
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

/// After an Update of the same connection: removes the routes this resource added before that the new
/// properties no longer want (another CIDR, or a table no longer listed). Returns warnings; never fails
/// the Update.
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
    for table in stale_routes(&tables, old, new, new_tables) {
        if let Err(e) = ec2
            .delete_route(table, &old.provider_cidr, &old.connection_id)
            .await
        {
            notes.push(e);
        }
    }
    notes
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
                for (table, dest) in routes_to_remove(&tables, pcx, props.as_ref()) {
                    match ec2.delete_route(table, dest, pcx).await {
                        Ok(()) => removed.push(format!("{dest} in {table}")),
                        Err(e) => notes.push(e),
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
    let live = connection.as_ref().map(status).is_some_and(|s| is_live(&s));
    let connection_note = if !delete_connection {
        format!("{pcx} was left in place (DeleteConnectionOnDelete is false)")
    } else if !live {
        format!("{pcx} was already gone")
    } else {
        match ec2.delete_connection(pcx).await {
            Ok(_) => format!("{pcx} was deleted"),
            Err(e) => {
                notes.push(e);
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
