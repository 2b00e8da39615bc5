//! The API: links, one link with its newest complete inventory and network selection, a link's events,
//! console link requests, and health. It exposes customers' network layouts, so every route but
//! `/healthz` needs an allowed caller (see `auth`), and changes need the CSRF token from browsers.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use link_contract::inventory::RegionInventory;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Access, Refused};
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

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// Lets in the callers `auth::access` allows, and tells the handler how they came in.
pub(crate) async fn require_access(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = match auth::access(&app, req.headers()).await {
        Ok(a) => a,
        Err(Refused::NotSignedIn) => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <the registry's API token>",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            return r;
        }
        Err(Refused::BehindProxy(h)) => {
            return error(StatusCode::FORBIDDEN, &Refused::proxy_message(&h))
        }
        Err(Refused::Unavailable(e)) => {
            tracing::error!(error = %e, "api: sessions unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the registry's database is unavailable",
            );
        }
    };
    req.extensions_mut().insert(access);
    next.run(req).await
}

fn csrf_refused() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "missing or wrong x-csrf-token header (send the console page's token, or use a bearer token)",
    )
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
async fn rejected(State(app): State<Arc<App>>, Query(p): Query<RejectedParams>) -> Response {
    let limit = match page_size(p.limit) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    match app
        .store
        .rejected(p.link.as_deref(), limit, p.after.as_deref())
        .await
    {
        Ok(page) => {
            Json(json!({ "rejectedEvents": page.items, "next": page.next })).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct LinksParams {
    state: Option<String>,
    account: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// The page size asked for, or the answer to a bad one.
fn page_size(limit: Option<i64>) -> Result<i64, Box<Response>> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be 1 to {MAX_PAGE}"),
        ))),
    }
}

async fn links(State(app): State<Arc<App>>, Query(p): Query<LinksParams>) -> Response {
    let limit = match page_size(p.limit) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if let Some(s) = &p.state {
        if !["linked", "unlinked"].contains(&s.as_str()) {
            return error(StatusCode::BAD_REQUEST, "state must be linked or unlinked");
        }
    }
    let q = LinkQuery {
        state: p.state,
        account: p.account,
        limit,
        after: p.after,
    };
    match app.store.links(&q).await {
        Ok(page) => Json(json!({ "links": page.items, "next": page.next })).into_response(),
        Err(e) => store_error(e),
    }
}

async fn link(State(app): State<Arc<App>>, Path(link_id): Path<String>) -> Response {
    let found = match app.store.link(&link_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no link with this id"),
        Err(e) => return store_error(e),
    };
    let selection = match app.store.selection(&link_id).await {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    let (role_checks, refresh) = match tokio::try_join!(
        app.store.role_checks(&link_id),
        app.store.refresh_state(&link_id)
    ) {
        Ok(x) => x,
        Err(e) => return store_error(e),
    };
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
    Json(LinkDetail {
        link: &link,
        inventory: inventory.as_deref(),
        selection,
        selection_missing,
        min_free_ips: app.console.min_free_ips,
        role_checks,
        refresh,
        aws_access: access_text(&app),
    })
    .into_response()
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

/// The answer to a refresh or role check that could not run.
pub(crate) fn live_error(e: crate::live::LiveError) -> Response {
    use crate::live::LiveError;
    match e {
        LiveError::Off(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        LiveError::NoLink => error(StatusCode::NOT_FOUND, &e.to_string()),
        LiveError::Unlinked | LiveError::Busy => error(StatusCode::CONFLICT, &e.to_string()),
        LiveError::Store(e) => store_error(e),
    }
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
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    Path(link_id): Path<String>,
    Query(p): Query<RefreshParams>,
) -> Response {
    if !auth::csrf_ok(&app, &access, &headers, None) {
        return csrf_refused();
    }
    // What can be told at once is told at once, even without `wait`.
    if let crate::live::Access::Off(why) = app.live.access() {
        return live_error(crate::live::LiveError::Off(why));
    }
    match app.store.link_view(&link_id).await {
        Ok(Some(l)) if l.state == "linked" => {}
        Ok(Some(_)) => return live_error(crate::live::LiveError::Unlinked),
        Ok(None) => return live_error(crate::live::LiveError::NoLink),
        Err(e) => return store_error(e),
    }
    let run = tokio::spawn(crate::live::refresh(app.clone(), link_id, false));
    if !p.wait {
        return (StatusCode::ACCEPTED, Json(json!({ "status": "started" }))).into_response();
    }
    match run.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => live_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the refresh failed"),
    }
}

/// `POST /api/links/{linkId}/role-check`: assumes each of the link's roles now; their checks.
async fn role_check(
    State(app): State<Arc<App>>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    Path(link_id): Path<String>,
) -> Response {
    if !auth::csrf_ok(&app, &access, &headers, None) {
        return csrf_refused();
    }
    match crate::live::check_roles(&app, &link_id).await {
        Ok(checks) => {
            let checks: Vec<RoleCheckView> = checks
                .into_iter()
                .map(|c| {
                    let problem = crate::live::advice(&c);
                    RoleCheckView { check: c, problem }
                })
                .collect();
            Json(json!({ "roleChecks": checks })).into_response()
        }
        Err(e) => live_error(e),
    }
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
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    Path(link_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !auth::csrf_ok(&app, &access, &headers, None) {
        return csrf_refused();
    }
    let selection: Selection = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body must be {{\"region\", \"vpcId\", \"subnetIds\": [...]}}: {e}"),
            )
        }
    };
    if selection.subnet_ids.len() > MAX_SELECTED_SUBNETS {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("subnetIds: at most {MAX_SELECTED_SUBNETS}"),
        );
    }
    let (link, inventory) = match app.store.link(&link_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no link with this id"),
        Err(e) => return store_error(e),
    };
    if link.state != "linked" {
        return error(
            StatusCode::CONFLICT,
            "the link is unlinked: its account's stack was deleted",
        );
    }
    let inventory: Vec<RegionInventory> = inventory
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    if let Err(problem) = check_selection(&selection, &inventory, app.console.min_free_ips) {
        return error(StatusCode::BAD_REQUEST, &problem);
    }
    match app.store.save_selection(&link_id, &selection).await {
        Ok(()) => {
            tracing::info!(link_id, vpc_id = %selection.vpc_id, subnets = selection.subnet_ids.len(), "network selection saved");
            Json(json!({ "selection": selection })).into_response()
        }
        Err(e) => store_error(e),
    }
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
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !auth::csrf_ok(&app, &access, &headers, None) {
        return csrf_refused();
    }
    let asked: NewRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NewRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("the body: {e}")),
        }
    };
    let accounts =
        match crate::console::request_accounts(asked.multi_account, &asked.expected_account_ids) {
            Ok(a) => a,
            Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
        };
    match crate::console::new_request(&app, &accounts).await {
        Ok(r) => (
            StatusCode::CREATED,
            Json(crate::console::request_json(&app, &r)),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

async fn request(State(app): State<Arc<App>>, Path(external_id): Path<String>) -> Response {
    match app.store.request(&external_id).await {
        Ok(Some(r)) => Json(crate::console::request_json(&app, &r)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no link request with this external id",
        ),
        Err(e) => store_error(e),
    }
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
) -> Response {
    let limit = match page_size(p.limit) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    match app.store.events(&link_id, limit, p.after.as_deref()).await {
        Ok(page) => Json(json!({ "events": page.items, "next": page.next })).into_response(),
        Err(e) => store_error(e),
    }
}

fn store_error(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "read failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the registry's database is unavailable; retry",
    )
}
