//! First-grade enrollment: campaigns, drafts, submissions, age exceptions and the enrollment
//! decisions of each stage.

use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use ochered_core::command::{
    AgeExceptionCategory, CampaignConfig, CampaignStage, Command, SchoolForm,
};
use ochered_core::domain::{CampaignId, RoundId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access;
use crate::http::auth::{Caller, Role};
use crate::http::command::{channel_of, respond, EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::http::personal::with_sealed;
use crate::state::AppState;
use crate::wire::rounds::{round_response, RoundResponse};
use crate::wire::schema::{Code, Problem};
use crate::wire::{
    age_requests, person_key, submitted, AgeExceptionRequest, AgeRequestView, ContactView,
    SchoolApplicationRequest, SubmitDraftRequest, SubmittedResponse,
};
use ochered_writer::privacy::NewKey;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, configure_campaign))
        .routes(routes!(save_draft))
        .routes(routes!(submit_draft))
        .routes(routes!(submit_school))
        .routes(routes!(grant_age_exception))
        .routes(routes!(my_age_requests, request_age_exception))
        .routes(routes!(run_school_enrollment))
}

#[derive(Serialize, ToSchema)]
pub struct CampaignsList {
    campaigns: Vec<CampaignConfig>,
}

/// List first-grade campaigns
///
/// Public: no token needed. Every campaign's configuration.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/campaigns",
    tag = "school",
    responses((status = 200, description = "The campaigns.", body = CampaignsList))
)]
async fn list_campaigns(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<CampaignsList>, ApiError> {
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| CampaignsList {
        campaigns: s.campaigns().iter().map(|c| c.config.clone()).collect(),
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
    request_body = CampaignConfig,
    responses((status = 201, description = "Configured.", body = EventsResponse))
)]
async fn configure_campaign(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<CampaignConfig>, ApiError>,
) -> Result<Response, ApiError> {
    let config = write.body(&[Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let command = Command::ConfigureCampaign { config };
    write.answer(&w, command, StatusCode::CREATED).await
}

/// The form, and the contact checked (with the document as given) but not yet sealed.
fn school_form(
    write: &Write,
    req: SchoolApplicationRequest,
) -> Result<(SchoolForm, Option<ContactView>), ApiError> {
    let form = SchoolForm {
        campaign: req.campaign,
        child: person_key(&write.state.config.person_secret, "document", &req.document)?,
        birth_date: req.birth_date,
        schools: req.schools,
        privileges: req.privileges,
        channel: channel_of(&write.caller),
        submitted_by: write.caller.sub.clone(),
        sealed: None,
    };
    let contact = req.contact.map(|c| c.validate(&req.document)).transpose()?;
    Ok((form, contact))
}

/// A school form's command, with its personal data sealed, and the new data key to store with
/// it ([`with_sealed`]).
async fn sealed_school_command(
    write: &Write,
    w: &ochered_writer::Writer,
    req: SchoolApplicationRequest,
    command: impl Fn(SchoolForm) -> Command,
) -> Result<(Command, Option<NewKey>), ApiError> {
    let (form, contact) = school_form(write, req)?;
    let child = form.child;
    with_sealed(&write.state, w, &child, contact, |sealed| {
        command(SchoolForm {
            sealed,
            ..form.clone()
        })
    })
    .await
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
    request_body = SchoolApplicationRequest,
    responses((status = 201, description = "Saved.", body = EventsResponse))
)]
async fn save_draft(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<SchoolApplicationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent], body)?;
    let w = write.writer(&authority)?;
    let (command, new_key) =
        sealed_school_command(&write, &w, req, |form| Command::SaveSchoolDraft { form }).await?;
    write
        .answer_with_key(&w, command, new_key, StatusCode::CREATED)
        .await
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
    request_body = SubmitDraftRequest,
    responses((status = 201, description = "Submitted.", body = SubmittedResponse))
)]
async fn submit_draft(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<SubmitDraftRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent], body)?;
    let w = write.writer(&authority)?;
    let child = person_key(&write.state.config.person_secret, "document", &req.document)?;
    // Only the parent who saved the draft may submit it.
    let owner_ok = w.read(|s| {
        s.campaign_idx(&req.campaign)
            .and_then(|c| s.campaign(c).drafts.get(&child))
            .is_none_or(|d| d.submitted_by == write.caller.sub)
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
    let reply = write.send(&w, command).await?;
    let receipt = write.state.transparency.receipt_for(&w, &reply).await;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        submitted(&w, events, receipt)
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
    request_body = SchoolApplicationRequest,
    responses((status = 201, description = "Submitted, with the application and its positions.", body = SubmittedResponse))
)]
async fn submit_school(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<SchoolApplicationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let (command, new_key) = sealed_school_command(&write, &w, req, |form| {
        Command::SubmitSchoolApplication { form }
    })
    .await?;
    let reply = write.send_with_key(&w, command, new_key).await?;
    let receipt = write.state.transparency.receipt_for(&w, &reply).await;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        submitted(&w, events, receipt)
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
    request_body = AgeExceptionRequest,
    responses((status = 200, description = "Granted.", body = EventsResponse))
)]
async fn grant_age_exception(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<AgeExceptionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let command = Command::GrantAgeException {
        campaign: req.campaign,
        child: person_key(&write.state.config.person_secret, "document", &req.document)?,
    };
    write.answer(&w, command, StatusCode::OK).await
}

/// A family's request for a first-grade age exception.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AgeExceptionAsk {
    #[schema(value_type = Code)]
    campaign: CampaignId,
    /// The child's birth certificate number.
    document: String,
    birth_date: NaiveDate,
    /// `earlier` for a child under the minimum age on 1 September, `later` for one at or over
    /// the maximum.
    category: AgeExceptionCategory,
}

/// Ask for a first-grade age exception
///
/// **Roles:** parent. For a child younger than six and a half or at least eight on
/// 1 September of the campaign year: the authority may admit the child earlier or later.
/// Once per child and campaign, before the campaign closes; an officer grants or refuses it
/// (`GET …/officer/age-exceptions`).
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/school/age-exception-requests",
    tag = "school",
    security(("bearer" = [])),
    request_body = AgeExceptionAsk,
    responses(
        (status = 201, description = "Requested.", body = EventsResponse),
        (status = 409, description = "Already requested (`age_exception_already_requested`, field `document`).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad value, an age that needs no exception (`birth_date`) or the wrong `category`.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn request_age_exception(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<AgeExceptionAsk>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent], body)?;
    let w = write.writer(&authority)?;
    let command = Command::RequestAgeException {
        campaign: req.campaign,
        child: person_key(&write.state.config.person_secret, "document", &req.document)?,
        birth_date: req.birth_date,
        category: req.category,
        requested_by: write.caller.sub.clone(),
    };
    write.answer(&w, command, StatusCode::CREATED).await
}

#[derive(Serialize, ToSchema)]
pub struct AgeRequestsList {
    /// Oldest first.
    requests: Vec<AgeRequestView>,
}

/// My age-exception requests
///
/// **Roles:** parent. The requests this account made, with their status and, once decided,
/// when and (for a refusal) why.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/school/age-exception-requests",
    tag = "school",
    security(("bearer" = [])),
    responses((status = 200, description = "The requests.", body = AgeRequestsList))
)]
async fn my_age_requests(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<AgeRequestsList>, ApiError> {
    caller.require(&[Role::Parent])?;
    let w = access::writer(&state, &authority)?;
    let requests = w.read(|s| age_requests(s, |r| *r.requested_by == *caller.sub));
    Ok(Json(AgeRequestsList { requests }))
}

/// The enrollment decisions of one stage of a campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrollmentRequest {
    #[schema(value_type = Code)]
    round: RoundId,
    #[schema(value_type = Code)]
    campaign: CampaignId,
    stage: CampaignStage,
}

/// Issue first-grade enrollment decisions
///
/// **Roles:** officer (and admin). Single-school campaigns fill each school in queue order;
/// ranked campaigns allocate by deferred acceptance.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/school/enrollments",
    tag = "school",
    security(("bearer" = [])),
    request_body = EnrollmentRequest,
    responses((status = 201, description = "The round's results.", body = RoundResponse))
)]
async fn run_school_enrollment(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<EnrollmentRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let command = Command::RunSchoolEnrollment {
        round: req.round,
        campaign: req.campaign,
        stage: req.stage,
    };
    let reply = write.send(&w, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        round_response(&w, events)
    }))
}
