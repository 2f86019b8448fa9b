//! The results of allocation rounds (kindergarten rounds and first-grade enrollment runs)
//! and the allocation instances they were computed from.
//!
//! Roles: officers read full results; auditors read anonymised results (no answers of
//! families) and export instances.

use axum::extract::{Path, State as AxumState};
use axum::Json;
use chrono::{DateTime, Utc};
use ochered_core::domain::RoundId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::{self, find_round, parse_round};
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::wire::rounds::{round_view, RoundView};
use crate::wire::schema::Code;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rounds))
        .routes(routes!(round_results))
        .routes(routes!(round_instance))
}

#[derive(Serialize, ToSchema)]
pub struct RoundSummary {
    #[schema(value_type = Code)]
    id: RoundId,
    at: DateTime<Utc>,
    /// `kindergarten` or `school`.
    service: String,
    applicants: usize,
    placed: usize,
    seats: u64,
    /// The officer's stated reason when the round ran outside the round calendar.
    #[serde(skip_serializing_if = "Option::is_none")]
    calendar_override: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RoundsList {
    rounds: Vec<RoundSummary>,
}

/// List rounds
///
/// **Roles:** officer, auditor (and admin). Every round with its counts.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/rounds",
    tag = "rounds",
    security(("bearer" = [])),
    responses((status = 200, description = "The rounds.", body = RoundsList))
)]
async fn list_rounds(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<RoundsList>, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        RoundsList {
            rounds: s
                .rounds()
                .iter()
                .map(|r| RoundSummary {
                    id: r.id.clone(),
                    at: r.at,
                    service: if r.is_kindergarten() {
                        "kindergarten"
                    } else {
                        "school"
                    }
                    .into(),
                    applicants: r.n_applicants(),
                    placed: r.placements.len(),
                    seats: r.seats.iter().map(|g| u64::from(g.capacity)).sum(),
                    calendar_override: r.calendar_override.clone(),
                })
                .collect(),
        }
    })))
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
    responses((status = 200, description = "The round.", body = RoundView))
)]
async fn round_results(
    AxumState(state): AxumState<AppState>,
    Path((authority, round)): Path<(String, String)>,
    caller: Caller,
) -> Result<Json<RoundView>, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let round = parse_round(&round)?;
    let w = access::writer(&state, &authority)?;
    let full = caller.role != Role::Auditor;
    w.read(|s| Ok(Json(round_view(s, find_round(s, &round)?, full))))
}

/// Export a round's allocation instance
///
/// **Roles:** officer, auditor (and admin). The inputs of the round as recorded
/// (docs/RULES.md#allocation-rounds): `ochered allocate` on it reproduces the placements.
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
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let round = parse_round(&round)?;
    let w = access::writer(&state, &authority)?;
    w.read(|s| {
        let instance = s.round_instance(find_round(s, &round)?);
        serde_json::to_value(instance)
            .map(Json)
            .map_err(|_| ApiError::internal())
    })
}
