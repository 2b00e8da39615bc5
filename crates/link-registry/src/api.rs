//! The API: links, one link with its newest complete inventory and network selection, a link's events,
//! console link requests, and health. It exposes customers' network layouts, so every route but
//! `/healthz` needs an allowed caller (see `auth`), and changes need the CSRF token from browsers.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use link_contract::inventory::RegionInventory;
use serde::Deserialize;
use serde_json::json;

use crate::auth;
use crate::error::{csrf, ApiError, Caller, Problem};
use crate::store::{LinkQuery, Selection};
use crate::App;

const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 100;

pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/links", get(links))
        .route("/links/{link_id}", get(link))
        .route("/links/{link_id}/events", get(events))
        .route("/links/{link_id}/selection", put(save_selection))
        .route("/links/{link_id}/refresh", post(refresh))
        .route("/links/{link_id}/role-check", post(role_check))
        .route("/link-requests", post(create_request))
        .route("/link-requests/{external_id}", get(request))
        .route("/rejected-events", get(rejected))
}

type ApiResult<T> = Result<T, ApiError>;

/// Lets in the callers `auth::access` allows, and hands the handlers how they came in (`Caller`).
pub(crate) async fn require_access(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Response {
    match auth::access(&app, req.headers()).await {
        Ok(access) => {
            req.extensions_mut().insert(Caller(access));
            next.run(req).await
        }
        Err(refused) => ApiError::from(refused).into_response(),
    }
}

/// Healthy only when a heartbeat commits through the writer (the path every delivery takes), so a load
/// balancer takes a receiver out whose store cannot commit, not only one whose database is gone.
pub(crate) async fn health(State(app): State<Arc<App>>) -> Response {
    match app.store.check_commit(HEALTH_WITHIN).await {
        Ok(()) => Json(json!({ "status": "ok", "database": "ok" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store cannot commit");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unavailable", "reason": "the store cannot commit" })),
            )
                .into_response()
        }
    }
}

/// How long a health check waits for its heartbeat to commit.
const HEALTH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Deserialize)]
struct RejectedParams {
    link: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// Deliveries kept apart because they named another stack's link, newest first (`?link=` for one link).
async fn rejected(
    State(app): State<Arc<App>>,
    Query(p): Query<RejectedParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = page_size(p.limit)?;
    let page = app
        .store
        .rejected(p.link.as_deref(), limit, p.after.as_deref())
        .await?;
    Ok(Json(
        json!({ "rejectedEvents": page.items, "next": page.next }),
    ))
}

#[derive(Debug, Deserialize)]
struct LinksParams {
    state: Option<String>,
    account: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// The page size asked for, or the answer to a bad one.
fn page_size(limit: Option<i64>) -> Result<i64, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Problem::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        ))),
    }
}

async fn links(
    State(app): State<Arc<App>>,
    Query(p): Query<LinksParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = page_size(p.limit)?;
    if let Some(s) = &p.state {
        if !["linked", "unlinked"].contains(&s.as_str()) {
            return Err(Problem::BadRequest("state must be linked or unlinked".into()).into());
        }
    }
    let q = LinkQuery {
        state: p.state,
        account: p.account,
        limit,
        after: p.after,
    };
    let page = app.store.links(&q).await?;
    Ok(Json(json!({ "links": page.items, "next": page.next })))
}

async fn link(State(app): State<Arc<App>>, Path(link_id): Path<String>) -> ApiResult<Response> {
    let found = app
        .store
        .link(&link_id)
        .await?
        .ok_or(Problem::NotFound("no link with this id"))?;
    let (selection, role_checks, refresh) = tokio::try_join!(
        app.store.selection(&link_id),
        app.store.role_checks(&link_id),
        app.store.refresh_state(&link_id)
    )?;
    let (link, inventory) = found;
    let selection_missing = match (&selection, &inventory) {
        (Some(s), Some(raw)) => serde_json::from_str::<Vec<RegionInventory>>(raw.get())
            .map(|inv| crate::live::missing_from(s, &inv))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let role_checks = role_checks
        .into_iter()
        .map(|c| {
            let problem = crate::live::advice(&c);
            RoleCheckView { check: c, problem }
        })
        .collect();
    Ok(Json(LinkDetail {
        link: &link,
        inventory: inventory.as_deref(),
        selection,
        selection_missing,
        min_free_ips: app.console.min_free_ips,
        role_checks,
        refresh,
        aws_access: access_text(&app),
    })
    .into_response())
}

/// `on`, `checking`, or `off: <why>`.
pub(crate) fn access_text(app: &App) -> String {
    match app.live.access() {
        crate::live::Access::On => "on".into(),
        crate::live::Access::Checking => "checking".into(),
        crate::live::Access::Off(why) => format!("off: {why}"),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RoleCheckView {
    #[serde(flatten)]
    check: crate::store::live::RoleCheck,
    /// A refusal in words the customer can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefreshParams {
    /// Answer when the refresh has ended (at most --refresh-timeout), with what it did.
    #[serde(default)]
    wait: bool,
}

/// `POST /api/links/{linkId}/refresh`: refreshes the link's networks now (202, or with `?wait=true` 200
/// and the refresh's report).
async fn refresh(
    State(app): State<Arc<App>>,
    Caller(access): Caller,
    headers: HeaderMap,
    Path(link_id): Path<String>,
    Query(p): Query<RefreshParams>,
) -> ApiResult<Response> {
    csrf(&app, &access, &headers, None)?;
    // What can be told at once is told at once, even without `wait`.
    if let crate::live::Access::Off(why) = app.live.access() {
        return Err(Problem::from(crate::live::LiveError::Off(why)).into());
    }
    match app.store.link_view(&link_id).await.map_err(Problem::from)? {
        Some(l) if l.state == "linked" => {}
        Some(_) => return Err(Problem::from(crate::live::LiveError::Unlinked).into()),
        None => return Err(Problem::from(crate::live::LiveError::NoLink).into()),
    }
    let run = tokio::spawn(crate::live::refresh(app.clone(), link_id, false));
    if !p.wait {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "status": "started" }))).into_response());
    }
    let report = run
        .await
        .map_err(|_| Problem::Internal("the refresh failed"))??;
    Ok(Json(report).into_response())
}

/// `POST /api/links/{linkId}/role-check`: assumes each of the link's roles now; their checks.
async fn role_check(
    State(app): State<Arc<App>>,
    Caller(access): Caller,
    headers: HeaderMap,
    Path(link_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    csrf(&app, &access, &headers, None)?;
    let checks: Vec<RoleCheckView> = crate::live::check_roles(&app, &link_id)
        .await?
        .into_iter()
        .map(|c| {
            let problem = crate::live::advice(&c);
            RoleCheckView { check: c, problem }
        })
        .collect();
    Ok(Json(json!({ "roleChecks": checks })))
}

/// `GET /api/links/{linkId}`: the link, its inventory as stored, the saved selection.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkDetail<'a> {
    #[serde(flatten)]
    link: &'a crate::store::LinkView,
    inventory: Option<&'a serde_json::value::RawValue>,
    selection: Option<Selection>,
    /// The saved selection's VPC and subnets that the inventory no longer has (a refresh or event removed
    /// them): the selection is kept, and flagged, until someone picks again.
    selection_missing: Vec<String>,
    min_free_ips: i64,
    /// Each role's newest check.
    role_checks: Vec<RoleCheckView>,
    /// The refresh schedule, the one running, the last one's outcome.
    refresh: Option<crate::store::live::RefreshState>,
    /// Whether role checks and refreshes run (`on`), or why not.
    aws_access: String,
}

/// Why a subnet cannot be picked, if it cannot.
pub(crate) fn unusable(
    subnet: &link_contract::inventory::Subnet,
    min_free_ips: i64,
) -> Option<String> {
    if subnet.cidr_block.is_none() {
        return Some("IPv6-only".into());
    }
    match subnet.available_ip_address_count {
        Some(n) if i64::from(n) < min_free_ips => Some(format!(
            "{n} free addresses (at least {min_free_ips} needed)"
        )),
        _ => None,
    }
}

/// Checks a selection against the link's newest inventory; the error names the field.
fn check_selection(
    s: &Selection,
    inventory: &[RegionInventory],
    min_free_ips: i64,
) -> Result<(), String> {
    let region = inventory
        .iter()
        .find(|r| r.region == s.region)
        .ok_or_else(|| format!("region: {} is not a region of this link", s.region))?;
    let vpc = region
        .vpcs
        .iter()
        .find(|v| v.vpc_id == s.vpc_id)
        .ok_or_else(|| {
            format!(
                "vpcId: {} is not a VPC of this link in {}",
                s.vpc_id, s.region
            )
        })?;
    if s.subnet_ids.is_empty() {
        return Err("subnetIds: pick at least one subnet".into());
    }
    for (i, id) in s.subnet_ids.iter().enumerate() {
        if s.subnet_ids[..i].contains(id) {
            return Err(format!("subnetIds[{i}]: {id} is listed twice"));
        }
        let subnet = vpc
            .subnets
            .iter()
            .find(|x| &x.subnet_id == id)
            .ok_or_else(|| format!("subnetIds[{i}]: {id} is not a subnet of {}", s.vpc_id))?;
        if let Some(why) = unusable(subnet, min_free_ips) {
            return Err(format!("subnetIds[{i}]: {id} cannot be used: {why}"));
        }
    }
    Ok(())
}

const MAX_SELECTED_SUBNETS: usize = 256;

async fn save_selection(
    State(app): State<Arc<App>>,
    Caller(access): Caller,
    headers: HeaderMap,
    Path(link_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    csrf(&app, &access, &headers, None)?;
    let selection: Selection = serde_json::from_slice(&body).map_err(|e| {
        Problem::BadRequest(format!(
            "the body must be {{\"region\", \"vpcId\", \"subnetIds\": [...]}}: {e}"
        ))
    })?;
    if selection.subnet_ids.len() > MAX_SELECTED_SUBNETS {
        return Err(
            Problem::BadRequest(format!("subnetIds: at most {MAX_SELECTED_SUBNETS}")).into(),
        );
    }
    let (link, inventory) = app
        .store
        .link(&link_id)
        .await?
        .ok_or(Problem::NotFound("no link with this id"))?;
    if link.state != "linked" {
        return Err(Problem::Conflict(
            "the link is unlinked: its account's stack was deleted".into(),
        )
        .into());
    }
    let inventory: Vec<RegionInventory> = inventory
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    check_selection(&selection, &inventory, app.console.min_free_ips)
        .map_err(Problem::BadRequest)?;
    app.store.save_selection(&link_id, &selection).await?;
    tracing::info!(link_id, vpc_id = %selection.vpc_id, subnets = selection.subnet_ids.len(), "network selection saved");
    Ok(Json(json!({ "selection": selection })))
}

/// `POST /api/link-requests`: an empty body for one account, or `{"multiAccount": true,
/// "expectedAccountIds": [...]}` for a request that several accounts (a StackSet) connect.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewRequest {
    #[serde(default)]
    multi_account: bool,
    #[serde(default)]
    expected_account_ids: Vec<String>,
}

async fn create_request(
    State(app): State<Arc<App>>,
    Caller(access): Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    csrf(&app, &access, &headers, None)?;
    let asked: NewRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NewRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::BadRequest(format!("the body: {e}")))?
    };
    let accounts =
        crate::console::request_accounts(asked.multi_account, &asked.expected_account_ids)
            .map_err(Problem::BadRequest)?;
    let r = crate::console::new_request(&app, &accounts).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::console::request_json(&app, &r)),
    )
        .into_response())
}

async fn request(
    State(app): State<Arc<App>>,
    Path(external_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let r = app
        .store
        .request(&external_id)
        .await?
        .ok_or(Problem::NotFound("no link request with this external id"))?;
    Ok(Json(crate::console::request_json(&app, &r)))
}

#[derive(Debug, Deserialize)]
struct EventsParams {
    limit: Option<i64>,
    after: Option<String>,
}

async fn events(
    State(app): State<Arc<App>>,
    Path(link_id): Path<String>,
    Query(p): Query<EventsParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = page_size(p.limit)?;
    let page = app
        .store
        .events(&link_id, limit, p.after.as_deref())
        .await?;
    Ok(Json(json!({ "events": page.items, "next": page.next })))
}
