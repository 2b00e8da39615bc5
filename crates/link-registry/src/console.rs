//! The provider's console, served by `link-receiver` from the same database: start a link (a fresh
//! external id and the CloudFormation quick-create link for it), see it connect live, list the linked
//! accounts, and pick a VPC and subnets of one. Server-rendered pages (maud escapes everything) with one
//! small script; every asset is embedded, nothing is loaded from elsewhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use futures::stream;
use link_contract::partition::Partition;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::{self, Access, Refused};
use crate::client::Client;
use crate::error::{csrf, ApiError, PageError, Problem, Viewer};
use crate::store::{LinkQuery, LinkRequest, LinkView, RejectedView, RequestAccounts, StoreError};
use crate::App;

const SCRIPT: &str = include_str!("../assets/console.js");
const STYLE: &str = include_str!("../assets/console.css");
/// Browsers following changes at once; more get 503 and fall back to polling.
pub(crate) const MAX_FOLLOWERS: usize = 64;
/// How often a follower's stream checks the database for deliveries other receivers stored.
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub(crate) fn router() -> Router<Arc<App>> {
    let router = Router::new()
        .route("/", get(accounts))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/console/requests", post(start_link))
        .route("/requests/{external_id}", get(request_page))
        .route("/links/{link_id}", get(link_page))
        .route("/links/{link_id}/refresh", post(refresh_link))
        .route("/console/changes", get(changes))
        .route("/console/assets/console.js", get(script))
        .route("/console/assets/console.css", get(style));
    secure_headers(router)
}

/// A fresh external id: 30 bytes from the OS's CSPRNG, base64url (40 characters, all in IAM's set).
fn external_id() -> String {
    B64URL.encode(auth::random_bytes(30))
}

/// Accounts a request for several accounts may name at most.
const MAX_EXPECTED_ACCOUNTS: usize = 1000;

/// Which accounts a request may connect, from the API's JSON or the console's form: several accounts or
/// one, and the expected account ids (12 digits each, separated by commas, spaces or lines in the form).
pub(crate) fn request_accounts(
    multi_account: bool,
    expected: &[String],
) -> Result<RequestAccounts, String> {
    if !multi_account && !expected.is_empty() {
        return Err(
            "expectedAccountIds: only a request for several accounts takes expected accounts"
                .into(),
        );
    }
    if expected.len() > MAX_EXPECTED_ACCOUNTS {
        return Err(format!(
            "expectedAccountIds: at most {MAX_EXPECTED_ACCOUNTS} accounts"
        ));
    }
    if let Some((i, bad)) = expected
        .iter()
        .enumerate()
        .find(|(_, a)| !link_contract::arn::is_account_id(a))
    {
        let shown: String = bad.chars().take(20).collect();
        return Err(format!(
            "expectedAccountIds[{i}]: '{shown}' is not a 12-digit AWS account id"
        ));
    }
    Ok(RequestAccounts {
        multi_account,
        expected: (!expected.is_empty()).then(|| expected.to_vec()),
    })
}

/// Records a pending link with a new external id and a stack name derived from it.
pub(crate) async fn new_request(
    app: &App,
    accounts: &RequestAccounts,
) -> Result<LinkRequest, StoreError> {
    let id = external_id();
    let suffix: String = auth::random_hex(4);
    let stack_name = format!("{}-{suffix}", app.console.stack_name_prefix);
    app.store
        .create_request(
            &id,
            &stack_name,
            &app.console.stack_region,
            app.console.pending_ttl,
            accounts,
        )
        .await
}

/// The callback URL the customer's stack sends events to.
fn callback_url(app: &App) -> String {
    let base = app.console.public_url.as_str().trim_end_matches('/');
    format!("{base}/hooks/account-link")
}

/// The template parameters a quick-create link carries: what the provider configured, the external id
/// and the callback URL. Never a secret (`config` refuses them).
fn stack_parameters(app: &App, r: &LinkRequest) -> Vec<(String, String)> {
    let mut params = app.console.stack_params.clone();
    params.push(("ExternalId".into(), r.external_id.clone()));
    params.push(("ProviderCallbackUrl".into(), callback_url(app)));
    params
}

/// The CloudFormation console's quick-create link for a request, when a template URL is configured and
/// the partition has a public console.
pub(crate) fn quick_create_url(app: &App, r: &LinkRequest) -> Option<String> {
    let template = app.console.template_url.as_ref()?;
    let host = Partition::of_region(&r.region).console_host_for(&r.region)?;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut fragment = format!(
        "/stacks/quickcreate?templateURL={}&stackName={}",
        enc(template.as_str()),
        enc(&r.stack_name)
    );
    for (name, value) in stack_parameters(app, r) {
        fragment += &format!("&param_{name}={}", enc(&value));
    }
    Some(format!(
        "https://{host}/cloudformation/home?region={}#{fragment}",
        r.region
    ))
}

pub(crate) fn request_json(app: &App, r: &LinkRequest) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["quickCreateUrl"] = quick_create_url(app, r).into();
    v["parameters"] = stack_parameters(app, r)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    v
}

// ---- responses ----

fn html_page(markup: Markup) -> Response {
    axum::response::Html(markup.into_string()).into_response()
}

/// Everything the console serves (pages, errors, redirects, assets) carries these, and nothing may frame
/// it. One layer, so no handler can forget them; a response that sets one itself (the assets' caching)
/// keeps its own.
fn secure_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ]
    .into_iter()
    .fold(router, |r, (name, value)| {
        r.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// A page. `access`: how its viewer came in (None: not signed in, e.g. the login page, which then carries
/// no CSRF token).
fn layout(app: &App, access: Option<&Access>, title: &str, body: Markup) -> Markup {
    let csrf = access.and_then(|a| auth::page_csrf(app, a));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · account links" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body data-csrf=[csrf] {
                header.top {
                    a.brand href="/" { "Account links" }
                    @if let Some(Access::Session { csrf, .. }) = access {
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.link #logout type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn when(t: Option<&str>) -> String {
    t.map(|t| {
        t.replacen('T', " ", 1)
            .trim_end_matches('Z')
            .chars()
            .take(16)
            .collect::<String>()
            + " UTC"
    })
    .unwrap_or_else(|| "—".into())
}

// ---- login ----

async fn login_form(State(app): State<Arc<App>>) -> Response {
    login_page(&app, None)
}

fn login_page(app: &App, problem: Option<&str>) -> Response {
    let body = html! {
        h1 { "Log in" }
        p { "Enter the registry's API token." }
        @if let Some(p) = problem { p.error role="alert" { (p) } }
        form method="post" action="/login" {
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button type="submit" { "Log in" }
        }
    };
    html_page(layout(app, None, "Log in", body))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Checks the token (at most `auth::LOGIN_FAILURES` tries per client per minute) and starts a session.
async fn login(
    State(app): State<Arc<App>>,
    client: Client,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    if app.api_token.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    if let Err(wait) = app
        .sessions
        .throttle
        .attempt(client.ip, std::time::Instant::now())
    {
        let secs = auth::retry_after_secs(wait);
        tracing::warn!(client = %client.ip, peer = %client.peer, "console login refused: too many failed attempts");
        let mut r = login_page(
            &app,
            Some(&format!(
                "Too many failed logins from your address: try again in {secs} s."
            )),
        );
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(r);
    }
    if !auth::token_matches(&app, &f.token) {
        tracing::warn!(client = %client.ip, peer = %client.peer, "console login refused: not the API token");
        let mut r = login_page(&app, Some("That is not the registry's API token."));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    }
    app.sessions.throttle.succeeded(client.ip);
    let cookie = auth::start_session(&app, &client).await?;
    tracing::info!(client = %client.ip, "console login");
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Ends the session, on the server, when the page's CSRF token comes with it (else a cross-site form
/// could log an operator out).
async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let access = match auth::access(&app, &headers).await {
        Ok(a) => a,
        Err(Refused::Unavailable(e)) => return Err(e.into()),
        // Nothing to end: whatever the browser holds is worth nothing.
        Err(_) => return Ok(cleared(Redirect::to("/login").into_response())),
    };
    if !matches!(access, Access::Session { .. }) {
        return Ok(Redirect::to("/").into_response());
    }
    let given = form.as_ref().ok().map(|Form(f)| f.csrf.as_str());
    csrf(&app, &access, &headers, given)?;
    auth::end_session(&app, &access).await?;
    Ok(cleared(Redirect::to("/login").into_response()))
}

fn cleared(mut r: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---- accounts ----

#[derive(Deserialize)]
struct AccountsParams {
    after: Option<String>,
}

async fn accounts(
    State(app): State<Arc<App>>,
    Viewer(access): Viewer,
    Query(p): Query<AccountsParams>,
) -> Result<Response, PageError> {
    let query = LinkQuery {
        limit: 100,
        after: p.after.clone(),
        ..LinkQuery::default()
    };
    let (requests, page, rejected) = tokio::try_join!(
        app.store.open_requests(20),
        app.store.links(&query),
        app.store.rejected(None, 20, None)
    )?;
    let body = html! {
        section.actions {
            h1 { "AWS accounts" }
            form method="post" action="/console/requests" {
                input type="hidden" name="csrf" value=(auth::page_csrf(&app, &access).unwrap_or_default());
                button #start-link type="submit" { "Link an AWS account" }
                details.inline #several {
                    summary { "For several accounts (StackSets)" }
                    label { input type="checkbox" name="multi_account" value="on"; " Any account that deploys the stack connects" }
                    label for="expected-accounts" { "Only these accounts (optional, 12-digit ids separated by commas or spaces)" }
                    textarea #expected-accounts name="expected_accounts" rows="2" {}
                }
            }
        }
        @if !requests.is_empty() {
            h2 { "Waiting for a stack" }
            table.list #requests {
                thead { tr { th { "Stack" } th { "Region" } th { "Started" } th { "Status" } } }
                tbody {
                    @for r in &requests {
                        tr {
                            td { a href={"/requests/" (r.external_id)} { (r.stack_name) } }
                            td { (r.region) }
                            td { (when(Some(&r.created_at))) }
                            td { span class={"state " (r.status)} { (r.status) } }
                        }
                    }
                }
            }
        }
        h2 { "Linked accounts" }
        @if page.items.is_empty() {
            p.empty { "No account has been linked yet." }
        } @else {
            table.list #links {
                thead { tr {
                    th { "Account" } th { "Partition" } th { "Stack region" } th { "State" }
                    th { "Regions" } th.num { "VPCs" } th.num { "Subnets" } th { "Roles" } th { "Last event" }
                } }
                tbody {
                    @for l in &page.items { (link_row(l)) }
                }
            }
            @if let Some(next) = &page.next {
                p { a href={"/?after=" (next)} { "Older links →" } }
            }
        }
        @if !rejected.items.is_empty() {
            (rejected_table(&rejected.items))
        }
    };
    Ok(html_page(layout(&app, Some(&access), "Accounts", body)))
}

/// Deliveries refused because they named another stack's link: who sent them and why.
fn rejected_table(items: &[RejectedView]) -> Markup {
    html! {
        section #rejected {
            h2 { "Rejected deliveries" }
            p.muted { "Signed or proven deliveries that named a link they do not belong to. They were kept apart and changed nothing." }
            table.list {
                thead { tr { th { "Received" } th { "From account" } th { "Named link" } th { "Type" } th { "Reason" } } }
                tbody {
                    @for r in items {
                        tr data-webhook-id=(r.webhook_id) {
                            td { (when(Some(&r.received_at))) }
                            td { (r.account_id) }
                            td { code { (r.link_id) } }
                            td { (r.event_type) }
                            td.reason { (r.reason) }
                        }
                    }
                }
            }
        }
    }
}

fn regions_text(l: &LinkView) -> String {
    l.regions
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn link_row(l: &LinkView) -> Markup {
    html! {
        tr data-link-id=(l.link_id) {
            td { a href={"/links/" (l.link_id)} { (l.account_id) } }
            td { (l.partition) }
            td { (l.region) }
            td {
                span class={"state " (l.state)} { (l.state) }
                @if !l.requested { " " span.badge.warn title=(l.external_id_issue.as_deref().unwrap_or("No console request used this external id")) { "unsolicited" } }
                @if !l.inventory_complete { " " span.badge.warn title="The last event could not list every network" { "inventory incomplete" } }
            }
            td { (regions_text(l)) }
            td.num { (l.vpc_count) }
            td.num { (l.subnet_count) }
            td.roles { (roles_badge(l)) }
            td { (when(Some(&l.updated_at))) }
        }
    }
}

/// The roles' newest checks, in a word.
fn roles_badge(l: &LinkView) -> Markup {
    html! {
        @match l.roles_state {
            Some("verified") => span.state.linked title={"Verified " (when(l.roles_checked_at.as_deref()))} { "verified" },
            Some(_) => span.badge.warn title="The provider could not assume a role: see the link" { "refused" },
            None => span.muted { "not checked" },
        }
    }
}

// ---- start a link ----

#[derive(Deserialize)]
struct StartForm {
    csrf: String,
    /// A checkbox: present ("on") for a request made for several accounts (StackSets).
    #[serde(default)]
    multi_account: Option<String>,
    /// Expected account ids, separated by commas, spaces or lines.
    #[serde(default)]
    expected_accounts: String,
}

async fn start_link(
    State(app): State<Arc<App>>,
    Viewer(access): Viewer,
    headers: HeaderMap,
    Form(f): Form<StartForm>,
) -> Result<Response, PageError> {
    csrf(&app, &access, &headers, Some(&f.csrf))?;
    let expected: Vec<String> = f
        .expected_accounts
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let accounts =
        request_accounts(f.multi_account.is_some(), &expected).map_err(Problem::BadRequest)?;
    let r = new_request(&app, &accounts).await?;
    tracing::info!(stack_name = %r.stack_name, multi_account = accounts.multi_account, "link request started");
    Ok(Redirect::to(&format!("/requests/{}", r.external_id)).into_response())
}

async fn request_page(
    State(app): State<Arc<App>>,
    Viewer(access): Viewer,
    Path(external_id): Path<String>,
) -> Result<Response, PageError> {
    let r = app
        .store
        .request(&external_id)
        .await?
        .ok_or(Problem::NotFound("No such link request."))?;
    let launch = quick_create_url(&app, &r);
    let body = html! {
        h1 { "Link an AWS account" }
        ol.steps {
            li {
                "Launch the stack in the AWS account you want to link. It creates the roles we may assume and tells us which networks the account has."
                @if let Some(url) = &launch {
                    p { a.button #launch href=(url) target="_blank" rel="noopener noreferrer" { "Launch the stack in the AWS console" } }
                } @else {
                    p.warn { "No template URL is configured (link-receiver --template-url), so there is no launch link: deploy the template with these parameters." }
                }
            }
            li { "Wait here: this page says when the account is connected." }
        }
        dl.facts {
            dt { "External ID" } dd { code #external-id { (r.external_id) } }
            dt { "Stack name" } dd { (r.stack_name) }
            dt { "Stack region" } dd { (r.region) }
            dt { "Expires" } dd { (when(Some(&r.expires_at))) }
            @if r.multi_account {
                dt { "Accounts" } dd #request-accounts {
                    @match &r.expected_accounts {
                        Some(list) => { "Only " (list.join(", ")) }
                        None => { "Any account that deploys the stack (StackSets)" }
                    }
                    " · " (r.connected_links) " connected"
                }
            }
        }
        details {
            summary { "Stack parameters" }
            table.list { tbody {
                @for (k, v) in stack_parameters(&app, &r) { tr { th { (k) } td { code { (v) } } } }
            } }
        }
        div #request data-external-id=(r.external_id) data-status=(r.status) {
            p #request-status class={"state " (r.status)} { (status_text(&r)) }
            p #connected-link {
                @if let Some(link) = &r.link_id { a.button href={"/links/" (link)} { "Pick a network" } }
            }
        }
    };
    Ok(html_page(layout(
        &app,
        Some(&access),
        "Link an AWS account",
        body,
    )))
}

fn status_text(r: &LinkRequest) -> String {
    match r.status {
        "connected" => "Connected.".into(),
        "expired" => "This link request expired before a stack used it. Start a new one.".into(),
        _ => "Waiting for the stack…".into(),
    }
}

// ---- one link ----

async fn link_page(
    State(app): State<Arc<App>>,
    Viewer(access): Viewer,
    Path(link_id): Path<String>,
) -> Result<Response, PageError> {
    let (found, rejected, checks, refresh, selection) = tokio::try_join!(
        app.store.link(&link_id),
        app.store.rejected(Some(&link_id), 20, None),
        app.store.role_checks(&link_id),
        app.store.refresh_state(&link_id),
        app.store.selection(&link_id)
    )?;
    let found = found.ok_or(Problem::NotFound("No such link."))?;
    let (l, inventory) = found;
    let missing = match (&selection, &inventory) {
        (Some(s), Some(raw)) => {
            serde_json::from_str::<Vec<link_contract::inventory::RegionInventory>>(raw.get())
                .map(|inv| crate::live::missing_from(s, &inv))
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let access_off = match app.live.access() {
        crate::live::Access::Off(why) => Some(why),
        _ => None,
    };
    let roles: Vec<(String, String)> = l
        .roles
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let body = html! {
        h1 { "Account " (l.account_id) }
        @if !l.requested {
            p.warn #unsolicited {
                "Unsolicited: "
                @match &l.external_id_issue {
                    Some(issue) => { "this link's external ID belongs to a link request of this console, but " (issue) "." }
                    None => { "no link request started in this console used this link's external ID." }
                }
            }
        }
        @if !l.inventory_complete { p.warn #incomplete { "The last event could not list every network of this account: what is shown may be out of date." } }
        dl.facts {
            dt { "State" } dd { span #link-state class={"state " (l.state)} { (l.state) } }
            dt { "Partition" } dd { (l.partition) }
            dt { "Stack region" } dd { (l.region) }
            dt { "Regions" } dd { (regions_text(&l)) }
            dt { "Networks" } dd { (l.vpc_count) " VPCs, " (l.subnet_count) " subnets, " (l.route_table_count) " route tables" }
            dt { "Linked" } dd { (when(l.linked_at.as_deref())) }
            dt { "Last event" } dd { (when(Some(&l.updated_at))) }
            @if let Some(arn) = &l.caller_arn { dt { "Proven by" } dd { code #proven-by { (arn) } } }
            dt { "Roles" } dd { ul.plain { @for (k, v) in &roles { li { (k) ": " code { (v) } } } } }
            dt { "Role check" } dd #roles-check {
                @if checks.is_empty() {
                    span.muted { "not checked yet" }
                } @else if checks.iter().all(|c| c.assumable) {
                    span.state.linked { "roles verified" } " at " (when(l.roles_checked_at.as_deref()))
                } @else {
                    ul.plain { @for c in &checks { @if let Some(problem) = crate::live::advice(c) {
                        li.error role="alert" { (problem) " (" (when(Some(&c.checked_at))) ")" }
                    } } }
                }
            }
            dt { "Inventory" } dd #inventory-source {
                @match (&l.inventory_at, l.inventory_source) {
                    (Some(at), Some("refresh")) => { "as of " (when(Some(at))) " · refreshed" }
                    (Some(at), _) => { "as of " (when(Some(at))) " · reported by the stack" }
                    _ => { "none yet" }
                }
            }
            dt { "Refresh" } dd #refresh-state data-status=(refresh.as_ref().and_then(|r| r.status.clone()).unwrap_or_default()) {
                @if let Some(why) = &access_off {
                    span.muted { "Role checks and refreshes are off: " (why) }
                } @else {
                    // Kept up to date by the page's script as refreshes start and end (server-sent events).
                    span #refresh-status {
                        @if let Some(r) = &refresh {
                            @if r.running { "running since " (when(r.started_at.as_deref())) }
                            @else if let Some(status) = &r.status {
                                (status) " at " (when(r.finished_at.as_deref()))
                                @if let Some(p) = &r.problem { ": " span.error { (p) } }
                                @if let Some(summary) = &r.summary { " · " span #refresh-changes { (summary) } }
                            }
                            @if let Some(due) = &r.due_at { br; span.muted { "next scheduled " (when(Some(due))) } }
                        }
                    }
                    @if l.state == "linked" {
                        form.inline method="post" action={"/links/" (l.link_id) "/refresh"} {
                            input type="hidden" name="csrf" value=(auth::page_csrf(&app, &access).unwrap_or_default());
                            button #refresh type="submit" { "Refresh" }
                        }
                    }
                }
            }
        }
        @if !missing.is_empty() {
            p.warn #selection-missing role="alert" {
                "The saved network selection names what the account no longer has: " (missing.join(", "))
                ". Pick the network again."
            }
        }
        section #picker data-link-id=(l.link_id) {
            h2 { "Network" }
            p.muted #picker-loading { "Loading the account's networks…" }
        }
        details #route-tables-box {
            summary { "Route tables" }
            div #route-tables { p.muted { "Pick a VPC to see its route tables." } }
        }
        details #history-box {
            summary { "Event history" }
            div #history {}
        }
        @if !rejected.items.is_empty() {
            (rejected_table(&rejected.items))
        }
    };
    Ok(html_page(layout(
        &app,
        Some(&access),
        &format!("Account {}", l.account_id),
        body,
    )))
}

/// The Refresh button: refreshes the link now (waiting for it, at most --refresh-timeout), then shows
/// the link page again with the outcome.
async fn refresh_link(
    State(app): State<Arc<App>>,
    Viewer(access): Viewer,
    headers: HeaderMap,
    Path(link_id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf(&app, &access, &headers, Some(&f.csrf))?;
    let back = format!("/links/{link_id}");
    match crate::live::refresh(app.clone(), link_id, false).await {
        // Failures are on the link page (the refresh's state).
        Ok(_) | Err(crate::live::LiveError::Busy) => Ok(Redirect::to(&back).into_response()),
        Err(e) => Err(e.into()),
    }
}

// ---- live changes ----

async fn changes(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    // A stream has no login form to go to: 401 (the page's script falls back to polling).
    if let Err(why) = auth::access(&app, &headers).await {
        return ApiError::from(why).into_response();
    }
    let Ok(permit) = app.followers.clone().try_acquire_owned() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let version = app.store.version().await.unwrap_or_default();
    let state = (
        app.changes.subscribe(),
        app.closing.subscribe(),
        app.clone(),
        version,
        permit,
    );
    let stream = stream::unfold(
        state,
        |(mut rx, mut closing, app, mut version, permit)| async move {
            loop {
                let event = tokio::select! {
                    r = rx.recv() => match r {
                        Ok(link_id) => Some(Event::default().event("change").data(link_id)),
                        Err(RecvError::Lagged(_)) => Some(Event::default().event("change").data("")),
                        Err(RecvError::Closed) => return None,
                    },
                    // Another receiver sharing the database may have stored something.
                    () = tokio::time::sleep(CHECK_EVERY) => {
                        let now = app.store.version().await.unwrap_or(version);
                        (now != version).then(|| { version = now; Event::default().event("change").data("") })
                    }
                    _ = closing.changed() => return None,
                };
                if let Some(e) = event {
                    return Some((Ok::<_, Infallible>(e), (rx, closing, app, version, permit)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

// ---- assets ----

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
