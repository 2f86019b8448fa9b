//! What a round looks like on the wire: its scope, seats and placements, as answered by
//! running it and by reading its results.

use chrono::{DateTime, NaiveDate, Utc};
use ochered_core::command::CampaignStage;
use ochered_core::domain::{ApplicationNumber, CampaignId, InstitutionId, RoundId};
use ochered_core::rounds::{Round, RoundScope};
use ochered_core::state::{Placement, PlacementStatus, State};
use ochered_core::Event;
use ochered_writer::{CommittedEvent, Writer};
use serde::Serialize;
use utoipa::ToSchema;

use super::schema::Code;

#[derive(Serialize, ToSchema)]
pub struct RoundSeats {
    /// `K001/3` (kindergarten age group) or `S001` (school).
    id: String,
    #[schema(value_type = Code)]
    institution: InstitutionId,
    age_group: Option<u8>,
    capacity: u32,
}

/// A placement; `status`, `deadline` and `answered_at` are shown to officers only.
#[derive(Serialize, ToSchema)]
pub struct RoundPlacementView {
    #[schema(value_type = u32)]
    application: ApplicationNumber,
    /// The id of the seat group, as in `seats`.
    seats: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    status: Option<PlacementStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    deadline: Option<Option<DateTime<Utc>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    answered_at: Option<Option<DateTime<Utc>>>,
}

/// A round's summary and placements.
#[derive(Serialize, ToSchema)]
pub struct RoundView {
    #[schema(value_type = Code)]
    id: RoundId,
    at: DateTime<Utc>,
    scope: RoundScopeView,
    applicants: usize,
    placed: usize,
    seats: Vec<RoundSeats>,
    placements: Vec<RoundPlacementView>,
    /// The officer's stated reason when the round ran outside the authority's round
    /// calendar.
    #[serde(skip_serializing_if = "Option::is_none")]
    calendar_override: Option<String>,
}

/// What a round filled: a kindergarten intake (with the day families start and the deadline
/// of its offers) or a stage of a first-grade campaign.
#[derive(Serialize, ToSchema)]
#[serde(tag = "service", rename_all = "snake_case")]
pub enum RoundScopeView {
    Kindergarten {
        intake_year: i32,
        intake_date: NaiveDate,
        offer_deadline: DateTime<Utc>,
    },
    School {
        #[schema(value_type = Code)]
        campaign: CampaignId,
        stage: CampaignStage,
    },
}

/// The answer to running a round.
#[derive(Serialize, ToSchema)]
pub struct RoundResponse {
    round: Option<RoundView>,
    authority_seq: Option<i64>,
}

/// A round's summary and placements. `full` adds what families answered (officers only).
pub fn round_view(state: &State, round: &Round, full: bool) -> RoundView {
    let scope = match round.scope {
        RoundScope::Kindergarten {
            intake_year,
            intake_date,
            offer_deadline,
        } => RoundScopeView::Kindergarten {
            intake_year,
            intake_date,
            offer_deadline,
        },
        RoundScope::School { campaign, stage } => RoundScopeView::School {
            campaign: state.campaign(campaign).config.id.clone(),
            stage,
        },
    };
    let seats = round
        .seats
        .iter()
        .map(|g| RoundSeats {
            id: state.seat_group_id(g),
            institution: state.institution(g.institution).id.clone(),
            age_group: g.age_group,
            capacity: g.capacity,
        })
        .collect();
    let placements = round
        .placements
        .iter()
        .map(|p| {
            let mut view = RoundPlacementView {
                application: p.number,
                seats: state.seat_group_id(&round.seats[p.seats as usize]),
                status: None,
                deadline: None,
                answered_at: None,
            };
            if full {
                if let Some(placement) = placement_in(state, round, p.number) {
                    view.status = Some(placement.status);
                    view.deadline = Some(placement.deadline);
                    view.answered_at = Some(placement.answered_at);
                }
            }
            view
        })
        .collect();
    RoundView {
        id: round.id.clone(),
        at: round.at,
        scope,
        applicants: round.n_applicants(),
        placed: round.placements.len(),
        seats,
        placements,
        calendar_override: round.calendar_override.clone(),
    }
}

/// The application's placement by this round, if it is still its placement (a later round
/// may have placed it again): what the family answered and when.
pub fn placement_in<'a>(
    state: &'a State,
    round: &Round,
    number: ApplicationNumber,
) -> Option<&'a Placement> {
    state
        .application(number)
        .and_then(|app| app.placement)
        .map(|idx| state.placement(idx))
        .filter(|placement| state.rounds()[placement.round as usize].id == round.id)
}

impl RoundResponse {
    /// The answer to a preview: the round as it would run, recorded nowhere.
    pub fn preview(round: Option<RoundView>) -> Self {
        RoundResponse {
            round,
            authority_seq: None,
        }
    }
}

/// The answer to running a round: its summary and placements, read from the committed event.
pub fn round_response(w: &Writer, events: Vec<CommittedEvent>) -> RoundResponse {
    let round = events.iter().find_map(|e| match &e.event {
        Event::KindergartenRoundCompleted { round, .. }
        | Event::SchoolEnrollmentCompleted { round, .. } => Some(round.clone()),
        _ => None,
    });
    let results = round.and_then(|id| {
        w.read(|s| {
            let idx = s.round_idx(&id)?;
            Some(round_view(s, &s.rounds()[idx as usize], true))
        })
    });
    RoundResponse {
        round: results,
        authority_seq: events.last().map(|e| e.authority_seq),
    }
}

/// A round that has not run: its summary and placements as the events the rules would give
/// show them (every placement an offer, or an enrollment, not yet answered), read from the
/// events alone: nothing is folded into the state.
pub fn preview_view(events: &[Event]) -> Option<RoundView> {
    let (id, at, scope, seats, applicants, placements, calendar_override) =
        events.iter().find_map(|e| match e {
            Event::KindergartenRoundCompleted {
                round,
                intake_year,
                intake_date,
                offer_deadline,
                at,
                seats,
                applicants,
                placements,
                calendar_override,
            } => Some((
                round,
                *at,
                RoundScopeView::Kindergarten {
                    intake_year: *intake_year,
                    intake_date: *intake_date,
                    offer_deadline: *offer_deadline,
                },
                seats,
                applicants,
                placements,
                calendar_override.clone(),
            )),
            Event::SchoolEnrollmentCompleted {
                round,
                campaign,
                stage,
                at,
                seats,
                applicants,
                placements,
            } => Some((
                round,
                *at,
                RoundScopeView::School {
                    campaign: campaign.clone(),
                    stage: *stage,
                },
                seats,
                applicants,
                placements,
                None,
            )),
            _ => None,
        })?;
    let (status, deadline) = match scope {
        RoundScopeView::Kindergarten { offer_deadline, .. } => {
            (PlacementStatus::Offered, Some(offer_deadline))
        }
        RoundScopeView::School { .. } => (PlacementStatus::Accepted, None),
    };
    Some(RoundView {
        id: id.clone(),
        at,
        scope,
        applicants: applicants.len(),
        placed: placements.len(),
        seats: seats
            .iter()
            .map(|g| RoundSeats {
                id: g.instance_id(),
                institution: g.institution.clone(),
                age_group: g.age_group,
                capacity: g.capacity,
            })
            .collect(),
        placements: placements
            .iter()
            .map(|p| RoundPlacementView {
                application: p.number,
                seats: seats[p.seats as usize].instance_id(),
                status: Some(status),
                deadline: Some(deadline),
                answered_at: Some(None),
            })
            .collect(),
        calendar_override,
    })
}
