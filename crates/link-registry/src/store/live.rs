//! What a live link keeps (`crate::live`): each role's newest check, the refresh schedule and leases, and
//! each refresh: its changes go into the history (an `events` row of type `registry.refreshed`), and its
//! inventory becomes the link's (kept in `inventories.body`) only if it observed the account later than the
//! inventory kept: the function's events and refreshes never fight, the newest wins.

use link_contract::inventory::RegionInventory;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::read::inventory_of;
use super::{now_millis, rfc3339, Store, StoreError};
use crate::live::Changes;

/// The event type of a refresh's history entry.
pub(crate) const REFRESHED: &str = "registry.refreshed";

/// One role's newest check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleCheck {
    /// The role's name in the event's `data.roles` (RemoteRole, ...).
    pub role: String,
    pub role_arn: String,
    pub assumable: bool,
    /// AWS's error code when refused (AccessDenied, ...), or `Unreachable` when STS did not answer.
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub checked_at: String,
    #[serde(skip)]
    pub checked_at_ms: i64,
}

/// A link's refresh: the schedule, the one running, and how the last one ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshState {
    /// `running`, `ok`, `failed` or `kept` (the refresh was older than the inventory kept), or absent.
    pub status: Option<String>,
    pub running: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The next scheduled refresh.
    pub due_at: Option<String>,
    pub problem: Option<String>,
    /// The last stored refresh's changes against the inventory it replaced.
    pub changes: Option<Value>,
    /// The changes in one line ("added subnet subnet-1; ...", "no changes").
    pub summary: Option<String>,
    pub runs: i64,
}

/// What storing a refresh did.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The link's inventory is now the refresh's (false: a later event's inventory holds).
    pub applied: bool,
    pub changes: Changes,
}

/// Far in the future: the due time of a link when the schedule is off.
pub(crate) const NEVER: i64 = i64::MAX / 4;

impl Store {
    /// Records the newest check of each role (replacing the previous one).
    pub(crate) async fn record_role_checks(
        &self,
        link_id: &str,
        checks: &[RoleCheck],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for c in checks {
            sqlx::query(
                "INSERT INTO role_checks (link_id, role_name, role_arn, ok, error_code, message, checked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (link_id, role_name) DO UPDATE SET \
                 role_arn = excluded.role_arn, ok = excluded.ok, error_code = excluded.error_code, \
                 message = excluded.message, checked_at = excluded.checked_at",
            )
            .bind(link_id)
            .bind(c.role.as_str())
            .bind(c.role_arn.as_str())
            .bind(i64::from(c.assumable))
            .bind(c.error_code.as_deref())
            .bind(c.message.as_deref())
            .bind(c.checked_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn role_checks(&self, link_id: &str) -> Result<Vec<RoleCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT role_name, role_arn, ok, error_code, message, checked_at FROM role_checks \
             WHERE link_id = $1 ORDER BY role_name",
        )
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get(5)?;
                Ok(RoleCheck {
                    role: r.try_get(0)?,
                    role_arn: r.try_get(1)?,
                    assumable: r.try_get::<i64, _>(2)? != 0,
                    error_code: r.try_get(3)?,
                    message: r.try_get(4)?,
                    checked_at: rfc3339(at),
                    checked_at_ms: at,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Gives every linked link without one a refresh row, first due at `due_at`.
    pub(crate) async fn schedule_new_links(&self, due_at: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO refreshes (link_id, due_at) SELECT l.link_id, $1 FROM links l \
             WHERE l.state = 'linked' AND NOT EXISTS (SELECT 1 FROM refreshes r WHERE r.link_id = l.link_id) \
             ON CONFLICT (link_id) DO NOTHING",
        )
        .bind(due_at)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Linked links whose refresh is due and not leased, the most overdue first.
    pub(crate) async fn due_refreshes(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT r.link_id FROM refreshes r JOIN links l ON l.link_id = r.link_id \
             WHERE l.state = 'linked' AND r.due_at <= $1 AND (r.lease_until IS NULL OR r.lease_until < $1) \
             ORDER BY r.due_at LIMIT {limit}"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// Takes the link's refresh lease for `owner` until `until`, if nobody holds it (or its holder's
    /// expired); `scheduled`: only if the refresh is still due (another receiver may have just done it).
    /// One conditional UPDATE: of receivers racing for it, exactly one gets the row.
    pub(crate) async fn claim_refresh(
        &self,
        link_id: &str,
        owner: &str,
        now: i64,
        until: i64,
        scheduled: bool,
        due_if_new: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO refreshes (link_id, due_at) VALUES ($1, $2) ON CONFLICT (link_id) DO NOTHING",
        )
        .bind(link_id)
        .bind(due_if_new)
        .execute(&self.pool)
        .await?;
        let due = if scheduled { " AND due_at <= $4" } else { "" };
        let won = sqlx::query(&format!(
            "UPDATE refreshes SET lease_owner = $2, lease_until = $3, started_at = $4, status = 'running', problem = NULL \
             WHERE link_id = $1 AND (lease_until IS NULL OR lease_until < $4){due} RETURNING link_id"
        ))
        .bind(link_id)
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(won.is_some())
    }

    /// Ends `owner`'s lease with the refresh's outcome and the next due time. Nothing, if the lease was
    /// lost (it expired and another receiver took it).
    pub(crate) async fn finish_refresh(
        &self,
        link_id: &str,
        owner: &str,
        status: &str,
        problem: Option<&str>,
        changes: Option<&Changes>,
        next_due: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE refreshes SET lease_owner = NULL, lease_until = NULL, finished_at = $3, status = $4, \
             problem = $5, changes = COALESCE($6, changes), due_at = $7, runs = runs + 1 \
             WHERE link_id = $1 AND lease_owner = $2",
        )
        .bind(link_id)
        .bind(owner)
        .bind(now_millis())
        .bind(status)
        .bind(problem)
        .bind(changes.map(|c| serde_json::to_string(c).unwrap_or_default()))
        .bind(next_due)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub(crate) async fn refresh_state(
        &self,
        link_id: &str,
    ) -> Result<Option<RefreshState>, StoreError> {
        let row = sqlx::query(
            "SELECT status, lease_until, started_at, finished_at, due_at, problem, changes, runs FROM refreshes \
             WHERE link_id = $1",
        )
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let now = now_millis();
        let lease: Option<i64> = r.try_get(1)?;
        let due: i64 = r.try_get(4)?;
        let changes: Option<Value> = r
            .try_get::<Option<String>, _>(6)?
            .and_then(|c| serde_json::from_str(&c).ok());
        Ok(Some(RefreshState {
            status: r.try_get(0)?,
            running: lease.is_some_and(|l| l >= now),
            started_at: r.try_get::<Option<i64>, _>(2)?.map(rfc3339),
            finished_at: r.try_get::<Option<i64>, _>(3)?.map(rfc3339),
            due_at: (due < NEVER).then(|| rfc3339(due)),
            problem: r.try_get(5)?,
            summary: changes
                .as_ref()
                .and_then(|c| serde_json::from_value::<Changes>(c.clone()).ok())
                .map(|c| c.summary()),
            changes,
            runs: r.try_get(7)?,
        }))
    }

    /// Stores a refresh that observed the account at `observed_at`: its history entry (with the changes
    /// against the link's inventory now), and, if it is newer than that inventory, the link's inventory
    /// and counts. One transaction; its first statement writes, so SQLite takes the write lock before the
    /// inventory is read. `json` is `inventory` serialised (the caller measured it against its cap).
    pub(crate) async fn store_refresh(
        &self,
        link_id: &str,
        observed_at: i64,
        session_arn: Option<&str>,
        inventory: &[RegionInventory],
        json: String,
    ) -> Result<Stored, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE refreshes SET lease_until = lease_until WHERE link_id = $1")
            .bind(link_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT i.body, e.body, i.event_at FROM inventories i LEFT JOIN events e ON e.webhook_id = i.event_id \
             WHERE i.link_id = $1",
        )
        .bind(link_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (before, kept_at): (Vec<RegionInventory>, i64) = match row {
            None => (Vec::new(), i64::MIN),
            Some(r) => {
                let raw = match (
                    r.try_get::<Option<String>, _>(0)?,
                    r.try_get::<Option<String>, _>(1)?,
                ) {
                    (Some(own), _) => Some(own),
                    (None, Some(event)) => inventory_of(&event).map(|v| v.get().to_string()),
                    (None, None) => None,
                };
                (
                    raw.and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or_default(),
                    r.try_get(2)?,
                )
            }
        };
        let changes = crate::live::diff(&before, inventory);
        let id = format!("refresh_{link_id}_{observed_at}");
        // The history entry holds the changes only: a refresh every 6 h of a large account would otherwise
        // keep megabytes a day. The inventory itself is kept once, as the link's (below), if it wins.
        let body = json!({
            "type": REFRESHED,
            "timestamp": rfc3339(observed_at),
            "data": {
                "linkId": link_id,
                "roleSession": session_arn,
                "changes": &changes,
            }
        });
        sqlx::query(
            "INSERT INTO events (webhook_id, event_id, link_id, event_type, event_at, received_at, caller_arn, body) \
             VALUES ($1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(link_id)
        .bind(REFRESHED)
        .bind(observed_at)
        .bind(now_millis())
        .bind(session_arn)
        .bind(body.to_string())
        .execute(&mut *tx)
        .await?;
        // Conditional again in the statement: on PostgreSQL an event's inventory may have committed since the
        // read above.
        let applied = observed_at > kept_at
            && sqlx::query(
                "INSERT INTO inventories (link_id, event_id, event_at, body, refreshed) VALUES ($1, $2, $3, $4, 1) \
                 ON CONFLICT (link_id) DO UPDATE SET event_id = excluded.event_id, event_at = excluded.event_at, \
                 body = excluded.body, refreshed = 1 WHERE inventories.event_at < excluded.event_at RETURNING link_id",
            )
            .bind(link_id)
            .bind(id.as_str())
            .bind(observed_at)
            .bind(json)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if applied {
            let vpcs = inventory.iter().flat_map(|r| &r.vpcs);
            sqlx::query(
                "UPDATE links SET vpc_count = $2, subnet_count = $3, route_table_count = $4, inventory_complete = 1 \
                 WHERE link_id = $1",
            )
            .bind(link_id)
            .bind(vpcs.clone().count() as i64)
            .bind(vpcs.clone().map(|v| v.subnets.len()).sum::<usize>() as i64)
            .bind(vpcs.map(|v| v.route_tables.len()).sum::<usize>() as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Stored { applied, changes })
    }
}
