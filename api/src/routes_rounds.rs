//! REST handlers for allocation rounds under `/api/v1`: kindergarten seats and rounds,
//! offers, first-grade enrollment decisions, the round results and their exported
//! instances, and the time-advance commands (offer expiry, clinic hold passing).
//!
//! Roles: officers publish seats, run rounds and read full results; auditors read
//! anonymised results (no answers of families) and export instances; a parent answers the
//! offers of their own applications, and so may an officer.

// `ApiError` is the crate's problem+json error; boxing it is a crate-wide decision.

use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use ochered_core::command::{AgeGroupSeats, CampaignStage, Command};
use ochered_core::domain::{ApplicationNumber, CampaignId, InstitutionId, RoundId};
use ochered_core::rounds::{Round, RoundScope};
use ochered_core::state::State;
use ochered_writer::CommittedEvent;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_owner, events_json, execute, parse_number, respond, writer};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::json::Body;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/authorities/{authority}/kindergarten/seats",
            get(list_seats).post(publish_seats),
        )
        .route(
            "/authorities/{authority}/kindergarten/rounds",
            post(run_kindergarten_round),
        )
        .route(
            "/authorities/{authority}/kindergarten/offers/expire",
            post(expire_offers),
        )
        .route(
            "/authorities/{authority}/school/enrollments",
            post(run_school_enrollment),
        )
        .route("/authorities/{authority}/rounds", get(list_rounds))
        .route(
            "/authorities/{authority}/rounds/{round}",
            get(round_results),
        )
        .route(
            "/authorities/{authority}/rounds/{round}/instance",
            get(round_instance),
        )
        .route(
            "/authorities/{authority}/applications/{number}/offer/accept",
            post(accept_offer),
        )
        .route(
            "/authorities/{authority}/applications/{number}/offer/decline",
            post(decline_offer),
        )
        .route(
            "/authorities/{authority}/slots/holds/expire",
            post(expire_slot_holds),
        )
}

/// Seats of some age groups of a kindergarten for an intake year.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SeatsRequest {
    #[schema(value_type = crate::openapi::Code)]
    institution: InstitutionId,
    intake_year: i32,
    #[schema(value_type = Vec<crate::openapi::AgeGroupSeatsSchema>)]
    seats: Vec<AgeGroupSeats>,
}

/// A kindergarten round: its id, the intake year and the day the placed children start
/// (1 September of the intake year by default).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct KindergartenRoundRequest {
    #[schema(value_type = crate::openapi::Code)]
    round: RoundId,
    intake_year: i32,
    #[serde(default)]
    intake_date: Option<NaiveDate>,
}

/// The enrollment decisions of one stage of a campaign.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrollmentRequest {
    #[schema(value_type = crate::openapi::Code)]
    round: RoundId,
    #[schema(value_type = crate::openapi::Code)]
    campaign: CampaignId,
    #[schema(value_type = crate::openapi::CampaignStageSchema)]
    stage: CampaignStage,
}

fn parse_round(raw: &str) -> Result<RoundId, ApiError> {
    RoundId::parse(raw).map_err(|e| ApiError::invalid("round", e.reason))
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
    responses((status = 201, description = "Published.", body = crate::openapi::EventsResponse))
)]
async fn publish_seats(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<SeatsRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // The role is checked before the body, so a stranger learns nothing from a 422.
    caller.require(&[Role::Officer])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::PublishKindergartenSeats {
        institution: req.institution,
        intake_year: req.intake_year,
        seats: req.seats,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, events_json))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeatsQuery {
    intake_year: Option<i32>,
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
    responses((status = 200, description = "The seat groups.", body = crate::openapi::SeatsList))
)]
async fn list_seats(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    query: Result<axum::extract::Query<SeatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(query) =
        query.map_err(|e| ApiError::invalid("intake_year", e.body_text()))?;
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        let seats: Vec<Value> = s
            .kindergarten_seats()
            .iter()
            .filter(|g| query.intake_year.is_none_or(|y| g.intake_year == y))
            .map(|g| {
                json!({
                    "institution": s.institution(g.institution).id,
                    "intake_year": g.intake_year,
                    "age_group": g.age_group,
                    "published": g.published,
                    "taken": g.taken,
                    "free": g.published.saturating_sub(g.taken),
                })
            })
            .collect();
        json!({ "seats": seats })
    })))
}

/// The body answering a round: its summary and placements, read from the committed event.
fn round_body(w: &ochered_writer::Writer, events: &[CommittedEvent]) -> Value {
    let round = events.iter().find_map(|e| match &e.event {
        ochered_core::Event::KindergartenRoundCompleted { round, .. }
        | ochered_core::Event::SchoolEnrollmentCompleted { round, .. } => Some(round.clone()),
        _ => None,
    });
    let results = round.and_then(|id| {
        w.read(|s| {
            let idx = s.round_idx(&id)?;
            Some(round_view(s, &s.rounds()[idx as usize], true))
        })
    });
    json!({
        "round": results,
        "authority_seq": events.last().map(|e| e.authority_seq),
    })
}

/// Run a kindergarten allocation round
///
/// **Roles:** officer (and admin). Deferred acceptance over the free seats of the intake year;
/// every placement becomes an offer with a deadline.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/kindergarten/rounds",
    tag = "kindergarten",
    security(("bearer" = [])),
    request_body = KindergartenRoundRequest,
    responses((status = 201, description = "The round's results.", body = crate::openapi::RoundResponse))
)]
async fn run_kindergarten_round(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<KindergartenRoundRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // The role is checked before the body, so a stranger learns nothing from a 422.
    caller.require(&[Role::Officer])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::RunKindergartenRound {
        round: req.round,
        intake_year: req.intake_year,
        intake_date: req.intake_date,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        round_body(&w, events)
    }))
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
    responses((status = 201, description = "The round's results.", body = crate::openapi::RoundResponse))
)]
async fn run_school_enrollment(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Body<EnrollmentRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // The role is checked before the body, so a stranger learns nothing from a 422.
    caller.require(&[Role::Officer])?;
    let Body(req) = body?;
    let w = writer(&state, &authority)?;
    let command = Command::RunSchoolEnrollment {
        round: req.round,
        campaign: req.campaign,
        stage: req.stage,
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        round_body(&w, events)
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
    responses((status = 200, description = "Done (no events when nothing was due).", body = crate::openapi::EventsResponse))
)]
async fn expire_offers(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let w = writer(&state, &authority)?;
    let reply = execute(&w, &caller, &headers, Command::ExpireOffers {}).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// Pass lapsed slot holds on
///
/// **Roles:** registrar, officer (and admin). Passes every lapsed waiting-list hold to the
/// next patient, or opens the slot to everyone (the server also does this every minute).
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/slots/holds/expire",
    tag = "clinic",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = crate::openapi::EventsResponse))
)]
async fn expire_slot_holds(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Registrar, Role::Officer])?;
    let w = writer(&state, &authority)?;
    let reply = execute(&w, &caller, &headers, Command::ExpireSlotHolds {}).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
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
    responses((status = 200, description = "Accepted.", body = crate::openapi::EventsResponse))
)]
async fn accept_offer(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer_offer(state, authority, number, caller, headers, true).await
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
    responses((status = 200, description = "Declined.", body = crate::openapi::EventsResponse))
)]
async fn decline_offer(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer_offer(state, authority, number, caller, headers, false).await
}

async fn answer_offer(
    state: AppState,
    authority: String,
    number: String,
    caller: Caller,
    headers: HeaderMap,
    accept: bool,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Parent, Role::Officer])?;
    let number = parse_number(&number)?;
    let w = writer(&state, &authority)?;
    check_owner(&w, &caller, number)?;
    let application = ApplicationNumber(number);
    let command = if accept {
        Command::AcceptOffer { application }
    } else {
        Command::DeclineOffer { application }
    };
    let reply = execute(&w, &caller, &headers, command).await?;
    Ok(respond(reply, StatusCode::OK, events_json))
}

/// A round's summary and placements. `full` adds what families answered (officers only).
fn round_view(state: &State, round: &Round, full: bool) -> Value {
    let scope = match round.scope {
        RoundScope::Kindergarten {
            intake_year,
            intake_date,
            offer_deadline,
        } => json!({
            "service": "kindergarten",
            "intake_year": intake_year,
            "intake_date": intake_date,
            "offer_deadline": offer_deadline,
        }),
        RoundScope::School { campaign, stage } => json!({
            "service": "school",
            "campaign": state.campaign(campaign).config.id,
            "stage": stage,
        }),
    };
    let seats: Vec<Value> = round
        .seats
        .iter()
        .map(|g| {
            json!({
                "id": state.seat_group_id(g),
                "institution": state.institution(g.institution).id,
                "age_group": g.age_group,
                "capacity": g.capacity,
            })
        })
        .collect();
    let placements: Vec<Value> = round
        .placements
        .iter()
        .map(|p| {
            let mut view = json!({
                "application": p.number,
                "seats": state.seat_group_id(&round.seats[p.seats as usize]),
            });
            if full {
                let placement = state
                    .application(p.number)
                    .and_then(|app| app.placement)
                    .map(|idx| state.placement(idx))
                    .filter(|placement| state.rounds()[placement.round as usize].id == round.id);
                if let (Some(placement), Some(map)) = (placement, view.as_object_mut()) {
                    map.insert("status".into(), json!(placement.status));
                    map.insert("deadline".into(), json!(placement.deadline));
                    map.insert("answered_at".into(), json!(placement.answered_at));
                }
            }
            view
        })
        .collect();
    json!({
        "id": round.id,
        "at": round.at,
        "scope": scope,
        "applicants": round.n_applicants(),
        "placed": round.placements.len(),
        "seats": seats,
        "placements": placements,
    })
}

/// List rounds
///
/// **Roles:** officer, auditor (and admin). Every round with its counts.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/rounds",
    tag = "rounds",
    security(("bearer" = [])),
    responses((status = 200, description = "The rounds.", body = crate::openapi::RoundsList))
)]
async fn list_rounds(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let w = writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        let rounds: Vec<Value> = s
            .rounds()
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "at": r.at,
                    "service": if r.is_kindergarten() { "kindergarten" } else { "school" },
                    "applicants": r.n_applicants(),
                    "placed": r.placements.len(),
                    "seats": r.seats.iter().map(|g| u64::from(g.capacity)).sum::<u64>(),
                })
            })
            .collect();
        json!({ "rounds": rounds })
    })))
}

fn find_round<'a>(s: &'a State, id: &RoundId) -> Result<&'a Round, ApiError> {
    s.round_idx(id)
        .map(|idx| &s.rounds()[idx as usize])
        .ok_or_else(|| {
            ApiError::not_found(format!("round {id} does not exist")).with_field("round")
        })
}

/// Read a round's results
///
/// **Roles:** officer (with the families' answers), auditor (anonymised) (and admin). The
/// seats and placements of the round. As a file: `GET …/files/rounds/{round}.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/rounds/{round}",
    tag = "rounds",
    security(("bearer" = [])),
    responses((status = 200, description = "The round.", body = crate::openapi::RoundView))
)]
async fn round_results(
    AxumState(state): AxumState<AppState>,
    Path((authority, round)): Path<(String, String)>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let round = parse_round(&round)?;
    let w = writer(&state, &authority)?;
    let full = caller.role != Role::Auditor;
    w.read(|s| Ok(Json(round_view(s, find_round(s, &round)?, full))))
}

/// Export a round's allocation instance
///
/// **Roles:** officer, auditor (and admin). The inputs of the round as recorded (PRODUCT.md
/// §4): `ochered allocate` on it reproduces the placements.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/rounds/{round}/instance",
    tag = "rounds",
    security(("bearer" = [])),
    responses((status = 200, description = "The allocation instance.", body = serde_json::Value))
)]
async fn round_instance(
    AxumState(state): AxumState<AppState>,
    Path((authority, round)): Path<(String, String)>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let round = parse_round(&round)?;
    let w = writer(&state, &authority)?;
    w.read(|s| {
        let instance = s.round_instance(find_round(s, &round)?);
        serde_json::to_value(instance)
            .map(Json)
            .map_err(|_| ApiError::internal())
    })
}
