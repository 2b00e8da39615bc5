//! One invocation: parse, list the networks, tell the provider, answer CloudFormation. This is the only
//! module that knows the order of things and the only one that owns the deadline: the answer goes out at
//! least [`ANSWER_MARGIN`] before the runtime's deadline whatever the steps before it are doing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tracing::Instrument;

use crate::app::App;
use crate::cfn::{self, Answer, CfnRequest, IssuedId, Origin, ReplyTo, RequestError, RequestType};
use crate::deadline::{Deadline, InFlight};
use link_contract::event::{LinkEvent, LinkProperties};
use link_contract::inventory::Inventory;

use crate::inventory;
use crate::outbound::Redacted;
use crate::peering;
use crate::properties;
use crate::report;

/// The answer to CloudFormation starts at least this long before the runtime's deadline.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(2);
/// The last moment a retried answer may still be in flight.
const PUT_CUTOFF: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Unanswerable(String),
    #[error("CloudFormation could not be answered ({status}): {source}")]
    AnswerNotDelivered {
        status: &'static str,
        source: cfn::AnswerError,
    },
}

pub use crate::http::client as http_client;

/// The Lambda entry point: returns the response body CloudFormation was sent.
pub async fn handle(app: Arc<App>, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    // The runtime already opens a span per invocation carrying its request id.
    tracing::debug!(deadline_ms = event.context.deadline, "invocation");
    handle_payload(
        app,
        event.payload,
        &event.context.invoked_function_arn,
        Deadline::from_epoch_millis(event.context.deadline),
    )
    .await
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match e {
            HandlerError::Unanswerable(_) => "UnanswerableEvent",
            HandlerError::AnswerNotDelivered { .. } => "AnswerNotDelivered",
        };
        Self {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// One request, invoked as `function_arn` (the runtime's invoked function ARN): only a stack of that
/// ARN's partition, region and account is served.
pub async fn handle_payload(
    app: Arc<App>,
    payload: Value,
    function_arn: &str,
    deadline: Deadline,
) -> Result<Value, HandlerError> {
    let origin = match Origin::from_function_arn(function_arn) {
        Ok(o) => o,
        // Local emulators (cargo lambda watch) pass a placeholder, not an ARN: with the local-runs switch
        // only, the request's own stack stands in. Lambda always passes the real ARN.
        Err(_) if app.outbound.allows_loopback() => match local_origin(&payload) {
            Some(o) => {
                tracing::warn!(function_arn, "not a Lambda function ARN (a local emulator?); local runs use the StackId's account and region");
                o
            }
            None => {
                let message = format!("the runtime's invoked function ARN '{function_arn}' is not a Lambda function ARN and the request has no usable StackId");
                tracing::error!(error = %message, "event cannot be answered");
                return Err(HandlerError::Unanswerable(message));
            }
        },
        Err(message) => {
            tracing::error!(error = %message, "event cannot be answered");
            return Err(HandlerError::Unanswerable(message));
        }
    };
    let req = match cfn::parse(&payload, &app.outbound, &origin) {
        Ok(req) => req,
        Err(RequestError::Unanswerable(message)) => {
            tracing::error!(error = %message, "event cannot be answered");
            return Err(HandlerError::Unanswerable(message));
        }
        Err(RequestError::Invalid { reply, message, .. }) => {
            tracing::error!(error = %message, "invalid request");
            let id = existing_id(&reply);
            return answer(&app, &reply, Answer::failed(id, message), deadline).await;
        }
    };
    let span = tracing::info_span!(
        "custom_resource",
        request_type = req.request_type.as_str(),
        cfn_request_id = %req.reply.request_id,
        logical_resource_id = %req.reply.logical_resource_id,
    );
    async move {
        tracing::info!(
            stack_id = %req.reply.stack_id,
            response_url = %Redacted(&req.reply.response_url),
            time_left_ms = deadline.remaining().as_millis() as u64,
            "request received"
        );
        let work_until = work_deadline(deadline);
        let progress = Progress::default();
        let mut task = tokio::spawn(work(app.clone(), req.clone(), progress.clone(), work_until).in_current_span());
        let (result, unlink) = tokio::select! {
            joined = &mut task => match joined {
                Ok(done) => (done.answer, done.then_tell),
                Err(e) => (fallback(&req, &progress, &format!("the function failed unexpectedly ({e}); see its log for details")), None),
            },
            _ = tokio::time::sleep_until(work_until.instant()) => {
                task.abort();
                let pending = progress.in_flight.pending();
                let waiting = if pending.is_empty() { "the next step".to_string() } else { pending.join(", ") };
                (fallback(&req, &progress, &format!("the function ran out of time waiting for {waiting}; the answer is sent before the Lambda timeout")), None)
            }
        };
        let sent = answer(&app, &req.reply, result, deadline).await;
        // An unlink is told only once CloudFormation's bucket accepted the answer: only a genuine request
        // carries a pre-signed URL it accepts, so an invocation forged by someone allowed to invoke the
        // function cannot make the provider unlink the account.
        if let (Ok(_), Some(event)) = (&sent, unlink) {
            let until = deadline.earlier_by(PUT_CUTOFF);
            let notifier = app.notifier.clone();
            // Its own task, so that a panic in it cannot take the invocation down with it.
            let told = tokio::spawn(async move { notifier.notify(&event, until).await }.in_current_span()).await;
            match told {
                Ok(Ok(())) => tracing::info!("provider told of the unlink"),
                Ok(Err(e)) => tracing::warn!(error = %e, "provider not told of the unlink; the stack is not held back"),
                Err(e) => tracing::error!(error = %e, "telling the provider of the unlink failed unexpectedly"),
            }
        }
        sent
    }
    .instrument(span)
    .await
}

/// The origin a local run assumes: the partition, region and account of the request's StackId.
fn local_origin(payload: &Value) -> Option<Origin> {
    let stack = cfn::parse_stack_arn(payload.get("StackId")?.as_str()?).ok()?;
    Some(Origin {
        partition: link_contract::partition::Partition::named(&stack.partition)?,
        region: stack.region,
        account_id: stack.account_id,
    })
}

/// When the work must stop so the answer starts [`ANSWER_MARGIN`] before the deadline, with a little
/// extra for building the answer.
fn work_deadline(deadline: Deadline) -> Deadline {
    let reserve =
        (deadline.remaining() / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    deadline.earlier_by(ANSWER_MARGIN + reserve)
}

/// What the work has got to, readable by the handler when the work is cut off.
#[derive(Clone, Default)]
struct Progress {
    in_flight: InFlight,
    /// Set once the provider may have been told: a failed Create must then be undone on rollback.
    provider_contacted: Arc<AtomicBool>,
    /// Set once a peering resource changed the account: a failed Create answers with this id so that its
    /// rollback Delete undoes the change.
    changed: peering::Changed,
}

impl Progress {
    /// The PhysicalResourceId of a Create or Update that fails now: an Update keeps its id; a Create gets
    /// a placeholder that says whether the provider may have heard of it.
    fn failure_id(&self, req: &CfnRequest) -> String {
        if let (RequestType::Create, Some(id)) = (req.request_type, self.changed.get()) {
            return id.clone();
        }
        match req.request_type {
            RequestType::Create if self.provider_contacted.load(Ordering::SeqCst) => {
                cfn::unconfirmed_create_id(&req.reply.request_id)
            }
            RequestType::Create => cfn::failed_create_id(&req.reply.request_id),
            _ => existing_id(&req.reply),
        }
    }
}

/// The answer when the work did not finish (panic or timeout): Create and Update fail, Delete succeeds.
fn fallback(req: &CfnRequest, progress: &Progress, problem: &str) -> Answer {
    tracing::error!(problem, "work did not finish");
    match req.request_type {
        RequestType::Create | RequestType::Update => {
            Answer::failed(progress.failure_id(req), problem)
        }
        RequestType::Delete => {
            let what = if req.resource_type == peering::RESOURCE_TYPE {
                "route removal"
            } else {
                "unlink"
            };
            Answer::success(
                existing_id(&req.reply),
                format!("{what} not confirmed: {problem}"),
            )
        }
    }
}

/// The request's own PhysicalResourceId (Update, Delete), or the failed-Create placeholder.
fn existing_id(reply: &ReplyTo) -> String {
    reply
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| cfn::failed_create_id(&reply.request_id))
}

async fn answer(
    app: &App,
    reply: &ReplyTo,
    answer: Answer,
    deadline: Deadline,
) -> Result<Value, HandlerError> {
    let status = if answer.is_success() {
        "SUCCESS"
    } else {
        "FAILED"
    };
    tracing::info!(status, reason = %answer.reason, physical_resource_id = %answer.physical_resource_id, time_left_ms = deadline.remaining().as_millis() as u64, "answering CloudFormation");
    let body = cfn::render(reply, &answer);
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match cfn::put_answer(
        app.http.get().await,
        &reply.response_url,
        body,
        deadline.earlier_by(PUT_CUTOFF),
    )
    .await
    {
        Ok(()) => Ok(sent),
        Err(source) => {
            // An error makes Lambda retry an asynchronous invocation: the same request gets another chance.
            tracing::error!(error = %source, "CloudFormation could not be answered");
            Err(HandlerError::AnswerNotDelivered { status, source })
        }
    }
}

/// What the work decided: the answer, and an unlink event to send once the answer is accepted.
struct Done {
    answer: Answer,
    then_tell: Option<LinkEvent>,
}

impl From<Answer> for Done {
    fn from(answer: Answer) -> Self {
        Self {
            answer,
            then_tell: None,
        }
    }
}

async fn work(app: Arc<App>, req: CfnRequest, progress: Progress, until: Deadline) -> Done {
    // Two resource types, one binary: each has its own function and execution role in the template.
    if req.resource_type == peering::RESOURCE_TYPE {
        return peering::run(
            &app.ec2,
            &app.region,
            &req,
            &progress.in_flight,
            &progress.changed,
            until,
        )
        .await
        .into();
    }
    match req.request_type {
        RequestType::Create | RequestType::Update => {
            link(&app, &req, &progress, until).await.into()
        }
        RequestType::Delete => unlink(&app, &req, &progress.in_flight).await,
    }
}

async fn link(app: &App, req: &CfnRequest, progress: &Progress, until: Deadline) -> Answer {
    let in_flight = &progress.in_flight;
    let fail = |reason: String| Answer::failed(progress.failure_id(req), reason);
    if let Some(e) = &app.config_error {
        return fail(format!("the function is misconfigured: {e}"));
    }
    let props = match properties::parse(
        &req.properties,
        &app.region,
        &req.stack.partition,
        &req.stack.account_id,
    )
    .and_then(|p| {
        properties::require_external_id(&p)?;
        Ok(p)
    }) {
        Ok(p) => p,
        Err(e) => return fail(format!("invalid property {e}")),
    };
    let inventory = match inventory::collect(&app.ec2, &props.regions, in_flight).await {
        Ok(i) => i,
        Err(e) => return fail(e.to_string()),
    };
    if let Some(vpc_id) = &props.vpc_id {
        if inventory.find_vpc(vpc_id).is_none() {
            return fail(format!(
                "VpcId: {vpc_id} was not found in {}",
                props.regions.join(", ")
            ));
        }
    }
    let link_id = cfn::link_id(&req.reply.stack_id, &req.reply.logical_resource_id);
    let previous = (req.request_type == RequestType::Update).then(|| {
        req.old_properties.as_ref().and_then(|old| {
            properties::parse(
                old,
                &app.region,
                &req.stack.partition,
                &req.stack.account_id,
            )
            .ok()
        })
    });
    // The answer is prepared first so the inventory can move into the event instead of being copied.
    let mut answer = Answer::success(
        link_id.clone(),
        format!(
            "linked: {} VPCs, {} subnets, {} route tables in {}",
            inventory.vpc_count(),
            inventory.subnet_count(),
            inventory.route_table_count(),
            props.regions.join(", ")
        ),
    );
    answer.optional_data = vec![
        ("VpcIds".into(), inventory.vpc_ids().join(",")),
        ("SubnetIds".into(), inventory.subnet_ids().join(",")),
    ];
    let event_id = report::event_id(&req.reply.stack_id, &req.reply.request_id);
    answer.data = attributes(&link_id, &props, &inventory, &event_id);
    let event = report::link_event(req, &link_id, &props, previous, Some(inventory));
    let _pending = in_flight.start(app.notifier.describe());
    progress.provider_contacted.store(true, Ordering::SeqCst);
    if let Err(e) = app.notifier.notify(&event, until).await {
        return fail(e.to_string());
    }
    answer
}

/// `!GetAtt` attributes: small and always present.
fn attributes(
    link_id: &str,
    props: &LinkProperties,
    inventory: &Inventory,
    event_id: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("LinkId".into(), link_id.to_string()),
        ("EventId".into(), event_id.to_string()),
        ("Regions".into(), props.regions.join(",")),
        ("VpcCount".into(), inventory.vpc_count().to_string()),
        ("SubnetCount".into(), inventory.subnet_count().to_string()),
        (
            "RouteTableCount".into(),
            inventory.route_table_count().to_string(),
        ),
    ])
}

/// Delete never fails for reasons outside the request: a stack must always be deletable.
/// Lists the networks one last time and prepares the `account.unlinked` event, sent after the answer.
async fn unlink(app: &App, req: &CfnRequest, in_flight: &InFlight) -> Done {
    let physical = existing_id(&req.reply);
    let (stack_id, logical_id) = (&req.reply.stack_id, &req.reply.logical_resource_id);
    // The id the provider knows the link by.
    let link_id = match cfn::classify_id(&physical, stack_id, logical_id) {
        IssuedId::Link => physical.clone(),
        IssuedId::UnconfirmedCreate => cfn::link_id(stack_id, logical_id),
        IssuedId::Nothing => {
            tracing::info!(physical_resource_id = %physical, "not a link this resource created: nothing to unlink");
            return Answer::success(
                physical,
                "nothing to unlink: this resource never created a link",
            )
            .into();
        }
    };
    let props = properties::parse(
        &req.properties,
        &app.region,
        &req.stack.partition,
        &req.stack.account_id,
    )
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "invalid properties on Delete; unlinking with defaults");
        properties::defaults(&app.region)
    });
    let mut notes = Vec::new();
    let inventory = match &app.config_error {
        Some(_) => None,
        None => inventory::collect(&app.ec2, &props.regions, in_flight)
            .await
            .inspect_err(|e| {
                tracing::warn!(error = %e, "inventory failed on Delete; unlinking anyway");
                notes.push(e.to_string());
            })
            .ok(),
    };
    let then_tell = match &app.config_error {
        Some(e) => {
            tracing::warn!(error = %e, "misconfigured; the provider cannot be told of the unlink");
            notes.push(format!(
                "the provider was not told: the function is misconfigured: {e}"
            ));
            None
        }
        None => Some(report::link_event(req, &link_id, &props, None, inventory)),
    };
    let reason = match (notes.is_empty(), then_tell.is_some()) {
        (true, true) => "unlinked; the provider is told once this answer is accepted".to_string(),
        (true, false) => "unlinked".to_string(),
        (false, _) => format!("unlinked with warnings: {}", notes.join("; ")),
    };
    Done {
        answer: Answer::success(physical, reason),
        then_tell,
    }
}
