//! The network inventory an event carries: per region, the VPCs with their subnets and route tables.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionInventory {
    pub region: String,
    pub vpcs: Vec<Vpc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vpc {
    pub vpc_id: String,
    pub name: Option<String>,
    pub cidr_block: Option<String>,
    /// Every associated IPv4 block, the primary one included.
    pub cidr_blocks: Vec<String>,
    pub ipv6_cidr_blocks: Vec<String>,
    pub is_default: bool,
    pub state: Option<String>,
    /// The account that owns the VPC (another account for a VPC shared through AWS RAM).
    pub owner_id: Option<String>,
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub subnet_id: String,
    pub name: Option<String>,
    pub cidr_block: Option<String>,
    pub ipv6_cidr_blocks: Vec<String>,
    pub availability_zone: Option<String>,
    pub availability_zone_id: Option<String>,
    pub available_ip_address_count: Option<i32>,
    pub map_public_ip_on_launch: bool,
    pub default_for_az: bool,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    pub route_table_id: String,
    pub name: Option<String>,
    /// The VPC's main route table (used by subnets with no explicit association).
    pub main: bool,
    pub subnet_ids: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// An IPv4 or IPv6 CIDR, or a prefix list id.
    pub destination: Option<String>,
    /// The gateway, NAT gateway, peering connection, interface... the traffic goes to.
    pub target: Option<String>,
    pub state: Option<String>,
    pub origin: Option<String>,
}

/// Everything found, one entry per region, in the order the regions were requested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory(pub Vec<RegionInventory>);

impl Inventory {
    pub fn vpcs(&self) -> impl Iterator<Item = &Vpc> {
        self.0.iter().flat_map(|r| &r.vpcs)
    }
    pub fn vpc_count(&self) -> usize {
        self.vpcs().count()
    }
    pub fn subnet_count(&self) -> usize {
        self.vpcs().map(|v| v.subnets.len()).sum()
    }
    pub fn route_table_count(&self) -> usize {
        self.vpcs().map(|v| v.route_tables.len()).sum()
    }
    pub fn vpc_ids(&self) -> Vec<&str> {
        self.vpcs().map(|v| v.vpc_id.as_str()).collect()
    }
    pub fn subnet_ids(&self) -> Vec<&str> {
        self.vpcs()
            .flat_map(|v| &v.subnets)
            .map(|s| s.subnet_id.as_str())
            .collect()
    }
    /// The VPC and the region it is in.
    pub fn find_vpc(&self, vpc_id: &str) -> Option<(&str, &Vpc)> {
        self.0.iter().find_map(|r| {
            r.vpcs
                .iter()
                .find(|v| v.vpc_id == vpc_id)
                .map(|v| (r.region.as_str(), v))
        })
    }
}

/// `<prefix>-` and 8 or 17 lowercase hex digits: the shape of every EC2 resource id.
pub fn is_ec2_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|h| {
            (h.len() == 8 || h.len() == 17)
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}
