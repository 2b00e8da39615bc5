//! A live link: the provider uses the roles a customer's stack created. With the provider's own AWS
//! credentials (the SDK's default chain: environment, profile, ECS task role, instance role; the
//! standard `AWS_ENDPOINT_URL*` overrides apply), the registry
//! - **checks the roles**: `sts:AssumeRole` into each role of the link's `data.roles`, with the link's
//!   external id, a session named after the link and the shortest session (900 s); each role's outcome
//!   is kept (`role_checks`). After a link's first event, on demand, and as part of every refresh.
//! - **refreshes the inventory**: with the RemoteRole's session, lists the VPCs, subnets and route tables
//!   of each of the link's regions (the function's own listing, `link-ec2`), records the changes in the
//!   link's history and makes it the link's inventory unless a later event's holds (the store decides).
//!
//! A refresh holds its link's lease (`store::live`), so one receiver of several sharing a database does
//! it; at most `--refresh-concurrency` run at once in a receiver; each is cut off after
//! `--refresh-timeout`; an unlinked link is never assumed again. Without credentials the registry runs
//! as before, and says that role checks and refreshes are off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use link_contract::inventory::RegionInventory;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::store::live::{RoleCheck, NEVER};
use crate::store::{now_millis, rfc3339, LinkView, StoreError};
use crate::App;

/// The role a refresh lists the account's networks with (the template's `data.roles` key).
pub(crate) const LISTING_ROLE: &str = "RemoteRole";
/// The shortest session STS grants: a check or a refresh needs minutes at most.
const SESSION_SECS: i32 = 900;
/// How long finding the provider's credentials may take at start before role checks are reported off.
const CREDENTIALS_WITHIN: Duration = Duration::from_secs(20);

/// `--refresh-every`, `--refresh-concurrency`, `--refresh-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSettings {
    /// None: no scheduled refreshes (refreshes on demand still run).
    pub every: Option<Duration>,
    pub concurrency: usize,
    pub timeout: Duration,
    /// A refreshed inventory's JSON at most (a customer's account is input like an event is).
    pub max_bytes: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(6 * 3600)),
            concurrency: 4,
            timeout: Duration::from_secs(120),
            max_bytes: link_contract::parts::MAX_SET_BYTES,
        }
    }
}

/// Whether the registry can call AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Looking for the provider's credentials (at start).
    Checking,
    On,
    /// Off, and why.
    Off(String),
}

/// The provider's AWS access, shared by every request.
pub(crate) struct Live {
    sdk: aws_config::SdkConfig,
    access: watch::Receiver<Access>,
    pub(crate) settings: LiveSettings,
    slots: Arc<Semaphore>,
    /// Names this receiver's leases.
    owner: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    #[error("role checks and refreshes are off: {0}")]
    Off(String),
    #[error("no link with this id")]
    NoLink,
    #[error("the link is unlinked: its roles are never assumed again")]
    Unlinked,
    #[error("a refresh of this link is already running")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The changes of one kind of resource, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Delta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Delta {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What a refresh changed against the inventory it replaced. A subnet's free address count changes
/// all the time and is not a change here (the inventory itself has the new count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Changes {
    pub vpcs: Delta,
    pub subnets: Delta,
    pub route_tables: Delta,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.vpcs.is_empty() && self.subnets.is_empty() && self.route_tables.is_empty()
    }

    /// One line for people: "added subnet-1; removed subnet-2" or "no changes".
    pub(crate) fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes".into();
        }
        let mut parts = Vec::new();
        for (kind, d) in [
            ("VPC", &self.vpcs),
            ("subnet", &self.subnets),
            ("route table", &self.route_tables),
        ] {
            for (verb, ids) in [
                ("added", &d.added),
                ("removed", &d.removed),
                ("changed", &d.changed),
            ] {
                if !ids.is_empty() {
                    parts.push(format!("{verb} {kind} {}", ids.join(", ")));
                }
            }
        }
        parts.join("; ")
    }
}

/// The changes from `before` to `after`.
pub(crate) fn diff(before: &[RegionInventory], after: &[RegionInventory]) -> Changes {
    type Keyed = BTreeMap<String, serde_json::Value>;
    fn keyed(inv: &[RegionInventory]) -> (Keyed, Keyed, Keyed) {
        let (mut vpcs, mut subnets, mut tables) = (Keyed::new(), Keyed::new(), Keyed::new());
        for r in inv {
            for v in &r.vpcs {
                let mut bare = v.clone();
                bare.subnets.clear();
                bare.route_tables.clear();
                vpcs.insert(
                    v.vpc_id.clone(),
                    serde_json::to_value(&bare).unwrap_or_default(),
                );
                for s in &v.subnets {
                    let mut s = s.clone();
                    s.available_ip_address_count = None;
                    subnets.insert(
                        s.subnet_id.clone(),
                        serde_json::to_value(&s).unwrap_or_default(),
                    );
                }
                for t in &v.route_tables {
                    tables.insert(
                        t.route_table_id.clone(),
                        serde_json::to_value(t).unwrap_or_default(),
                    );
                }
            }
        }
        (vpcs, subnets, tables)
    }
    fn delta(a: &Keyed, b: &Keyed) -> Delta {
        Delta {
            added: b.keys().filter(|k| !a.contains_key(*k)).cloned().collect(),
            removed: a.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
            changed: b
                .iter()
                .filter(|(k, v)| a.get(*k).is_some_and(|old| old != *v))
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }
    let (a, b) = (keyed(before), keyed(after));
    Changes {
        vpcs: delta(&a.0, &b.0),
        subnets: delta(&a.1, &b.1),
        route_tables: delta(&a.2, &b.2),
    }
}

/// The saved selection's VPC and subnets that `inventory` no longer has.
pub(crate) fn missing_from(
    selection: &crate::store::Selection,
    inventory: &[RegionInventory],
) -> Vec<String> {
    let vpc = inventory
        .iter()
        .filter(|r| r.region == selection.region)
        .flat_map(|r| &r.vpcs)
        .find(|v| v.vpc_id == selection.vpc_id);
    match vpc {
        None => std::iter::once(selection.vpc_id.clone())
            .chain(selection.subnet_ids.iter().cloned())
            .collect(),
        Some(v) => selection
            .subnet_ids
            .iter()
            .filter(|id| !v.subnets.iter().any(|s| &s.subnet_id == *id))
            .cloned()
            .collect(),
    }
}

/// A refusal in words a customer can act on.
pub(crate) fn advice(check: &RoleCheck) -> Option<String> {
    if check.assumable {
        return None;
    }
    let role = &check.role;
    let code = check.error_code.as_deref().unwrap_or("Unreachable");
    let message = check.message.as_deref().unwrap_or_default();
    Some(match code {
        "AccessDenied" => format!(
            "AccessDenied assuming {role}: the stack's ExternalId must be the one this console issued, \
             and the role must trust this provider's account"
        ),
        "InvalidClientTokenId" | "ExpiredToken" | "SignatureDoesNotMatch" => format!(
            "{code} assuming {role}: the provider's own AWS credentials were refused (the provider's \
             operators must fix this, not the customer)"
        ),
        "RegionDisabledException" => format!(
            "{code} assuming {role}: STS is not activated in the stack's region for this account \
             (IAM → Account settings)"
        ),
        "Unreachable" => format!("{role} could not be checked: AWS STS did not answer ({message})"),
        "NoExternalId" => format!(
            "{role} was not assumed: the stack sent no ExternalId; update it with the ExternalId this \
             console issued"
        ),
        _ => format!("{code} assuming {role}: {message}"),
    })
}

/// A random fraction in [0.9, 1.1): receivers sharing a database spread their refreshes out.
fn jittered(every: Duration) -> Duration {
    let b = crate::auth::random_bytes(2);
    let r = f64::from(u16::from_le_bytes([b[0], b[1]])) / 65536.0;
    every.mul_f64(0.9 + 0.2 * r)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A role session name naming the link (letters, digits and `=,.@-`, at most 64).
fn session_name(link_id: &str) -> String {
    link_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(*c))
        .take(64)
        .collect()
}

/// What a refresh did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// `ok` (stored as the link's inventory), `kept` (a later event's inventory holds; recorded in the
    /// history only) or `failed`.
    pub status: &'static str,
    pub problem: Option<String>,
    pub changes: Option<Changes>,
    pub summary: Option<String>,
    pub role_checks: Vec<RoleCheck>,
    pub started_at: String,
}

impl Live {
    /// Loads the SDK's configuration (nothing is called yet) and looks for the provider's credentials
    /// in the background, so a registry without any starts as fast as before.
    pub(crate) async fn start(settings: LiveSettings) -> Arc<Self> {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        // The region only matters for a client with none of its own: each call names the link's.
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .region(aws_config::Region::new("us-east-1"))
            // Standard retries: EC2's throttling is retried with backoff.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
            .load()
            .await;
        let (tell, access) = watch::channel(Access::Checking);
        let provider = sdk.credentials_provider();
        tokio::spawn(async move {
            use aws_credential_types::provider::ProvideCredentials;
            let found = match provider {
                None => Access::Off("no AWS credentials provider is configured".into()),
                Some(p) => {
                    match tokio::time::timeout(CREDENTIALS_WITHIN, p.provide_credentials()).await {
                        Ok(Ok(_)) => Access::On,
                        Ok(Err(e)) => Access::Off(format!(
                            "the provider's AWS credentials could not be loaded ({})",
                            DisplayErrorContext(&e)
                        )),
                        Err(_) => Access::Off("no AWS credentials were found in time".into()),
                    }
                }
            };
            match &found {
                Access::Off(why) => {
                    tracing::warn!(reason = %why, "role checks and refreshes are off")
                }
                _ => tracing::info!("AWS credentials found: role checks and refreshes are on"),
            }
            let _ = tell.send(found);
        });
        let owner = crate::auth::random_hex(8);
        Arc::new(Self {
            sdk,
            access,
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            owner,
        })
    }

    pub(crate) fn access(&self) -> Access {
        self.access.borrow().clone()
    }

    /// Waits for the credentials check of the start, then: on, or why not.
    async fn ready(&self) -> Result<(), LiveError> {
        let mut rx = self.access.clone();
        let state = rx
            .wait_for(|a| *a != Access::Checking)
            .await
            .map(|a| a.clone())
            .unwrap_or(Access::Off("the credentials check ended".into()));
        match state {
            Access::Off(why) => Err(LiveError::Off(why)),
            _ => Ok(()),
        }
    }

    /// Assumes one role; the check and, when assumable, the session's credentials and ARN.
    async fn assume(
        &self,
        link: &LinkView,
        role: &str,
        arn: &str,
    ) -> (RoleCheck, Option<(Credentials, Option<String>)>) {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&self.sdk)
                .region(aws_sdk_sts::config::Region::new(link.region.clone()))
                .build(),
        );
        let now = now_millis();
        // Never without the external id: the provider's task role may not assume without one, and a
        // role that trusts the provider without one is the confused deputy the id prevents.
        let Some(external_id) = &link.external_id else {
            let check = RoleCheck {
                role: role.to_string(),
                role_arn: arn.to_string(),
                assumable: false,
                error_code: Some("NoExternalId".into()),
                message: Some("the link's stack sent no ExternalId".into()),
                checked_at: rfc3339(now),
                checked_at_ms: now,
            };
            return (check, None);
        };
        let result = sts
            .assume_role()
            .role_arn(arn)
            .role_session_name(session_name(&link.link_id))
            .duration_seconds(SESSION_SECS)
            .external_id(external_id)
            .send()
            .await;
        let check = |ok: bool, code: Option<String>, message: Option<String>| RoleCheck {
            role: role.to_string(),
            role_arn: arn.to_string(),
            assumable: ok,
            error_code: code,
            message,
            checked_at: rfc3339(now),
            checked_at_ms: now,
        };
        match result {
            Ok(out) => {
                let session = out.assumed_role_user().map(|u| u.arn().to_string());
                let creds = out.credentials().map(|c| {
                    Credentials::new(
                        c.access_key_id(),
                        c.secret_access_key(),
                        Some(c.session_token().to_string()),
                        SystemTime::try_from(*c.expiration()).ok(),
                        "link-registry-assume-role",
                    )
                });
                tracing::info!(link_id = %link.link_id, role, "role assumed");
                (check(true, None, None), creds.map(|c| (c, session)))
            }
            Err(e) => {
                let (code, message) = match e.code() {
                    Some(code) => (
                        code.to_string(),
                        e.message().unwrap_or_default().to_string(),
                    ),
                    None => (
                        "Unreachable".to_string(),
                        DisplayErrorContext(&e).to_string(),
                    ),
                };
                tracing::warn!(link_id = %link.link_id, role, code = %code, "role could not be assumed");
                (check(false, Some(code), Some(message)), None)
            }
        }
    }

    /// Assumes every role of the link at once; each one's check, and the listing role's session.
    async fn check_all(
        &self,
        link: &LinkView,
    ) -> (Vec<RoleCheck>, Option<(Credentials, Option<String>)>) {
        let roles: Vec<(String, String)> = link
            .roles
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let results =
            futures::future::join_all(roles.iter().map(|(k, v)| self.assume(link, k, v))).await;
        let mut checks = Vec::new();
        let mut listing = None;
        for (check, session) in results {
            if check.role == LISTING_ROLE {
                listing = session;
            }
            checks.push(check);
        }
        (checks, listing)
    }
}

/// The link, if its roles may be assumed: it exists and is linked.
async fn linked(app: &App, link_id: &str) -> Result<LinkView, LiveError> {
    let link = app
        .store
        .link_view(link_id)
        .await?
        .ok_or(LiveError::NoLink)?;
    if link.state != "linked" {
        return Err(LiveError::Unlinked);
    }
    Ok(link)
}

/// Checks every role of a linked link now and records the outcome.
pub(crate) async fn check_roles(app: &App, link_id: &str) -> Result<Vec<RoleCheck>, LiveError> {
    app.live.ready().await?;
    let link = linked(app, link_id).await?;
    let (checks, _) = app.live.check_all(&link).await;
    app.store.record_role_checks(link_id, &checks).await?;
    app.notify_stored(link_id.to_string());
    Ok(checks)
}

/// After a stored event: a link whose roles were never checked gets its first check.
pub(crate) fn after_event(app: Arc<App>, link_id: String) {
    tokio::spawn(async move {
        if app.live.ready().await.is_err() {
            return;
        }
        match app.store.role_checks(&link_id).await {
            Ok(checks) if checks.is_empty() => {}
            _ => return,
        }
        match check_roles(&app, &link_id).await {
            Ok(_) | Err(LiveError::Unlinked | LiveError::NoLink) => {}
            Err(e) => tracing::warn!(link_id, error = %e, "first role check failed"),
        }
    });
}

/// When the link's next scheduled refresh is due, counted from now.
fn next_due(settings: &LiveSettings) -> i64 {
    match settings.every {
        Some(every) => now_millis().saturating_add(ms(jittered(every))),
        None => NEVER,
    }
}

/// Refreshes a link: takes its lease (or answers `Busy`), checks its roles, lists its networks with the
/// RemoteRole's session within the time limit, stores the result, and releases the lease with the
/// outcome and the next due time. `scheduled`: only if it is still due.
pub(crate) async fn refresh(
    app: Arc<App>,
    link_id: String,
    scheduled: bool,
) -> Result<Report, LiveError> {
    let live = &app.live;
    live.ready().await?;
    linked(&app, &link_id).await?;
    let _slot = live.slots.clone().acquire_owned().await;
    let started = now_millis();
    let until = started.saturating_add(ms(live.settings.timeout) + 5_000);
    let due_if_new = next_due(&live.settings);
    if !app
        .store
        .claim_refresh(&link_id, &live.owner, started, until, scheduled, due_if_new)
        .await?
    {
        return Err(LiveError::Busy);
    }
    app.notify_stored(link_id.clone());
    // Read again under the lease: an unlink that arrived meanwhile stops it.
    let outcome = match linked(&app, &link_id).await {
        Ok(link) => tokio::time::timeout(live.settings.timeout, run(&app, &link, started))
            .await
            .unwrap_or_else(|_| {
                Err((
                    Vec::new(),
                    format!(
                        "cut off after {} s (--refresh-timeout)",
                        live.settings.timeout.as_secs()
                    ),
                ))
            }),
        Err(e) => Err((Vec::new(), e.to_string())),
    };
    let (status, problem, changes, checks) = match outcome {
        Ok((stored, checks)) => (
            if stored.applied { "ok" } else { "kept" },
            None,
            Some(stored.changes),
            checks,
        ),
        Err((checks, problem)) => ("failed", Some(problem), None, checks),
    };
    app.store
        .finish_refresh(
            &link_id,
            &live.owner,
            status,
            problem.as_deref(),
            changes.as_ref(),
            next_due(&live.settings),
        )
        .await?;
    match &problem {
        Some(p) => tracing::warn!(link_id, problem = %p, "refresh failed"),
        None => tracing::info!(
            link_id,
            status,
            changes = %changes.as_ref().map(Changes::summary).unwrap_or_default(),
            "refreshed"
        ),
    }
    app.notify_stored(link_id.clone());
    Ok(Report {
        status,
        summary: changes.as_ref().map(Changes::summary),
        problem,
        changes,
        role_checks: checks,
        started_at: rfc3339(started),
    })
}

type Run = Result<(crate::store::live::Stored, Vec<RoleCheck>), (Vec<RoleCheck>, String)>;

/// The refresh itself: role checks, then the listing with the RemoteRole's session.
async fn run(app: &App, link: &LinkView, started: i64) -> Run {
    let live = &app.live;
    let (checks, listing) = live.check_all(link).await;
    if let Err(e) = app.store.record_role_checks(&link.link_id, &checks).await {
        return Err((checks, e.to_string()));
    }
    let Some((credentials, session)) = listing else {
        let why = checks
            .iter()
            .find(|c| c.role == LISTING_ROLE)
            .and_then(advice)
            .unwrap_or_else(|| format!("the link names no {LISTING_ROLE}"));
        return Err((checks, why));
    };
    let conf = aws_sdk_ec2::config::Builder::from(&live.sdk)
        .credentials_provider(credentials)
        .build();
    let clients = link_ec2::Ec2Clients::for_caller(
        conf,
        link_ec2::Caller {
            role: "the stack's RemoteRole (its policy)",
            credentials: "the RemoteRole session's credentials",
        },
    );
    let regions: Vec<String> = link
        .regions
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_else(|| vec![link.region.clone()]);
    let inventory = match link_ec2::collect(&clients, &regions, &()).await {
        Ok(i) => i.0,
        Err(e) => return Err((checks, e.to_string())),
    };
    // The account is the customer's: what it lists is bounded like an event the stack sends.
    let json = match serde_json::to_string(&inventory) {
        Ok(j) => j,
        Err(e) => {
            return Err((
                checks,
                format!("the account's inventory could not be serialised: {e}"),
            ))
        }
    };
    let bytes = json.len();
    if bytes > live.settings.max_bytes {
        return Err((
            checks,
            format!(
                "the account's inventory is {bytes} bytes of JSON, over --refresh-max-bytes ({}): not stored",
                live.settings.max_bytes
            ),
        ));
    }
    match app
        .store
        .store_refresh(&link.link_id, started, session.as_deref(), &inventory, json)
        .await
    {
        Ok(stored) => Ok((stored, checks)),
        Err(e) => Err((checks, e.to_string())),
    }
}

/// The schedule: every tick, links whose refresh is due (and not leased) are refreshed, at most
/// `--refresh-concurrency` at once; new linked links are first due one period after they are seen.
pub(crate) fn schedule(app: Arc<App>) {
    let Some(every) = app.live.settings.every else {
        return;
    };
    let tick = (every / 4).clamp(Duration::from_millis(500), Duration::from_secs(60));
    tokio::spawn(async move {
        if app.live.ready().await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(tick).await;
            let now = now_millis();
            if let Err(e) = app
                .store
                .schedule_new_links(next_due(&app.live.settings))
                .await
            {
                tracing::warn!(error = %e, "refresh schedule: could not read the links");
                continue;
            }
            let free = app.live.slots.available_permits() as i64;
            if free == 0 {
                continue;
            }
            let due = match app.store.due_refreshes(now, free).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "refresh schedule: could not read the due links");
                    continue;
                }
            };
            for link_id in due {
                let app = app.clone();
                tokio::spawn(async move {
                    match refresh(app, link_id.clone(), true).await {
                        Ok(_) | Err(LiveError::Busy | LiveError::Unlinked) => {}
                        Err(e) => tracing::warn!(link_id, error = %e, "scheduled refresh failed"),
                    }
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_contract::inventory::{Subnet, Vpc};

    fn inv(subnets: &[(&str, Option<i32>)]) -> Vec<RegionInventory> {
        vec![RegionInventory {
            region: "us-west-2".into(),
            vpcs: vec![Vpc {
                vpc_id: "vpc-1".into(),
                subnets: subnets
                    .iter()
                    .map(|(id, free)| Subnet {
                        subnet_id: id.to_string(),
                        cidr_block: Some("10.0.0.0/24".into()),
                        available_ip_address_count: *free,
                        ..Subnet::default()
                    })
                    .collect(),
                ..Vpc::default()
            }],
        }]
    }

    #[test]
    fn diff_names_added_removed_and_changed_but_not_free_addresses() {
        let before = inv(&[("subnet-a", Some(10)), ("subnet-b", Some(10))]);
        let mut after = inv(&[("subnet-b", Some(3)), ("subnet-c", Some(10))]);
        assert_eq!(
            diff(&before, &after),
            Changes {
                subnets: Delta {
                    added: vec!["subnet-c".into()],
                    removed: vec!["subnet-a".into()],
                    changed: vec![],
                },
                ..Changes::default()
            }
        );
        after[0].vpcs[0].subnets[0].map_public_ip_on_launch = true;
        let d = diff(&before, &after);
        assert_eq!(d.subnets.changed, ["subnet-b"]);
        assert_eq!(
            d.summary(),
            "added subnet subnet-c; removed subnet subnet-a; changed subnet subnet-b"
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn a_selection_is_flagged_for_what_is_gone() {
        let s = crate::store::Selection {
            region: "us-west-2".into(),
            vpc_id: "vpc-1".into(),
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
        };
        assert_eq!(missing_from(&s, &inv(&[("subnet-b", None)])), ["subnet-a"]);
        assert_eq!(missing_from(&s, &[]), ["vpc-1", "subnet-a", "subnet-b"]);
    }

    #[test]
    fn session_names_are_what_sts_accepts() {
        assert_eq!(session_name("link-0123abc"), "link-0123abc");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }
}
