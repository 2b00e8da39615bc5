//! The writer's connection: one interface over two drivers, so the write path ([`super::write`]) is one
//! code for both engines.
//!
//! - **PostgreSQL**: a sqlx connection from the pool, driven by the writer's tokio task; every statement
//!   is a round trip to the server anyway.
//! - **SQLite**: a rusqlite connection owned by the writer's own OS thread, each statement run on that
//!   thread with a cached prepared statement. Through sqlx every statement is a message to sqlx's SQLite
//!   thread and an answer back to a tokio task, two thread wake-ups each, and the batch's serial path is
//!   what limits the registry (bench/registry/PROFILE.md). The async methods below then never wait on
//!   anything: the writer thread drives them with `block_on`. rusqlite is built on the same
//!   libsqlite3-sys as sqlx, so the binary holds one SQLite, and sqlx keeps the migrations and reads.

use std::borrow::Cow;
use std::path::Path;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, Connection, Row as _, Transaction};

use super::StoreError;

/// What the writer's SQLite connection is set to, and every pool connection too: durable before the 2xx
/// (WAL, an fsync per commit); statement journals (multi-row upserts) in memory, not in temporary files;
/// a page cache large enough that a batch does not read pages back; a checkpoint every 8192 WAL pages
/// (32 MiB) rather than 1000: the hot pages (links, indexes) are rewritten by most batches, and a
/// checkpoint copies each once however often it changed (+20% deliveries/s in the registry benchmark; a
/// checkpoint pauses the writer longer).
pub(super) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
     PRAGMA busy_timeout=10000; PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY; \
     PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=8192;";

/// Distinct statements kept prepared: each multi-row statement has one text per row count.
const PREPARED: usize = 512;

/// A value bound to a statement, typed even when null (PostgreSQL infers a parameter's type from it).
pub(super) enum Val<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Self::Text(v.map(Cow::Borrowed))
    }
}

impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Self::Text(Some(Cow::Owned(v)))
    }
}

impl From<Option<String>> for Val<'_> {
    fn from(v: Option<String>) -> Self {
        Self::Text(v.map(Cow::Owned))
    }
}

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Int(Some(i)) => ToSqlOutput::Owned(Value::Integer(*i)),
            Self::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Self::Int(None) | Self::Text(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// A statement's arguments, in order.
#[derive(Default)]
pub(super) struct Args<'a>(Vec<Val<'a>>);

impl<'a> Args<'a> {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub(super) fn add(&mut self, v: impl Into<Val<'a>>) -> &mut Self {
        self.0.push(v.into());
        self
    }
}

/// A row a statement returned.
pub(super) enum Row {
    Any(AnyRow),
    Lite(Vec<Value>),
}

impl Row {
    fn lite(&self, i: usize) -> Result<&Value, StoreError> {
        match self {
            Self::Lite(v) => v.get(i).ok_or_else(|| mismatch(i, "a column")),
            Self::Any(_) => Err(mismatch(i, "a SQLite row")),
        }
    }

    pub(super) fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self {
            Self::Any(r) => Ok(r.try_get(i)?),
            Self::Lite(_) => match self.lite(i)? {
                Value::Integer(n) => Ok(*n),
                _ => Err(mismatch(i, "an integer")),
            },
        }
    }

    pub(super) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| mismatch(i, "text"))
    }

    pub(super) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self {
            Self::Any(r) => Ok(r.try_get(i)?),
            Self::Lite(_) => match self.lite(i)? {
                Value::Text(s) => Ok(Some(s.clone())),
                Value::Null => Ok(None),
                _ => Err(mismatch(i, "text")),
            },
        }
    }
}

fn mismatch(i: usize, what: &str) -> StoreError {
    StoreError::Internal(format!("column {i} of a stored row is not {what}"))
}

/// The writer's connection.
pub(super) enum Conn {
    Any(PoolConnection<Any>),
    Lite(rusqlite::Connection),
}

impl Conn {
    /// A SQLite connection of the writer's own, set as the pool's are.
    pub(super) fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(SQLITE_PRAGMAS)?;
        conn.set_prepared_statement_cache_capacity(PREPARED);
        Ok(Self::Lite(conn))
    }

    /// A transaction; with SQLite it takes the write lock at once (waiting for another writer up to the
    /// busy timeout), so it never fails later on a lock another connection took meanwhile.
    pub(super) async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(match self {
            Self::Any(c) => Tx::Any(c.begin().await?),
            Self::Lite(c) => {
                c.execute_batch("BEGIN IMMEDIATE")?;
                Tx::Lite(LiteTx {
                    conn: c,
                    open: true,
                })
            }
        })
    }
}

/// A transaction on the writer's connection; dropped without [`Tx::commit`], it rolls back.
pub(super) enum Tx<'c> {
    Any(Transaction<'c, Any>),
    Lite(LiteTx<'c>),
}

/// rusqlite's own transaction borrows the connection shared, which is not `Send`; the writer's future
/// must be (for PostgreSQL it runs on tokio), so this one borrows it exclusively.
pub(super) struct LiteTx<'c> {
    conn: &'c mut rusqlite::Connection,
    open: bool,
}

impl Drop for LiteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Failing here leaves the transaction open; the writer then drops the connection.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn bound<'q>(sql: &'q str, args: &'q Args<'_>) -> Query<'q, Any, AnyArguments<'q>> {
    args.0.iter().fold(sqlx::query(sql), |q, a| match a {
        Val::Int(v) => q.bind(*v),
        Val::Text(v) => q.bind(v.as_deref()),
    })
}

impl Tx<'_> {
    /// Every row the statement returns.
    pub(super) async fn rows(
        &mut self,
        sql: &str,
        args: &Args<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Any(tx) => Ok(bound(sql, args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Any)
                .collect()),
            Self::Lite(tx) => {
                let mut statement = tx.conn.prepare_cached(sql)?;
                let columns = statement.column_count();
                let mut rows = statement.query(rusqlite::params_from_iter(args.0.iter()))?;
                let mut all = Vec::new();
                while let Some(row) = rows.next()? {
                    all.push(Row::Lite(
                        (0..columns)
                            .map(|i| row.get::<_, Value>(i))
                            .collect::<Result<_, _>>()?,
                    ));
                }
                Ok(all)
            }
        }
    }

    /// The statement's first row, if any.
    pub(super) async fn row(
        &mut self,
        sql: &str,
        args: &Args<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// Runs a statement that returns no rows.
    pub(super) async fn exec(&mut self, sql: &str, args: &Args<'_>) -> Result<(), StoreError> {
        match self {
            Self::Any(tx) => {
                bound(sql, args).execute(&mut **tx).await?;
            }
            Self::Lite(tx) => {
                tx.conn
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args.0.iter()))?;
            }
        }
        Ok(())
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Any(tx) => tx.commit().await?,
            Self::Lite(mut tx) => {
                tx.conn.execute_batch("COMMIT")?;
                tx.open = false;
            }
        }
        Ok(())
    }
}
