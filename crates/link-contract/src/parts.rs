//! Events too large for one message go out as numbered parts, on SNS (256 KiB) and on the callback
//! (1 MiB by default). Each part is a complete event carrying a share of the inventory; together the
//! parts hold everything. A VPC's header is repeated in every part that carries some of its subnets or
//! route tables; each subnet and route table is in exactly one part.

use std::ops::Range;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::event::{LinkData, LinkEvent, Part};
use crate::inventory::{RegionInventory, Vpc};

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
/// To split one event at several limits (the callback and SNS), serialise it once with [`Serialized`].
pub fn split(event: &LinkEvent, max_bytes: usize) -> Vec<Message> {
    Serialized::new(event).split(max_bytes)
}

/// The event serialised once. Each subnet and route table, each VPC and region header and the envelope
/// are JSON fragments; the whole event and the parts at any limit are put together from them by copying
/// bytes, never by serialising again. The result is byte for byte what `serde_json` makes of the whole
/// event and of each part as an event of its own (the tests compare them).
pub struct Serialized<'a> {
    event: &'a LinkEvent,
    /// Every subnet and route table, back to back; `ranges` says where each one is.
    items: String,
    ranges: Vec<Range<usize>>,
    regions: Vec<RegionFragment<'a>>,
    whole: String,
    /// False if a fragment's layout is not the one assumed below (a field moved): every message is then
    /// serialised from a value instead, slower but the same bytes.
    exact: bool,
    /// Names the split (a digest of the whole event); computed by the first split.
    set: OnceLock<String>,
}

struct RegionFragment<'a> {
    name: &'a str,
    /// `{"region":"...",`: the region's JSON before its VPCs.
    head: String,
    vpcs: Vec<VpcFragment<'a>>,
}

struct VpcFragment<'a> {
    vpc: &'a Vpc,
    /// The VPC's JSON before its subnets and route tables (which are its last fields).
    head: String,
    /// Indexes into `Serialized::ranges`.
    subnets: Range<usize>,
    tables: Range<usize>,
}

/// How each fragment ends when its children are left out; the children go where the `[]` are.
const VPC_TAIL: &str = r#""subnets":[],"routeTables":[]}"#;
const REGION_TAIL: &str = r#""vpcs":[]}"#;
/// In the envelope (the event with no inventory): where the inventory goes.
const INVENTORY_KEY: &str = r#""inventory":[]"#;

impl<'a> Serialized<'a> {
    pub fn new(event: &'a LinkEvent) -> Self {
        let mut items = Vec::new();
        let mut ranges = Vec::new();
        let mut exact = true;
        let mut head = |json: String, tail: &str| match json.strip_suffix(tail) {
            Some(h) => h.to_string(),
            None => {
                exact = false;
                json
            }
        };
        let regions = event
            .data
            .inventory
            .iter()
            .map(|region| RegionFragment {
                name: &region.region,
                head: head(
                    json(&RegionInventory {
                        region: region.region.clone(),
                        vpcs: vec![],
                    }),
                    REGION_TAIL,
                ),
                vpcs: region
                    .vpcs
                    .iter()
                    .map(|vpc| {
                        let first = ranges.len();
                        for s in &vpc.subnets {
                            push_item(&mut items, &mut ranges, s);
                        }
                        let mid = ranges.len();
                        for t in &vpc.route_tables {
                            push_item(&mut items, &mut ranges, t);
                        }
                        VpcFragment {
                            vpc,
                            head: head(json(&bare_vpc(vpc)), VPC_TAIL),
                            subnets: first..mid,
                            tables: mid..ranges.len(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let mut this = Self {
            event,
            // serde_json writes UTF-8 only.
            items: String::from_utf8(items).unwrap_or_default(),
            ranges,
            regions,
            whole: String::new(),
            exact,
            set: OnceLock::new(),
        };
        let envelope = json(&envelope(event, event.data.part.clone()));
        this.whole = match this
            .exact
            .then(|| this.splice(&envelope, |s, out| s.write_whole(out)))
        {
            Some(Some(whole)) => whole,
            _ => {
                this.exact = false;
                json(event)
            }
        };
        this
    }

    pub fn event(&self) -> &'a LinkEvent {
        self.event
    }

    /// The whole event's JSON: what `serde_json::to_string(event)` gives.
    pub fn whole(&self) -> &str {
        &self.whole
    }

    /// The messages at `max_bytes` each, as [`split`] describes.
    pub fn split(&self, max_bytes: usize) -> Vec<Message> {
        if self.whole.len() <= max_bytes {
            return vec![Message {
                delivery_id: self.event.data.delivery_id(),
                part: None,
                json: self.whole.clone(),
            }];
        }
        let set = self
            .set
            .get_or_init(|| crate::hex::encode(&Sha256::digest(self.whole.as_bytes())[..8]));
        let part = |index, count| {
            Some(Part {
                index,
                count,
                set: set.clone(),
            })
        };
        // The envelope with the widest part numbers it could carry.
        let widest = json(&envelope(self.event, part(usize::MAX, usize::MAX))).len();
        let mut packer = Packer {
            room: max_bytes.saturating_sub(widest),
            ..Packer::default()
        };
        for region in &self.regions {
            if region.vpcs.is_empty() {
                packer.add(region, None, None);
            }
            for vpc in &region.vpcs {
                if vpc.subnets.is_empty() && vpc.tables.is_empty() {
                    packer.add(region, Some(vpc), None);
                }
                for i in vpc.subnets.clone() {
                    packer.add(
                        region,
                        Some(vpc),
                        Some((Kind::Subnet, i, self.ranges[i].len())),
                    );
                }
                for i in vpc.tables.clone() {
                    packer.add(
                        region,
                        Some(vpc),
                        Some((Kind::Table, i, self.ranges[i].len())),
                    );
                }
            }
        }
        let plans = packer.finish();
        let count = plans.len();
        plans
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let envelope = envelope(self.event, part(i + 1, count));
                let spliced = if self.exact {
                    self.splice(&json(&envelope), |s, out| s.write_plan(plan, out))
                } else {
                    None
                };
                Message {
                    delivery_id: envelope.data.delivery_id(),
                    part: Some((i + 1, count)),
                    json: spliced.unwrap_or_else(|| self.materialize(envelope, plan)),
                }
            })
            .collect()
    }

    /// `envelope` with the inventory written by `write` in place of its empty one; `None` if the
    /// envelope does not hold exactly one empty inventory.
    fn splice(&self, envelope: &str, write: impl FnOnce(&Self, &mut String)) -> Option<String> {
        let mut at = envelope.match_indices(INVENTORY_KEY).map(|(i, _)| i);
        let (Some(at), None) = (at.next(), at.next()) else {
            return None;
        };
        let mut out = String::with_capacity(envelope.len() + self.items.len() + self.ranges.len());
        out.push_str(&envelope[..at]);
        out.push_str(r#""inventory":["#);
        write(self, &mut out);
        out.push(']');
        out.push_str(&envelope[at + INVENTORY_KEY.len()..]);
        Some(out)
    }

    fn write_whole(&self, out: &mut String) {
        for (r, region) in self.regions.iter().enumerate() {
            comma(out, r);
            out.push_str(&region.head);
            out.push_str(r#""vpcs":["#);
            for (v, vpc) in region.vpcs.iter().enumerate() {
                comma(out, v);
                self.write_vpc(out, &vpc.head, vpc.subnets.clone(), vpc.tables.clone());
            }
            out.push_str("]}");
        }
    }

    fn write_plan(&self, plan: &[PlanRegion<'_, 'a>], out: &mut String) {
        for (r, region) in plan.iter().enumerate() {
            comma(out, r);
            out.push_str(&region.fragment.head);
            out.push_str(r#""vpcs":["#);
            for (v, vpc) in region.vpcs.iter().enumerate() {
                comma(out, v);
                self.write_vpc(
                    out,
                    &vpc.fragment.head,
                    vpc.subnets.iter().copied(),
                    vpc.tables.iter().copied(),
                );
            }
            out.push_str("]}");
        }
    }

    fn write_vpc(
        &self,
        out: &mut String,
        head: &str,
        subnets: impl Iterator<Item = usize>,
        tables: impl Iterator<Item = usize>,
    ) {
        out.push_str(head);
        out.push_str(r#""subnets":["#);
        for (n, i) in subnets.enumerate() {
            comma(out, n);
            out.push_str(&self.items[self.ranges[i].clone()]);
        }
        out.push_str(r#"],"routeTables":["#);
        for (n, i) in tables.enumerate() {
            comma(out, n);
            out.push_str(&self.items[self.ranges[i].clone()]);
        }
        out.push_str("]}");
    }

    /// The part as a value, serialised: only when the fragments cannot be spliced.
    fn materialize(&self, mut envelope: LinkEvent, plan: &[PlanRegion<'_, 'a>]) -> String {
        let child = |i: usize| -> (&Vpc, usize) {
            let (vpc, first) = self
                .regions
                .iter()
                .flat_map(|r| &r.vpcs)
                .find_map(|v| {
                    if v.subnets.contains(&i) {
                        Some((v.vpc, v.subnets.start))
                    } else if v.tables.contains(&i) {
                        Some((v.vpc, v.tables.start))
                    } else {
                        None
                    }
                })
                .expect("every item belongs to a VPC");
            (vpc, i - first)
        };
        envelope.data.inventory = plan
            .iter()
            .map(|r| RegionInventory {
                region: r.fragment.name.to_string(),
                vpcs: r
                    .vpcs
                    .iter()
                    .map(|v| Vpc {
                        subnets: v
                            .subnets
                            .iter()
                            .map(|&i| {
                                let (vpc, n) = child(i);
                                vpc.subnets[n].clone()
                            })
                            .collect(),
                        route_tables: v
                            .tables
                            .iter()
                            .map(|&i| {
                                let (vpc, n) = child(i);
                                vpc.route_tables[n].clone()
                            })
                            .collect(),
                        ..bare_vpc(v.fragment.vpc)
                    })
                    .collect(),
            })
            .collect();
        json(&envelope)
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn push_item<T: serde::Serialize>(items: &mut Vec<u8>, ranges: &mut Vec<Range<usize>>, v: &T) {
    let start = items.len();
    let _ = serde_json::to_writer(&mut *items, v);
    ranges.push(start..items.len());
}

fn comma(out: &mut String, n: usize) {
    if n > 0 {
        out.push(',');
    }
}

/// The VPC without its subnets and route tables.
fn bare_vpc(vpc: &Vpc) -> Vpc {
    Vpc {
        vpc_id: vpc.vpc_id.clone(),
        name: vpc.name.clone(),
        cidr_block: vpc.cidr_block.clone(),
        cidr_blocks: vpc.cidr_blocks.clone(),
        ipv6_cidr_blocks: vpc.ipv6_cidr_blocks.clone(),
        is_default: vpc.is_default,
        state: vpc.state.clone(),
        owner_id: vpc.owner_id.clone(),
        subnets: vec![],
        route_tables: vec![],
    }
}

/// The event without its inventory, carrying `part`: every field is listed, so a new one cannot be
/// forgotten here.
fn envelope(event: &LinkEvent, part: Option<Part>) -> LinkEvent {
    let d = &event.data;
    LinkEvent {
        event_type: event.event_type,
        timestamp: event.timestamp.clone(),
        data: LinkData {
            schema_version: d.schema_version.clone(),
            event_id: d.event_id.clone(),
            account_id: d.account_id.clone(),
            partition: d.partition.clone(),
            region: d.region.clone(),
            stack_id: d.stack_id.clone(),
            request_id: d.request_id.clone(),
            logical_resource_id: d.logical_resource_id.clone(),
            physical_resource_id: d.physical_resource_id.clone(),
            external_id: d.external_id.clone(),
            roles: d.roles.clone(),
            vpc_id: d.vpc_id.clone(),
            peering: d.peering.clone(),
            regions: d.regions.clone(),
            inventory_complete: d.inventory_complete,
            inventory: vec![],
            changes: d.changes.clone(),
            part,
        },
    }
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
    crate::hex::encode(&h.finalize())
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

#[derive(Clone, Copy)]
enum Kind {
    Subnet,
    Table,
}

/// One part's inventory, as indexes into the fragments: regions merged by name and VPCs by id, in the
/// order first seen.
struct PlanRegion<'f, 'a> {
    fragment: &'f RegionFragment<'a>,
    vpcs: Vec<PlanVpc<'f, 'a>>,
}

struct PlanVpc<'f, 'a> {
    fragment: &'f VpcFragment<'a>,
    subnets: Vec<usize>,
    tables: Vec<usize>,
}

/// Greedy packing by serialized size; every estimate includes the separators, so parts never overflow.
#[derive(Default)]
struct Packer<'f, 'a> {
    room: usize,
    used: usize,
    current: Vec<PlanRegion<'f, 'a>>,
    parts: Vec<Vec<PlanRegion<'f, 'a>>>,
}

impl<'f, 'a> Packer<'f, 'a> {
    /// Adds a child (`(kind, index, its JSON length)`) of `vpc`, or the bare VPC or region.
    fn add(
        &mut self,
        region: &'f RegionFragment<'a>,
        vpc: Option<&'f VpcFragment<'a>>,
        child: Option<(Kind, usize, usize)>,
    ) {
        let item = child.map_or(0, |(_, _, len)| len + 1);
        if self.used + self.wrappers(region, vpc) + item > self.room && !self.current.is_empty() {
            self.parts.push(std::mem::take(&mut self.current));
            self.used = 0;
        }
        self.used += self.wrappers(region, vpc) + item;
        // Parts are filled in inventory order: the entry wanted is nearly always the last one.
        let r = match self
            .current
            .iter()
            .rposition(|r| r.fragment.name == region.name)
        {
            Some(i) => &mut self.current[i],
            None => {
                self.current.push(PlanRegion {
                    fragment: region,
                    vpcs: vec![],
                });
                self.current.last_mut().expect("just pushed")
            }
        };
        let Some(vpc) = vpc else { return };
        let v = match r
            .vpcs
            .iter()
            .rposition(|v| v.fragment.vpc.vpc_id == vpc.vpc.vpc_id)
        {
            Some(i) => &mut r.vpcs[i],
            None => {
                r.vpcs.push(PlanVpc {
                    fragment: vpc,
                    subnets: vec![],
                    tables: vec![],
                });
                r.vpcs.last_mut().expect("just pushed")
            }
        };
        match child {
            None => {}
            Some((Kind::Subnet, i, _)) => v.subnets.push(i),
            Some((Kind::Table, i, _)) => v.tables.push(i),
        }
    }

    /// What the region and VPC entries would add to the current part if they are not in it yet.
    fn wrappers(&self, region: &RegionFragment<'_>, vpc: Option<&VpcFragment<'_>>) -> usize {
        let region_cost = region.head.len() + REGION_TAIL.len() + 1;
        let vpc_cost = vpc.map_or(0, |v| v.head.len() + VPC_TAIL.len() + 1);
        match self
            .current
            .iter()
            .rev()
            .find(|r| r.fragment.name == region.name)
        {
            None => region_cost + vpc_cost,
            Some(r)
                if vpc.is_some_and(|v| {
                    !r.vpcs
                        .iter()
                        .rev()
                        .any(|x| x.fragment.vpc.vpc_id == v.vpc.vpc_id)
                }) =>
            {
                vpc_cost
            }
            Some(_) => 0,
        }
    }

    fn finish(mut self) -> Vec<Vec<PlanRegion<'f, 'a>>> {
        if !self.current.is_empty() || self.parts.is_empty() {
            self.parts.push(self.current);
        }
        self.parts
    }
}

/// The split as first written (every piece serialised from a value): the tests compare `Serialized`
/// with it byte for byte.
#[cfg(test)]
mod reference {
    use sha2::{Digest, Sha256};

    use super::Message;
    use crate::event::{LinkEvent, Part};
    use crate::inventory::{RegionInventory, RouteTable, Subnet, Vpc};

    fn json_len<T: serde::Serialize>(v: &T) -> usize {
        serde_json::to_vec(v).map_or(0, |b| b.len())
    }

    /// (`data.part`). A part is never larger than `max_bytes` unless a single subnet or route table is.
    pub(super) fn reference_split(event: &LinkEvent, max_bytes: usize) -> Vec<Message> {
        let whole = serde_json::to_string(event).unwrap_or_default();
        if whole.len() <= max_bytes {
            return vec![Message {
                delivery_id: event.data.delivery_id(),
                part: None,
                json: whole,
            }];
        }
        let set = crate::hex::encode(&Sha256::digest(whole.as_bytes())[..8]);
        // The envelope without inventory, with the widest part numbers it could carry.
        let mut skeleton = event.clone();
        skeleton.data.inventory.clear();
        skeleton.data.part = Some(Part {
            index: usize::MAX,
            count: usize::MAX,
            set: set.clone(),
        });
        let mut packer = RefPacker {
            room: max_bytes.saturating_sub(json_len(&skeleton)),
            ..RefPacker::default()
        };
        for region in &event.data.inventory {
            if region.vpcs.is_empty() {
                packer.add(&region.region, None, RefChild::None);
            }
            for vpc in &region.vpcs {
                let header = Vpc {
                    subnets: vec![],
                    route_tables: vec![],
                    ..vpc.clone()
                };
                if vpc.subnets.is_empty() && vpc.route_tables.is_empty() {
                    packer.add(&region.region, Some(&header), RefChild::None);
                }
                for subnet in &vpc.subnets {
                    packer.add(&region.region, Some(&header), RefChild::Subnet(subnet));
                }
                for table in &vpc.route_tables {
                    packer.add(&region.region, Some(&header), RefChild::RouteTable(table));
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

    enum RefChild<'a> {
        None,
        Subnet(&'a Subnet),
        RouteTable(&'a RouteTable),
    }

    /// Greedy packing by serialized size; every estimate includes the separators, so parts never overflow.
    #[derive(Default)]
    struct RefPacker {
        room: usize,
        used: usize,
        current: Vec<RegionInventory>,
        parts: Vec<Vec<RegionInventory>>,
    }

    impl RefPacker {
        fn add(&mut self, region: &str, vpc: Option<&Vpc>, child: RefChild<'_>) {
            let item = match &child {
                RefChild::None => 0,
                RefChild::Subnet(s) => json_len(s) + 1,
                RefChild::RouteTable(t) => json_len(t) + 1,
            };
            if self.used + self.wrappers(region, vpc) + item > self.room && !self.current.is_empty()
            {
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
                RefChild::None => {}
                RefChild::Subnet(s) => v.subnets.push(s.clone()),
                RefChild::RouteTable(t) => v.route_tables.push(t.clone()),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, LinkData};
    use crate::inventory::{RouteTable, Subnet};
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

    /// Events with what could trip the fragments: duplicated regions and VPC ids, empty regions and
    /// VPCs, strings that need escaping, a role named like a field, a part already set.
    fn odd_events() -> Vec<LinkEvent> {
        let mut events = vec![big_event(0), big_event(3), big_event(300)];
        let mut odd = big_event(90);
        odd.data.roles.insert("inventory".into(), "[]".into());
        odd.data
            .roles
            .insert("\"inventory\":[]".into(), "é \u{1F600} \\ \"".into());
        odd.data.external_id = Some("\"inventory\":[]".into());
        let mut dup = odd.data.inventory[0].clone();
        dup.vpcs[1].vpc_id = dup.vpcs[0].vpc_id.clone();
        dup.vpcs[0].name = Some("tab\tquote\"".into());
        dup.vpcs.push(Vpc {
            vpc_id: "vpc-empty".into(),
            ..Vpc::default()
        });
        odd.data.inventory.push(dup);
        odd.data.inventory.push(RegionInventory {
            region: "ap-south-1".into(),
            vpcs: vec![],
        });
        events.push(odd);
        let mut parted = big_event(60);
        parted.data.part = Some(Part {
            index: 2,
            count: 3,
            set: "abc".into(),
        });
        events.push(parted);
        events
    }

    #[test]
    fn the_whole_event_is_what_serde_json_writes() {
        for e in odd_events() {
            assert_eq!(
                Serialized::new(&e).whole(),
                serde_json::to_string(&e).unwrap()
            );
        }
    }

    #[test]
    fn splits_are_byte_for_byte_the_reference() {
        for e in odd_events() {
            let serialized = Serialized::new(&e);
            assert!(serialized.exact);
            for max in [10, 600, 2_000, 7_000, 64 * 1024, 1 << 20] {
                assert_eq!(
                    serialized.split(max),
                    reference::reference_split(&e, max),
                    "max {max}"
                );
            }
            // Serialised from values instead of spliced: the same bytes.
            let mut by_value = Serialized::new(&e);
            by_value.exact = false;
            for max in [600, 7_000] {
                assert_eq!(by_value.split(max), reference::reference_split(&e, max));
            }
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
