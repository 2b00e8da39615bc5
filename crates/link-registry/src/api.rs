//! The read API: links, one link with its newest complete inventory, a link's events, and health. It
//! exposes customers' network layouts, so every route but `/healthz` needs the bearer token (or, when the
//! registry runs without one, is served only on a loopback address: `config` refuses anything else).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::store::LinkQuery;
use crate::App;

const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 100;

pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/links", get(links))
        .route("/links/{link_id}", get(link))
        .route("/links/{link_id}/events", get(events))
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// Requires `Authorization: Bearer <token>` when the registry has a token.
pub(crate) async fn require_token(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &app.api_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <the registry's API token>",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            return r;
        }
    }
    next.run(req).await
}

pub(crate) async fn health(State(app): State<Arc<App>>) -> Response {
    match app.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok", "database": "ok" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unavailable" })),
            )
                .into_response()
        }
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
    match app.store.link(&link_id).await {
        Ok(Some((link, inventory))) => {
            let mut v = serde_json::to_value(link).unwrap_or_default();
            v["inventory"] = inventory.unwrap_or(serde_json::Value::Null);
            Json(v).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no link with this id"),
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
