//! The console's requests (a link a customer started, with its external id) and the network a customer
//! picked for a link.

use std::time::Duration;

use serde::Serialize;
use sqlx::FromRow;

use super::sql::{now_millis, rfc3339};
use super::{Store, StoreError};

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

/// A row of `REQUEST_COLUMNS`.
#[derive(FromRow)]
struct RequestRow {
    external_id: String,
    stack_name: String,
    region: String,
    created_at: i64,
    expires_at: i64,
    link_id: Option<String>,
    connected_at: Option<i64>,
    account_id: Option<String>,
    multi_account: i64,
    expected_accounts: Option<String>,
    connected_links: i64,
}

impl RequestRow {
    /// The request as of `now` (its status depends on the time).
    fn view(self, now: i64) -> LinkRequest {
        let status = match (&self.link_id, self.expires_at < now) {
            (Some(_), _) => "connected",
            (None, true) => "expired",
            (None, false) => "pending",
        };
        LinkRequest {
            external_id: self.external_id,
            stack_name: self.stack_name,
            region: self.region,
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
            status,
            link_id: self.link_id,
            connected_at: self.connected_at.map(rfc3339),
            account_id: self.account_id,
            multi_account: self.multi_account != 0,
            expected_accounts: self
                .expected_accounts
                .and_then(|e| serde_json::from_str(&e).ok()),
            connected_links: self.connected_links,
        }
    }
}

#[derive(FromRow)]
struct SelectionRow {
    region: String,
    vpc_id: String,
    /// A JSON array.
    subnet_ids: String,
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
        let row = sqlx::query_as::<_, RequestRow>(&format!(
            "SELECT {REQUEST_COLUMNS} FROM link_requests WHERE external_id = $1"
        ))
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.view(now)))
    }

    /// Requests not yet connected, newest first (pending ones, then those that expired recently).
    pub(crate) async fn open_requests(&self, limit: i64) -> Result<Vec<LinkRequest>, StoreError> {
        let now = now_millis();
        let rows = sqlx::query_as::<_, RequestRow>(&format!(
            "SELECT {REQUEST_COLUMNS} FROM link_requests WHERE link_id IS NULL ORDER BY created_at DESC LIMIT {limit}"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.view(now)).collect())
    }

    pub(crate) async fn selection(&self, link_id: &str) -> Result<Option<Selection>, StoreError> {
        let row = sqlx::query_as::<_, SelectionRow>(
            "SELECT region, vpc_id, subnet_ids FROM selections WHERE link_id = $1",
        )
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Selection {
            region: r.region,
            vpc_id: r.vpc_id,
            subnet_ids: serde_json::from_str(&r.subnet_ids).unwrap_or_default(),
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
}
