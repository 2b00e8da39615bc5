//! The write path: a writer (on SQLite one OS thread per process, on PostgreSQL four tokio tasks) takes
//! every job waiting and commits them in one transaction (group commit), so a durable commit's fsync is
//! shared by all of them; each job is answered only after that commit.
//!
//! What no single delivery may do, whatever it holds once its signature or proof was good:
//! - **Stop the writer.** A batch that fails (a database error, or a panic in our own code) fails only its
//!   jobs: each is retried alone, so one bad delivery answers 503 and the others are stored. The writer
//!   task itself never unwinds.
//! - **Break a split.** Every part of a split must carry the first part's envelope (its digest is kept in
//!   `part_sets`), the same count, and the set's bytes stay under `parts::MAX_SET_BYTES`; a part that does
//!   not is refused (400) and nothing of it is stored. A complete set is put back together one stored
//!   part at a time.
//! - **Change what a link is.** A link's account, partition and stack never change after its first event
//!   (the update's `WHERE` says so, beside the receiver's derivation check).
//! - **Take more than its account's share.** Events and bytes stored per account and hour are counted in
//!   `account_usage` (in the same transaction); beyond the limits a delivery is refused (429) until the
//!   hour ends. The counts of other receivers are read when an account is first seen in an hour and after
//!   every commit, so several receivers sharing one database exceed a limit by at most one batch per writer.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use link_contract::event::{EventType, LinkEvent, Part};
use link_contract::parts::{self, PartError, Reassembly};
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Args, Conn, Tx};
use super::{now_millis, Delivery, Engine, Outcome, Quotas, Refusal, StoreError};

/// Jobs committed together at most.
const MAX_BATCH: usize = 128;
/// Writers committing at once on PostgreSQL (SQLite has one writer at a time whatever the process does).
/// Concurrent batches are safe as two receivers' are: every row is written under its key's conflict
/// clause, and each statement writes its rows in key order, so two batches lock shared rows in the same
/// order and never deadlock.
const POSTGRES_WRITERS: usize = 4;
/// Rows per multi-row statement: a batch of 128 deliveries is a handful of statements.
const ROWS_PER_STATEMENT: usize = 32;
const HOUR_MS: i64 = 3_600_000;
/// Accounts whose usage the writer remembers; beyond this it forgets them all and reads them again.
const MAX_REMEMBERED_ACCOUNTS: usize = 100_000;

pub(crate) enum Work {
    /// A verified delivery to store.
    Deliver(Delivery),
    /// A verified delivery that conflicts with the link it names: kept apart with the reason.
    Reject { delivery: Delivery, reason: String },
    /// Commit the heartbeat: proves that the store can commit.
    Probe { receiver: String },
    /// A fault in our own code while storing (tests only).
    #[cfg(test)]
    Panic,
}

impl Work {
    fn delivery(&self) -> Option<&Delivery> {
        match self {
            Self::Deliver(d) | Self::Reject { delivery: d, .. } => Some(d),
            _ => None,
        }
    }
}

pub(crate) struct Job {
    pub(crate) work: Work,
    pub(crate) reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// Usage per account in the current hour, as last read from (or written to) the database.
#[derive(Default)]
struct Usage {
    hour: i64,
    accounts: HashMap<String, (i64, i64)>,
}

/// Where the writer gets a connection when it has none (at start, and after a failed batch).
pub(crate) enum Source {
    /// PostgreSQL: one from the pool, kept.
    Pool(AnyPool),
    /// SQLite: a connection of the writer thread's own on this file ([`Conn::open_sqlite`]).
    Sqlite(PathBuf),
}

/// A writer: takes every job waiting, commits them together, answers each.
struct Writer {
    source: Source,
    /// The connection every write uses, kept: its page cache stays warm (with SQLite, the pages a batch
    /// touches are mostly the ones the last batch did). Replaced after an error.
    conn: Option<Conn>,
    engine: Engine,
    quotas: Quotas,
    usage: Usage,
}

impl Writer {
    fn new(source: Source, engine: Engine, quotas: Quotas) -> Self {
        Self {
            source,
            conn: None,
            engine,
            quotas,
            usage: Usage::default(),
        }
    }

    /// Commits a batch and answers each of its jobs. A batch that failed on the kept connection is tried
    /// again on a new one (the server may have closed the kept one: a restart, a failover, an idle
    /// timeout); when it fails again, each job is tried alone, so one bad delivery fails only itself.
    async fn answer(&mut self, taken: Vec<Job>) {
        let work: Vec<&Work> = taken.iter().map(|j| &j.work).collect();
        let kept = self.conn.is_some();
        let mut result = self.commit_guarded(&work).await;
        if let (Err(e), true) = (&result, kept) {
            tracing::warn!(error = %e, "batch commit failed on the kept connection; again on a new one");
            result = self.commit_guarded(&work).await;
        }
        match result {
            Ok(outcomes) => {
                for (job, outcome) in taken.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) if taken.len() > 1 => {
                tracing::warn!(error = %e, jobs = taken.len(), "batch commit failed; storing one by one");
                for job in taken {
                    let result = self
                        .commit_guarded(&[&job.work])
                        .await
                        .map(|mut o| o.remove(0));
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

    /// One commit on the kept connection (or a new one), with a panic turned into an error: the batch
    /// fails, the writer goes on.
    async fn commit_guarded(&mut self, work: &[&Work]) -> Result<Vec<Outcome>, StoreError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match &self.source {
                Source::Pool(pool) => Conn::Any(pool.acquire().await?),
                Source::Sqlite(path) => Conn::open_sqlite(path)?,
            },
        };
        let run = commit(&mut conn, self.engine, &self.quotas, &mut self.usage, work);
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(Ok(outcomes)) => {
                self.conn = Some(conn);
                Ok(outcomes)
            }
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, jobs = work.len(), "the writer panicked storing a batch; its jobs fail, the writer goes on");
                // The connection may be mid-transaction: dropped, not reused (its transaction rolls back).
                drop(conn);
                Err(StoreError::Internal(what.chars().take(200).collect()))
            }
        }
    }
}

/// Starts the writer: for PostgreSQL a tokio task, for SQLite an OS thread of its own that runs each
/// batch's statements one after another without waiting on anything but SQLite.
pub(crate) fn start(
    source: Source,
    engine: Engine,
    quotas: Quotas,
    mut jobs: mpsc::Receiver<Job>,
) -> Result<(), StoreError> {
    match source {
        Source::Pool(pool) => {
            // Several writers, each with its own connection and batch, so that one batch's round trips
            // to the server overlap another's commit. They take turns at the queue.
            let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
            for _ in 0..POSTGRES_WRITERS {
                let mut writer = Writer::new(Source::Pool(pool.clone()), engine, quotas);
                let jobs = jobs.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(MAX_BATCH);
                    while jobs.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
                        writer.answer(std::mem::take(&mut batch)).await;
                    }
                });
            }
        }
        source @ Source::Sqlite(_) => {
            let mut writer = Writer::new(source, engine, quotas);
            std::thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || {
                    while let Some(first) = jobs.blocking_recv() {
                        let mut batch = Vec::with_capacity(MAX_BATCH);
                        batch.push(first);
                        while batch.len() < MAX_BATCH {
                            match jobs.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        futures::executor::block_on(writer.answer(batch));
                    }
                })
                .map_err(|e| {
                    StoreError::Internal(format!("could not start the writer thread: {e}"))
                })?;
        }
    }
    Ok(())
}

/// `rows` rows of `width` parameters for a multi-row statement, bound in order: `($1, ..., $k), ...` for
/// PostgreSQL, `(?, ..., ?), ...` for SQLite (which looks every `$N` up by name in a list, a cost that grows
/// with the square of the parameters; anonymous ones it binds by position).
pub(crate) fn placeholders(engine: Engine, rows: usize, width: usize) -> String {
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
/// the driver costs far more than the database's own work): the quota check, every delivery's row in one
/// insert, the rejected ones in another, then the links, inventories and console requests the whole
/// events touch, and the usage counts. Parts of split events, which are rare, are stored one by one.
async fn commit(
    conn: &mut Conn,
    engine: Engine,
    quotas: &Quotas,
    usage: &mut Usage,
    work: &[&Work],
) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = conn.begin().await?;
    let now = now_millis();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; work.len()];
    // A webhook-id seen earlier in this batch is a duplicate without asking the database.
    let mut seen = HashSet::new();
    for (i, w) in work.iter().enumerate() {
        if let Some(d) = w.delivery() {
            if !seen.insert(d.webhook_id.as_str()) {
                outcomes[i] = Some(Outcome::Duplicate);
            }
        }
    }
    let hour = admit(&mut tx, engine, quotas, usage, now, work, &mut outcomes).await?;

    let (mut deliver, mut reject, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    for (i, w) in work.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        match w {
            Work::Deliver(d) => match &d.event.data.part {
                None => deliver.push(i),
                Some(p) => parts.push((i, p)),
            },
            Work::Reject { .. } => reject.push(i),
            Work::Probe { receiver } => {
                tx.exec(
                    "INSERT INTO heartbeat (receiver, at) VALUES ($1, $2) \
                     ON CONFLICT (receiver) DO UPDATE SET at = excluded.at",
                    Args::default().add(receiver.as_str()).add(now),
                )
                .await?;
                outcomes[i] = Some(Outcome::Alive);
            }
            #[cfg(test)]
            Work::Panic => panic!("a fault injected by a test"),
        }
    }
    let mut stored: Vec<usize> = Vec::new();
    let mut rows: Vec<&Delivery> = deliver.iter().filter_map(|&i| work[i].delivery()).collect();
    rows.sort_unstable_by(|a, b| a.webhook_id.cmp(&b.webhook_id));
    let inserted = insert_events(&mut tx, engine, &rows).await?;
    let mut whole = Vec::new();
    for &i in &deliver {
        let d = work[i].delivery().expect("a delivery");
        if inserted.contains(d.webhook_id.as_str()) {
            whole.push(i);
            stored.push(i);
        } else {
            outcomes[i] = Some(Outcome::Duplicate);
        }
    }
    let mut refused: Vec<(&Delivery, &str)> = reject
        .iter()
        .filter_map(|&i| match work[i] {
            Work::Reject { delivery, reason } => Some((delivery, reason.as_str())),
            _ => None,
        })
        .collect();
    refused.sort_unstable_by(|a, b| a.0.webhook_id.cmp(&b.0.webhook_id));
    let kept = insert_rejected(&mut tx, engine, &refused).await?;
    for &i in &reject {
        let d = work[i].delivery().expect("a delivery");
        if kept.contains(d.webhook_id.as_str()) {
            stored.push(i);
        }
        // Refused again or for the first time, the answer is the same.
        outcomes[i] = Some(Outcome::Refused(Refusal::Conflict(match work[i] {
            Work::Reject { reason, .. } => reason.clone(),
            _ => String::new(),
        })));
    }
    let mut reassembled = Vec::new();
    for (i, part) in parts {
        let d = work[i].delivery().expect("a delivery");
        let (outcome, event) = store_part(&mut tx, engine, d, part).await?;
        if matches!(outcome, Outcome::Stored { .. } | Outcome::PartStored { .. }) {
            stored.push(i);
        }
        if let Some(event) = event {
            reassembled.push((i, event));
        }
        outcomes[i] = Some(outcome);
    }

    let mut events: Vec<Applying> = whole
        .iter()
        .map(|&i| {
            let d = work[i].delivery().expect("a delivery");
            Applying {
                event: &d.event,
                event_at: d.event_at,
                caller_arn: d.caller_arn.as_deref(),
                reassembled: false,
            }
        })
        .collect();
    for (i, event) in &reassembled {
        let d = work[*i].delivery().expect("a delivery");
        events.push(Applying {
            event,
            event_at: d.event_at,
            caller_arn: d.caller_arn.as_deref(),
            reassembled: true,
        });
    }
    let applied = apply(&mut tx, engine, &events).await?;
    for (k, &i) in whole.iter().enumerate() {
        outcomes[i] = Some(Outcome::Stored {
            applied: applied[k],
        });
    }
    for (k, (i, _)) in reassembled.iter().enumerate() {
        outcomes[*i] = Some(Outcome::Stored {
            applied: applied[whole.len() + k],
        });
    }
    // Counted only where a quota is set: without one, the batch costs no statement more.
    let counted = match quotas.off() {
        true => Vec::new(),
        false => count_usage(&mut tx, engine, hour, work, &stored).await?,
    };
    tx.commit().await?;
    usage.accounts.extend(counted);
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Duplicate))
        .collect())
}

/// The quota check: each delivery of an account that has used its hour's events or bytes is refused
/// (429 until the hour ends), in batch order; the others are admitted and counted.
async fn admit(
    tx: &mut Tx<'_>,
    engine: Engine,
    quotas: &Quotas,
    usage: &mut Usage,
    now: i64,
    work: &[&Work],
    outcomes: &mut [Option<Outcome>],
) -> Result<i64, StoreError> {
    let hour = now / HOUR_MS;
    if usage.hour != hour || usage.accounts.len() > MAX_REMEMBERED_ACCOUNTS {
        *usage = Usage {
            hour,
            accounts: HashMap::new(),
        };
    }
    if quotas.off() {
        return Ok(hour);
    }
    let unknown: Vec<&str> = work
        .iter()
        .filter_map(|w| w.delivery())
        .map(|d| d.event.data.account_id.as_str())
        .filter(|a| !usage.accounts.contains_key(*a))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for chunk in unknown.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT account_id, events, bytes FROM account_usage WHERE hour = {hour} AND account_id IN ({})",
            list(engine, chunk.len())
        );
        let mut args = Args::with_capacity(chunk.len());
        for a in chunk {
            args.add(*a);
        }
        for row in tx.rows(&sql, &args).await? {
            usage
                .accounts
                .insert(row.text(0)?, (row.int(1)?, row.int(2)?));
        }
        for a in chunk {
            usage.accounts.entry(a.to_string()).or_insert((0, 0));
        }
    }
    let mut used: HashMap<&str, (i64, i64)> = HashMap::new();
    let retry_after_secs = ((hour + 1) * HOUR_MS - now).max(1000) as u64 / 1000;
    for (i, w) in work.iter().enumerate() {
        let Some(d) = w.delivery() else { continue };
        if outcomes[i].is_some() {
            continue;
        }
        let account = d.event.data.account_id.as_str();
        let base = usage.accounts.get(account).copied().unwrap_or((0, 0));
        let so_far = used.entry(account).or_insert(base);
        let (events, bytes) = (so_far.0 + 1, so_far.1 + d.body.len() as i64);
        let over = if quotas.events_per_hour > 0 && events > quotas.events_per_hour as i64 {
            Some("events")
        } else if quotas.bytes_per_hour > 0 && bytes > quotas.bytes_per_hour as i64 {
            Some("bytes")
        } else {
            None
        };
        match over {
            Some(what) => {
                outcomes[i] = Some(Outcome::Refused(Refusal::Quota {
                    what,
                    retry_after_secs,
                }))
            }
            None => *so_far = (events, bytes),
        }
    }
    Ok(hour)
}

/// Adds what this batch stored to each account's usage of the hour; returns the totals the database now
/// holds (other receivers' included).
async fn count_usage(
    tx: &mut Tx<'_>,
    engine: Engine,
    hour: i64,
    work: &[&Work],
    stored: &[usize],
) -> Result<Vec<(String, (i64, i64))>, StoreError> {
    let mut per_account: HashMap<&str, (i64, i64)> = HashMap::new();
    for &i in stored {
        if let Some(d) = work[i].delivery() {
            let e = per_account
                .entry(d.event.data.account_id.as_str())
                .or_default();
            e.0 += 1;
            e.1 += d.body.len() as i64;
        }
    }
    let mut rows: Vec<(&str, (i64, i64))> = per_account.into_iter().collect();
    rows.sort_unstable();
    let mut totals = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO account_usage (account_id, hour, events, bytes) VALUES {} \
             ON CONFLICT (account_id, hour) DO UPDATE SET events = account_usage.events + excluded.events, \
             bytes = account_usage.bytes + excluded.bytes RETURNING account_id, events, bytes",
            placeholders(engine, chunk.len(), 4)
        );
        let mut args = Args::with_capacity(chunk.len() * 4);
        for (account, (events, bytes)) in chunk {
            args.add(*account).add(hour).add(*events).add(*bytes);
        }
        for row in tx.rows(&sql, &args).await? {
            totals.push((row.text(0)?, (row.int(1)?, row.int(2)?)));
        }
    }
    Ok(totals)
}

/// `?, ?, ...` or `$1, $2, ...`: a list of `n` parameters.
fn list(engine: Engine, n: usize) -> String {
    placeholders(engine, 1, n)
        .trim_start_matches('(')
        .trim_end_matches(')')
        .to_string()
}

/// The deliveries' rows; returns the webhook-ids that were new (the others were stored before).
async fn insert_events(
    tx: &mut Tx<'_>,
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
        let mut args = Args::with_capacity(chunk.len() * 11);
        for d in chunk {
            let data = &d.event.data;
            let part = data.part.as_ref();
            args.add(d.webhook_id.as_str())
                .add(data.event_id.as_str())
                .add(data.physical_resource_id.as_str())
                .add(d.event.event_type.as_str())
                .add(d.event_at)
                .add(d.received_at)
                .add(part.map(|p| p.index as i64))
                .add(part.map(|p| p.count as i64))
                .add(part.map(|p| p.set.as_str()))
                .add(d.caller_arn.as_deref())
                .add(d.body.as_str());
        }
        for row in tx.rows(&sql, &args).await? {
            inserted.insert(row.text(0)?);
        }
    }
    Ok(inserted)
}

/// Deliveries kept apart with their reason; returns the webhook-ids that were new.
async fn insert_rejected(
    tx: &mut Tx<'_>,
    engine: Engine,
    rows: &[(&Delivery, &str)],
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO rejected_events (webhook_id, link_id, account_id, event_type, event_at, received_at, caller_arn, reason, body) \
             VALUES {} ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id",
            placeholders(engine, chunk.len(), 9)
        );
        let mut args = Args::with_capacity(chunk.len() * 9);
        for (d, reason) in chunk {
            let data = &d.event.data;
            args.add(d.webhook_id.as_str())
                .add(data.physical_resource_id.as_str())
                .add(data.account_id.as_str())
                .add(d.event.event_type.as_str())
                .add(d.event_at)
                .add(d.received_at)
                .add(d.caller_arn.as_deref())
                .add(*reason)
                .add(d.body.as_str());
        }
        for row in tx.rows(&sql, &args).await? {
            inserted.insert(row.text(0)?);
        }
    }
    Ok(inserted)
}

/// One part of a split event, checked against its set and stored under a savepoint (a refused part leaves
/// nothing behind); when it is the last one, the event is put back together from the stored parts, one
/// at a time, and returned to be applied.
async fn store_part(
    tx: &mut Tx<'_>,
    engine: Engine,
    d: &Delivery,
    part: &Part,
) -> Result<(Outcome, Option<LinkEvent>), StoreError> {
    let data = &d.event.data;
    let invalid = |e: String| Ok((Outcome::Refused(Refusal::Invalid(e)), None));
    if let Err(e) = parts::check_part(part) {
        return invalid(e.to_string());
    }
    let envelope = parts::envelope_digest(&d.event);
    let set = tx
        .row(
            "SELECT part_count, envelope, bytes FROM part_sets WHERE event_id = $1 AND part_set = $2",
            Args::default()
                .add(data.event_id.as_str())
                .add(part.set.as_str()),
        )
        .await?;
    if let Some(row) = set {
        let (count, kept, bytes) = (row.int(0)?, row.opt_text(1)?, row.int(2)?);
        if count != part.count as i64 {
            return invalid(format!(
                "data.part.count is {} but split {} has {count} parts",
                part.count, part.set
            ));
        }
        if kept.is_some_and(|k| k != envelope) {
            let field = first_part(tx, &data.event_id, &part.set)
                .await?
                .and_then(|first| parts::envelope_difference(&first, &d.event))
                .unwrap_or("part");
            return invalid(
                PartError::Envelope {
                    field,
                    set: part.set.clone(),
                }
                .to_string(),
            );
        }
        let total = bytes as usize + d.body.len();
        if total > parts::MAX_SET_BYTES {
            return invalid(
                PartError::TooLarge {
                    set: part.set.clone(),
                    bytes: total,
                }
                .to_string(),
            );
        }
    }
    if !insert_events(tx, engine, &[d])
        .await?
        .contains(d.webhook_id.as_str())
    {
        return Ok((Outcome::Duplicate, None));
    }
    let received = tx
        .row(
            "INSERT INTO part_sets (event_id, part_set, part_count, received, envelope, bytes) VALUES ($1, $2, $3, 1, $4, $5) \
             ON CONFLICT (event_id, part_set) DO UPDATE SET received = part_sets.received + 1, \
               bytes = part_sets.bytes + excluded.bytes, envelope = COALESCE(part_sets.envelope, excluded.envelope) \
             RETURNING received",
            Args::default()
                .add(data.event_id.as_str())
                .add(part.set.as_str())
                .add(part.count as i64)
                .add(envelope)
                .add(d.body.len() as i64),
        )
        .await?
        .ok_or_else(|| StoreError::Internal("the part's set was not counted".into()))?
        .int(0)?;
    let count = part.count as i64;
    if received < count {
        return Ok((Outcome::PartStored { received, count }, None));
    }
    let whole = reassemble(tx, &data.event_id, &part.set, part.count).await?;
    Ok((Outcome::Stored { applied: false }, Some(whole)))
}

/// Part `index` of a stored split.
async fn stored_part(
    tx: &mut Tx<'_>,
    event_id: &str,
    set: &str,
    index: usize,
) -> Result<Option<LinkEvent>, StoreError> {
    let row = tx
        .row(
            "SELECT body FROM events WHERE event_id = $1 AND part_set = $2 AND part_index = $3",
            Args::default().add(event_id).add(set).add(index as i64),
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let body = row.text(0)?;
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            event_id: event_id.to_string(),
            problem: e.to_string(),
        })
}

/// The lowest-numbered stored part of a split: what later parts are compared with.
async fn first_part(
    tx: &mut Tx<'_>,
    event_id: &str,
    set: &str,
) -> Result<Option<LinkEvent>, StoreError> {
    let row = tx
        .row(
            "SELECT part_index FROM events WHERE event_id = $1 AND part_set = $2 ORDER BY part_index LIMIT 1",
            Args::default().add(event_id).add(set),
        )
        .await?;
    match row {
        Some(r) => stored_part(tx, event_id, set, r.int(0)? as usize).await,
        None => Ok(None),
    }
}

/// The whole event from its stored parts, read and merged one at a time.
async fn reassemble(
    tx: &mut Tx<'_>,
    event_id: &str,
    set: &str,
    count: usize,
) -> Result<LinkEvent, StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt {
        event_id: event_id.to_string(),
        problem,
    };
    let missing = |i| corrupt(format!("part {i} of split {set} is not stored"));
    let first = stored_part(tx, event_id, set, 1)
        .await?
        .ok_or_else(|| missing(1))?;
    let mut whole = Reassembly::start(first).map_err(|e| corrupt(e.to_string()))?;
    for i in 2..=count {
        let part = stored_part(tx, event_id, set, i)
            .await?
            .ok_or_else(|| missing(i))?;
        whole.add(part).map_err(|e| corrupt(e.to_string()))?;
    }
    whole.finish().map_err(|e| corrupt(e.to_string()))
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
    // In link order: the order in which a statement locks the links' rows.
    let mut picked: Vec<(&str, usize)> = newest.into_iter().collect();
    picked.sort_unstable();
    picked.into_iter().map(|(_, k)| k).collect()
}

/// Applies whole events to their links: each link takes the newest event of the batch if it is newer than
/// the last one it applied (so an older event arriving late changes nothing), and its inventory if that
/// event's is complete and newer than the one kept; console requests named by an external id connect.
/// Returns, for each event, whether its link now reflects it.
async fn apply(
    tx: &mut Tx<'_>,
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
    // An inventory only from an event its link took (never one whose link refused it as another's).
    let complete = newest_per_link(events, |e| {
        e.event.data.inventory_complete
            && changed.contains(e.event.data.physical_resource_id.as_str())
    });
    for chunk in complete.chunks(ROWS_PER_STATEMENT) {
        upsert_inventories(tx, engine, events, chunk).await?;
    }
    connect_requests(tx, engine, events, &changed).await?;
    Ok(applied)
}

/// The links of `chunk` (indexes into `events`, at most one per link): inserted, or updated where the event
/// is newer than the one the link applied and names the same account, partition and stack (what a link is
/// never changes); the links that changed are added to `changed`.
async fn upsert_links(
    tx: &mut Tx<'_>,
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
           state = excluded.state, \
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
         WHERE (links.last_event_at < excluded.last_event_at \
            OR (links.last_event_at = excluded.last_event_at AND links.last_event_id < excluded.last_event_id)) \
           AND links.account_id = excluded.account_id AND links.partition_name = excluded.partition_name \
           AND links.stack_id = excluded.stack_id AND links.logical_resource_id = excluded.logical_resource_id \
         RETURNING link_id",
        placeholders(engine, chunk.len(), 21)
    );
    let mut args = Args::with_capacity(chunk.len() * 21);
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
        args.add(d.physical_resource_id.as_str())
            .add(d.account_id.as_str())
            .add(d.partition.as_str())
            .add(d.region.as_str())
            .add(d.stack_id.as_str())
            .add(d.logical_resource_id.as_str())
            .add(state)
            .add(d.external_id.as_deref())
            .add(serde_json::to_string(&d.roles).unwrap_or_default())
            .add(serde_json::to_string(&d.regions).unwrap_or_default())
            .add(d.vpc_id.as_deref())
            .add(vpcs.clone().count() as i64)
            .add(vpcs.clone().map(|v| v.subnets.len()).sum::<usize>() as i64)
            .add(vpcs.map(|v| v.route_tables.len()).sum::<usize>() as i64)
            .add(i64::from(d.inventory_complete))
            .add(*caller_arn)
            .add(linked_at)
            .add(*event_at)
            .add(unlinked_at)
            .add(*event_at)
            .add(d.event_id.as_str());
    }
    for row in tx.rows(&sql, &args).await? {
        changed.insert(row.text(0)?);
    }
    Ok(())
}

/// The inventories of `chunk` (indexes into `events`: complete ones, at most one per link), where newer
/// than the one kept.
async fn upsert_inventories(
    tx: &mut Tx<'_>,
    engine: Engine,
    events: &[Applying<'_>],
    chunk: &[usize],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO inventories (link_id, event_id, event_at, body) VALUES {} \
         ON CONFLICT (link_id) DO UPDATE SET event_id = excluded.event_id, event_at = excluded.event_at, body = excluded.body, refreshed = 0 \
         WHERE inventories.event_at < excluded.event_at",
        placeholders(engine, chunk.len(), 4)
    );
    let mut args = Args::with_capacity(chunk.len() * 4);
    for &k in chunk {
        let d = &events[k].event.data;
        args.add(d.physical_resource_id.as_str())
            .add(d.event_id.as_str())
            .add(events[k].event_at)
            // A delivered event's inventory is read from its stored body; only a reassembled one is kept.
            .add(
                events[k]
                    .reassembled
                    .then(|| serde_json::to_string(&d.inventory).unwrap_or_default()),
            );
    }
    tx.exec(&sql, &args).await?;
    Ok(())
}

/// A console request as the write path needs it.
struct OpenRequest {
    account_id: Option<String>,
    multi_account: bool,
    expected: Option<Vec<String>>,
    expires_at: i64,
}

/// Links named by an external id connect to the console request that issued it: a request connects the
/// first account that names it (every link of that account), or for a request made for several accounts
/// any account (or only the expected ones), while it has not expired for a new account. A link of another
/// account stays unsolicited, and the API and console say why (`LinkView::external_id_issue`).
async fn connect_requests(
    tx: &mut Tx<'_>,
    engine: Engine,
    events: &[Applying<'_>],
    changed: &HashSet<String>,
) -> Result<(), StoreError> {
    let candidates: Vec<&Applying> = events
        .iter()
        .filter(|e| {
            e.event.event_type != EventType::Unlinked
                && e.event.data.external_id.is_some()
                && changed.contains(e.event.data.physical_resource_id.as_str())
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = candidates
        .iter()
        .filter_map(|e| e.event.data.external_id.as_deref())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut requests: HashMap<String, OpenRequest> = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT external_id, account_id, multi_account, expected_accounts, expires_at FROM link_requests \
             WHERE external_id IN ({})",
            list(engine, chunk.len())
        );
        let mut args = Args::with_capacity(chunk.len());
        for id in chunk {
            args.add(*id);
        }
        for row in tx.rows(&sql, &args).await? {
            let expected = row.opt_text(3)?;
            requests.insert(
                row.text(0)?,
                OpenRequest {
                    account_id: row.opt_text(1)?,
                    multi_account: row.int(2)? != 0,
                    expected: expected.and_then(|e| serde_json::from_str(&e).ok()),
                    expires_at: row.int(4)?,
                },
            );
        }
    }
    if requests.is_empty() {
        return Ok(());
    }
    let now = now_millis();
    let mut connect: Vec<(&str, &str, &str)> = Vec::new();
    let mut connected_accounts: HashSet<(String, String)> = HashSet::new();
    for e in candidates {
        let d = &e.event.data;
        let Some(x) = d.external_id.as_deref() else {
            continue;
        };
        let Some(r) = requests.get_mut(x) else {
            continue;
        };
        let account_known = r.account_id.as_deref() == Some(d.account_id.as_str())
            || connected_accounts.contains(&(x.to_string(), d.account_id.clone()));
        let ok = if r.multi_account {
            (account_known || r.expires_at >= now)
                && r.expected
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|a| a == &d.account_id))
        } else {
            match &r.account_id {
                Some(a) => *a == d.account_id,
                None => r.expires_at >= now,
            }
        };
        if ok {
            if r.account_id.is_none() {
                r.account_id = Some(d.account_id.clone());
            }
            connected_accounts.insert((x.to_string(), d.account_id.clone()));
            connect.push((x, d.physical_resource_id.as_str(), d.account_id.as_str()));
        }
    }
    connect.sort_unstable_by_key(|c| c.1);
    for chunk in connect.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO request_links (link_id, external_id, account_id, connected_at) VALUES {} \
             ON CONFLICT (link_id) DO NOTHING",
            placeholders(engine, chunk.len(), 4)
        );
        let mut args = Args::with_capacity(chunk.len() * 4);
        for (x, link, account) in chunk {
            args.add(*link).add(*x).add(*account).add(now);
        }
        tx.exec(&sql, &args).await?;
        // The request's first connection: its account and link (what `GET /api/link-requests/{id}` shows).
        let sql = format!(
            "UPDATE link_requests SET link_id = v.column2, account_id = v.column3, connected_at = {now} \
             FROM (VALUES {}) AS v WHERE link_requests.external_id = v.column1 AND link_requests.link_id IS NULL",
            placeholders(engine, chunk.len(), 3)
        );
        let mut args = Args::with_capacity(chunk.len() * 3);
        for (x, link, account) in chunk {
            args.add(*x).add(*link).add(*account);
        }
        tx.exec(&sql, &args).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{event_millis, Store, StoreOptions};

    fn delivery(link: &str, event_id: &str, at: &str, unlink: bool) -> Delivery {
        let example = if unlink {
            include_str!("../../../../docs/examples/account.unlinked.json")
        } else {
            include_str!("../../../../docs/examples/account.linked.json")
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

    async fn store(name: &str, options: StoreOptions) -> (Store, Quotas) {
        let dir = std::env::temp_dir().join(format!("store-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("s.db"));
        let quotas = options.quotas;
        let store = Store::open_with(&format!("sqlite://{}", dir.join("s.db").display()), options)
            .await
            .unwrap();
        (store, quotas)
    }

    /// One batch through a fresh writer's commit (as another receiver's would be).
    async fn run((s, quotas): &(Store, Quotas), work: &[Work]) -> Vec<Outcome> {
        let refs: Vec<&Work> = work.iter().collect();
        let mut usage = Usage::default();
        commit(
            &mut Conn::Any(s.pool.acquire().await.unwrap()),
            s.engine,
            quotas,
            &mut usage,
            &refs,
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn one_batch_orders_events_and_finds_duplicates() {
        let store = store("batch", StoreOptions::default()).await;
        let first = delivery("link-a", "msg_1", "2026-11-29T10:00:00.000Z", false);
        run(&store, &[Work::Deliver(first.clone())]).await;
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
        let work: Vec<Work> = batch.into_iter().map(Work::Deliver).collect();
        let outcomes = run(&store, &work).await;
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
        let (a, _) = store.0.link("link-a").await.unwrap().unwrap();
        let (b, inventory) = store.0.link("link-b").await.unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.last_event_id.as_str()),
            ("unlinked", "msg_3")
        );
        assert_eq!(
            (b.state.as_str(), b.last_event_id.as_str()),
            ("linked", "msg_5")
        );
        assert!(inventory.is_some());
        let history = store.0.events("link-a", 10, None).await.unwrap();
        let ids: Vec<&str> = history
            .items
            .iter()
            .map(|e| e.webhook_id.as_str())
            .collect();
        assert_eq!(ids, ["msg_3", "msg_2", "msg_1"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_link_never_changes_account_or_stack() {
        let store = store("identity", StoreOptions::default()).await;
        run(
            &store,
            &[Work::Deliver(delivery(
                "link-a",
                "msg_1",
                "2026-11-29T10:00:00.000Z",
                false,
            ))],
        )
        .await;
        // Past the receiver's checks (which refuse it), the store still refuses to move the link.
        let mut other = delivery("link-a", "msg_2", "2026-11-29T10:05:00.000Z", false);
        other.event.data.account_id = "210987654321".into();
        other.event.data.stack_id = other
            .event
            .data
            .stack_id
            .replace("123456789012", "210987654321");
        assert_eq!(
            run(&store, &[Work::Deliver(other)]).await,
            [Outcome::Stored { applied: false }]
        );
        let (a, _) = store.0.link("link-a").await.unwrap().unwrap();
        assert_eq!(
            (a.account_id.as_str(), a.last_event_id.as_str()),
            ("123456789012", "msg_1")
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_fails_only_its_delivery_and_the_writer_goes_on() {
        let (store, _) = store("panic", StoreOptions::default()).await;
        let at = "2026-11-29T10:00:00.000Z";
        // Queued together, so the writer takes them as one batch.
        let (a, fault, b) = tokio::join!(
            store.submit(Work::Deliver(delivery("link-a", "msg_a", at, false))),
            store.submit(Work::Panic),
            store.submit(Work::Deliver(delivery("link-b", "msg_b", at, false))),
        );
        assert!(matches!(a, Ok(Outcome::Stored { .. })), "{a:?}");
        assert!(matches!(fault, Err(StoreError::Internal(_))), "{fault:?}");
        assert!(matches!(b, Ok(Outcome::Stored { .. })), "{b:?}");
        // And after it, the writer still stores and commits.
        let c = store.ingest(delivery("link-c", "msg_c", at, false)).await;
        assert!(matches!(c, Ok(Outcome::Stored { .. })), "{c:?}");
        store
            .check_commit(std::time::Duration::from_secs(5))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn retention_deletes_old_deliveries_but_not_a_links_inventory() {
        let store = store("retention", StoreOptions::default()).await;
        let day = 86_400_000;
        let old = |id: &str, at: &str| {
            let mut d = delivery("link-r", id, at, false);
            d.received_at = now_millis() - 40 * day;
            d
        };
        let mut recent = delivery("link-q", "msg_recent", "2026-11-29T10:00:00.000Z", false);
        recent.received_at = now_millis() - day;
        run(
            &store,
            &[
                Work::Deliver(old("msg_old_1", "2026-11-29T10:00:00.000Z")),
                // The newest of link-r: its body holds the link's inventory.
                Work::Deliver(old("msg_old_2", "2026-11-29T11:00:00.000Z")),
                Work::Deliver(recent),
            ],
        )
        .await;
        assert!(store.0.purge(None).await.is_ok());
        assert_eq!(
            store
                .0
                .events("link-r", 10, None)
                .await
                .unwrap()
                .items
                .len(),
            2
        );
        store
            .0
            .purge(Some(std::time::Duration::from_secs(30 * 86_400)))
            .await
            .unwrap();
        let left: Vec<String> = store
            .0
            .events("link-r", 10, None)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.webhook_id)
            .collect();
        assert_eq!(left, ["msg_old_2"]);
        assert!(store.0.link("link-r").await.unwrap().unwrap().1.is_some());
        assert_eq!(
            store
                .0
                .events("link-q", 10, None)
                .await
                .unwrap()
                .items
                .len(),
            1
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_split_is_capped_in_bytes() {
        let store = store("split-bytes", StoreOptions::default()).await;
        let count = 9;
        // Each part's body padded to 2 MiB (JSON allows trailing whitespace): 18 MiB in all.
        let part = |index: usize| {
            let mut d = delivery("link-s", "msg_s", "2026-11-29T10:00:00.000Z", false);
            d.event.data.part = Some(Part {
                index,
                count,
                set: "0123456789abcdef".into(),
            });
            d.webhook_id = d.event.data.delivery_id();
            d.body = serde_json::to_string(&d.event).unwrap();
            let pad = 2 * 1024 * 1024 - d.body.len();
            d.body.push_str(&" ".repeat(pad));
            Work::Deliver(d)
        };
        for index in 1..count {
            assert!(
                matches!(
                    run(&store, &[part(index)]).await[0],
                    Outcome::PartStored { .. }
                ),
                "part {index}"
            );
        }
        match &run(&store, &[part(count)]).await[0] {
            Outcome::Refused(Refusal::Invalid(why)) => {
                assert!(
                    why.contains("data.part.set") && why.contains("16777216"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let stored = store.0.events("link-s", 100, None).await.unwrap();
        assert_eq!(
            stored.items.len(),
            count - 1,
            "nothing of the refused part is stored"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn quotas_refuse_beyond_the_hour_and_count_only_what_was_stored() {
        let options = StoreOptions {
            quotas: Quotas {
                events_per_hour: 2,
                bytes_per_hour: 0,
            },
        };
        let store = store("quota", options).await;
        let d = |id: &str| Work::Deliver(delivery("link-a", id, "2026-11-29T10:00:00.000Z", false));
        let outcomes = run(&store, &[d("msg_1"), d("msg_1"), d("msg_2"), d("msg_3")]).await;
        assert!(
            matches!(outcomes[0], Outcome::Stored { .. }),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[1], Outcome::Duplicate);
        assert!(
            matches!(outcomes[2], Outcome::Stored { .. }),
            "{outcomes:?}"
        );
        assert!(
            matches!(&outcomes[3], Outcome::Refused(Refusal::Quota { what: "events", retry_after_secs }) if (1..=3600).contains(retry_after_secs)),
            "{outcomes:?}"
        );
        // A fresh writer (another receiver) reads the account's usage from the database.
        assert!(matches!(
            run(&store, &[d("msg_4")]).await[0],
            Outcome::Refused(Refusal::Quota { .. })
        ));
        let history = store.0.events("link-a", 10, None).await.unwrap();
        assert_eq!(
            history.items.len(),
            2,
            "nothing of a refused delivery is stored"
        );
    }
}
