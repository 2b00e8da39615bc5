//! The registry's only state: links, their newest complete inventory, and every accepted delivery, in
//! SQLite (one box) or PostgreSQL (several receivers behind a load balancer) through sqlx's `Any` driver,
//! with one schema and one set of migrations (`migrations/`, applied at start).
//!
//! Why it is shaped like this:
//! - **Nothing acknowledged is lost.** [`Store::ingest`] returns only after the transaction holding the
//!   delivery has committed (SQLite: WAL with `synchronous=FULL`; PostgreSQL: commit). A failed write is an
//!   error, so the receiver answers 5xx and the sender's retry stores it.
//! - **Exactly once.** The `events` table's primary key is the webhook-id: a retried, replayed or
//!   concurrent second delivery inserts nothing, in this process or another, before or after a restart.
//! - **Group commit.** One writer task per process takes every delivery waiting and commits them in one
//!   transaction, so the cost of a durable commit (an fsync) is shared by all of them ([`write`], which
//!   also holds what no single delivery may do: stop the writer, break a split, move a link, exceed its
//!   account's quota).
//! - **Order.** A link row changes only for an event newer (by its own timestamp) than the last one it
//!   applied; an older event arriving late is kept in the history and changes nothing.

pub(crate) mod live;
mod sessions;
mod write;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use link_contract::event::LinkEvent;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row};
use tokio::sync::{mpsc, oneshot};

use write::{Job, Work};

/// Deliveries waiting for the writer at most; beyond that, `ingest` waits (backpressure).
const QUEUE: usize = 1024;

/// The database behind the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database URL must be sqlite://PATH or postgres://USER@HOST/DB, got '{0}'")]
    Url(String),
    #[error("could not open the database: {0}")]
    Connect(sqlx::Error),
    #[error("could not apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("a stored part of event {event_id} could not be read back: {problem}")]
    Corrupt { event_id: String, problem: String },
    #[error("the store is shutting down")]
    Closed,
    #[error("the delivery could not be stored (an internal error: {0})")]
    Internal(String),
}

/// A verified delivery, ready to store.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub webhook_id: String,
    pub event: LinkEvent,
    /// The exact body that was verified.
    pub body: String,
    /// The event's own timestamp, Unix milliseconds ([`event_millis`]).
    pub event_at: i64,
    pub received_at: i64,
    /// The AWS principal whose account proof came with the delivery, when one was verified.
    pub caller_arn: Option<String>,
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored. `applied`: the link now reflects it (false: an older event that arrived late, kept in the
    /// history only). For the last part of a split event, this is the reassembled event's outcome.
    Stored { applied: bool },
    /// This webhook-id was stored before: nothing was written.
    Duplicate,
    /// One part of a split event is stored; the event applies once all `count` have arrived.
    PartStored { received: i64, count: i64 },
    /// Not applied, for the reason given.
    Refused(Refusal),
    /// The heartbeat committed.
    Alive,
}

/// Why the store did not take a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It conflicts with the link it names; kept apart with this reason (409).
    Conflict(String),
    /// Its split refuses it (another envelope, count or too many bytes); nothing of it is stored (400).
    Invalid(String),
    /// Its account stored `what` (events or bytes) up to this hour's quota; retry when the hour ends (429).
    Quota {
        what: &'static str,
        retry_after_secs: u64,
    },
}

/// Per-account limits per hour; 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub events_per_hour: u64,
    pub bytes_per_hour: u64,
}

impl Quotas {
    pub(crate) fn off(&self) -> bool {
        self.events_per_hour == 0 && self.bytes_per_hour == 0
    }
}

impl Default for Quotas {
    /// Far above what one account's stacks send (a handful of events per stack and change), far below a
    /// flood.
    fn default() -> Self {
        Self {
            events_per_hour: 3600,
            bytes_per_hour: 1024 * 1024 * 1024,
        }
    }
}

/// How the store behaves beyond the database URL.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub quotas: Quotas,
}

/// The registry's database.
#[derive(Clone)]
pub(crate) struct Store {
    pool: AnyPool,
    engine: Engine,
    writer: mpsc::Sender<Job>,
    /// Names this process's heartbeat row.
    receiver: String,
}

/// The event's timestamp as Unix milliseconds, if it is RFC 3339 UTC.
pub(crate) fn event_millis(timestamp: &str) -> Option<i64> {
    humantime::parse_rfc3339(timestamp).ok().map(millis)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn now_millis() -> i64 {
    millis(SystemTime::now())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (the event timestamps' format).
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database, and starts the writer.
    pub(crate) async fn open_with(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let (engine, url) = normalize(url)?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        // Durable before the 2xx: every commit reaches the disk (WAL, fsync per commit).
                        // Statement journals (multi-row upserts) in memory, not in temporary files;
                        // a page cache large enough that a batch does not read pages back; a checkpoint
                        // every 8192 WAL pages (32 MiB) rather than 1000: the hot pages (links, indexes) are
                        // rewritten by most batches, and a checkpoint copies each once however often it changed
                        // (+20% deliveries/s in the registry benchmark; a checkpoint pauses the writer longer).
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; \
                             PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=8192;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        // PostgreSQL: the migrator takes an advisory lock, so receivers starting together migrate once.
        sqlx::migrate!("./migrations").run(&pool).await?;
        let (writer, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(write::run_writer(
            pool.clone(),
            engine,
            options.quotas,
            jobs,
        ));
        let receiver = crate::auth::random_hex(8);
        Ok(Self {
            pool,
            engine,
            writer,
            receiver,
        })
    }

    pub(crate) fn engine(&self) -> Engine {
        self.engine
    }

    async fn submit(&self, work: Work) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job { work, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores one delivery; returns once it is durably committed (or known to be a duplicate, or refused).
    pub(crate) async fn ingest(&self, delivery: Delivery) -> Result<Outcome, StoreError> {
        self.submit(Work::Deliver(delivery)).await
    }

    /// Keeps a delivery that conflicts with the link it names apart, with the reason; never applied.
    pub(crate) async fn reject(
        &self,
        delivery: Delivery,
        reason: String,
    ) -> Result<Outcome, StoreError> {
        self.submit(Work::Reject { delivery, reason }).await
    }

    /// The store can commit: a heartbeat goes through the writer (the same queue and transaction as
    /// deliveries) within `within`.
    pub(crate) async fn check_commit(&self, within: Duration) -> Result<(), StoreError> {
        let probe = self.submit(Work::Probe {
            receiver: self.receiver.clone(),
        });
        match tokio::time::timeout(within, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Internal(format!(
                "the writer did not commit within {} s",
                within.as_secs()
            ))),
        }
    }

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
        if let Some((at, id)) = q.after.as_ref().and_then(|c| parse_cursor(c)) {
            args.push(Arg::Int(at));
            args.push(Arg::Text(id));
            let (a, b) = (args.len() - 1, args.len());
            sql += &format!(" AND (updated_at < ${a} OR (updated_at = ${a} AND link_id < ${b}))");
        }
        sql += &format!(
            " ORDER BY updated_at DESC, link_id DESC LIMIT {}",
            q.limit + 1
        );
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.pool)
            .await?;
        let mut items: Vec<LinkView> = rows
            .iter()
            .map(LinkView::from_row)
            .collect::<Result<_, _>>()?;
        let next = (items.len() > q.limit as usize).then(|| {
            items.truncate(q.limit as usize);
            let last = items.last().expect("limit is at least 1");
            format!("{}.{}", last.updated_at_ms, last.link_id)
        });
        Ok(Page { items, next })
    }

    /// One link, without its inventory.
    pub(crate) async fn link_view(&self, link_id: &str) -> Result<Option<LinkView>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE link_id = $1"
        ))
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| LinkView::from_row(&r)).transpose()?)
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
        let mut sql = "SELECT webhook_id, event_id, event_type, event_at, received_at, part_index, part_count, caller_arn FROM events WHERE link_id = $1".to_string();
        let mut args = vec![Arg::Text(link_id.to_string())];
        if let Some((at, id)) = after.and_then(parse_cursor) {
            args.push(Arg::Int(at));
            args.push(Arg::Text(id));
            sql += " AND (event_at < $2 OR (event_at = $2 AND webhook_id < $3))";
        }
        sql += &format!(
            " ORDER BY event_at DESC, webhook_id DESC LIMIT {}",
            limit + 1
        );
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.pool)
            .await?;
        let mut items: Vec<EventView> = rows
            .iter()
            .map(EventView::from_row)
            .collect::<Result<_, _>>()?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            let last = items.last().expect("limit is at least 1");
            format!("{}.{}", last.event_at_ms, last.webhook_id)
        });
        Ok(Page { items, next })
    }
}

/// A link a customer started in the console.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkRequest {
    pub external_id: String,
    pub stack_name: String,
    pub region: String,
    pub created_at: String,
    pub expires_at: String,
    /// `pending`, `connected` or `expired`.
    pub status: &'static str,
    /// The first link it connected.
    pub link_id: Option<String>,
    pub connected_at: Option<String>,
    /// The account it connected (for a request made for several accounts: the first).
    pub account_id: Option<String>,
    /// Made for several accounts (StackSets): every account (or every expected one) connects.
    pub multi_account: bool,
    /// With `multi_account`: the only accounts that may connect, when given.
    pub expected_accounts: Option<Vec<String>>,
    /// How many links it connected.
    pub connected_links: i64,
}

/// Which accounts a console request may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestAccounts {
    /// Several accounts (a StackSet): each account that names the external id connects.
    pub multi_account: bool,
    /// With `multi_account`, only these (12-digit account ids).
    pub expected: Option<Vec<String>>,
}

impl LinkRequest {
    fn from_row(r: &AnyRow, now: i64) -> Result<Self, sqlx::Error> {
        let expires_at: i64 = r.try_get("expires_at")?;
        let link_id: Option<String> = r.try_get("link_id")?;
        let status = match (&link_id, expires_at < now) {
            (Some(_), _) => "connected",
            (None, true) => "expired",
            (None, false) => "pending",
        };
        Ok(Self {
            external_id: r.try_get("external_id")?,
            stack_name: r.try_get("stack_name")?,
            region: r.try_get("region")?,
            created_at: rfc3339(r.try_get("created_at")?),
            expires_at: rfc3339(expires_at),
            status,
            link_id,
            connected_at: r.try_get::<Option<i64>, _>("connected_at")?.map(rfc3339),
            account_id: r.try_get("account_id")?,
            multi_account: r.try_get::<i64, _>("multi_account")? != 0,
            expected_accounts: r
                .try_get::<Option<String>, _>("expected_accounts")?
                .and_then(|e| serde_json::from_str(&e).ok()),
            connected_links: r.try_get("connected_links")?,
        })
    }
}

/// The network a link's customer picked: one VPC and one or more of its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Selection {
    pub region: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
}

const REQUEST_COLUMNS: &str =
    "external_id, stack_name, region, created_at, expires_at, link_id, connected_at, account_id, multi_account, expected_accounts, \
     (SELECT COUNT(*) FROM request_links c WHERE c.external_id = link_requests.external_id) AS connected_links";

impl Store {
    /// Records a pending link.
    pub(crate) async fn create_request(
        &self,
        external_id: &str,
        stack_name: &str,
        region: &str,
        ttl: Duration,
        accounts: &RequestAccounts,
    ) -> Result<LinkRequest, StoreError> {
        let now = now_millis();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        sqlx::query(
            "INSERT INTO link_requests (external_id, stack_name, region, created_at, expires_at, multi_account, expected_accounts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(external_id)
        .bind(stack_name)
        .bind(region)
        .bind(now)
        .bind(expires)
        .bind(i64::from(accounts.multi_account))
        .bind(
            accounts
                .expected
                .as_ref()
                .map(|e| serde_json::to_string(e).unwrap_or_default()),
        )
        .execute(&self.pool)
        .await?;
        self.request(external_id)
            .await?
            .ok_or_else(|| StoreError::Db(sqlx::Error::RowNotFound))
    }

    pub(crate) async fn request(
        &self,
        external_id: &str,
    ) -> Result<Option<LinkRequest>, StoreError> {
        let now = now_millis();
        Ok(sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM link_requests WHERE external_id = $1"
        ))
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| LinkRequest::from_row(&r, now))
        .transpose()?)
    }

    /// Requests not yet connected, newest first (pending ones, then those that expired recently).
    pub(crate) async fn open_requests(&self, limit: i64) -> Result<Vec<LinkRequest>, StoreError> {
        let now = now_millis();
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM link_requests WHERE link_id IS NULL ORDER BY created_at DESC LIMIT {limit}"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| LinkRequest::from_row(r, now).map_err(StoreError::from))
            .collect()
    }

    pub(crate) async fn selection(&self, link_id: &str) -> Result<Option<Selection>, StoreError> {
        let row =
            sqlx::query("SELECT region, vpc_id, subnet_ids FROM selections WHERE link_id = $1")
                .bind(link_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Selection {
            region: r.try_get("region")?,
            vpc_id: r.try_get("vpc_id")?,
            subnet_ids: serde_json::from_str(&r.try_get::<String, _>("subnet_ids")?)
                .unwrap_or_default(),
        }))
    }

    pub(crate) async fn save_selection(
        &self,
        link_id: &str,
        s: &Selection,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO selections (link_id, region, vpc_id, subnet_ids, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (link_id) DO UPDATE SET region = excluded.region, vpc_id = excluded.vpc_id, \
             subnet_ids = excluded.subnet_ids, updated_at = excluded.updated_at",
        )
        .bind(link_id)
        .bind(s.region.as_str())
        .bind(s.vpc_id.as_str())
        .bind(serde_json::to_string(&s.subnet_ids).unwrap_or_default())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
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
fn inventory_of(event_body: &str) -> Option<Box<RawValue>> {
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

/// sqlx URLs, with SQLite files created when missing.
/// `link-receiver migrate`: applies the migrations `url` lacks and returns their versions (empty: the
/// schema was current). The same migrations and advisory lock as [`Store::open`], without serving.
pub(crate) async fn migrate(url: &str) -> Result<Vec<i64>, StoreError> {
    use sqlx::migrate::Migrate;
    use std::collections::HashSet;
    let (_, url) = normalize(url)?;
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .map_err(StoreError::Connect)?;
    let applied = |pool: AnyPool| async move {
        let mut conn = pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        let versions: HashSet<i64> = conn
            .list_applied_migrations()
            .await?
            .into_iter()
            .map(|m| m.version)
            .collect();
        Ok::<_, StoreError>(versions)
    };
    let before = applied(pool.clone()).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let mut now: Vec<i64> = applied(pool.clone())
        .await?
        .difference(&before)
        .copied()
        .collect();
    now.sort_unstable();
    pool.close().await;
    Ok(now)
}

fn normalize(url: &str) -> Result<(Engine, String), StoreError> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.trim_start_matches("//");
        if rest.is_empty() || rest.starts_with(':') {
            return Err(StoreError::Url(url.to_string()));
        }
        let url = if url.contains('?') {
            url.to_string()
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((Engine::Sqlite, url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Engine::Postgres, url.to_string()))
    } else {
        // Never echo a URL that may carry a password.
        let scheme = url.split(':').next().unwrap_or_default();
        Err(StoreError::Url(format!("{scheme}:...")))
    }
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, id) = c.split_once('.')?;
    Some((at.parse().ok()?, id.to_string()))
}

enum Arg {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

/// Which links to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkQuery {
    pub state: Option<String>,
    pub account: Option<String>,
    pub limit: i64,
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
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

impl LinkView {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let json = |col: &str| -> Result<Value, sqlx::Error> {
            Ok(serde_json::from_str(&r.try_get::<String, _>(col)?).unwrap_or(Value::Null))
        };
        let updated_at_ms: i64 = r.try_get("updated_at")?;
        let account_id: String = r.try_get("account_id")?;
        let requested = r.try_get::<i64, _>("requested")? > 0;
        let external_id_issue = match (
            requested,
            r.try_get::<Option<i64>, _>("request_multi")?,
            r.try_get::<Option<String>, _>("request_account")?,
        ) {
            (true, _, _) | (false, None, _) => None,
            (false, Some(0), Some(other)) if other != account_id => {
                Some(format!("external id already used by account {other}"))
            }
            (false, Some(0), _) => Some("the link request had expired".to_string()),
            (false, Some(_), _) => Some(format!(
                "account {account_id} is not one this link request expects, or the request had expired"
            )),
        };
        Ok(Self {
            link_id: r.try_get("link_id")?,
            account_id,
            partition: r.try_get("partition_name")?,
            region: r.try_get("region")?,
            stack_id: r.try_get("stack_id")?,
            logical_resource_id: r.try_get("logical_resource_id")?,
            state: r.try_get("state")?,
            external_id: r.try_get("external_id")?,
            roles: json("roles")?,
            regions: json("regions")?,
            vpc_id: r.try_get("vpc_id")?,
            vpc_count: r.try_get("vpc_count")?,
            subnet_count: r.try_get("subnet_count")?,
            route_table_count: r.try_get("route_table_count")?,
            inventory_complete: r.try_get::<i64, _>("inventory_complete")? != 0,
            caller_arn: r.try_get("caller_arn")?,
            linked_at: r.try_get::<Option<i64>, _>("linked_at")?.map(rfc3339),
            updated_at: rfc3339(updated_at_ms),
            unlinked_at: r.try_get::<Option<i64>, _>("unlinked_at")?.map(rfc3339),
            last_event_id: r.try_get("last_event_id")?,
            requested,
            external_id_issue,
            inventory_at: r.try_get::<Option<i64>, _>("inventory_at")?.map(rfc3339),
            inventory_source: r
                .try_get::<Option<i64>, _>("inventory_refreshed")?
                .map(|x| if x != 0 { "refresh" } else { "stack" }),
            roles_state: match (
                r.try_get::<i64, _>("roles_ok")?,
                r.try_get::<i64, _>("roles_refused")?,
            ) {
                (_, n) if n > 0 => Some("refused"),
                (n, _) if n > 0 => Some("verified"),
                _ => None,
            },
            roles_checked_at: r
                .try_get::<Option<i64>, _>("roles_checked_at")?
                .map(rfc3339),
            updated_at_ms,
        })
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

impl EventView {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let event_at_ms: i64 = r.try_get("event_at")?;
        let part = match (
            r.try_get::<Option<i64>, _>("part_index")?,
            r.try_get::<Option<i64>, _>("part_count")?,
        ) {
            (Some(i), Some(n)) => Some(format!("{i}/{n}")),
            _ => None,
        };
        Ok(Self {
            webhook_id: r.try_get("webhook_id")?,
            event_id: r.try_get("event_id")?,
            event_type: r.try_get("event_type")?,
            timestamp: rfc3339(event_at_ms),
            received_at: rfc3339(r.try_get("received_at")?),
            part,
            caller_arn: r.try_get("caller_arn")?,
            event_at_ms,
        })
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

impl Store {
    /// Deliveries kept apart, newest first; only those naming `link_id` when given.
    pub(crate) async fn rejected(
        &self,
        link_id: Option<&str>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Page<RejectedView>, StoreError> {
        let mut sql = "SELECT webhook_id, link_id, account_id, event_type, event_at, received_at, caller_arn, reason \
                       FROM rejected_events WHERE 1=1"
            .to_string();
        let mut args = Vec::new();
        if let Some(l) = link_id {
            args.push(Arg::Text(l.to_string()));
            sql += &format!(" AND link_id = ${}", args.len());
        }
        if let Some((at, id)) = after.and_then(parse_cursor) {
            args.push(Arg::Int(at));
            args.push(Arg::Text(id));
            let (a, b) = (args.len() - 1, args.len());
            sql +=
                &format!(" AND (received_at < ${a} OR (received_at = ${a} AND webhook_id < ${b}))");
        }
        sql += &format!(
            " ORDER BY received_at DESC, webhook_id DESC LIMIT {}",
            limit + 1
        );
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let received_at_ms: i64 = r.try_get("received_at")?;
            items.push(RejectedView {
                webhook_id: r.try_get("webhook_id")?,
                link_id: r.try_get("link_id")?,
                account_id: r.try_get("account_id")?,
                event_type: r.try_get("event_type")?,
                timestamp: rfc3339(r.try_get("event_at")?),
                received_at: rfc3339(received_at_ms),
                caller_arn: r.try_get("caller_arn")?,
                reason: r.try_get("reason")?,
                received_at_ms,
            });
        }
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            let last = items.last().expect("limit is at least 1");
            format!("{}.{}", last.received_at_ms, last.webhook_id)
        });
        Ok(Page { items, next })
    }

    /// Deletes what no longer needs keeping: usage counts of past hours, and, with a retention, deliveries
    /// and rejected deliveries received before it (never the delivery whose body holds a link's current
    /// inventory), with the split bookkeeping of parts that are gone. Deletes in bounded steps, so a
    /// large purge never holds the writer's lock for long. Returns the rows deleted.
    pub(crate) async fn purge(&self, retain: Option<Duration>) -> Result<u64, StoreError> {
        let now = now_millis();
        let mut deleted = sqlx::query("DELETE FROM account_usage WHERE hour < $1")
            .bind(now / 3_600_000 - 1)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let Some(retain) = retain else {
            return Ok(deleted);
        };
        let cutoff = now.saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        for sql in [
            "DELETE FROM events WHERE webhook_id IN (SELECT webhook_id FROM events WHERE received_at < $1 \
               AND webhook_id NOT IN (SELECT event_id FROM inventories WHERE body IS NULL) LIMIT 1000)",
            "DELETE FROM rejected_events WHERE webhook_id IN \
               (SELECT webhook_id FROM rejected_events WHERE received_at < $1 LIMIT 1000)",
        ] {
            loop {
                let n = sqlx::query(sql)
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                deleted += n;
                if n == 0 {
                    break;
                }
            }
        }
        deleted += sqlx::query(
            "DELETE FROM part_sets WHERE NOT EXISTS (SELECT 1 FROM events e \
               WHERE e.event_id = part_sets.event_id AND e.part_set = part_sets.part_set)",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            normalize("sqlite://link-registry.db").unwrap(),
            (Engine::Sqlite, "sqlite://link-registry.db?mode=rwc".into())
        );
        assert_eq!(normalize("postgres://u@h/db").unwrap().0, Engine::Postgres);
        let e = normalize("mysql://root:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sqlite://PATH") && !e.contains("hunter2"), "{e}");
        assert!(normalize("sqlite://").is_err());
    }

    #[test]
    fn timestamps_round_trip() {
        let ms = event_millis("2026-11-29T10:20:30.456Z").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-29T10:20:30.456Z");
        assert!(event_millis("yesterday").is_none());
        assert!(event_millis("2026-11-29T10:20:30.456+02:00").is_none());
    }
}
