//! Console sessions (`auth` decides what they are): rows keyed by a hash of the session id, with the login
//! time and the last use, in the database every receiver shares. Times are Unix milliseconds; expiry is
//! decided with the limits the caller gives, so changing a limit applies to sessions already started.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Records a new session.
    pub(crate) async fn create_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, created_at, last_seen) VALUES ($1, $2, $2)",
        )
        .bind(id_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the session is live at `now`: younger than `lifetime_ms` and used within `idle_ms`. A live
    /// session's last use is moved to `now` when older than `touch_ms`; an expired one is deleted.
    pub(crate) async fn live_session(
        &self,
        id_hash: &str,
        now: i64,
        lifetime_ms: i64,
        idle_ms: i64,
        touch_ms: i64,
    ) -> Result<bool, StoreError> {
        let Some(row) =
            sqlx::query("SELECT created_at, last_seen FROM console_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(false);
        };
        let created: i64 = row.try_get(0)?;
        let last_seen: i64 = row.try_get(1)?;
        if now.saturating_sub(created) >= lifetime_ms || now.saturating_sub(last_seen) >= idle_ms {
            self.delete_session(id_hash).await?;
            return Ok(false);
        }
        if now.saturating_sub(last_seen) >= touch_ms {
            sqlx::query(
                "UPDATE console_sessions SET last_seen = $2 WHERE id_hash = $1 AND last_seen < $2",
            )
            .bind(id_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(true)
    }

    /// Ends a session (logout).
    pub(crate) async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every session expired at `now`; how many.
    pub(crate) async fn purge_sessions(
        &self,
        now: i64,
        lifetime_ms: i64,
        idle_ms: i64,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE created_at <= $1 OR last_seen <= $2")
                .bind(now.saturating_sub(lifetime_ms))
                .bind(now.saturating_sub(idle_ms))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
