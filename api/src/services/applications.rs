//! Applications of both services once submitted: the parent's list, one application with its
//! positions and contact, why its positions moved, amendments, withdrawal, privileges, and
//! the erasure of a person's personal data. Submissions themselves belong to their service
//! (`kindergarten`, `school`).

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ochered_core::command::Command;
use ochered_core::domain::ApplicationNumber;
use ochered_core::queues::Explanation;
use ochered_core::state::QueueDescription;
use ochered_core::{Event, Rejection};
use ochered_writer::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::{self, check_owner, parse_number, visible_application};
use crate::http::auth::{Caller, Role};
use crate::http::command::{mark_replayed, EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::http::personal::{open_contact, privacy_error};
use crate::state::AppState;
use crate::wire::schema::Problem;
use crate::wire::{
    self, person_key, AmendRequest, ApplicationView, ErasureRequest, ErasureView, PrivilegeRequest,
    WithdrawRequest,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_applications))
        .routes(routes!(get_application))
        .routes(routes!(explain_application))
        .routes(routes!(amend_preferences))
        .routes(routes!(withdraw))
        .routes(routes!(claim_privilege))
        .routes(routes!(confirm_privilege))
        .routes(routes!(revoke_privilege))
        .routes(routes!(erase_personal_data))
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationsList {
    applications: Vec<ApplicationView>,
}

/// List my applications
///
/// **Roles:** parent (and admin). The applications the calling parent submitted, with their
/// positions, the latest offer and the child's name where the family gave it.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/applications",
    tag = "applications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's applications.", body = ApplicationsList),
        (status = 403, description = "Not a parent.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such authority.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn my_applications(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<ApplicationsList>, ApiError> {
    caller.require(&[Role::Parent])?;
    let w = access::writer(&state, &authority)?;
    // A parent has few applications; officers use the queues and exports instead.
    let mine = w.read(|s| {
        s.applications()
            .iter()
            .filter(|a| *a.submitted_by == *caller.sub)
            .map(|a| (wire::application_view(s, a), a.child, a.sealed.clone()))
            .collect::<Vec<_>>()
    });
    let mut applications = Vec::with_capacity(mine.len());
    for (mut view, child, sealed) in mine {
        let contact =
            open_contact(&state, &authority, &child, sealed.as_deref(), view.erased).await?;
        view.child_name = contact.map(|c| c.child_name);
        applications.push(view);
    }
    Ok(Json(ApplicationsList { applications }))
}

/// Get an application
///
/// **Roles:** the parent who submitted it, officer (and admin). With its position in each
/// queue, the latest offer (the kindergarten by id and name, the round, the deadline in UTC
/// and in the authority's time zone), its history step by step from the submission on
/// (amendments, privileges, offers, answers, enrollment, withdrawal), the submission's
/// position in the hash chain and the family's contact. Someone else's application answers
/// 404, as a missing one does; auditors and registrars get 403.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/applications/{number}",
    tag = "applications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The application.", body = ApplicationView),
        (status = 403, description = "This role sees no applications.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application (or someone else's), or no such authority.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_application(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
) -> Result<Json<ApplicationView>, ApiError> {
    let number = parse_number(&number)?;
    let w = access::writer(&state, &authority)?;
    let (mut view, child, sealed) = w.read(|s| {
        let app = visible_application(s, &caller, number)?;
        let mut view = wire::application_view(s, app);
        view.history = Some(wire::history::history(s, app));
        Ok::<_, ApiError>((view, app.child, app.sealed.clone()))
    })?;
    // Only the submitter and officers get here (auditors and registrars were refused).
    let contact = open_contact(&state, &authority, &child, sealed.as_deref(), view.erased).await?;
    view.child_name = contact.as_ref().map(|c| c.child_name.clone());
    view.contact = Some(contact);
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

/// Why an application's positions changed, queue by queue.
#[derive(Serialize, ToSchema)]
pub struct ExplanationResponse {
    application: u32,
    since: DateTime<Utc>,
    queues: Vec<QueueExplanation>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueExplanation {
    queue: String,
    description: QueueDescription,
    /// The position then and now, and each change in between with its cause.
    #[schema(value_type = Object)]
    explanation: Explanation,
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
    responses((status = 200, description = "The explanation.", body = ExplanationResponse))
)]
async fn explain_application(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    query: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExplanationResponse>, ApiError> {
    let Query(query) = query.map_err(|e| crate::http::access::query_error(e, "since"))?;
    let number = parse_number(&number)?;
    let limit = query.limit.unwrap_or(200).clamp(1, 1000);
    let w = access::writer(&state, &authority)?;
    w.read(|s| {
        let app = visible_application(s, &caller, number)?;
        let since = query.since.unwrap_or(app.registered_at);
        let queues = s
            .queue_entries(app)
            .into_iter()
            .map(|(queue, key)| {
                let description = s.describe_queue(&queue);
                QueueExplanation {
                    queue: wire::queue_id(&description),
                    explanation: s.queues.explain(&queue, &key, since, limit),
                    description,
                }
            })
            .collect();
        Ok(Json(ExplanationResponse {
            application: number,
            since,
            queues,
        }))
    })
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
    request_body = AmendRequest,
    responses((status = 200, description = "Amended.", body = EventsResponse))
)]
async fn amend_preferences(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
    body: Result<Body<AmendRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Officer], body)?;
    let number = parse_number(&number)?;
    let w = write.writer(&authority)?;
    check_owner(&w, &write.caller, number)?;
    let command = Command::AmendKindergartenPreferences {
        application: ApplicationNumber(number),
        preferences: req.preferences,
        desired_start: req.desired_start,
        any_other: req.any_other,
    };
    write.answer(&w, command, StatusCode::OK).await
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
    request_body = WithdrawRequest,
    responses((status = 200, description = "Withdrawn.", body = EventsResponse))
)]
async fn withdraw(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
    body: Result<Body<WithdrawRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Officer], body)?;
    let number = parse_number(&number)?;
    let w = write.writer(&authority)?;
    check_owner(&w, &write.caller, number)?;
    let command = Command::WithdrawApplication {
        application: ApplicationNumber(number),
        reason: req.reason,
    };
    write.answer(&w, command, StatusCode::OK).await
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
    request_body = PrivilegeRequest,
    responses((status = 200, description = "Claimed.", body = EventsResponse))
)]
async fn claim_privilege(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
    body: Result<Body<PrivilegeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Officer], body)?;
    let number = parse_number(&number)?;
    let w = write.writer(&authority)?;
    check_owner(&w, &write.caller, number)?;
    let command = Command::ClaimPrivilege {
        application: ApplicationNumber(number),
        privilege: req.privilege,
    };
    write.answer(&w, command, StatusCode::OK).await
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
    request_body = PrivilegeRequest,
    responses((status = 200, description = "Confirmed.", body = EventsResponse))
)]
async fn confirm_privilege(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
    body: Result<Body<PrivilegeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let command = Command::ConfirmPrivilege {
        application: ApplicationNumber(parse_number(&number)?),
        privilege: req.privilege,
    };
    let w = write.writer(&authority)?;
    write.answer(&w, command, StatusCode::OK).await
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
    request_body = PrivilegeRequest,
    responses((status = 200, description = "Revoked.", body = EventsResponse))
)]
async fn revoke_privilege(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
    body: Result<Body<PrivilegeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let command = Command::RevokePrivilege {
        application: ApplicationNumber(parse_number(&number)?),
        privilege: req.privilege,
        reason: req.reason.unwrap_or_default(),
    };
    let w = write.writer(&authority)?;
    write.answer(&w, command, StatusCode::OK).await
}

// ---------------------------------------------------------------------------------------------
// Personal data: sealed per applicant, erased by destroying the key

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
    request_body = ErasureRequest,
    responses(
        (status = 201, description = "Erased now.", body = ErasureView),
        (status = 200, description = "Already erased before; nothing changed.", body = ErasureView),
    )
)]
async fn erase_personal_data(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<ErasureRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Registrar], body)?;
    let state = &write.state;
    let w = write.writer(&authority)?;
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
    if let Some(Err(Rejection::UnknownPerson)) = w.check([&command]).pop() {
        return Err(
            ApiError::not_found("no application or booking of this person exists")
                .with_field(field),
        );
    }
    // The key first: once it is gone the data is unreadable whatever happens next; the event
    // records it (a retry after a failure here records it then).
    let key_destroyed = state
        .privacy
        .destroy(&authority, &person)
        .await
        .map_err(privacy_error)?;
    let reply = write.send(&w, command).await?;
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
    let view = ErasureView {
        person: person.to_hex(),
        key_destroyed,
        applications,
        erased,
        events,
    };
    Ok(mark_replayed(
        (status, Json(view)).into_response(),
        replayed,
    ))
}
