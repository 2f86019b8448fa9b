//! The kindergarten waiting list: submissions, published seats, allocation rounds and the
//! families' answers to their offers.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use ochered_core::command::{AgeGroupSeats, Command, KindergartenForm};
use ochered_core::domain::{ApplicationNumber, InstitutionId, RoundId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::{self, check_owner, parse_number};
use crate::http::auth::Role;
use crate::http::command::{channel_of, respond, EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::http::personal::with_sealed;
use crate::state::AppState;
use crate::wire::rounds::{preview_view, round_response, RoundResponse};
use crate::wire::schema::Code;
use crate::wire::{person_key, submitted, KindergartenApplicationRequest, SubmittedResponse};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_kindergarten))
        .routes(routes!(list_seats, publish_seats))
        .routes(routes!(run_kindergarten_round))
        .routes(routes!(preview_kindergarten_round))
        .routes(routes!(expire_offers))
        .routes(routes!(accept_offer))
        .routes(routes!(decline_offer))
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
    request_body = KindergartenApplicationRequest,
    responses((status = 201, description = "Submitted, with the application and its positions.", body = SubmittedResponse))
)]
async fn submit_kindergarten(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<KindergartenApplicationRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let form = KindergartenForm {
        child: person_key(&write.state.config.person_secret, "document", &req.document)?,
        birth_date: req.birth_date,
        preferences: req.preferences,
        desired_start: req.desired_start,
        any_other: req.any_other,
        privileges: req.privileges,
        channel: channel_of(&write.caller),
        submitted_by: write.caller.sub.clone(),
        sealed: None,
    };
    let contact = req.contact.map(|c| c.validate(&req.document)).transpose()?;
    let child = form.child;
    let (command, new_key) = with_sealed(&write.state, &w, &child, contact, |sealed| {
        Command::SubmitKindergartenApplication {
            form: KindergartenForm {
                sealed,
                ..form.clone()
            },
        }
    })
    .await?;
    let reply = write.send_with_key(&w, command, new_key).await?;
    let receipt = write.state.transparency.receipt_for(&w, &reply).await;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        submitted(&w, events, receipt)
    }))
}

/// Seats of some age groups of a kindergarten for an intake year.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SeatsRequest {
    #[schema(value_type = Code)]
    institution: InstitutionId,
    intake_year: i32,
    seats: Vec<AgeGroupSeats>,
}

/// Publish kindergarten seats
///
/// **Roles:** officer (and admin). Sets the seats of some age groups of a kindergarten for an
/// intake year (others keep theirs); never below the seats already taken. Many at once: `POST
/// …/files/seats.csv`.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/kindergarten/seats",
    tag = "kindergarten",
    security(("bearer" = [])),
    request_body = SeatsRequest,
    responses((status = 201, description = "Published.", body = EventsResponse))
)]
async fn publish_seats(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<SeatsRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let command = Command::PublishKindergartenSeats {
        institution: req.institution,
        intake_year: req.intake_year,
        seats: req.seats,
    };
    write.answer(&w, command, StatusCode::CREATED).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeatsQuery {
    intake_year: Option<i32>,
}

/// Published seats of one kindergarten age group for an intake year.
#[derive(Serialize, ToSchema)]
pub struct SeatGroupView {
    #[schema(value_type = Code)]
    institution: InstitutionId,
    intake_year: i32,
    age_group: u8,
    published: u32,
    taken: u32,
    free: u32,
}

#[derive(Serialize, ToSchema)]
pub struct SeatsList {
    seats: Vec<SeatGroupView>,
}

/// List kindergarten seats
///
/// Public: no token needed (counts only, no personal data). Every published age group of every
/// kindergarten: the seats published, those taken (outstanding offers and enrolled children)
/// and those free, for one intake year or all.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/kindergarten/seats",
    tag = "kindergarten",
    params(("intake_year" = Option<i32>, Query, description = "Only this intake year (the year of the 1 September the children start).")),
    responses((status = 200, description = "The seat groups.", body = SeatsList))
)]
async fn list_seats(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    query: Result<Query<SeatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeatsList>, ApiError> {
    let Query(query) = query.map_err(|e| crate::http::access::query_error(e, "intake_year"))?;
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        SeatsList {
            seats: s
                .kindergarten_seats()
                .iter()
                .filter(|g| query.intake_year.is_none_or(|y| g.intake_year == y))
                .map(|g| SeatGroupView {
                    institution: s.institution(g.institution).id.clone(),
                    intake_year: g.intake_year,
                    age_group: g.age_group,
                    published: g.published,
                    taken: g.taken,
                    free: g.published.saturating_sub(g.taken),
                })
                .collect(),
        }
    })))
}

/// A kindergarten round: its id, the intake year and the day the placed children start
/// (1 September of the intake year by default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KindergartenRoundRequest {
    #[schema(value_type = Code)]
    round: RoundId,
    intake_year: i32,
    #[serde(default)]
    intake_date: Option<NaiveDate>,
    /// Why this round runs outside the authority's round calendar (1-500 characters); kept
    /// with the round. Without it, a round outside the calendar is refused.
    #[serde(default)]
    #[schema(example = "a group reopened after repairs")]
    calendar_override: Option<String>,
}

/// Run a kindergarten allocation round
///
/// **Roles:** officer (and admin). Deferred acceptance over the free seats of the intake year;
/// every placement becomes an offer with a deadline. The authority's round calendar applies:
/// a main round outside its season is refused (409 `round_out_of_season`), a top-up before the
/// interval since the previous round has passed too (409 `top_up_too_soon`), unless
/// `calendar_override` states a reason.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/kindergarten/rounds",
    tag = "kindergarten",
    security(("bearer" = [])),
    request_body = KindergartenRoundRequest,
    responses((status = 201, description = "The round's results.", body = RoundResponse))
)]
async fn run_kindergarten_round(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<KindergartenRoundRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let command = Command::RunKindergartenRound {
        round: req.round,
        intake_year: req.intake_year,
        intake_date: req.intake_date,
        calendar_override: req.calendar_override,
    };
    let reply = write.send(&w, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        round_response(&w, events)
    }))
}

/// Expire overdue offers
///
/// **Roles:** officer (and admin). Records the expiry of every offer past its deadline (the
/// server also does this every minute).
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/kindergarten/offers/expire",
    tag = "kindergarten",
    security(("bearer" = [])),
    responses((status = 200, description = "Done (no events when nothing was due).", body = EventsResponse))
)]
async fn expire_offers(Path(authority): Path<String>, write: Write) -> Result<Response, ApiError> {
    write.allow(&[Role::Officer])?;
    let w = write.writer(&authority)?;
    write
        .answer(&w, Command::ExpireOffers {}, StatusCode::OK)
        .await
}

/// Accept an offer
///
/// **Roles:** the parent who submitted the application, officer (and admin). Before its
/// deadline; a transfer releases the current place only now.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/offer/accept",
    tag = "kindergarten",
    security(("bearer" = [])),
    responses((status = 200, description = "Accepted.", body = EventsResponse))
)]
async fn accept_offer(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
) -> Result<Response, ApiError> {
    answer_offer(write, authority, number, |application| {
        Command::AcceptOffer { application }
    })
    .await
}

/// Decline an offer
///
/// **Roles:** the parent who submitted the application, officer (and admin). The application
/// stays in its queues for a later intake.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/applications/{number}/offer/decline",
    tag = "kindergarten",
    security(("bearer" = [])),
    responses((status = 200, description = "Declined.", body = EventsResponse))
)]
async fn decline_offer(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
) -> Result<Response, ApiError> {
    answer_offer(write, authority, number, |application| {
        Command::DeclineOffer { application }
    })
    .await
}

/// The family's answer to the offer of its application (or an officer's on its behalf).
async fn answer_offer(
    write: Write,
    authority: String,
    number: String,
    answer: impl FnOnce(ApplicationNumber) -> Command,
) -> Result<Response, ApiError> {
    write.allow(&[Role::Parent, Role::Officer])?;
    let number = parse_number(&number)?;
    let w = write.writer(&authority)?;
    check_owner(&w, &write.caller, number)?;
    let command = answer(ApplicationNumber(number));
    write.answer(&w, command, StatusCode::OK).await
}

/// Preview a kindergarten allocation round
///
/// **Roles:** officer (and admin). What running this round now would give: the same body as
/// running it, decided by the same rules against the current state at the server's clock,
/// but nothing is recorded: no offers are made, no event is appended, and `authority_seq`
/// is null. A round the rules would refuse is refused here the same way (409
/// `round_exists`, `round_out_of_season`, …; 422 naming the field). Between the preview
/// and the run, new applications or answers may change the result.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/kindergarten/rounds/preview",
    tag = "kindergarten",
    security(("bearer" = [])),
    request_body = KindergartenRoundRequest,
    responses(
        (status = 200, description = "What the round would give; nothing recorded.", body = RoundResponse),
        (status = 403, description = "Not an officer.", body = crate::wire::schema::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad input, naming the field.", body = crate::wire::schema::Problem, content_type = "application/problem+json"),
    )
)]
async fn preview_kindergarten_round(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<KindergartenRoundRequest>, ApiError>,
) -> Result<Json<RoundResponse>, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let w = write.writer(&authority)?;
    let command = Command::RunKindergartenRound {
        round: req.round,
        intake_year: req.intake_year,
        intake_date: req.intake_date,
        calendar_override: req.calendar_override,
    };
    let round = w.dry_run(&command, |_, decided| {
        decided
            .map(|events| preview_view(&events))
            .map_err(|rejection| ApiError::from_rejection(&rejection))
    })?;
    Ok(Json(RoundResponse::preview(round)))
}
