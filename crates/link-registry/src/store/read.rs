//! Reads for the API and the console: links, one link with its inventory, a link's events, the
//! deliveries kept apart. Listings page by keyset (`sql::Keyset`); rows decode through `FromRow` structs
//! that mirror the columns, then become the views the API serialises.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::{FromRow, Row};

use super::sql::{bind_all, rfc3339, Arg, Keyset, Page};
use super::{Store, StoreError};

/// Which links to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkQuery {
    pub state: Option<String>,
    pub account: Option<String>,
    pub limit: i64,
    pub after: Option<String>,
}

const LINK_COLUMNS: &str = "link_id, account_id, partition_name, region, stack_id, logical_resource_id, state, external_id, roles, regions, vpc_id, vpc_count, subnet_count, route_table_count, inventory_complete, caller_arn, linked_at, updated_at, unlinked_at, last_event_id, \
     (SELECT COUNT(*) FROM request_links r WHERE r.link_id = links.link_id) AS requested, \
     (SELECT r.account_id FROM link_requests r WHERE r.external_id = links.external_id) AS request_account, \
     (SELECT r.multi_account FROM link_requests r WHERE r.external_id = links.external_id) AS request_multi, \
     (SELECT i.event_at FROM inventories i WHERE i.link_id = links.link_id) AS inventory_at, \
     (SELECT i.refreshed FROM inventories i WHERE i.link_id = links.link_id) AS inventory_refreshed, \
     (SELECT COUNT(*) FROM role_checks c WHERE c.link_id = links.link_id AND c.ok = 1) AS roles_ok, \
     (SELECT COUNT(*) FROM role_checks c WHERE c.link_id = links.link_id AND c.ok = 0) AS roles_refused, \
     (SELECT MAX(c.checked_at) FROM role_checks c WHERE c.link_id = links.link_id) AS roles_checked_at";

const EVENT_COLUMNS: &str =
    "webhook_id, event_id, event_type, event_at, received_at, part_index, part_count, caller_arn";

const REJECTED_COLUMNS: &str =
    "webhook_id, link_id, account_id, event_type, event_at, received_at, caller_arn, reason";

/// A link as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkView {
    pub link_id: String,
    pub account_id: String,
    pub partition: String,
    pub region: String,
    pub stack_id: String,
    pub logical_resource_id: String,
    /// `linked` or `unlinked`.
    pub state: String,
    pub external_id: Option<String>,
    pub roles: Value,
    pub regions: Value,
    pub vpc_id: Option<String>,
    pub vpc_count: i64,
    pub subnet_count: i64,
    pub route_table_count: i64,
    /// False when the newest event could not list the account's networks.
    pub inventory_complete: bool,
    /// The AWS principal that proved the account (an assumed-role session), when proofs are verified.
    pub caller_arn: Option<String>,
    pub linked_at: Option<String>,
    pub updated_at: String,
    pub unlinked_at: Option<String>,
    pub last_event_id: String,
    /// False for a link no console request asked for (its external id matched no pending link).
    pub requested: bool,
    /// Why a link whose external id a console request issued is not that request's: the id was already
    /// used by another account, the account is not one the request expects, or it had expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id_issue: Option<String>,
    /// When the inventory kept observed the account (its event's timestamp, or the refresh's start).
    pub inventory_at: Option<String>,
    /// Who reported the inventory kept: `stack` (the function's event) or `refresh` (the registry).
    pub inventory_source: Option<&'static str>,
    /// The roles' newest checks: `verified` (every role assumable), `refused` (at least one was not), or
    /// absent (never checked).
    pub roles_state: Option<&'static str>,
    pub roles_checked_at: Option<String>,
    #[serde(skip)]
    pub updated_at_ms: i64,
}

/// A row of `LINK_COLUMNS`.
#[derive(FromRow)]
struct LinkRow {
    link_id: String,
    account_id: String,
    partition_name: String,
    region: String,
    stack_id: String,
    logical_resource_id: String,
    state: String,
    external_id: Option<String>,
    roles: String,
    regions: String,
    vpc_id: Option<String>,
    vpc_count: i64,
    subnet_count: i64,
    route_table_count: i64,
    inventory_complete: i64,
    caller_arn: Option<String>,
    linked_at: Option<i64>,
    updated_at: i64,
    unlinked_at: Option<i64>,
    last_event_id: String,
    requested: i64,
    request_account: Option<String>,
    request_multi: Option<i64>,
    inventory_at: Option<i64>,
    inventory_refreshed: Option<i64>,
    roles_ok: i64,
    roles_refused: i64,
    roles_checked_at: Option<i64>,
}

impl From<LinkRow> for LinkView {
    fn from(r: LinkRow) -> Self {
        let json = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
        let requested = r.requested > 0;
        let external_id_issue = match (requested, r.request_multi, &r.request_account) {
            (true, _, _) | (false, None, _) => None,
            (false, Some(0), Some(other)) if *other != r.account_id => {
                Some(format!("external id already used by account {other}"))
            }
            (false, Some(0), _) => Some("the link request had expired".to_string()),
            (false, Some(_), _) => Some(format!(
                "account {} is not one this link request expects, or the request had expired",
                r.account_id
            )),
        };
        Self {
            roles: json(&r.roles),
            regions: json(&r.regions),
            link_id: r.link_id,
            account_id: r.account_id,
            partition: r.partition_name,
            region: r.region,
            stack_id: r.stack_id,
            logical_resource_id: r.logical_resource_id,
            state: r.state,
            external_id: r.external_id,
            vpc_id: r.vpc_id,
            vpc_count: r.vpc_count,
            subnet_count: r.subnet_count,
            route_table_count: r.route_table_count,
            inventory_complete: r.inventory_complete != 0,
            caller_arn: r.caller_arn,
            linked_at: r.linked_at.map(rfc3339),
            updated_at: rfc3339(r.updated_at),
            unlinked_at: r.unlinked_at.map(rfc3339),
            last_event_id: r.last_event_id,
            requested,
            external_id_issue,
            inventory_at: r.inventory_at.map(rfc3339),
            inventory_source: r
                .inventory_refreshed
                .map(|x| if x != 0 { "refresh" } else { "stack" }),
            roles_state: match (r.roles_ok, r.roles_refused) {
                (_, n) if n > 0 => Some("refused"),
                (n, _) if n > 0 => Some("verified"),
                _ => None,
            },
            roles_checked_at: r.roles_checked_at.map(rfc3339),
            updated_at_ms: r.updated_at,
        }
    }
}

/// One stored delivery, without its body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventView {
    pub webhook_id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's own timestamp.
    pub timestamp: String,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    pub caller_arn: Option<String>,
    #[serde(skip)]
    pub event_at_ms: i64,
}

/// A row of `EVENT_COLUMNS`.
#[derive(FromRow)]
struct EventRow {
    webhook_id: String,
    event_id: String,
    event_type: String,
    event_at: i64,
    received_at: i64,
    part_index: Option<i64>,
    part_count: Option<i64>,
    caller_arn: Option<String>,
}

impl From<EventRow> for EventView {
    fn from(r: EventRow) -> Self {
        Self {
            webhook_id: r.webhook_id,
            event_id: r.event_id,
            event_type: r.event_type,
            timestamp: rfc3339(r.event_at),
            received_at: rfc3339(r.received_at),
            part: match (r.part_index, r.part_count) {
                (Some(i), Some(n)) => Some(format!("{i}/{n}")),
                _ => None,
            },
            caller_arn: r.caller_arn,
            event_at_ms: r.event_at,
        }
    }
}

/// A delivery kept apart because it conflicts with the link it names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RejectedView {
    pub webhook_id: String,
    /// The link the event named (not necessarily one that exists).
    pub link_id: String,
    /// The account the event came from (proven, when proofs are verified).
    pub account_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: String,
    pub received_at: String,
    pub caller_arn: Option<String>,
    pub reason: String,
    #[serde(skip)]
    pub received_at_ms: i64,
}

/// A row of `REJECTED_COLUMNS`.
#[derive(FromRow)]
struct RejectedRow {
    webhook_id: String,
    link_id: String,
    account_id: String,
    event_type: String,
    event_at: i64,
    received_at: i64,
    caller_arn: Option<String>,
    reason: String,
}

impl From<RejectedRow> for RejectedView {
    fn from(r: RejectedRow) -> Self {
        Self {
            webhook_id: r.webhook_id,
            link_id: r.link_id,
            account_id: r.account_id,
            event_type: r.event_type,
            timestamp: rfc3339(r.event_at),
            received_at: rfc3339(r.received_at),
            caller_arn: r.caller_arn,
            reason: r.reason,
            received_at_ms: r.received_at,
        }
    }
}

/// Decodes rows through their `FromRow` mirror into the view.
fn decode<'r, R, V>(rows: &'r [sqlx::any::AnyRow]) -> Result<Vec<V>, StoreError>
where
    R: FromRow<'r, sqlx::any::AnyRow>,
    V: From<R>,
{
    rows.iter()
        .map(|r| R::from_row(r).map(V::from).map_err(StoreError::from))
        .collect()
}

const LINKS_PAGE: Keyset = Keyset {
    at: "updated_at",
    id: "link_id",
};
const EVENTS_PAGE: Keyset = Keyset {
    at: "event_at",
    id: "webhook_id",
};
const REJECTED_PAGE: Keyset = Keyset {
    at: "received_at",
    id: "webhook_id",
};

impl Store {
    /// Links, newest update first, filtered by state and account; `after` continues a listing from the
    /// cursor the previous page returned.
    pub(crate) async fn links(&self, q: &LinkQuery) -> Result<Page<LinkView>, StoreError> {
        let mut sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE 1=1");
        let mut args: Vec<Arg> = Vec::new();
        if let Some(state) = &q.state {
            args.push(Arg::Text(state.clone()));
            sql += &format!(" AND state = ${}", args.len());
        }
        if let Some(account) = &q.account {
            args.push(Arg::Text(account.clone()));
            sql += &format!(" AND account_id = ${}", args.len());
        }
        LINKS_PAGE.finish(&mut sql, &mut args, q.after.as_deref(), q.limit);
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.pool)
            .await?;
        let items = decode::<LinkRow, LinkView>(&rows)?;
        Ok(LINKS_PAGE.page(items, q.limit, |l| (l.updated_at_ms, &l.link_id)))
    }

    /// One link, without its inventory.
    pub(crate) async fn link_view(&self, link_id: &str) -> Result<Option<LinkView>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE link_id = $1"
        ))
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(decode::<LinkRow, LinkView>(row.as_slice())?.pop())
    }

    /// One link and its newest complete inventory, as stored: a JSON array of RegionInventory, passed on
    /// without being parsed (it can be megabytes).
    pub(crate) async fn link(
        &self,
        link_id: &str,
    ) -> Result<Option<(LinkView, Option<Box<RawValue>>)>, StoreError> {
        let Some(link) = self.link_view(link_id).await? else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT i.body, e.body FROM inventories i LEFT JOIN events e ON e.webhook_id = i.event_id \
             WHERE i.link_id = $1",
        )
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?;
        let inventory = match row {
            None => None,
            Some(r) => match (
                r.try_get::<Option<String>, _>(0)?,
                r.try_get::<Option<String>, _>(1)?,
            ) {
                (Some(own), _) => RawValue::from_string(own).ok(),
                (None, Some(event)) => inventory_of(&event),
                (None, None) => None,
            },
        };
        Ok(Some((link, inventory)))
    }

    /// A link's deliveries, newest event first.
    pub(crate) async fn events(
        &self,
        link_id: &str,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Page<EventView>, StoreError> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE link_id = $1");
        let mut args = vec![Arg::Text(link_id.to_string())];
        EVENTS_PAGE.finish(&mut sql, &mut args, after, limit);
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.pool)
            .await?;
        let items = decode::<EventRow, EventView>(&rows)?;
        Ok(EVENTS_PAGE.page(items, limit, |e| (e.event_at_ms, &e.webhook_id)))
    }

    /// Deliveries kept apart, newest first; only those naming `link_id` when given.
    pub(crate) async fn rejected(
        &self,
        link_id: Option<&str>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Page<RejectedView>, StoreError> {
        let mut sql = format!("SELECT {REJECTED_COLUMNS} FROM rejected_events WHERE 1=1");
        let mut args = Vec::new();
        if let Some(l) = link_id {
            args.push(Arg::Text(l.to_string()));
            sql += &format!(" AND link_id = ${}", args.len());
        }
        REJECTED_PAGE.finish(&mut sql, &mut args, after, limit);
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.pool)
            .await?;
        let items = decode::<RejectedRow, RejectedView>(&rows)?;
        Ok(REJECTED_PAGE.page(items, limit, |r| (r.received_at_ms, &r.webhook_id)))
    }

    /// Changes whenever a delivery is stored, by any receiver sharing the database: what a page that
    /// follows changes polls.
    pub(crate) async fn version(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(received_at), 0) FROM events")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }
}

/// `data.inventory` of a stored event's body, as it is there (the rest is skipped, not parsed).
pub(super) fn inventory_of(event_body: &str) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        data: Data<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        inventory: &'a RawValue,
    }
    let e: Event<'_> = serde_json::from_str(event_body).ok()?;
    Some(e.data.inventory.to_owned())
}
