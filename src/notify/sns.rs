//! The optional SNS channel: the whole event envelope as the message (so SNS's signature covers it) and
//! its type as a message attribute. An event larger than SNS allows is split into numbered parts, each a
//! complete event whose inventory holds a share of the VPCs, subnets and route tables; together the parts
//! hold everything (a VPC's header is repeated in every part that carries some of its children).

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::deadline::Deadline;
use crate::event::{LinkEvent, Part};
use crate::inventory::{RegionInventory, RouteTable, Subnet, Vpc};

/// SNS's limit is 256 KiB for the message and its attributes together; the rest is left to attributes.
pub const MAX_SNS_MESSAGE_BYTES: usize = 256 * 1024 - 2048;

pub struct SnsPublisher {
    client: Client,
    topic_arn: String,
}

#[derive(Debug, thiserror::Error)]
#[error("sns:Publish to {topic} failed{}: {message}", part.map(|(i, n)| format!(" for part {i} of {n}")).unwrap_or_default())]
pub struct SnsError {
    topic: String,
    part: Option<(usize, usize)>,
    message: String,
}

impl SnsPublisher {
    pub fn new(client: Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    pub async fn publish(&self, event: &LinkEvent, until: Deadline) -> Result<(), SnsError> {
        let parts = split_for_sns(event, MAX_SNS_MESSAGE_BYTES);
        let count = parts.len();
        let fail = |part, message| SnsError {
            topic: self.topic_arn.clone(),
            part,
            message,
        };
        for (i, message) in parts.into_iter().enumerate() {
            let part = (count > 1).then_some((i + 1, count));
            let mut req = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .message(message)
                .message_attributes("eventType", string_attr(event.event_type.as_str()))
                .message_attributes("eventId", string_attr(&event.data.event_id));
            if let Some((i, n)) = part {
                req = req.message_attributes("part", string_attr(&format!("{i}/{n}")));
            }
            if self.topic_arn.ends_with(".fifo") {
                // FIFO topics need a group (ordering per link) and a de-duplication id per message.
                let dedup = match part {
                    Some((i, _)) => format!("{}-{i}", event.data.event_id),
                    None => event.data.event_id.clone(),
                };
                req = req
                    .message_group_id(&event.data.physical_resource_id)
                    .message_deduplication_id(dedup);
            }
            match tokio::time::timeout_at(until.instant(), req.send()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(fail(part, DisplayErrorContext(&e).to_string())),
                Err(_) => {
                    return Err(fail(
                        part,
                        "no answer before the invocation's time ran out".into(),
                    ))
                }
            }
        }
        tracing::info!(topic = %self.topic_arn, parts = count, event_id = %event.data.event_id, "published to SNS");
        Ok(())
    }
}

fn string_attr(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

/// The event as SNS messages of at most `max_bytes` each: one message when it fits, otherwise numbered
/// parts (`data.part`).
pub fn split_for_sns(event: &LinkEvent, max_bytes: usize) -> Vec<String> {
    let whole = serde_json::to_string(event).unwrap_or_default();
    if whole.len() <= max_bytes {
        return vec![whole];
    }
    // The envelope without inventory, with the widest part numbers it could carry.
    let mut skeleton = event.clone();
    skeleton.data.inventory.clear();
    skeleton.data.part = Some(Part {
        index: usize::MAX,
        count: usize::MAX,
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
            });
            serde_json::to_string(&skeleton).unwrap_or_default()
        })
        .collect()
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
