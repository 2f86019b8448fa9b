//! The officer's view of a first-grade campaign: its stages with their opening times in the
//! authority's local time, and the enrollment order of each school (the children enrolled by
//! each stage's enrollment decisions, with the order's date), which the school page prints.

use axum::extract::{Path, State as AxumState};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use ochered_core::command::CampaignStage;
use ochered_core::domain::{
    ApplicationNumber, AuthorityConfig, CampaignId, InstitutionId, RoundId,
};
use ochered_core::rounds::RoundScope;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access;
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::http::personal::open_contact;
use crate::state::AppState;
use crate::wire::schema::{Code, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(enrollment_order))
}

/// A moment of the campaign's calendar: a local day whose local midnight opens (or closes)
/// something.
#[derive(Serialize, ToSchema)]
pub struct CampaignMoment {
    /// `stage1`, `stage2` or `closes`.
    what: &'static str,
    day: NaiveDate,
    /// Local midnight of `day` in the authority's time zone, as an instant.
    at: DateTime<Utc>,
    /// The same instant in local time with its offset (RFC 3339).
    local: String,
}

/// A child enrolled by an enrollment decision.
#[derive(Serialize, ToSchema)]
pub struct EnrolledChild {
    #[schema(value_type = u32)]
    application: ApplicationNumber,
    /// The child's name from the sealed contact, when one was given and not erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    child_name: Option<String>,
    stage: CampaignStage,
    #[schema(value_type = Code)]
    round: RoundId,
    /// When the decision was recorded.
    ordered_at: DateTime<Utc>,
    /// The order's date: the local day of `ordered_at`.
    order_date: NaiveDate,
    /// The application's status now (`enrolled`, or `withdrawn` after a later withdrawal).
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct SchoolOrder {
    #[schema(value_type = Code)]
    institution: InstitutionId,
    name: String,
    seats: u32,
    /// In the order of the decisions (stage, then queue order).
    enrolled: Vec<EnrolledChild>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentOrder {
    #[schema(value_type = Code)]
    campaign: CampaignId,
    year: i32,
    time_zone: String,
    /// Stage 1, stage 2 and the close, in local time.
    calendar: Vec<CampaignMoment>,
    /// The campaign's schools in its order.
    schools: Vec<SchoolOrder>,
}

fn moment(config: &AuthorityConfig, what: &'static str, day: NaiveDate) -> CampaignMoment {
    let at = config.local_midnight(day);
    CampaignMoment {
        what,
        day,
        at,
        local: at.with_timezone(&config.time_zone).to_rfc3339(),
    }
}

/// A campaign's calendar and enrollment order
///
/// **Roles:** officer (and admin). The campaign's stages and close at local midnight in the
/// authority's time zone, and per school the children enrolled by each stage's enrollment
/// decisions with the decision's date (the enrollment order) and the child's name where the
/// family gave one.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/campaigns/{campaign}/enrollment-order",
    tag = "school",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The calendar and the order.", body = EnrollmentOrder),
        (status = 403, description = "Not an officer.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such campaign.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn enrollment_order(
    AxumState(state): AxumState<AppState>,
    Path((authority, campaign)): Path<(String, String)>,
    caller: Caller,
) -> Result<Json<EnrollmentOrder>, ApiError> {
    caller.require(&[Role::Officer])?;
    let w = access::writer(&state, &authority)?;
    let not_found = || {
        ApiError::not_found(format!("campaign {campaign} does not exist")).with_field("campaign")
    };
    let id = CampaignId::parse(&campaign).map_err(|_| not_found())?;
    // The order without names, and what opens each name (outside the read lock).
    let (mut order, sealed) = w.read(|s| {
        let config = s.config().ok_or_else(not_found)?;
        let idx = s.campaign_idx(&id).ok_or_else(not_found)?;
        let c = s.campaign(idx);
        let mut schools: Vec<SchoolOrder> = c
            .config
            .schools
            .iter()
            .zip(c.school_idx.iter())
            .map(|(school, &inst)| SchoolOrder {
                institution: school.institution.clone(),
                name: s.institution(inst).name.clone(),
                seats: school.seats,
                enrolled: Vec::new(),
            })
            .collect();
        let mut sealed = Vec::new();
        for round in &s.data.rounds {
            let RoundScope::School { campaign, stage } = round.scope else {
                continue;
            };
            if campaign != idx {
                continue;
            }
            for p in &round.placements {
                let inst = round.seats[p.seats as usize].institution;
                let Some(i) = c.school_idx.iter().position(|&x| x == inst) else {
                    continue;
                };
                let Some(app) = s.application(p.number) else {
                    continue;
                };
                sealed.push((
                    i,
                    schools[i].enrolled.len(),
                    app.child,
                    app.erased,
                    app.sealed.clone(),
                ));
                schools[i].enrolled.push(EnrolledChild {
                    application: p.number,
                    child_name: None,
                    stage,
                    round: round.id.clone(),
                    ordered_at: round.at,
                    order_date: config.local_date(round.at),
                    status: app.status.as_str(),
                });
            }
        }
        let calendar = vec![
            moment(config, "stage1", c.config.stage1_opens),
            moment(config, "stage2", c.config.stage2_opens),
            moment(config, "closes", c.config.closes),
        ];
        Ok::<_, ApiError>((
            EnrollmentOrder {
                campaign: id.clone(),
                year: c.config.year,
                time_zone: config.time_zone.name().to_owned(),
                calendar,
                schools,
            },
            sealed,
        ))
    })?;
    for (school, index, child, erased, sealed) in sealed {
        let contact = open_contact(&state, &authority, &child, sealed.as_deref(), erased).await?;
        order.schools[school].enrolled[index].child_name = contact.map(|c| c.child_name);
    }
    Ok(Json(order))
}
