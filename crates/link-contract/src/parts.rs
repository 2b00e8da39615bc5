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

/// Parts of one split at most. The function never needs more: it refuses to send an event whose split
/// would exceed this or [`MAX_SET_BYTES`] (Create/Update fail naming the size), and SNS's 240 KiB parts
/// carry 15 MiB in 64 parts, roughly 35 000 subnets, beyond the 1 000 subnets per region (5 VPCs x 200
/// subnets) of EC2's default quotas in every region of a partition. A receiver refuses higher counts, so
/// a hostile sender cannot make it track or hold an unbounded split.
pub const MAX_PARTS: usize = 64;
/// The bodies of one split's parts together, in bytes, at most (16 MiB).
pub const MAX_SET_BYTES: usize = 16 * 1024 * 1024;
/// `part.set`: 16 lowercase hex digits.
pub const SET_LEN: usize = 16;

/// What is wrong with a `data.part`, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    #[error("data.part.count must be 1 to {MAX_PARTS}, got {0}")]
    Count(u64),
    #[error("data.part.index must be 1 to data.part.count ({count}), got {index}")]
    Index { index: u64, count: u64 },
    #[error("data.part.set must be {SET_LEN} lowercase hex digits")]
    Set,
    #[error("data.part.set {set}: its parts would total {bytes} bytes, more than the {MAX_SET_BYTES} a split may carry")]
    TooLarge { set: String, bytes: usize },
    #[error("the event needs {0} parts, more than the {MAX_PARTS} a receiver accepts: list fewer Regions")]
    TooMany(usize),
    #[error("data.{field} differs from the other parts of split {set}: every part carries the same envelope")]
    Envelope { field: &'static str, set: String },
}

impl PartError {
    /// The check that failed, as a stable word ([`crate::reason`]).
    pub fn reason(&self) -> &'static str {
        use crate::reason as r;
        match self {
            Self::Count(_) | Self::TooMany(_) => r::PART_COUNT,
            Self::Index { .. } => r::PART_INDEX,
            Self::Set => r::PART_SET,
            Self::TooLarge { .. } => r::PART_SET_SIZE,
            Self::Envelope { .. } => r::PART_ENVELOPE,
        }
    }
}

/// The bounds every part must keep, checked before anything of it is stored or kept.
pub fn check_part(part: &Part) -> Result<(), PartError> {
    if part.count == 0 || part.count > MAX_PARTS {
        return Err(PartError::Count(part.count as u64));
    }
    if part.index == 0 || part.index > part.count {
        return Err(PartError::Index {
            index: part.index as u64,
            count: part.count as u64,
        });
    }
    if part.set.len() != SET_LEN
        || !part
            .set
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(PartError::Set);
    }
    Ok(())
}

/// What the sender checks of its own split: at most [`MAX_PARTS`] messages and [`MAX_SET_BYTES`] in all.
pub fn check_split(messages: &[Message]) -> Result<(), PartError> {
    if messages.len() > MAX_PARTS {
        return Err(PartError::TooMany(messages.len()));
    }
    let bytes: usize = messages.iter().map(|m| m.json.len()).sum();
    if messages.len() > 1 && bytes > MAX_SET_BYTES {
        return Err(PartError::TooLarge {
            set: String::new(),
            bytes,
        });
    }
    Ok(())
}

/// The envelope fields every part of one split must carry unchanged, in a fixed order (the names are the
/// JSON fields'): a part that differs in any of them belongs to another event, account, link or stack.
pub fn envelope_fields(e: &LinkEvent) -> [(&'static str, String); 12] {
    let d = &e.data;
    [
        ("type", e.event_type.as_str().to_string()),
        ("timestamp", e.timestamp.clone()),
        ("eventId", d.event_id.clone()),
        ("accountId", d.account_id.clone()),
        ("partition", d.partition.clone()),
        ("region", d.region.clone()),
        ("stackId", d.stack_id.clone()),
        ("logicalResourceId", d.logical_resource_id.clone()),
        ("physicalResourceId", d.physical_resource_id.clone()),
        (
            "externalId",
            serde_json::to_string(&d.external_id).unwrap_or_default(),
        ),
        ("roles", serde_json::to_string(&d.roles).unwrap_or_default()),
        (
            "part.count",
            d.part.as_ref().map_or(0, |p| p.count).to_string(),
        ),
    ]
}

/// A digest of [`envelope_fields`]: what a receiver keeps to compare later parts with the first.
pub fn envelope_digest(e: &LinkEvent) -> String {
    let mut h = Sha256::new();
    for (name, value) in envelope_fields(e) {
        // Length-prefixed, so no two envelopes hash alike by moving bytes between fields.
        for x in [name.as_bytes(), value.as_bytes()] {
            h.update((x.len() as u64).to_be_bytes());
            h.update(x);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The first envelope field in which `part` differs from `first`.
pub fn envelope_difference(first: &LinkEvent, part: &LinkEvent) -> Option<&'static str> {
    envelope_fields(first)
        .into_iter()
        .zip(envelope_fields(part))
        .find(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("no parts")]
    Empty,
    #[error("part {index} does not belong to the same split as part 1 ({what} differs)")]
    Mismatch { index: usize, what: &'static str },
    #[error("parts must be numbered 1 to {count} exactly once; got {got:?}")]
    Numbering { count: usize, got: Vec<usize> },
    #[error(transparent)]
    Part(#[from] PartError),
}

impl ReassemblyError {
    /// The check that failed, as a stable word ([`crate::reason`]).
    pub fn reason(&self) -> &'static str {
        use crate::reason as r;
        match self {
            Self::Empty | Self::Numbering { .. } => r::PART_INDEX,
            Self::Mismatch { .. } => r::PART_ENVELOPE,
            Self::Part(e) => e.reason(),
        }
    }
}

/// Puts a split event back together one part at a time, in order of `index`: each part's inventory is
/// merged into the whole as it comes, so a receiver reading parts from storage holds one part's body, not
/// all of them. Every part is checked ([`check_part`]) and must carry the first one's envelope.
#[derive(Debug)]
pub struct Reassembly {
    whole: LinkEvent,
    first: Part,
    next: usize,
}

impl Reassembly {
    /// Starts with part 1.
    pub fn start(mut first: LinkEvent) -> Result<Self, ReassemblyError> {
        let part = first.data.part.clone().ok_or(ReassemblyError::Empty)?;
        check_part(&part)?;
        if part.index != 1 {
            return Err(ReassemblyError::Numbering {
                count: part.count,
                got: vec![part.index],
            });
        }
        first.data.part = Some(part.clone());
        Ok(Self {
            whole: first,
            first: part,
            next: 2,
        })
    }

    /// Adds the next part (`index` one more than the last).
    pub fn add(&mut self, part: LinkEvent) -> Result<(), ReassemblyError> {
        let p = part.data.part.as_ref().ok_or(ReassemblyError::Empty)?;
        check_part(p)?;
        let index = p.index;
        if p.set != self.first.set {
            return Err(ReassemblyError::Mismatch {
                index,
                what: "part.set",
            });
        }
        if let Some(what) = envelope_difference(&self.whole, &part) {
            return Err(ReassemblyError::Mismatch { index, what });
        }
        if index != self.next {
            return Err(ReassemblyError::Numbering {
                count: self.first.count,
                got: vec![index],
            });
        }
        self.next += 1;
        merge(&mut self.whole.data.inventory, part.data.inventory);
        Ok(())
    }

    /// The whole event, once every part was added; it has no `part`.
    pub fn finish(mut self) -> Result<LinkEvent, ReassemblyError> {
        if self.next != self.first.count + 1 {
            return Err(ReassemblyError::Numbering {
                count: self.first.count,
                got: (1..self.next).collect(),
            });
        }
        let order = |region: &str| {
            self.whole
                .data
                .regions
                .iter()
                .position(|r| r == region)
                .unwrap_or(usize::MAX)
        };
        let mut regions = std::mem::take(&mut self.whole.data.inventory);
        regions.sort_by_key(|r| order(&r.region));
        self.whole.data.inventory = regions;
        self.whole.data.part = None;
        Ok(self.whole)
    }
}

/// Regions merged by name, VPCs by id, subnets and route tables concatenated.
fn merge(regions: &mut Vec<RegionInventory>, more: Vec<RegionInventory>) {
    for r in more {
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

/// The whole event from all of its parts, in any order: regions merged by name (in the order of
/// `data.regions`), VPCs by id, subnets and route tables concatenated. The result has no `part`.
/// A single event without `part` is returned as it is.
pub fn reassemble(mut parts: Vec<LinkEvent>) -> Result<LinkEvent, ReassemblyError> {
    parts.sort_by_key(|p| p.data.part.as_ref().map_or(0, |p| p.index));
    if parts.len() == 1 && parts[0].data.part.is_none() {
        return Ok(parts.remove(0));
    }
    let count = parts
        .first()
        .ok_or(ReassemblyError::Empty)?
        .data
        .part
        .as_ref()
        .map_or(0, |p| p.count);
    let got: Vec<usize> = parts
        .iter()
        .map(|p| p.data.part.as_ref().map_or(0, |p| p.index))
        .collect();
    if got != (1..=count).collect::<Vec<_>>() {
        return Err(ReassemblyError::Numbering { count, got });
    }
    let mut iter = parts.into_iter();
    let mut whole = Reassembly::start(iter.next().ok_or(ReassemblyError::Empty)?)?;
    for p in iter {
        whole.add(p)?;
    }
    whole.finish()
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

    #[test]
    fn part_bounds_name_the_field() {
        let part = |index, count, set: &str| Part {
            index,
            count,
            set: set.into(),
        };
        let set = "0123456789abcdef";
        assert_eq!(check_part(&part(1, 1, set)), Ok(()));
        assert_eq!(check_part(&part(64, 64, set)), Ok(()));
        for (p, field) in [
            (part(1, usize::MAX, set), "data.part.count"),
            (part(1, 65, set), "data.part.count"),
            (part(0, 0, set), "data.part.count"),
            (part(0, 3, set), "data.part.index"),
            (part(4, 3, set), "data.part.index"),
            (part(1, 3, ""), "data.part.set"),
            (part(1, 3, "0123456789ABCDEF"), "data.part.set"),
            (part(1, 3, "0123456789abcdef0"), "data.part.set"),
            (part(1, 3, "../../etc/passwd"), "data.part.set"),
        ] {
            let e = check_part(&p).unwrap_err().to_string();
            assert!(e.contains(field), "{p:?}: {e}");
        }
    }

    #[test]
    fn every_envelope_field_must_match_across_parts() {
        let parts: Vec<LinkEvent> = split(&big_event(3000), 64 * 1024)
            .iter()
            .map(|p| serde_json::from_str(&p.json).unwrap())
            .collect();
        type Edit = fn(&mut LinkEvent);
        let edits: [(&str, Edit); 11] = [
            ("type", |e| e.event_type = crate::event::EventType::Unlinked),
            ("timestamp", |e| {
                e.timestamp = "2026-11-29T00:00:01.000Z".into()
            }),
            ("eventId", |e| e.data.event_id = "msg_2".into()),
            ("accountId", |e| e.data.account_id = "210987654321".into()),
            ("partition", |e| e.data.partition = "aws-cn".into()),
            ("region", |e| e.data.region = "eu-west-1".into()),
            ("stackId", |e| e.data.stack_id.push('x')),
            ("logicalResourceId", |e| {
                e.data.logical_resource_id.push('x')
            }),
            ("physicalResourceId", |e| {
                e.data.physical_resource_id.push('x')
            }),
            ("externalId", |e| {
                e.data.external_id = Some("another-external-id".into())
            }),
            ("roles", |e| {
                e.data.roles.insert(
                    "RemoteRole".into(),
                    "arn:aws:iam::210987654321:role/x".into(),
                );
            }),
        ];
        for (field, edit) in edits {
            let mut hostile = parts.clone();
            edit(&mut hostile[2]);
            assert_ne!(envelope_digest(&hostile[2]), envelope_digest(&hostile[0]));
            assert_eq!(
                reassemble(hostile),
                Err(ReassemblyError::Mismatch {
                    index: 3,
                    what: field
                }),
                "{field}"
            );
        }
        assert_eq!(envelope_digest(&parts[0]), envelope_digest(&parts[1]));
    }

    #[test]
    fn reassembly_takes_parts_one_at_a_time_in_order() {
        let e = big_event(3000);
        let parts: Vec<LinkEvent> = split(&e, 64 * 1024)
            .iter()
            .map(|p| serde_json::from_str(&p.json).unwrap())
            .collect();
        let mut r = Reassembly::start(parts[0].clone()).unwrap();
        assert!(matches!(
            r.add(parts[2].clone()),
            Err(ReassemblyError::Numbering { .. })
        ));
        for p in &parts[1..parts.len() - 1] {
            r.add(p.clone()).unwrap();
        }
        let mut early = Reassembly::start(parts[0].clone()).unwrap();
        early.add(parts[1].clone()).unwrap();
        assert!(
            early.finish().is_err(),
            "an incomplete split is not an event"
        );
        r.add(parts.last().unwrap().clone()).unwrap();
        assert_eq!(r.finish().unwrap(), e);
    }

    #[test]
    fn a_sender_refuses_a_split_beyond_the_bounds() {
        let e = big_event(3000);
        assert!(check_split(&split(&e, 64 * 1024)).is_ok());
        let many = split(&e, 4 * 1024);
        assert!(many.len() > MAX_PARTS);
        assert_eq!(check_split(&many), Err(PartError::TooMany(many.len())));
        let mut parts = split(&e, 64 * 1024);
        parts[0].json = "x".repeat(MAX_SET_BYTES);
        assert!(matches!(
            check_split(&parts),
            Err(PartError::TooLarge { .. })
        ));
    }
}
