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
//!   transaction, so the cost of a durable commit (an fsync) is shared by all of them.
//! - **Order.** A link row changes only for an event newer (by its own timestamp) than the last one it
//!   applied; an older event arriving late is kept in the history and changes nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use link_contract::event::{EventType, LinkEvent};
use link_contract::parts;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

/// Deliveries committed together at most.
const MAX_BATCH: usize = 128;
/// Deliveries waiting for the writer at most; beyond that, `ingest` waits (backpressure).
const QUEUE: usize = 1024;

/// The database behind the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
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
}

/// A verified delivery, ready to store.
#[derive(Debug, Clone)]
pub struct Delivery {
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
pub enum Outcome {
    /// Stored. `applied`: the link now reflects it (false: an older event that arrived late, kept in the
    /// history only). For the last part of a split event, this is the reassembled event's outcome.
    Stored { applied: bool },
    /// This webhook-id was stored before: nothing was written.
    Duplicate,
    /// One part of a split event is stored; the event applies once all `count` have arrived.
    PartStored { received: i64, count: i64 },
}

struct Job {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The registry's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    writer: mpsc::Sender<Job>,
}

/// The event's timestamp as Unix milliseconds, if it is RFC 3339 UTC.
pub fn event_millis(timestamp: &str) -> Option<i64> {
    humantime::parse_rfc3339(timestamp).ok().map(millis)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn now_millis() -> i64 {
    millis(SystemTime::now())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (the event timestamps' format).
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database, and starts the writer.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
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
        tokio::spawn(run_writer(pool.clone(), engine, jobs));
        Ok(Self {
            pool,
            engine,
            writer,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Stores one delivery; returns once it is durably committed (or known to be a duplicate).
    pub async fn ingest(&self, delivery: Delivery) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job { delivery, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Links, newest update first, filtered by state and account; `after` continues a listing from the
    /// cursor the previous page returned.
    pub async fn links(&self, q: &LinkQuery) -> Result<Page<LinkView>, StoreError> {
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
    pub async fn link_view(&self, link_id: &str) -> Result<Option<LinkView>, StoreError> {
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
    pub async fn link(
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
    pub async fn events(
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
pub struct LinkRequest {
    pub external_id: String,
    pub stack_name: String,
    pub region: String,
    pub created_at: String,
    pub expires_at: String,
    /// `pending`, `connected` or `expired`.
    pub status: &'static str,
    pub link_id: Option<String>,
    pub connected_at: Option<String>,
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
        })
    }
}

/// The network a link's customer picked: one VPC and one or more of its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    pub region: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
}

const REQUEST_COLUMNS: &str =
    "external_id, stack_name, region, created_at, expires_at, link_id, connected_at";

impl Store {
    /// Records a pending link.
    pub async fn create_request(
        &self,
        external_id: &str,
        stack_name: &str,
        region: &str,
        ttl: Duration,
    ) -> Result<LinkRequest, StoreError> {
        let now = now_millis();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        sqlx::query(
            "INSERT INTO link_requests (external_id, stack_name, region, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(external_id)
        .bind(stack_name)
        .bind(region)
        .bind(now)
        .bind(expires)
        .execute(&self.pool)
        .await?;
        self.request(external_id)
            .await?
            .ok_or_else(|| StoreError::Db(sqlx::Error::RowNotFound))
    }

    pub async fn request(&self, external_id: &str) -> Result<Option<LinkRequest>, StoreError> {
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
    pub async fn open_requests(&self, limit: i64) -> Result<Vec<LinkRequest>, StoreError> {
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

    pub async fn selection(&self, link_id: &str) -> Result<Option<Selection>, StoreError> {
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

    pub async fn save_selection(&self, link_id: &str, s: &Selection) -> Result<(), StoreError> {
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
    pub async fn version(&self) -> Result<i64, StoreError> {
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
pub async fn migrate(url: &str) -> Result<Vec<i64>, StoreError> {
    use sqlx::migrate::Migrate;
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
pub struct LinkQuery {
    pub state: Option<String>,
    pub account: Option<String>,
    pub limit: i64,
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

const LINK_COLUMNS: &str = "link_id, account_id, partition_name, region, stack_id, logical_resource_id, state, external_id, roles, regions, vpc_id, vpc_count, subnet_count, route_table_count, inventory_complete, caller_arn, linked_at, updated_at, unlinked_at, last_event_id, \
     (SELECT COUNT(*) FROM link_requests r WHERE r.link_id = links.link_id) AS requested";

/// A link as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
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
    #[serde(skip)]
    pub updated_at_ms: i64,
}

impl LinkView {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let json = |col: &str| -> Result<Value, sqlx::Error> {
            Ok(serde_json::from_str(&r.try_get::<String, _>(col)?).unwrap_or(Value::Null))
        };
        let updated_at_ms: i64 = r.try_get("updated_at")?;
        Ok(Self {
            link_id: r.try_get("link_id")?,
            account_id: r.try_get("account_id")?,
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
            requested: r.try_get::<i64, _>("requested")? > 0,
            updated_at_ms,
        })
    }
}

/// One stored delivery, without its body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
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

/// The single writer: takes every delivery waiting, commits them together, answers each. When a batch
/// fails (a conflict with another receiver, a constraint), each delivery is retried alone so one bad
/// delivery cannot fail the others.
async fn run_writer(pool: AnyPool, engine: Engine, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One connection for every write, kept: its page cache stays warm (with SQLite, the pages a batch
    // touches are mostly the ones the last batch did). Replaced after an error.
    let mut writer: Option<PoolConnection<Any>> = None;
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let taken = std::mem::take(&mut batch);
        let deliveries: Vec<&Delivery> = taken.iter().map(|j| &j.delivery).collect();
        let result = match writer.take() {
            Some(c) => Ok(c),
            None => pool.acquire().await.map_err(StoreError::from),
        };
        let result = match result {
            Ok(mut conn) => {
                let r = commit(&mut conn, engine, &deliveries).await;
                if r.is_ok() {
                    writer = Some(conn);
                }
                r
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(outcomes) => {
                for (job, outcome) in taken.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) if taken.len() > 1 => {
                tracing::warn!(error = %e, deliveries = taken.len(), "batch commit failed; storing one by one");
                for job in taken {
                    let result = match pool.acquire().await {
                        Ok(mut conn) => commit(&mut conn, engine, &[&job.delivery])
                            .await
                            .map(|mut o| o.remove(0)),
                        Err(e) => Err(e.into()),
                    };
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                if let Some(job) = taken.into_iter().next() {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
    }
}

/// Rows per multi-row statement: a batch of 128 deliveries is a handful of statements.
const ROWS_PER_STATEMENT: usize = 32;

/// `rows` rows of `width` parameters for a multi-row statement, bound in order: `($1, ..., $k), ...` for
/// PostgreSQL, `(?, ..., ?), ...` for SQLite (which looks every `$N` up by name in a list, a cost that grows
/// with the square of the parameters; anonymous ones it binds by position).
fn placeholders(engine: Engine, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=width)
                .map(|c| match engine {
                    Engine::Sqlite => "?".to_string(),
                    Engine::Postgres => format!("${}", r * width + c),
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One transaction for a batch, with a handful of statements whatever its size (each statement through
/// the driver costs far more than the database's own work): every delivery's row in one insert, then the
/// links, inventories and console requests the whole events touch, one statement each. Parts of split
/// events, which are rare, are stored one by one.
async fn commit(
    conn: &mut AnyConnection,
    engine: Engine,
    deliveries: &[&Delivery],
) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = conn.begin().await?;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
    // A webhook-id seen earlier in this batch is a duplicate without asking the database.
    let mut seen = HashSet::new();
    let mut fresh = Vec::with_capacity(deliveries.len());
    for (i, d) in deliveries.iter().enumerate() {
        if seen.insert(d.webhook_id.as_str()) {
            fresh.push(i);
        } else {
            outcomes[i] = Some(Outcome::Duplicate);
        }
    }
    let rows: Vec<&Delivery> = fresh.iter().map(|&i| deliveries[i]).collect();
    let inserted = insert_events(&mut tx, engine, &rows).await?;
    let mut whole = Vec::new();
    for &i in &fresh {
        let d = deliveries[i];
        if !inserted.contains(d.webhook_id.as_str()) {
            outcomes[i] = Some(Outcome::Duplicate);
            continue;
        }
        match &d.event.data.part {
            None => whole.push(i),
            Some(part) => outcomes[i] = Some(store_part(&mut tx, engine, d, part).await?),
        }
    }
    let events: Vec<Applying> = whole
        .iter()
        .map(|&i| Applying {
            event: &deliveries[i].event,
            event_at: deliveries[i].event_at,
            caller_arn: deliveries[i].caller_arn.as_deref(),
            reassembled: false,
        })
        .collect();
    let applied = apply(&mut tx, engine, &events).await?;
    for (k, &i) in whole.iter().enumerate() {
        outcomes[i] = Some(Outcome::Stored {
            applied: applied[k],
        });
    }
    tx.commit().await?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Duplicate))
        .collect())
}

/// The deliveries' rows; returns the webhook-ids that were new (the others were stored before).
async fn insert_events(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    rows: &[&Delivery],
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO events (webhook_id, event_id, link_id, event_type, event_at, received_at, part_index, part_count, part_set, caller_arn, body) \
             VALUES {} ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id",
            placeholders(engine, chunk.len(), 11)
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            let data = &d.event.data;
            let part = data.part.as_ref();
            q = q
                .bind(d.webhook_id.as_str())
                .bind(data.event_id.as_str())
                .bind(data.physical_resource_id.as_str())
                .bind(d.event.event_type.as_str())
                .bind(d.event_at)
                .bind(d.received_at)
                .bind(part.map(|p| p.index as i64))
                .bind(part.map(|p| p.count as i64))
                .bind(part.map(|p| p.set.as_str()))
                .bind(d.caller_arn.as_deref())
                .bind(d.body.as_str());
        }
        for row in q.fetch_all(&mut **tx).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}

/// One part of a split event, already in `events`: counts it, and when it is the last one, puts the event
/// back together and applies it.
async fn store_part(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    d: &Delivery,
    part: &link_contract::event::Part,
) -> Result<Outcome, StoreError> {
    let data = &d.event.data;
    let count = part.count as i64;
    let received: i64 = sqlx::query(
        "INSERT INTO part_sets (event_id, part_set, part_count, received) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (event_id, part_set) DO UPDATE SET received = part_sets.received + 1 RETURNING received",
    )
    .bind(data.event_id.as_str())
    .bind(part.set.as_str())
    .bind(count)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    if received < count {
        return Ok(Outcome::PartStored { received, count });
    }
    let corrupt = |problem: String| StoreError::Corrupt {
        event_id: data.event_id.clone(),
        problem,
    };
    let rows = sqlx::query("SELECT body FROM events WHERE event_id = $1 AND part_set = $2")
        .bind(data.event_id.as_str())
        .bind(part.set.as_str())
        .fetch_all(&mut **tx)
        .await?;
    let mut all = Vec::with_capacity(rows.len());
    for row in rows {
        let body: String = row.try_get(0)?;
        all.push(serde_json::from_str::<LinkEvent>(&body).map_err(|e| corrupt(e.to_string()))?);
    }
    let whole = parts::reassemble(all).map_err(|e| corrupt(e.to_string()))?;
    let applied = apply(
        tx,
        engine,
        &[Applying {
            event: &whole,
            event_at: d.event_at,
            caller_arn: d.caller_arn.as_deref(),
            reassembled: true,
        }],
    )
    .await?;
    Ok(Outcome::Stored {
        applied: applied[0],
    })
}

/// A whole event to apply to its link.
struct Applying<'a> {
    event: &'a LinkEvent,
    event_at: i64,
    caller_arn: Option<&'a str>,
    /// Put back together from parts: no stored delivery holds its inventory.
    reassembled: bool,
}

impl Applying<'_> {
    /// Events of one link are ordered by their own timestamp, then their id.
    fn order(&self) -> (i64, &str) {
        (self.event_at, self.event.data.event_id.as_str())
    }
}

/// For each link, the newest of `events` (by [`Applying::order`]) among those `keep` accepts.
fn newest_per_link<'a>(events: &'a [Applying<'a>], keep: impl Fn(&Applying) -> bool) -> Vec<usize> {
    let mut newest: HashMap<&str, usize> = HashMap::new();
    for (k, e) in events.iter().enumerate().filter(|(_, e)| keep(e)) {
        newest
            .entry(e.event.data.physical_resource_id.as_str())
            .and_modify(|best| {
                if e.order() > events[*best].order() {
                    *best = k;
                }
            })
            .or_insert(k);
    }
    let mut picked: Vec<usize> = newest.into_values().collect();
    picked.sort_unstable();
    picked
}

/// Applies whole events to their links: each link takes the newest event of the batch if it is newer than
/// the last one it applied (so an older event arriving late changes nothing), and its inventory if that
/// event's is complete and newer than the one kept; console requests named by an external id connect.
/// Returns, for each event, whether its link now reflects it.
async fn apply(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    events: &[Applying<'_>],
) -> Result<Vec<bool>, StoreError> {
    let mut applied = vec![false; events.len()];
    if events.is_empty() {
        return Ok(applied);
    }
    let winners = newest_per_link(events, |_| true);
    let mut changed = HashSet::new();
    for chunk in winners.chunks(ROWS_PER_STATEMENT) {
        upsert_links(tx, engine, events, chunk, &mut changed).await?;
    }
    for &k in &winners {
        applied[k] = changed.contains(events[k].event.data.physical_resource_id.as_str());
    }
    let complete = newest_per_link(events, |e| e.event.data.inventory_complete);
    for chunk in complete.chunks(ROWS_PER_STATEMENT) {
        upsert_inventories(tx, engine, events, chunk).await?;
    }
    connect_requests(tx, engine, events).await?;
    Ok(applied)
}

/// The links of `chunk` (indexes into `events`, at most one per link): inserted, or updated where the event
/// is newer than the one the link applied; the links that changed are added to `changed`.
async fn upsert_links(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    events: &[Applying<'_>],
    chunk: &[usize],
    changed: &mut HashSet<String>,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO links (link_id, account_id, partition_name, region, stack_id, logical_resource_id, state, external_id, roles, regions, vpc_id, \
           vpc_count, subnet_count, route_table_count, inventory_complete, caller_arn, linked_at, updated_at, unlinked_at, last_event_at, last_event_id) \
         VALUES {} \
         ON CONFLICT (link_id) DO UPDATE SET \
           account_id = excluded.account_id, partition_name = excluded.partition_name, region = excluded.region, \
           stack_id = excluded.stack_id, logical_resource_id = excluded.logical_resource_id, state = excluded.state, \
           external_id = excluded.external_id, roles = excluded.roles, regions = excluded.regions, vpc_id = excluded.vpc_id, \
           vpc_count = CASE WHEN excluded.inventory_complete = 1 THEN excluded.vpc_count ELSE links.vpc_count END, \
           subnet_count = CASE WHEN excluded.inventory_complete = 1 THEN excluded.subnet_count ELSE links.subnet_count END, \
           route_table_count = CASE WHEN excluded.inventory_complete = 1 THEN excluded.route_table_count ELSE links.route_table_count END, \
           inventory_complete = excluded.inventory_complete, \
           caller_arn = COALESCE(excluded.caller_arn, links.caller_arn), \
           linked_at = CASE WHEN excluded.state = 'linked' AND (links.state <> 'linked' OR links.linked_at IS NULL) \
                            THEN excluded.linked_at ELSE links.linked_at END, \
           updated_at = excluded.updated_at, unlinked_at = excluded.unlinked_at, \
           last_event_at = excluded.last_event_at, last_event_id = excluded.last_event_id \
         WHERE links.last_event_at < excluded.last_event_at \
            OR (links.last_event_at = excluded.last_event_at AND links.last_event_id < excluded.last_event_id) \
         RETURNING link_id",
        placeholders(engine, chunk.len(), 21)
    );
    let mut q = sqlx::query(&sql);
    for &k in chunk {
        let Applying {
            event,
            event_at,
            caller_arn,
            ..
        } = &events[k];
        let d = &event.data;
        let vpcs = d.inventory.iter().flat_map(|r| &r.vpcs);
        let (state, linked_at, unlinked_at) = match event.event_type {
            EventType::Unlinked => ("unlinked", None, Some(*event_at)),
            EventType::Linked | EventType::Updated => ("linked", Some(*event_at), None),
        };
        q = q
            .bind(d.physical_resource_id.as_str())
            .bind(d.account_id.as_str())
            .bind(d.partition.as_str())
            .bind(d.region.as_str())
            .bind(d.stack_id.as_str())
            .bind(d.logical_resource_id.as_str())
            .bind(state)
            .bind(d.external_id.as_deref())
            .bind(serde_json::to_string(&d.roles).unwrap_or_default())
            .bind(serde_json::to_string(&d.regions).unwrap_or_default())
            .bind(d.vpc_id.as_deref())
            .bind(vpcs.clone().count() as i64)
            .bind(vpcs.clone().map(|v| v.subnets.len()).sum::<usize>() as i64)
            .bind(vpcs.map(|v| v.route_tables.len()).sum::<usize>() as i64)
            .bind(i64::from(d.inventory_complete))
            .bind(*caller_arn)
            .bind(linked_at)
            .bind(*event_at)
            .bind(unlinked_at)
            .bind(*event_at)
            .bind(d.event_id.as_str());
    }
    for row in q.fetch_all(&mut **tx).await? {
        changed.insert(row.try_get::<String, _>(0)?);
    }
    Ok(())
}

/// The inventories of `chunk` (indexes into `events`: complete ones, at most one per link), where newer
/// than the one kept.
async fn upsert_inventories(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    events: &[Applying<'_>],
    chunk: &[usize],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO inventories (link_id, event_id, event_at, body) VALUES {} \
         ON CONFLICT (link_id) DO UPDATE SET event_id = excluded.event_id, event_at = excluded.event_at, body = excluded.body \
         WHERE inventories.event_at < excluded.event_at",
        placeholders(engine, chunk.len(), 4)
    );
    let mut q = sqlx::query(&sql);
    for &k in chunk {
        let d = &events[k].event.data;
        q = q
            .bind(d.physical_resource_id.as_str())
            .bind(d.event_id.as_str())
            .bind(events[k].event_at)
            // A delivered event's inventory is read from its stored body; only a reassembled one is kept.
            .bind(
                events[k]
                    .reassembled
                    .then(|| serde_json::to_string(&d.inventory).unwrap_or_default()),
            );
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The console's pending links named by these events' external ids, if they have not expired, are now
/// connected.
async fn connect_requests(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    events: &[Applying<'_>],
) -> Result<(), StoreError> {
    let mut by_external_id: HashMap<&str, &str> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.event.event_type != EventType::Unlinked)
    {
        if let Some(x) = &e.event.data.external_id {
            by_external_id.insert(x.as_str(), e.event.data.physical_resource_id.as_str());
        }
    }
    let pairs: Vec<(&str, &str)> = by_external_id.into_iter().collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        // The time is ours, an integer: written into the statement, so every parameter is a row's.
        let now = now_millis();
        let sql = format!(
            "UPDATE link_requests SET link_id = v.column2, connected_at = {now} FROM (VALUES {}) AS v \
             WHERE link_requests.external_id = v.column1 AND link_requests.link_id IS NULL \
               AND link_requests.expires_at >= {now}",
            placeholders(engine, chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (external_id, link_id) in chunk {
            q = q.bind(*external_id).bind(*link_id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(link: &str, event_id: &str, at: &str, unlink: bool) -> Delivery {
        let example = if unlink {
            include_str!("../../../docs/examples/account.unlinked.json")
        } else {
            include_str!("../../../docs/examples/account.linked.json")
        };
        let mut event: LinkEvent = serde_json::from_str(example).unwrap();
        event.data.physical_resource_id = link.into();
        event.data.event_id = event_id.into();
        event.timestamp = at.into();
        Delivery {
            webhook_id: event_id.into(),
            body: serde_json::to_string(&event).unwrap(),
            event_at: event_millis(at).unwrap(),
            event,
            received_at: now_millis(),
            caller_arn: None,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn one_batch_orders_events_and_finds_duplicates() {
        let dir = std::env::temp_dir().join(format!("store-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("b.db"));
        let store = Store::open(&format!("sqlite://{}", dir.join("b.db").display()))
            .await
            .unwrap();
        let first = delivery("link-a", "msg_1", "2026-11-29T10:00:00.000Z", false);
        commit(
            &mut store.pool.acquire().await.unwrap(),
            store.engine,
            &[&first],
        )
        .await
        .unwrap();
        // In one batch: the unlink of link-a, an older event of it, the same delivery twice, one stored
        // before, and two events of link-b, the newer first.
        let batch = [
            delivery("link-a", "msg_3", "2026-11-29T10:05:00.000Z", true),
            delivery("link-a", "msg_2", "2026-11-29T10:01:00.000Z", false),
            delivery("link-b", "msg_5", "2026-11-29T11:00:00.000Z", false),
            delivery("link-b", "msg_4", "2026-11-29T10:30:00.000Z", true),
            delivery("link-b", "msg_5", "2026-11-29T11:00:00.000Z", false),
            first.clone(),
        ];
        let refs: Vec<&Delivery> = batch.iter().collect();
        let outcomes = commit(
            &mut store.pool.acquire().await.unwrap(),
            store.engine,
            &refs,
        )
        .await
        .unwrap();
        let stored = |applied| Outcome::Stored { applied };
        assert_eq!(
            outcomes,
            [
                stored(true),
                stored(false),
                stored(true),
                stored(false),
                Outcome::Duplicate,
                Outcome::Duplicate
            ]
        );
        let (a, _) = store.link("link-a").await.unwrap().unwrap();
        let (b, inventory) = store.link("link-b").await.unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.last_event_id.as_str()),
            ("unlinked", "msg_3")
        );
        assert_eq!(
            (b.state.as_str(), b.last_event_id.as_str()),
            ("linked", "msg_5")
        );
        assert!(inventory.is_some());
        let history = store.events("link-a", 10, None).await.unwrap();
        let ids: Vec<&str> = history
            .items
            .iter()
            .map(|e| e.webhook_id.as_str())
            .collect();
        assert_eq!(ids, ["msg_3", "msg_2", "msg_1"]);
    }

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
