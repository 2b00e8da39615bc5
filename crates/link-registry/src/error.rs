//! One error for everything the registry answers over HTTP, apart from the receiver's own answers to a
//! delivery (`receiver::Rejected`, whose statuses are part of the delivery contract).
//!
//! A handler returns `Result<_, Problem>` and uses `?`; the API renders a problem as
//! `{"status", "message"}` ([`ApiError`]), the console as a short text page ([`PageError`]) or, for a
//! viewer who is not signed in, the way to the login form. Store failures are logged here, once, and
//! answered 503 without their text (it may name tables or hosts).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{self, Access, Refused};
use crate::live::LiveError;
use crate::store::StoreError;
use crate::App;

/// Why a request was not served, in words the caller can act on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Problem {
    /// Bad input; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// No bearer token, no session, no loopback host.
    #[error("send Authorization: Bearer <the registry's API token>")]
    NotSignedIn,
    /// No API token configured, and the request came through a proxy.
    #[error("{}", Refused::proxy_message(.0))]
    BehindProxy(HeaderName),
    /// A change without the page's (or session's) CSRF token.
    #[error("missing or wrong x-csrf-token header (send the console page's token, or use a bearer token)")]
    Csrf,
    /// Something the registry cannot do now, and why (e.g. role checks are off).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed; logged where it is converted.
    #[error("the registry's database is unavailable; retry in a moment")]
    Store,
    #[error("{0}")]
    Internal(&'static str),
}

impl Problem {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotSignedIn => StatusCode::UNAUTHORIZED,
            Self::BehindProxy(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::Unavailable(_) | Self::Store => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "the store failed");
        Self::Store
    }
}

impl From<Refused> for Problem {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NotSignedIn => Self::NotSignedIn,
            Refused::BehindProxy(h) => Self::BehindProxy(h),
            Refused::Unavailable(e) => e.into(),
        }
    }
}

impl From<LiveError> for Problem {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::Off(_) => Self::Unavailable(e.to_string()),
            LiveError::NoLink => Self::NotFound("no link with this id"),
            LiveError::Unlinked | LiveError::Busy => Self::Conflict(e.to_string()),
            LiveError::Store(e) => e.into(),
        }
    }
}

/// A problem answered to the API: JSON.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Problem);

impl<E: Into<Problem>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = Json(json!({ "status": status.as_u16(), "message": self.0.to_string() }));
        let mut r = (status, body).into_response();
        if matches!(self.0, Problem::NotSignedIn) {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// A problem answered to the console: text for people, or the login form for a viewer who can log in.
#[derive(Debug)]
pub(crate) struct PageError {
    problem: Problem,
    /// An API token is configured, so a viewer who is not signed in can log in.
    login: bool,
}

impl<E: Into<Problem>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self {
            problem: e.into(),
            login: false,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = match self.problem {
            Problem::NotSignedIn if self.login => return Redirect::to("/login").into_response(),
            Problem::NotSignedIn => "use a loopback address".to_string(),
            Problem::Csrf => "The form is stale: reload the page and try again.".to_string(),
            Problem::Store => {
                "The registry's database is unavailable; reload in a moment.".to_string()
            }
            ref p => p.to_string(),
        };
        let status = match self.problem {
            // Without a token there is no login: the console is for loopback callers only.
            Problem::NotSignedIn => StatusCode::FORBIDDEN,
            ref p => p.status(),
        };
        (status, message).into_response()
    }
}

/// A console viewer: how they came in, or the way to the login form. Every console page but the login
/// form and the assets takes one.
pub(crate) struct Viewer(pub(crate) Access);

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, PageError> {
        match auth::access(app, &parts.headers).await {
            Ok(a) => Ok(Self(a)),
            Err(r) => Err(PageError {
                problem: r.into(),
                login: app.api_token.is_some(),
            }),
        }
    }
}

/// An API caller `auth::access` allows. The API's router requires one for every route (see
/// `api::require_access`), so a route cannot be added without it.
#[derive(Clone)]
pub(crate) struct Caller(pub(crate) Access);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        Ok(Self(auth::access(app, &parts.headers).await?))
    }
}

/// The CSRF check of a change: the header (API, scripts) or the form field (console forms).
pub(crate) fn csrf(
    app: &App,
    access: &Access,
    headers: &axum::http::HeaderMap,
    form: Option<&str>,
) -> Result<(), Problem> {
    if auth::csrf_ok(app, access, headers, form) {
        Ok(())
    } else {
        Err(Problem::Csrf)
    }
}
