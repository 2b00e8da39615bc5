//! The registry's only state: links, their newest complete inventory, and every accepted delivery, in
//! SQLite (one box) or PostgreSQL (several receivers behind a load balancer) through sqlx's `Any` driver,
//! with one schema and one set of migrations (`migrations/`, applied at start). The SQLite writer alone
//! uses a connection of its own through rusqlite ([`conn`] says why).
//!
//! Why it is shaped like this:
//! - **Nothing acknowledged is lost.** [`Store::ingest`] returns only after the transaction holding the
//!   delivery has committed (SQLite: WAL with `synchronous=FULL`; PostgreSQL: commit). A failed write is an
//!   error, so the receiver answers 5xx and the sender's retry stores it.
//! - **Exactly once.** The `events` table's primary key is the webhook-id: a retried, replayed or
//!   concurrent second delivery inserts nothing, in this process or another, before or after a restart.
//! - **Group commit.** A writer (one on SQLite; four on PostgreSQL, each with its batch) takes every
//!   delivery waiting and commits them in one transaction, so the cost of a durable commit (an fsync) is shared by all of them ([`write`], which
//!   also holds what no single delivery may do: stop the writer, break a split, move a link, exceed its
//!   account's quota).
//! - **Order.** A link row changes only for an event newer (by its own timestamp) than the last one it
//!   applied; an older event arriving late is kept in the history and changes nothing.

mod conn;
pub(crate) mod live;
mod read;
mod requests;
mod sessions;
mod sql;
mod write;

pub(crate) use read::{LinkQuery, LinkView, RejectedView};
pub(crate) use requests::{LinkRequest, RequestAccounts, Selection};
pub(crate) use sql::{event_millis, now_millis, rfc3339};

use std::str::FromStr;
use std::time::Duration;

use link_contract::event::LinkEvent;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};
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
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
                        conn.execute(conn::SQLITE_PRAGMAS).await?;
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
        let source = match engine {
            Engine::Sqlite => write::Source::Sqlite(
                SqliteConnectOptions::from_str(&url)
                    .map_err(StoreError::Connect)?
                    .get_filename()
                    .to_path_buf(),
            ),
            Engine::Postgres => write::Source::Pool(pool.clone()),
        };
        write::start(source, engine, options.quotas, jobs)?;
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
}

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

/// sqlx URLs, with SQLite files created when missing.
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

impl Store {
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
