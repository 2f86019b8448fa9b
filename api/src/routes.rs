//! REST handlers under `/api/v1`. Each command handler checks the caller's role, turns the
//! request into a core command, sends it through the authority's writer and answers with the
//! committed result or a problem+json.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ochered_core::command::{Command, KindergartenForm, SchoolForm};
use ochered_core::domain::{ApplicationNumber, BookingNumber, Channel};
use ochered_core::state::{Application, State};
use ochered_core::Event;
use ochered_writer::{Outcome, Reply, RequestMeta, Writer};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::json::Body;
use crate::wire::{self, person_key};
use crate::AppState;

#[path = "routes_rounds.rs"]
mod routes_rounds;
// The OpenAPI descriptions of the rounds handlers, for `crate::openapi`.
pub(crate) use routes_rounds::{
    __path_accept_offer, __path_decline_offer, __path_expire_offers, __path_expire_slot_holds,
    __path_list_rounds, __path_list_seats, __path_publish_seats, __path_round_instance,
    __path_round_results, __path_run_kindergarten_round, __path_run_school_enrollment,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(routes_rounds::router())
        .route(
            "/authorities",
            get(list_authorities).post(configure_authority),
        )
        .route("/authorities/{authority}", get(authority_info))
        .route(
            "/authorities/{authority}/institutions",
            get(list_institutions).post(register_institution),
        )
        .route(
            "/authorities/{authority}/kindergarten/applications",
            post(submit_kindergarten),
        )
        .route(
            "/authorities/{authority}/applications",
            get(my_applications),
        )
        .route(
            "/authorities/{authority}/applications/{number}",
            get(get_application),
        )
        .route(
            "/authorities/{authority}/applications/{number}/explanation",
            get(explain_application),
        )
        .route(
            "/authorities/{authority}/applications/{number}/preferences",
            post(amend_preferences),
        )
        .route(
            "/authorities/{authority}/applications/{number}/withdraw",
            post(withdraw),
        )
        .route(
            "/authorities/{authority}/applications/{number}/privileges",
            post(claim_privilege),
        )
        .route(
            "/authorities/{authority}/applications/{number}/privileges/confirm",
            post(confirm_privilege),
        )
        .route(
            "/authorities/{authority}/applications/{number}/privileges/revoke",
            post(revoke_privilege),
        )
        .route(
            "/authorities/{authority}/campaigns",
            get(list_campaigns).post(configure_campaign),
        )
        .route("/authorities/{authority}/school/drafts", post(save_draft))
        .route(
            "/authorities/{authority}/school/drafts/submit",
            post(submit_draft),
        )
        .route(
            "/authorities/{authority}/school/applications",
            post(submit_school),
        )
        .route(
            "/authorities/{authority}/school/age-exceptions",
            post(grant_age_exception),
        )
        .route(
            "/authorities/{authority}/specialties",
            post(configure_specialty),
        )
        .route(
            "/authorities/{authority}/slots",
            get(list_slots).post(publish_slots),
        )
        .route(
            "/authorities/{authority}/bookings",
            get(my_bookings).post(book),
        )
        .route(
            "/authorities/{authority}/bookings/{number}/cancel",
            post(cancel_booking),
        )
        .route(
            "/authorities/{authority}/bookings/{number}/no-show",
            post(record_no_show),
        )
        .route(
            "/authorities/{authority}/waiting-list",
            post(join_waiting_list),
        )
        .route("/authorities/{authority}/queues", get(list_queues))
        .route(
            "/authorities/{authority}/queues/{queue}",
            get(queue_entries),
        )
        .route("/authorities/{authority}/audit/head", get(audit_head))
        .route(
            "/authorities/{authority}/erasures",
            post(erase_personal_data),
        )
}

// ---------------------------------------------------------------------------------------------
// Plumbing

fn writer(state: &AppState, authority: &str) -> Result<Writer, ApiError> {
    let writer = state.engine.writer(authority).ok_or_else(|| {
        ApiError::not_found(format!("authority {authority} does not exist")).with_field("authority")
    })?;
    if !writer.is_consistent() {
        return Err(ApiError::unavailable(
            "the store is unavailable and this authority's state is being restored; retry shortly",
        ));
    }
    Ok(writer)
}

/// Sends a command through the writer with the request's Idempotency-Key, scoped to the caller.
async fn execute(
    writer: &Writer,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
) -> Result<Reply, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty() && k.len() <= 255 && k.chars().all(|c| c.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    ApiError::invalid("Idempotency-Key", "must be 1-255 visible ASCII characters")
                })?;
            Some(format!("{}:{}:{key}", caller.role.as_str(), caller.sub))
        }
    };
    let meta = RequestMeta {
        idempotency_key: key,
        actor: Some(format!("{}:{}", caller.role.as_str(), caller.sub)),
        channel: Some(channel_of(caller).as_str().into()),
        correlation_id: headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(str::to_owned),
    };
    let name = command.name();
    let started = std::time::Instant::now();
    let reply = writer
        .submit(command, meta)
        .await
        .map_err(ApiError::from_writer)?;
    metrics::histogram!("ochered_command_seconds", "command" => name)
        .record(started.elapsed().as_secs_f64());
    Ok(reply)
}

trait ChannelName {
    fn as_str(&self) -> &'static str;
}
impl ChannelName for Channel {
    fn as_str(&self) -> &'static str {
        match self {
            Channel::Portal => "portal",
            Channel::ServiceCentre => "service_centre",
            Channel::Api => "api",
        }
    }
}

/// Officers type applications in at a service centre; everyone else uses the portal.
fn channel_of(caller: &Caller) -> Channel {
    match caller.role {
        Role::Officer | Role::Registrar => Channel::ServiceCentre,
        _ => Channel::Portal,
    }
}

/// Turns a writer reply into a response: accepted → `status` with `body(events)`, rejected →
/// problem+json; a replayed answer carries `Idempotent-Replayed: true`.
fn respond(
    reply: Reply,
    status: StatusCode,
    body: impl FnOnce(&[ochered_writer::CommittedEvent]) -> Value,
) -> Response {
    let replayed = reply.replayed;
    let mut response = match reply.outcome {
        Outcome::Accepted { events } => (status, Json(body(&events))).into_response(),
        Outcome::Rejected { rejection } => ApiError::from_rejection(&rejection).into_response(),
    };
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn events_json(events: &[ochered_writer::CommittedEvent]) -> Value {
    json!({ "events": events })
}

fn parse_number(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid("number", "must be a positive integer"))
}

/// The application, if the caller may see it: its submitter, officers and admins.
pub(crate) fn visible_application<'a>(
    state: &'a State,
    caller: &Caller,
    number: u32,
) -> Result<&'a Application, ApiError> {
    let app = state
        .application(ApplicationNumber(number))
        .ok_or_else(|| ApiError::not_found(format!("application {number} does not exist")))?;
    match caller.role {
        Role::Officer | Role::Admin => Ok(app),
        Role::Parent if *app.submitted_by == *caller.sub => Ok(app),
        // Someone else's application looks exactly like a missing one.
        Role::Parent => Err(ApiError::not_found(format!(
            "application {number} does not exist"
        ))),
        Role::Auditor | Role::Registrar => Err(ApiError::forbidden(
            "this role sees anonymised queues only, not applications",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Authorities and institutions

/// List the authorities
///
/// Public: no token needed. Every authority served, with its name and time zone.
#[utoipa::path(
    get,
    path = "/api/v1/authorities",
    tag = "authorities",
    responses((status = 200, description = "The authorities.", body = crate::openapi::AuthoritiesList))
)]
async fn list_authorities(AxumState(state): AxumState<AppState>) -> Json<Value> {
    // Every authority this node serves: in cluster mode also those another node writes.
    let list: Vec<Value> = state
        .engine
        .served()
        .iter()
        .map(|(w, _)| {
            w.read(|s| {
                json!({
                    "id": w.authority(),
                    "name": s.config().map(|c| c.name.clone()),
                    "time_zone": s.config().map(|c| c.time_zone.name()),
                })
            })
        })
        .collect();
    Json(json!({ "authorities": list }))
}

/// Configure a new authority
///
/// **Roles:** admin. Starts a writer for the authority and records its configuration; an
/// authority is configured once.
#[utoipa::path(
    post,
    path = "/api/v1/authorities",
    tag = "authorities",
    security(("bearer" = [])),
    request_body = crate::openapi::AuthorityConfigSchema,
    responses((status = 201, description = "Configured.", body = crate::openapi::EventsResponse))
)]
async fn configure_authority(
    AxumState(state): AxumState<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<ochered_core::domain::AuthorityConfig>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let Body(config) = body?;
    let (writer, _) = state
        .engine
        .writer_or_start(config.id.as_str())
        .await
        .map_err(ApiError::from_writer)?;
    let reply = execute(
        &writer,
        &caller,
        &headers,
        Command::ConfigureAuthority { config },
    )
    .await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

/// Describe an authority
///
/// Public: no token needed. Its configuration and counts of institutions, applications and
/// events.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}",
    tag = "authorities",
    responses((status = 200, description = "The authority.", body = crate::openapi::AuthorityInfo))
)]
async fn authority_info(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        json!({
            "id": authority,
            "config": s.config(),
            "institutions": s.institutions().len(),
            "applications": s.applications().len(),
            "active_applications": s.n_active_applications(),
            "events": s.n_events(),
        })
    })))
}

/// List institutions
///
/// Public: no token needed. Kindergartens, schools and clinics registered with the authority.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/institutions",
    tag = "authorities",
    responses((status = 200, description = "The institutions.", body = crate::openapi::InstitutionsList))
)]
async fn list_institutions(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = writer(&state, &authority)?;
    Ok(Json(
        w.read(|s| json!({ "institutions": s.institutions() })),
    ))
}

/// Register an institution
///
/// **Roles:** officer, registrar (and admin). An existing id is a 409 (`institution_exists`).
/// Many at once: `POST …/files/institutions.csv`.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/institutions",
    tag = "authorities",
    security(("bearer" = [])),
    request_body = wire::InstitutionRequest,
    responses((status = 201, description = "Registered.", body = crate::openapi::EventsResponse))
)]
async fn register_institution(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::InstitutionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer, Role::Registrar])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::RegisterInstitution {
        id: req.id,
        kind: req.kind,
        name: req.name,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

// ---------------------------------------------------------------------------------------------
// Applications

fn submitted_body(w: &Writer, events: &[ochered_writer::CommittedEvent]) -> Value {
    let number = events.iter().find_map(|e| match &e.event {
        Event::KindergartenApplicationSubmitted { number, .. }
        | Event::SchoolApplicationSubmitted { number, .. } => Some(*number),
        _ => None,
    });
    let application = number.and_then(|n| {
        w.read(|s| {
            s.application(n)
                .map(|a| serde_json::to_value(wire::application_view(s, a)).ok())
        })
        .flatten()
    });
    json!({ "application": application, "events": events })
}

/// Submit a kindergarten application
///
/// **Roles:** parent, officer (typing it in at a service centre) (and admin). The child is
/// identified by the birth certificate number, kept only as a keyed hash. The same child twice
/// is a 409 whose `existing` names the application.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/kindergarten/applications",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::KindergartenApplicationRequest,
    responses((status = 201, description = "Submitted, with the application and its positions.", body = crate::openapi::SubmittedResponse))
)]
async fn submit_kindergarten(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::KindergartenApplicationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Officer])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let form = KindergartenForm {
        child: person_key(&state.config.person_secret, "document", &req.document)?,
        birth_date: req.birth_date,
        preferences: req.preferences,
        desired_start: req.desired_start,
        any_other: req.any_other,
        privileges: req.privileges,
        channel: channel_of(&caller),
        submitted_by: caller.sub.clone(),
        sealed: None,
    };
    let contact = req.contact.map(|c| c.validate(&req.document)).transpose()?;
    let child = form.child;
    let command = with_sealed(&state, &w, &child, contact, |sealed| {
        Command::SubmitKindergartenApplication {
            form: KindergartenForm {
                sealed,
                ..form.clone()
            },
        }
    })
    .await?;
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        submitted_body(&w, events)
    }))
}

/// List my applications
///
/// **Roles:** parent (and admin). The applications the calling parent submitted, with their
/// positions.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/applications",
    tag = "applications",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's applications.", body = crate::openapi::ApplicationsList))
)]
async fn my_applications(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Parent])?;
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        // A parent has few applications; officers use the queues and exports instead.
        let mine: Vec<_> = s
            .applications()
            .iter()
            .filter(|a| *a.submitted_by == *caller.sub)
            .map(|a| wire::application_view(s, a))
            .collect();
        json!({ "applications": mine })
    })))
}

/// Get an application
///
/// **Roles:** the parent who submitted it, officer (and admin). With its position in each
/// queue. Someone else's application answers 404, as a missing one does; auditors and
/// registrars get 403.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/applications/{number}",
    tag = "applications",
    security(("bearer" = [])),
    responses((status = 200, description = "The application.", body = wire::ApplicationView))
)]
async fn get_application(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    let (mut view, child, sealed) = w.read(|s| {
        let app = visible_application(s, &caller, number)?;
        Ok::<_, ApiError>((
            wire::application_view(s, app),
            app.child,
            app.sealed.clone(),
        ))
    })?;
    // Only the submitter and officers get here (auditors and registrars were refused).
    let contact = match (&sealed, view.erased) {
        (Some(sealed), false) => state
            .privacy
            .open(&authority, &child, sealed)
            .await
            .map_err(privacy_error)?
            .and_then(|bytes| serde_json::from_slice::<wire::ContactView>(&bytes).ok()),
        _ => None,
    };
    view.contact = Some(contact);
    Ok(Json(
        serde_json::to_value(view).map_err(|_| ApiError::internal())?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

/// Explain an application's positions
///
/// **Roles:** the parent who submitted it, officer (and admin). For each queue, the position
/// then and now and every change in between with its cause (who was placed ahead, who left).
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/applications/{number}/explanation",
    tag = "applications",
    security(("bearer" = [])),
    params(("since" = Option<DateTime<Utc>>, Query, description = "Explain changes since this time (RFC 3339); defaults to the registration time."), ("limit" = Option<usize>, Query, description = "At most this many changes per queue, 1-1000 (default 200).")),
    responses((status = 200, description = "The explanation.", body = crate::openapi::ExplanationResponse))
)]
async fn explain_application(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    query: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("since", e.body_text()))?;
    let number = parse_number(&number)?;
    let limit = query.limit.unwrap_or(200).clamp(1, 1000);
    let w = writer(&state, &authority)?;
    w.read(|s| {
        let app = visible_application(s, &caller, number)?;
        let since = query.since.unwrap_or(app.registered_at);
        let queues: Vec<Value> = s
            .queue_entries(app)
            .into_iter()
            .map(|(queue, key)| {
                let description = s.describe_queue(&queue);
                let explanation = s.queues.explain(&queue, &key, since, limit);
                json!({
                    "queue": wire::queue_id(&description),
                    "description": description,
                    "explanation": explanation,
                })
            })
            .collect();
        Ok(Json(
            json!({ "application": number, "since": since, "queues": queues }),
        ))
    })
}

/// Checks that the caller may change the application, inside the writer's read.
fn check_owner(w: &Writer, caller: &Caller, number: u32) -> Result<(), ApiError> {
    w.read(|s| visible_application(s, caller, number).map(|_| ()))
}

/// Amend kindergarten preferences
///
/// **Roles:** the parent who submitted it, officer (and admin). Replaces the ranked
/// kindergartens and the desired start; the registration time, and so the place in each queue
/// kept, does not change.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/preferences",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::AmendRequest,
    responses((status = 200, description = "Amended.", body = crate::openapi::EventsResponse))
)]
async fn amend_preferences(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::AmendRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Officer])?;
    let Body(req) = body?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    check_owner(&w, &caller, number)?;
    let command = Command::AmendKindergartenPreferences {
        application: ApplicationNumber(number),
        preferences: req.preferences,
        desired_start: req.desired_start,
        any_other: req.any_other,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Withdraw an application
///
/// **Roles:** the parent who submitted it, officer (and admin). Takes the application out of
/// every queue; an outstanding offer is released.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/withdraw",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::WithdrawRequest,
    responses((status = 200, description = "Withdrawn.", body = crate::openapi::EventsResponse))
)]
async fn withdraw(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::WithdrawRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Officer])?;
    let Body(req) = body?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    check_owner(&w, &caller, number)?;
    let command = Command::WithdrawApplication {
        application: ApplicationNumber(number),
        reason: req.reason,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Claim a privilege
///
/// **Roles:** the parent who submitted it, officer (and admin). Recorded as claimed; it moves
/// the application up only once an officer confirms it.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/privileges",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::PrivilegeRequest,
    responses((status = 200, description = "Claimed.", body = crate::openapi::EventsResponse))
)]
async fn claim_privilege(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::PrivilegeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Officer])?;
    let Body(req) = body?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    check_owner(&w, &caller, number)?;
    let command = Command::ClaimPrivilege {
        application: ApplicationNumber(number),
        privilege: req.privilege,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Confirm a privilege
///
/// **Roles:** officer (and admin). The application moves to the privilege's tier in the queues
/// it applies to.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/privileges/confirm",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::PrivilegeRequest,
    responses((status = 200, description = "Confirmed.", body = crate::openapi::EventsResponse))
)]
async fn confirm_privilege(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::PrivilegeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let Body(req) = body?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    let command = Command::ConfirmPrivilege {
        application: ApplicationNumber(number),
        privilege: req.privilege,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Revoke a privilege
///
/// **Roles:** officer (and admin). With a `reason`; the application returns to the tier its
/// other privileges give.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/privileges/revoke",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::PrivilegeRequest,
    responses((status = 200, description = "Revoked.", body = crate::openapi::EventsResponse))
)]
async fn revoke_privilege(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::PrivilegeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let Body(req) = body?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    let command = Command::RevokePrivilege {
        application: ApplicationNumber(number),
        privilege: req.privilege,
        reason: req.reason.unwrap_or_default(),
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

// ---------------------------------------------------------------------------------------------
// First-grade enrollment

/// List first-grade campaigns
///
/// Public: no token needed. Every campaign's configuration.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/campaigns",
    tag = "school",
    responses((status = 200, description = "The campaigns.", body = crate::openapi::CampaignsList))
)]
async fn list_campaigns(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        let campaigns: Vec<_> = s.campaigns().iter().map(|c| &c.config).collect();
        json!({ "campaigns": campaigns })
    })))
}

/// Configure a first-grade campaign
///
/// **Roles:** officer (and admin). Stage dates are local days of the authority's time zone;
/// each stage opens at local midnight.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/campaigns",
    tag = "school",
    security(("bearer" = [])),
    request_body = crate::openapi::CampaignConfigSchema,
    responses((status = 201, description = "Configured.", body = crate::openapi::EventsResponse))
)]
async fn configure_campaign(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<ochered_core::command::CampaignConfig>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let Body(config) = body?;
    let w = writer(&state, &authority)?;
    let reply = execute(&w, &caller, &headers, Command::ConfigureCampaign { config }).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

/// The form, and the contact checked (with the document as given) but not yet sealed.
fn school_form(
    state: &AppState,
    caller: &Caller,
    req: wire::SchoolApplicationRequest,
) -> Result<(SchoolForm, Option<wire::ContactView>), ApiError> {
    let form = SchoolForm {
        campaign: req.campaign,
        child: person_key(&state.config.person_secret, "document", &req.document)?,
        birth_date: req.birth_date,
        schools: req.schools,
        privileges: req.privileges,
        channel: channel_of(caller),
        submitted_by: caller.sub.clone(),
        sealed: None,
    };
    let contact = req.contact.map(|c| c.validate(&req.document)).transpose()?;
    Ok((form, contact))
}

/// Save a first-grade draft
///
/// **Roles:** parent (and admin). Drafts can be saved before the campaign opens and submitted
/// the moment it does.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/school/drafts",
    tag = "school",
    security(("bearer" = [])),
    request_body = wire::SchoolApplicationRequest,
    responses((status = 201, description = "Saved.", body = crate::openapi::EventsResponse))
)]
async fn save_draft(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::SchoolApplicationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let (form, contact) = school_form(&state, &caller, req)?;
    let child = form.child;
    let command = with_sealed(&state, &w, &child, contact, |sealed| {
        Command::SaveSchoolDraft {
            form: SchoolForm {
                sealed,
                ..form.clone()
            },
        }
    })
    .await?;
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

/// Submit a saved draft
///
/// **Roles:** parent (the one who saved it) (and admin). Submits the draft of this child in
/// this campaign; the registration time is the time of submission.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/school/drafts/submit",
    tag = "school",
    security(("bearer" = [])),
    request_body = wire::SubmitDraftRequest,
    responses((status = 201, description = "Submitted.", body = crate::openapi::SubmittedResponse))
)]
async fn submit_draft(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::SubmitDraftRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let child = person_key(&state.config.person_secret, "document", &req.document)?;
    // Only the parent who saved the draft may submit it.
    let owner_ok = w.read(|s| {
        s.campaign_idx(&req.campaign)
            .and_then(|c| s.campaign(c).drafts.get(&child))
            .is_none_or(|d| d.submitted_by == caller.sub)
    });
    if !owner_ok {
        return Err(
            ApiError::not_found("no draft for this child in this campaign").with_field("document"),
        );
    }
    let command = Command::SubmitSchoolDraft {
        campaign: req.campaign,
        child,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        submitted_body(&w, events)
    }))
}

/// Submit a first-grade application
///
/// **Roles:** parent, officer (and admin). Stage 1 admits privileged children, siblings and
/// catchment residents; stage 2 everyone while seats remain.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/school/applications",
    tag = "school",
    security(("bearer" = [])),
    request_body = wire::SchoolApplicationRequest,
    responses((status = 201, description = "Submitted, with the application and its positions.", body = crate::openapi::SubmittedResponse))
)]
async fn submit_school(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::SchoolApplicationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Officer])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let (form, contact) = school_form(&state, &caller, req)?;
    let child = form.child;
    let command = with_sealed(&state, &w, &child, contact, |sealed| {
        Command::SubmitSchoolApplication {
            form: SchoolForm {
                sealed,
                ..form.clone()
            },
        }
    })
    .await?;
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        submitted_body(&w, events)
    }))
}

/// Grant an age exception
///
/// **Roles:** officer (and admin). Lets a child outside the campaign's age range apply.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/school/age-exceptions",
    tag = "school",
    security(("bearer" = [])),
    request_body = wire::AgeExceptionRequest,
    responses((status = 200, description = "Granted.", body = crate::openapi::EventsResponse))
)]
async fn grant_age_exception(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::AgeExceptionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::GrantAgeException {
        campaign: req.campaign,
        child: person_key(&state.config.person_secret, "document", &req.document)?,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

// ---------------------------------------------------------------------------------------------
// Clinic

/// Configure a specialty
///
/// **Roles:** registrar (and admin). A specialty may require a referral.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/specialties",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = wire::SpecialtyRequest,
    responses((status = 201, description = "Configured.", body = crate::openapi::EventsResponse))
)]
async fn configure_specialty(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::SpecialtyRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Registrar])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::ConfigureSpecialty {
        specialty: req.specialty,
        referral_only: req.referral_only,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

/// Publish a doctor's slots
///
/// **Roles:** registrar (and admin). Slot ids are unique within the authority.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/slots",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = wire::SlotsRequest,
    responses((status = 201, description = "Published.", body = crate::openapi::EventsResponse))
)]
async fn publish_slots(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::SlotsRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Registrar])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::PublishSlots {
        doctor: req.doctor,
        specialty: req.specialty,
        slots: req.slots,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotQuery {
    specialty: Option<String>,
}

/// List free slots
///
/// Public: no token needed. Free slots (at most 1000), optionally of one specialty.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/slots",
    tag = "clinic",
    params(("specialty" = Option<String>, Query, description = "Only slots of this specialty.")),
    responses((status = 200, description = "Free slots.", body = crate::openapi::FreeSlots))
)]
async fn list_slots(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    query: Result<Query<SlotQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("specialty", e.body_text()))?;
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        let free: Vec<Value> = s
            .data
            .slots
            .iter()
            .filter(|(_, slot)| slot.booking.is_none())
            .filter(|(_, slot)| {
                query
                    .specialty
                    .as_deref()
                    .is_none_or(|sp| slot.specialty.as_str() == sp)
            })
            .take(1000)
            .map(|(id, slot)| {
                json!({
                    "id": id,
                    "doctor": slot.doctor,
                    "specialty": slot.specialty,
                    "start": slot.start,
                    "duration_minutes": slot.duration_minutes,
                })
            })
            .collect();
        json!({ "free_slots": free })
    })))
}

/// Book a slot
///
/// **Roles:** parent, registrar (and admin). A slot held for a waiting-list patient can be
/// booked only by that patient until the hold lapses.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/bookings",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = wire::BookingRequest,
    responses((status = 201, description = "Booked.", body = crate::openapi::EventsResponse))
)]
async fn book(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::BookingRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Registrar])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::BookSlot {
        slot: req.slot,
        patient: person_key(&state.config.person_secret, "document", &req.document)?,
        referral: req.referral,
        booked_by: caller.sub.clone(),
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

/// List my bookings
///
/// **Roles:** parent (and admin). The bookings the calling account made.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/bookings",
    tag = "clinic",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's bookings.", body = crate::openapi::BookingsList))
)]
async fn my_bookings(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Parent])?;
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        let mine: Vec<_> = s
            .data
            .bookings
            .iter()
            .filter(|b| *b.booked_by == *caller.sub)
            .map(|b| wire::BookingView {
                number: b.number,
                slot: b.slot.clone(),
                specialty: b.specialty.clone(),
                status: b.status,
                booked_at: b.booked_at,
            })
            .collect();
        json!({ "bookings": mine })
    })))
}

/// Cancel a booking
///
/// **Roles:** the parent who booked it, registrar (and admin). The slot is offered to the
/// waiting list first.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/bookings/{number}/cancel",
    tag = "clinic",
    security(("bearer" = [])),
    responses((status = 200, description = "Cancelled.", body = crate::openapi::EventsResponse))
)]
async fn cancel_booking(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Registrar])?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    if caller.role == Role::Parent {
        let mine = w.read(|s| {
            s.booking(BookingNumber(number))
                .is_some_and(|b| *b.booked_by == *caller.sub)
        });
        if !mine {
            return Err(ApiError::not_found(format!(
                "booking {number} does not exist"
            )));
        }
    }
    let reply = execute(
        &w,
        &caller,
        &headers,
        Command::CancelBooking {
            booking: BookingNumber(number),
        },
    )
    .await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Record a no-show
///
/// **Roles:** registrar (and admin). Repeated no-shows block self-booking for a while.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/bookings/{number}/no-show",
    tag = "clinic",
    security(("bearer" = [])),
    responses((status = 200, description = "Recorded.", body = crate::openapi::EventsResponse))
)]
async fn record_no_show(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Registrar])?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    let reply = execute(
        &w,
        &caller,
        &headers,
        Command::RecordNoShow {
            booking: BookingNumber(number),
        },
    )
    .await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Join a specialty's waiting list
///
/// **Roles:** parent (general tier only), registrar (any tier) (and admin). A freed slot is
/// held for the first patient on the list.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/waiting-list",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = wire::WaitingListRequest,
    responses((status = 201, description = "Joined.", body = crate::openapi::EventsResponse))
)]
async fn join_waiting_list(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::WaitingListRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Registrar])?;
    let Body(req) = body?;
    // Only a registrar may place a patient in a priority tier.
    if caller.role == Role::Parent && req.tier != ochered_core::ordering::TIER_GENERAL {
        return Err(
            ApiError::forbidden("only a registrar may set a priority tier").with_field("tier"),
        );
    }
    let w = writer(&state, &authority)?;
    let command = Command::JoinWaitingList {
        specialty: req.specialty,
        patient: person_key(&state.config.person_secret, "document", &req.document)?,
        tier: req.tier,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

// ---------------------------------------------------------------------------------------------
// Public, anonymised reads and audit

/// List the queues
///
/// Public: no token needed. Every non-empty queue with its size; anonymised.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/queues",
    tag = "public",
    responses((status = 200, description = "The queues.", body = crate::openapi::QueuesList))
)]
async fn list_queues(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        let queues: Vec<Value> = s
            .queues
            .iter()
            .filter(|(_, q)| !q.members.is_empty())
            .map(|(key, q)| {
                let d = s.describe_queue(key);
                json!({ "queue": wire::queue_id(&d), "description": d, "size": q.members.len() })
            })
            .collect();
        json!({ "queues": queues })
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// Read a queue
///
/// Public: no token needed. A page of the queue, anonymised: position, application number,
/// tier, registration time. The whole queue as a file: `GET …/files/queues/{queue}.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/queues/{queue}",
    tag = "public",
    params(("offset" = Option<usize>, Query, description = "Skip this many entries (default 0)."), ("limit" = Option<usize>, Query, description = "At most this many entries, 1-1000 (default 100).")),
    responses((status = 200, description = "A page of the queue.", body = crate::openapi::QueueEntries))
)]
async fn queue_entries(
    AxumState(state): AxumState<AppState>,
    Path((authority, queue_name)): Path<(String, String)>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(page) = query.map_err(|e| ApiError::invalid("offset", e.body_text()))?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let w = writer(&state, &authority)?;
    w.read(|s| {
        let (key, q) = s
            .queues
            .iter()
            .find(|(key, _)| wire::queue_id(&s.describe_queue(key)) == queue_name)
            .ok_or_else(|| {
                ApiError::not_found(format!("queue {queue_name} does not exist"))
                    .with_field("queue")
            })?;
        // Anonymised: the application number, tier and registration time, nothing personal.
        let entries: Vec<Value> = q
            .members
            .range_from(offset)
            .take(limit)
            .enumerate()
            .map(|(i, sort_key)| {
                let app = s.application(sort_key.number);
                json!({
                    "position": offset + i + 1,
                    "application": sort_key.number,
                    "tier": sort_key.tier,
                    "registered_at": app.map(|a| a.registered_at),
                })
            })
            .collect();
        Ok(Json(json!({
            "queue": queue_name,
            "description": s.describe_queue(key),
            "size": q.members.len(),
            "offset": offset,
            "entries": entries,
        })))
    })
}

/// Read the chain head
///
/// Public: no token needed. The sequence number and hash of the last event of the authority's
/// hash chain, to verify an exported log against.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/audit/head",
    tag = "public",
    responses((status = 200, description = "The chain head.", body = crate::openapi::AuditHead))
)]
async fn audit_head(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = writer(&state, &authority)?;
    let head = w.head();
    let state_hash_events = w.read(|s| s.n_events());
    Ok(Json(json!({
        "authority": authority,
        "authority_seq": head.authority_seq,
        "head_hash": head.hash,
        "events": state_hash_events,
    })))
}

// ---------------------------------------------------------------------------------------------
// Personal data: sealed per applicant, erased by destroying the key

fn privacy_error(error: ochered_writer::privacy::PrivacyError) -> ApiError {
    if error.is_unavailable() {
        ApiError::unavailable("the store is unavailable; retry shortly")
    } else {
        tracing::error!(%error, "personal data");
        ApiError::internal()
    }
}

/// Seals a submission's personal data into its command (`command(sealed)`). Bad input is
/// refused before anything is stored: the rules are asked first, against the current state,
/// so an invalid request makes no data key; the writer then decides again, authoritatively.
async fn with_sealed(
    state: &AppState,
    w: &Writer,
    child: &ochered_core::domain::PersonKey,
    contact: Option<wire::ContactView>,
    command: impl Fn(Option<ochered_core::command::Sealed>) -> Command,
) -> Result<Command, ApiError> {
    let Some(contact) = contact else {
        return Ok(command(None));
    };
    let placeholder = ochered_core::command::Sealed {
        nonce: "0".repeat(ochered_core::command::SEALED_NONCE_HEX),
        ciphertext: "0".repeat(32),
    };
    let check = command(Some(placeholder));
    if let Err(rejection) = w.read(|s| ochered_core::decide(s, &check, Utc::now())) {
        if rejection.kind() == ochered_core::RejectionKind::Invalid {
            return Err(ApiError::from_rejection(&rejection));
        }
    }
    let plaintext = serde_json::to_vec(&contact).map_err(|_| ApiError::internal())?;
    let sealed = state
        .privacy
        .seal(w.authority(), child, &plaintext)
        .await
        .map_err(privacy_error)?;
    Ok(command(Some(sealed)))
}

/// Erase a person's personal data
///
/// **Roles:** registrar (and admin). On a lawful erasure request: destroys the data key of
/// the person (named by their document, or by the number of one of their applications), so
/// the names, contacts and document sealed with their applications become unreadable for
/// good (crypto-shredding), and records a `PersonalDataErased` event. The log is not
/// rewritten, so the chain still verifies; no queue position changes. 201 when an erasure was
/// recorded, 200 when the person's data was already erased (repeating is harmless); a person
/// the authority does not know is a 404.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/erasures",
    tag = "applications",
    security(("bearer" = [])),
    request_body = wire::ErasureRequest,
    responses(
        (status = 201, description = "Erased now.", body = wire::ErasureView),
        (status = 200, description = "Already erased before; nothing changed.", body = wire::ErasureView),
    )
)]
async fn erase_personal_data(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<wire::ErasureRequest>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Registrar])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let (person, field) = match (&req.document, req.application) {
        (Some(document), None) => (
            person_key(&state.config.person_secret, "document", document)?,
            "document",
        ),
        (None, Some(number)) => {
            let child = w.read(|s| s.application(ApplicationNumber(number)).map(|a| a.child));
            let child = child.ok_or_else(|| {
                ApiError::not_found(format!("application {number} does not exist"))
                    .with_field("application")
            })?;
            (child, "application")
        }
        _ => {
            return Err(ApiError::invalid(
                "document",
                "give either the person's document or the number of one of their applications",
            ))
        }
    };
    let command = Command::RecordPersonalDataErasure { person };
    // A person the authority never saw: nothing to erase, nothing destroyed.
    if let Err(rejection) = w.read(|s| ochered_core::decide(s, &command, Utc::now())) {
        if rejection == ochered_core::Rejection::UnknownPerson {
            return Err(
                ApiError::not_found("no application or booking of this person exists")
                    .with_field(field),
            );
        }
    }
    // The key first: once it is gone the data is unreadable whatever happens next; the event
    // records it (a retry after a failure here records it then).
    let key_destroyed = state
        .privacy
        .destroy(&authority, &person)
        .await
        .map_err(privacy_error)?;
    let reply = execute(&w, &caller, &headers, command).await?;
    let replayed = reply.replayed;
    let events = match reply.outcome {
        Outcome::Accepted { events } => events,
        Outcome::Rejected { rejection } => {
            return Ok(ApiError::from_rejection(&rejection).into_response())
        }
    };
    let applications = events
        .iter()
        .find_map(|e| match &e.event {
            Event::PersonalDataErased { applications, .. } => Some(applications.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let erased = w.read(|s| {
        s.applications()
            .iter()
            .filter(|a| a.child == person)
            .map(|a| a.number)
            .collect()
    });
    let status = if events.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let view = wire::ErasureView {
        person: person.to_hex(),
        key_destroyed,
        applications,
        erased,
        events,
    };
    let mut response = (status, Json(view)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
