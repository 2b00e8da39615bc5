//! Events too large for one message go out as numbered parts, on SNS (256 KiB) and on the callback
//! (1 MiB by default). Each part is a complete event carrying a share of the inventory; together the
//! parts hold everything. A VPC's header is repeated in every part that carries some of its subnets or
//! route tables; each subnet and route table is in exactly one part.

use sha2::{Digest, Sha256};

use crate::event::{LinkEvent, Part};
use crate::inventory::{RegionInventory, RouteTable, Subnet, Vpc};

fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

/// One message to send: the whole event, or one part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The delivery's id ([`crate::event::LinkData::delivery_id`]): the `webhook-id`, an SNS FIFO
    /// de-duplication id.
    pub delivery_id: String,
    /// `(index, count)` when the event was split.
    pub part: Option<(usize, usize)>,
    pub json: String,
}

/// The event as JSON messages of at most `max_bytes` each: one when it fits, otherwise numbered parts
/// (`data.part`). A part is never larger than `max_bytes` unless a single subnet or route table is.
pub fn split(event: &LinkEvent, max_bytes: usize) -> Vec<Message> {
    let whole = serde_json::to_string(event).unwrap_or_default();
    if whole.len() <= max_bytes {
        return vec![Message {
            delivery_id: event.data.delivery_id(),
            part: None,
            json: whole,
        }];
    }
    let set: String = Sha256::digest(whole.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The envelope without inventory, with the widest part numbers it could carry.
    let mut skeleton = event.clone();
    skeleton.data.inventory.clear();
    skeleton.data.part = Some(Part {
        index: usize::MAX,
        count: usize::MAX,
        set: set.clone(),
    });
    let mut packer = Packer {
        room: max_bytes.saturating_sub(json_len(&skeleton)),
        ..Packer::default()
    };
    for region in &event.data.inventory {
        if region.vpcs.is_empty() {
            packer.add(&region.region, None, Child::None);
        }
        for vpc in &region.vpcs {
            let header = Vpc {
                subnets: vec![],
                route_tables: vec![],
                ..vpc.clone()
            };
            if vpc.subnets.is_empty() && vpc.route_tables.is_empty() {
                packer.add(&region.region, Some(&header), Child::None);
            }
            for subnet in &vpc.subnets {
                packer.add(&region.region, Some(&header), Child::Subnet(subnet));
            }
            for table in &vpc.route_tables {
                packer.add(&region.region, Some(&header), Child::RouteTable(table));
            }
        }
    }
    let parts = packer.finish();
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, inventory)| {
            // One envelope for every part: only its inventory and number change.
            skeleton.data.inventory = inventory;
            skeleton.data.part = Some(Part {
                index: i + 1,
                count,
                set: set.clone(),
            });
            Message {
                delivery_id: skeleton.data.delivery_id(),
                part: Some((i + 1, count)),
                json: serde_json::to_string(&skeleton).unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("no parts")]
    Empty,
    #[error("part {index} does not belong to the same split as part 1 ({what} differs)")]
    Mismatch { index: usize, what: &'static str },
    #[error("parts must be numbered 1 to {count} exactly once; got {got:?}")]
    Numbering { count: usize, got: Vec<usize> },
}

/// The whole event from all of its parts, in any order: regions merged by name (in the order of
/// `data.regions`), VPCs by id, subnets and route tables concatenated. The result has no `part`.
pub fn reassemble(mut parts: Vec<LinkEvent>) -> Result<LinkEvent, ReassemblyError> {
    parts.sort_by_key(|p| p.data.part.as_ref().map_or(0, |p| p.index));
    let first = parts.first().ok_or(ReassemblyError::Empty)?;
    let first_part = first.data.part.clone();
    let count = first_part.as_ref().map_or(1, |p| p.count);
    let got: Vec<usize> = parts
        .iter()
        .map(|p| p.data.part.as_ref().map_or(0, |p| p.index))
        .collect();
    if got != (1..=count).collect::<Vec<_>>() && !(count == 1 && got == [0]) {
        return Err(ReassemblyError::Numbering { count, got });
    }
    for p in &parts[1..] {
        let index = p.data.part.as_ref().map_or(0, |p| p.index);
        let mismatch = |what| ReassemblyError::Mismatch { index, what };
        if p.data.event_id != first.data.event_id {
            return Err(mismatch("eventId"));
        }
        if p.data.part.as_ref().map(|x| (&x.set, x.count))
            != first_part.as_ref().map(|x| (&x.set, x.count))
        {
            return Err(mismatch("part.set or part.count"));
        }
        if p.event_type != first.event_type || p.timestamp != first.timestamp {
            return Err(mismatch("type or timestamp"));
        }
    }
    let mut iter = parts.into_iter();
    let mut whole = iter.next().ok_or(ReassemblyError::Empty)?;
    let mut regions = std::mem::take(&mut whole.data.inventory);
    for part in iter {
        for r in part.data.inventory {
            let into = match regions.iter().position(|x| x.region == r.region) {
                Some(i) => &mut regions[i],
                None => {
                    regions.push(RegionInventory {
                        region: r.region.clone(),
                        vpcs: vec![],
                    });
                    regions.last_mut().expect("just pushed")
                }
            };
            for v in r.vpcs {
                match into.vpcs.iter_mut().find(|x| x.vpc_id == v.vpc_id) {
                    Some(x) => {
                        x.subnets.extend(v.subnets);
                        x.route_tables.extend(v.route_tables);
                    }
                    None => into.vpcs.push(v),
                }
            }
        }
    }
    let order = |region: &str| {
        whole
            .data
            .regions
            .iter()
            .position(|r| r == region)
            .unwrap_or(usize::MAX)
    };
    regions.sort_by_key(|r| order(&r.region));
    whole.data.inventory = regions;
    whole.data.part = None;
    Ok(whole)
}

enum Child<'a> {
    None,
    Subnet(&'a Subnet),
    RouteTable(&'a RouteTable),
}

/// Greedy packing by serialized size; every estimate includes the separators, so parts never overflow.
#[derive(Default)]
struct Packer {
    room: usize,
    used: usize,
    current: Vec<RegionInventory>,
    parts: Vec<Vec<RegionInventory>>,
}

impl Packer {
    fn add(&mut self, region: &str, vpc: Option<&Vpc>, child: Child<'_>) {
        let item = match &child {
            Child::None => 0,
            Child::Subnet(s) => json_len(s) + 1,
            Child::RouteTable(t) => json_len(t) + 1,
        };
        if self.used + self.wrappers(region, vpc) + item > self.room && !self.current.is_empty() {
            self.parts.push(std::mem::take(&mut self.current));
            self.used = 0;
        }
        self.used += self.wrappers(region, vpc) + item;
        let r = match self.current.iter().position(|r| r.region == region) {
            Some(i) => &mut self.current[i],
            None => {
                self.current.push(RegionInventory {
                    region: region.to_string(),
                    vpcs: vec![],
                });
                self.current.last_mut().expect("just pushed")
            }
        };
        let Some(header) = vpc else { return };
        let v = match r.vpcs.iter().position(|v| v.vpc_id == header.vpc_id) {
            Some(i) => &mut r.vpcs[i],
            None => {
                r.vpcs.push(header.clone());
                r.vpcs.last_mut().expect("just pushed")
            }
        };
        match child {
            Child::None => {}
            Child::Subnet(s) => v.subnets.push(s.clone()),
            Child::RouteTable(t) => v.route_tables.push(t.clone()),
        }
    }

    /// What the region and VPC entries would add to the current part if they are not in it yet.
    fn wrappers(&self, region: &str, vpc: Option<&Vpc>) -> usize {
        let region_cost = json_len(&RegionInventory {
            region: region.to_string(),
            vpcs: vec![],
        }) + 1;
        let vpc_cost = vpc.map_or(0, |v| json_len(v) + 1);
        match self.current.iter().find(|r| r.region == region) {
            None => region_cost + vpc_cost,
            Some(r) if vpc.is_some_and(|v| !r.vpcs.iter().any(|x| x.vpc_id == v.vpc_id)) => {
                vpc_cost
            }
            Some(_) => 0,
        }
    }

    fn finish(mut self) -> Vec<Vec<RegionInventory>> {
        if !self.current.is_empty() || self.parts.is_empty() {
            self.parts.push(self.current);
        }
        self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, LinkData};
    use std::collections::BTreeMap;

    pub(crate) fn big_event(subnets: usize) -> LinkEvent {
        let vpcs = (0..3)
            .map(|v| Vpc {
                vpc_id: format!("vpc-{v:08x}"),
                subnets: (0..subnets / 3)
                    .map(|s| Subnet {
                        subnet_id: format!("subnet-{v:02x}{s:015x}"),
                        cidr_block: Some(format!("10.{v}.{}.0/28", s % 250)),
                        ..Subnet::default()
                    })
                    .collect(),
                route_tables: vec![RouteTable {
                    route_table_id: format!("rtb-{v:08x}"),
                    ..RouteTable::default()
                }],
                ..Vpc::default()
            })
            .collect();
        LinkEvent {
            event_type: EventType::Linked,
            timestamp: "2026-11-29T00:00:00.000Z".into(),
            data: LinkData {
                schema_version: "1".into(),
                event_id: "msg_1".into(),
                account_id: "123456789012".into(),
                partition: "aws".into(),
                region: "us-west-2".into(),
                stack_id: "arn:aws:cloudformation:us-west-2:123456789012:stack/s/1".into(),
                request_id: "r".into(),
                logical_resource_id: "AccountLink".into(),
                physical_resource_id: "link-1".into(),
                external_id: None,
                roles: BTreeMap::new(),
                vpc_id: None,
                peering: None,
                regions: vec!["us-west-2".into(), "eu-west-1".into()],
                inventory_complete: true,
                inventory: vec![
                    RegionInventory {
                        region: "us-west-2".into(),
                        vpcs,
                    },
                    RegionInventory {
                        region: "eu-west-1".into(),
                        vpcs: vec![],
                    },
                ],
                changes: None,
                part: None,
            },
        }
    }

    #[test]
    fn small_events_are_one_message() {
        let e = big_event(3);
        let parts = split(&e, 1 << 20);
        assert_eq!(parts.len(), 1);
        let back: LinkEvent = serde_json::from_str(&parts[0].json).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            (parts[0].delivery_id.as_str(), parts[0].part),
            ("msg_1", None)
        );
    }

    #[test]
    fn parts_fit_and_reassemble_in_any_order() {
        let e = big_event(3000);
        let parts = split(&e, 64 * 1024);
        assert!(parts.len() > 3, "{}", parts.len());
        let mut events: Vec<LinkEvent> = parts
            .iter()
            .map(|p| {
                assert!(p.json.len() <= 64 * 1024);
                let e: LinkEvent = serde_json::from_str(&p.json).unwrap();
                assert_eq!(e.data.delivery_id(), p.delivery_id);
                e
            })
            .collect();
        let ids: std::collections::BTreeSet<String> =
            events.iter().map(|e| e.data.delivery_id()).collect();
        assert_eq!(ids.len(), parts.len(), "each part is its own delivery");
        assert_eq!(parts[1].part, Some((2, parts.len())));
        events.reverse();
        assert_eq!(reassemble(events.clone()).unwrap(), e);
        events.pop();
        assert!(matches!(
            reassemble(events),
            Err(ReassemblyError::Numbering { .. })
        ));
    }

    #[test]
    fn parts_of_different_splits_do_not_mix() {
        let a: Vec<LinkEvent> = split(&big_event(3000), 64 * 1024)
            .iter()
            .map(|p| serde_json::from_str(&p.json).unwrap())
            .collect();
        let mut other = big_event(3000);
        other.data.inventory[0].vpcs[0].subnets.pop();
        let b: Vec<LinkEvent> = split(&other, 64 * 1024)
            .iter()
            .map(|p| serde_json::from_str(&p.json).unwrap())
            .collect();
        assert_eq!(a.len(), b.len());
        assert_ne!(a[0].data.delivery_id(), b[0].data.delivery_id());
        let mut mixed = a.clone();
        mixed[1] = b[1].clone();
        assert!(matches!(
            reassemble(mixed),
            Err(ReassemblyError::Mismatch { index: 2, .. })
        ));
    }
}
