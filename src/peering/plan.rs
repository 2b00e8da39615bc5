//! The decisions, from what EC2 described: whether the connection is the one agreed, which tables to
//! route and how, which routes to remove. Pure functions of their inputs, so every rule is tested here
//! without EC2; the calls themselves are in `ec2`.

use aws_sdk_ec2::types::{RouteTable, VpcPeeringConnection, VpcPeeringConnectionVpcInfo};

use super::properties::PeeringProperties;

/// The connection's status code (`pending-acceptance`, `active`...); `unknown` when EC2 gave none.
pub(super) fn status(c: &VpcPeeringConnection) -> String {
    c.status()
        .and_then(|s| s.code())
        .map_or_else(|| "unknown".to_string(), |c| c.as_str().to_string())
}

/// A connection in one of these states still exists and can be deleted.
pub(super) fn is_live(status: &str) -> bool {
    matches!(
        status,
        "pending-acceptance" | "provisioning" | "active" | "initiating-request"
    )
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
pub(super) fn differences(
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

/// The route tables to route through the connection, from every table of the VPC (`all`): those named
/// (each must be one of them), or all of them.
pub(super) fn choose_tables(
    mut all: Vec<RouteTable>,
    p: &PeeringProperties,
    region: &str,
) -> Result<Vec<RouteTable>, String> {
    // In id order, so the answer and the event name them the same way every time.
    all.sort_by(|a, b| a.route_table_id().cmp(&b.route_table_id()));
    if p.route_table_ids.is_empty() {
        if all.is_empty() {
            return Err(format!(
                "VpcId: {} has no route tables in {region}",
                p.vpc_id
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
                    "RouteTableIds[{i}]: {id} is not a route table of {} in {region}",
                    p.vpc_id
                ))
            }
        }
    }
    Ok(chosen)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Create,
    /// The route exists through another connection this resource owned (or is a blackhole).
    Replace,
    Keep,
}

/// What each route table needs so that `cidr` goes through `pcx`; an error for a route through
/// anything else (never overwritten).
pub(super) fn plan(
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

/// After an Update of the same connection: the tables (of `tables`, every table of the old VPC) holding a
/// route this resource added before that the new properties no longer want (another CIDR, or a table no
/// longer listed), one entry per route to delete: `old.provider_cidr` via `old.connection_id`.
pub(super) fn stale_routes<'a>(
    tables: &'a [RouteTable],
    old: &PeeringProperties,
    new: &PeeringProperties,
    new_tables: &[String],
) -> Vec<&'a str> {
    let mut stale = Vec::new();
    for t in tables {
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
                stale.push(id);
            }
        }
    }
    stale
}

/// On Delete: the routes through `pcx` to remove, as (table, destination). With the properties of the
/// resource that accepted it, only its CIDR in its tables; without them, every route through it.
pub(super) fn routes_to_remove<'a>(
    tables: &'a [RouteTable],
    pcx: &str,
    props: Option<&PeeringProperties>,
) -> Vec<(&'a str, &'a str)> {
    let mut routes = Vec::new();
    for t in tables {
        let id = t.route_table_id().unwrap_or_default();
        if let Some(p) = props {
            if !p.route_table_ids.is_empty() && !p.route_table_ids.iter().any(|x| x == id) {
                continue;
            }
        }
        for r in t.routes() {
            let Some(dest) = r.destination_cidr_block() else {
                continue;
            };
            let ours = r.vpc_peering_connection_id() == Some(pcx)
                && props.is_none_or(|p| p.provider_cidr == dest);
            if ours {
                routes.push((id, dest));
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{
        CidrBlock, Route, RouteState, VpcPeeringConnectionStateReason,
        VpcPeeringConnectionStateReasonCode as Code,
    };

    const PCX: &str = "pcx-0123456789abcdef0";
    const OLD_PCX: &str = "pcx-0fedcba9876543210";
    const ACCOUNT: &str = "123456789012";
    const REGION: &str = "us-west-2";

    fn agreed() -> PeeringProperties {
        PeeringProperties {
            connection_id: PCX.into(),
            provider_account_id: "111111111111".into(),
            provider_cidr: "10.8.0.0/16".into(),
            vpc_id: "vpc-12345678".into(),
            route_table_ids: Vec::new(),
            delete_connection_on_delete: false,
        }
    }

    /// A connection exactly as agreed, in the given state.
    fn connection(code: Code) -> VpcPeeringConnection {
        VpcPeeringConnection::builder()
            .vpc_peering_connection_id(PCX)
            .status(
                VpcPeeringConnectionStateReason::builder()
                    .code(code)
                    .build(),
            )
            .requester_vpc_info(
                VpcPeeringConnectionVpcInfo::builder()
                    .owner_id("111111111111")
                    .vpc_id("vpc-aaaaaaaa")
                    .cidr_block("10.8.0.0/16")
                    .build(),
            )
            .accepter_vpc_info(
                VpcPeeringConnectionVpcInfo::builder()
                    .owner_id(ACCOUNT)
                    .vpc_id("vpc-12345678")
                    .region(REGION)
                    .build(),
            )
            .build()
    }

    fn route(cidr: &str, target: &str) -> Route {
        let r = Route::builder().destination_cidr_block(cidr);
        if target.starts_with("pcx-") {
            r.vpc_peering_connection_id(target)
        } else {
            r.gateway_id(target)
        }
        .state(RouteState::Active)
        .build()
    }

    fn table(id: &str, routes: Vec<Route>) -> RouteTable {
        RouteTable::builder()
            .route_table_id(id)
            .set_routes(Some(routes))
            .build()
    }

    #[test]
    fn the_agreed_pending_connection_may_be_accepted() {
        let c = connection(Code::PendingAcceptance);
        assert!(differences(&c, &agreed(), ACCOUNT, REGION, false).is_empty());
        assert_eq!(status(&c), "pending-acceptance");
        assert_eq!(status(&VpcPeeringConnection::builder().build()), "unknown");
    }

    #[test]
    fn an_active_connection_is_accepted_again_only_by_its_owner() {
        let c = connection(Code::Active);
        assert!(differences(&c, &agreed(), ACCOUNT, REGION, true).is_empty());
        let d = differences(&c, &agreed(), ACCOUNT, REGION, false);
        assert_eq!(
            d,
            ["it is active, not pending-acceptance: it was accepted outside this stack"]
        );
        let d = differences(
            &connection(Code::Rejected),
            &agreed(),
            ACCOUNT,
            REGION,
            true,
        );
        assert_eq!(d, ["it is rejected, not pending-acceptance"]);
    }

    #[test]
    fn every_difference_is_named() {
        let c = VpcPeeringConnection::builder()
            .status(
                VpcPeeringConnectionStateReason::builder()
                    .code(Code::PendingAcceptance)
                    .build(),
            )
            .requester_vpc_info(
                VpcPeeringConnectionVpcInfo::builder()
                    .owner_id("222222222222")
                    .vpc_id("vpc-bbbbbbbb")
                    .cidr_block("10.9.0.0/16")
                    .build(),
            )
            .accepter_vpc_info(
                VpcPeeringConnectionVpcInfo::builder()
                    .owner_id("999999999999")
                    .vpc_id("vpc-87654321")
                    .region("eu-west-1")
                    .build(),
            )
            .build();
        let d = differences(&c, &agreed(), ACCOUNT, REGION, false);
        assert_eq!(
            d,
            [
                "the requester is account 222222222222, not the provider's account 111111111111",
                "the requester VPC vpc-bbbbbbbb has CIDR 10.9.0.0/16, not the agreed ProviderCidr 10.8.0.0/16",
                "the accepter VPC is vpc-87654321, not this stack's VPC vpc-12345678",
                "the accepter is account 999999999999, not this stack's account 123456789012",
                "the accepter VPC is in eu-west-1, not this stack's region us-west-2",
            ]
        );
    }

    #[test]
    fn a_requester_with_more_blocks_than_agreed_is_refused() {
        let mut c = connection(Code::PendingAcceptance);
        c.requester_vpc_info = Some(
            VpcPeeringConnectionVpcInfo::builder()
                .owner_id("111111111111")
                .vpc_id("vpc-aaaaaaaa")
                .cidr_block("10.8.0.0/16")
                .cidr_block_set(CidrBlock::builder().cidr_block("10.8.0.0/16").build())
                .cidr_block_set(CidrBlock::builder().cidr_block("10.20.0.0/16").build())
                .build(),
        );
        assert_eq!(
            differences(&c, &agreed(), ACCOUNT, REGION, false),
            ["the requester VPC vpc-aaaaaaaa also has CIDR 10.20.0.0/16, which was not agreed"]
        );
    }

    #[test]
    fn tables_are_chosen_in_id_order_or_as_named() {
        let all = || {
            vec![
                table("rtb-22222222", vec![]),
                table("rtb-11111111", vec![]),
                table("rtb-33333333", vec![]),
            ]
        };
        let ids = |t: Vec<RouteTable>| -> Vec<String> {
            t.iter()
                .map(|t| t.route_table_id().unwrap().to_string())
                .collect()
        };
        let every = choose_tables(all(), &agreed(), REGION).unwrap();
        assert_eq!(ids(every), ["rtb-11111111", "rtb-22222222", "rtb-33333333"]);
        let mut p = agreed();
        p.route_table_ids = vec!["rtb-33333333".into(), "rtb-11111111".into()];
        assert_eq!(
            ids(choose_tables(all(), &p, REGION).unwrap()),
            ["rtb-33333333", "rtb-11111111"]
        );
        p.route_table_ids.push("rtb-44444444".into());
        assert_eq!(
            choose_tables(all(), &p, REGION).unwrap_err(),
            "RouteTableIds[2]: rtb-44444444 is not a route table of vpc-12345678 in us-west-2"
        );
        assert_eq!(
            choose_tables(Vec::new(), &agreed(), REGION).unwrap_err(),
            "VpcId: vpc-12345678 has no route tables in us-west-2"
        );
    }

    #[test]
    fn routes_are_created_kept_or_replaced_never_overwritten() {
        let cidr = "10.8.0.0/16";
        let blackhole = Route::builder()
            .destination_cidr_block(cidr)
            .vpc_peering_connection_id(PCX)
            .state(RouteState::Blackhole)
            .build();
        let tables = [
            table("rtb-11111111", vec![route("10.0.0.0/16", "local")]),
            table("rtb-22222222", vec![route(cidr, PCX)]),
            table("rtb-33333333", vec![blackhole]),
            table("rtb-44444444", vec![route(cidr, OLD_PCX)]),
        ];
        let steps = plan(&tables, cidr, PCX, Some(OLD_PCX)).unwrap();
        let steps: Vec<(&str, Step)> = steps.iter().map(|(t, s)| (t.as_str(), *s)).collect();
        assert_eq!(
            steps,
            [
                ("rtb-11111111", Step::Create),
                ("rtb-22222222", Step::Keep),
                ("rtb-33333333", Step::Replace),
                ("rtb-44444444", Step::Replace),
            ]
        );
        // Without a previous connection of this resource, a route through another one is a conflict, as is
        // one through a gateway; every conflict is named.
        let mut tables = tables.to_vec();
        tables.push(table("rtb-55555555", vec![route(cidr, "igw-12345678")]));
        assert_eq!(
            plan(&tables, cidr, PCX, None).unwrap_err(),
            [
                "rtb-44444444 already routes 10.8.0.0/16 to pcx-0fedcba9876543210",
                "rtb-55555555 already routes 10.8.0.0/16 to igw-12345678",
            ]
        );
    }

    #[test]
    fn an_update_removes_only_the_routes_no_longer_wanted() {
        let old = agreed();
        let tables = [
            table("rtb-11111111", vec![route("10.8.0.0/16", PCX)]),
            table("rtb-22222222", vec![route("10.8.0.0/16", PCX)]),
            table("rtb-33333333", vec![route("10.8.0.0/16", OLD_PCX)]),
        ];
        // Narrowed to one table: the other's route goes, another connection's route stays.
        let mut new = agreed();
        new.route_table_ids = vec!["rtb-11111111".into()];
        let kept = ["rtb-11111111".to_string()];
        assert_eq!(stale_routes(&tables, &old, &new, &kept), ["rtb-22222222"]);
        // Another CIDR: every old route goes.
        new.provider_cidr = "10.9.0.0/16".into();
        assert_eq!(
            stale_routes(&tables, &old, &new, &kept),
            ["rtb-11111111", "rtb-22222222"]
        );
        // Tables the old properties did not name were never routed by this resource.
        let mut old = agreed();
        old.route_table_ids = vec!["rtb-22222222".into()];
        assert_eq!(stale_routes(&tables, &old, &new, &kept), ["rtb-22222222"]);
    }

    #[test]
    fn delete_removes_the_resources_routes_or_every_route_through_the_connection() {
        let tables = [
            table(
                "rtb-11111111",
                vec![route("10.8.0.0/16", PCX), route("10.9.0.0/16", PCX)],
            ),
            table(
                "rtb-22222222",
                vec![
                    route("10.8.0.0/16", PCX),
                    route("0.0.0.0/0", "igw-12345678"),
                ],
            ),
        ];
        assert_eq!(
            routes_to_remove(&tables, PCX, None),
            [
                ("rtb-11111111", "10.8.0.0/16"),
                ("rtb-11111111", "10.9.0.0/16"),
                ("rtb-22222222", "10.8.0.0/16"),
            ]
        );
        let mut p = agreed();
        assert_eq!(
            routes_to_remove(&tables, PCX, Some(&p)),
            [
                ("rtb-11111111", "10.8.0.0/16"),
                ("rtb-22222222", "10.8.0.0/16")
            ]
        );
        p.route_table_ids = vec!["rtb-22222222".into()];
        assert_eq!(
            routes_to_remove(&tables, PCX, Some(&p)),
            [("rtb-22222222", "10.8.0.0/16")]
        );
        assert!(routes_to_remove(&tables, OLD_PCX, None).is_empty());
        assert!(is_live("active") && !is_live("deleted") && !is_live("rejected"));
    }
}
