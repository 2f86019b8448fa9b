//! The registrar's desk: a day's schedule per doctor (every slot with its booking or hold),
//! the waiting lists with the holds on freed slots, and leaving a waiting list (for the
//! patient themselves or by a registrar for them). Publishing slots, booking for a patient,
//! cancelling and no-shows are in [`super::clinic`].

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use ochered_core::command::Command;
use ochered_core::domain::{BookingNumber, DoctorId, PersonKey, SlotId, Specialty};
use ochered_core::state::{BookingStatus, Hold, Slot, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access;
use crate::http::auth::{Caller, Role};
use crate::http::command::{EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::state::AppState;
use crate::wire::person_key;
use crate::wire::schema::{Code, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(day_schedule))
        .routes(routes!(waiting_lists))
        .routes(routes!(leave_waiting_list))
}

/// A patient as staff see them: a pseudonymous reference (the hex of the patient's key,
/// derived from their document with the authority's secret), never the document itself.
fn patient_ref(key: &PersonKey) -> String {
    key.to_hex()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleQuery {
    date: NaiveDate,
    doctor: Option<String>,
}

/// Where a slot stands now.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Anyone may book it.
    Free,
    /// Held for a waiting-list patient until `hold.until`.
    Held,
    /// It has a booking (active or a no-show).
    Booked,
    /// It started unbooked.
    Past,
}

/// The booking on a slot.
#[derive(Serialize, ToSchema)]
pub struct ScheduleBooking {
    #[schema(value_type = u32)]
    number: BookingNumber,
    status: BookingStatus,
    /// The patient's pseudonymous reference.
    patient: String,
    /// The account that booked (the patient's own or a registrar's).
    booked_by: String,
    booked_at: DateTime<Utc>,
}

/// A hold on a freed slot for a waiting-list patient.
#[derive(Serialize, ToSchema)]
pub struct ScheduleHold {
    /// The holder's pseudonymous reference.
    patient: String,
    until: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleSlot {
    #[schema(value_type = Code)]
    id: SlotId,
    #[schema(value_type = Code)]
    specialty: Specialty,
    start: DateTime<Utc>,
    duration_minutes: u16,
    state: SlotState,
    #[serde(skip_serializing_if = "Option::is_none")]
    booking: Option<ScheduleBooking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold: Option<ScheduleHold>,
}

#[derive(Serialize, ToSchema)]
pub struct DoctorDay {
    #[schema(value_type = Code)]
    doctor: DoctorId,
    /// Earliest first.
    slots: Vec<ScheduleSlot>,
}

#[derive(Serialize, ToSchema)]
pub struct DaySchedule {
    /// The local day in the authority's time zone.
    date: NaiveDate,
    time_zone: String,
    /// By doctor id.
    doctors: Vec<DoctorDay>,
}

/// The hold on a slot at `now`, if someone holds it.
fn held_for(s: &State, slot: &Slot, now: DateTime<Utc>) -> Option<(PersonKey, DateTime<Utc>)> {
    if slot.booking.is_some() || slot.start <= now {
        return None;
    }
    match s.effective_hold(s.config()?, slot, now) {
        Hold::HeldFor { patient, until, .. } => Some((patient, until)),
        _ => None,
    }
}

fn schedule_slot(s: &State, id: &SlotId, slot: &Slot, now: DateTime<Utc>) -> ScheduleSlot {
    let booking = slot
        .booking
        .and_then(|n| s.booking(n))
        .map(|b| ScheduleBooking {
            number: b.number,
            status: b.status,
            patient: patient_ref(&b.patient),
            booked_by: b.booked_by.to_string(),
            booked_at: b.booked_at,
        });
    let hold = held_for(s, slot, now).map(|(patient, until)| ScheduleHold {
        patient: patient_ref(&patient),
        until,
    });
    let state = if booking.is_some() {
        SlotState::Booked
    } else if hold.is_some() {
        SlotState::Held
    } else if slot.start <= now {
        SlotState::Past
    } else {
        SlotState::Free
    };
    ScheduleSlot {
        id: id.clone(),
        specialty: slot.specialty.clone(),
        start: slot.start,
        duration_minutes: slot.duration_minutes,
        state,
        booking,
        hold,
    }
}

/// A day's schedule
///
/// **Roles:** registrar (and admin). Every slot starting on the local day `date` (the
/// authority's time zone), per doctor and earliest first, optionally of one doctor: free,
/// held for a waiting-list patient (with the end of the hold), booked (the booking's number,
/// status, the patient's pseudonymous reference and who booked) or past unbooked.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/clinic/schedule",
    tag = "clinic",
    security(("bearer" = [])),
    params(
        ("date" = NaiveDate, Query, description = "The local day (YYYY-MM-DD)."),
        ("doctor" = Option<String>, Query, description = "Only this doctor's slots."),
    ),
    responses(
        (status = 200, description = "The day's schedule.", body = DaySchedule),
        (status = 403, description = "Not a registrar.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad or missing `date`.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn day_schedule(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    query: Result<Query<ScheduleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DaySchedule>, ApiError> {
    caller.require(&[Role::Registrar])?;
    let Query(query) = query.map_err(|e| access::query_error(e, "date"))?;
    let w = access::writer(&state, &authority)?;
    let now = Utc::now();
    Ok(Json(w.read(|s| {
        let Some(config) = s.config() else {
            return DaySchedule {
                date: query.date,
                time_zone: "UTC".into(),
                doctors: Vec::new(),
            };
        };
        let mut slots: Vec<(&SlotId, &Slot)> = s
            .data
            .slots
            .iter()
            .filter(|(_, slot)| config.local_date(slot.start) == query.date)
            .filter(|(_, slot)| {
                query
                    .doctor
                    .as_deref()
                    .is_none_or(|d| slot.doctor.as_str() == d)
            })
            .collect();
        slots.sort_by(|a, b| (&a.1.doctor, a.1.start, a.0).cmp(&(&b.1.doctor, b.1.start, b.0)));
        let mut doctors: Vec<DoctorDay> = Vec::new();
        for (id, slot) in slots {
            let entry = schedule_slot(s, id, slot, now);
            match doctors.last_mut() {
                Some(day) if day.doctor == slot.doctor => day.slots.push(entry),
                _ => doctors.push(DoctorDay {
                    doctor: slot.doctor.clone(),
                    slots: vec![entry],
                }),
            }
        }
        DaySchedule {
            date: query.date,
            time_zone: config.time_zone.name().to_owned(),
            doctors,
        }
    })))
}

/// One patient on a waiting list.
#[derive(Serialize, ToSchema)]
pub struct WaitingEntryView {
    /// 1 for the head of the list.
    position: usize,
    /// The patient's pseudonymous reference.
    patient: String,
    tier: u8,
    joined_at: DateTime<Utc>,
}

/// A freed slot held now for a patient of the list.
#[derive(Serialize, ToSchema)]
pub struct ListHold {
    #[schema(value_type = Code)]
    slot: SlotId,
    #[schema(value_type = Code)]
    doctor: DoctorId,
    start: DateTime<Utc>,
    duration_minutes: u16,
    /// The holder's pseudonymous reference.
    patient: String,
    /// When the hold ends (it then passes to the next patient on the list).
    until: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SpecialtyList {
    #[schema(value_type = Code)]
    specialty: Specialty,
    referral_only: bool,
    /// In order: tier, then time of joining.
    waiting: Vec<WaitingEntryView>,
    /// Earliest slot first.
    holds: Vec<ListHold>,
}

#[derive(Serialize, ToSchema)]
pub struct WaitingLists {
    specialties: Vec<SpecialtyList>,
}

/// The waiting lists with their holds
///
/// **Roles:** registrar (and admin). Every specialty's waiting list in order (the patients
/// by pseudonymous reference, their tier and time of joining) and the freed slots held now
/// for patients of the list, with the instant each hold ends.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/clinic/waiting-lists",
    tag = "clinic",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The waiting lists.", body = WaitingLists),
        (status = 403, description = "Not a registrar.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn waiting_lists(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<WaitingLists>, ApiError> {
    caller.require(&[Role::Registrar])?;
    let w = access::writer(&state, &authority)?;
    let now = Utc::now();
    Ok(Json(w.read(|s| {
        let specialties = s
            .data
            .specialties
            .iter()
            .map(|(id, specialty)| {
                let mut holds: Vec<ListHold> = s
                    .held_slots()
                    .filter(|(_, slot)| slot.specialty == *id)
                    .filter_map(|(slot_id, slot)| {
                        let (patient, until) = held_for(s, slot, now)?;
                        Some(ListHold {
                            slot: slot_id.clone(),
                            doctor: slot.doctor.clone(),
                            start: slot.start,
                            duration_minutes: slot.duration_minutes,
                            patient: patient_ref(&patient),
                            until,
                        })
                    })
                    .collect();
                holds.sort_by(|a, b| (a.start, &a.slot).cmp(&(b.start, &b.slot)));
                SpecialtyList {
                    specialty: id.clone(),
                    referral_only: specialty.referral_only,
                    waiting: specialty
                        .waiting
                        .iter()
                        .enumerate()
                        .map(|(i, e)| WaitingEntryView {
                            position: i + 1,
                            patient: patient_ref(&e.patient),
                            tier: e.tier,
                            joined_at: e.joined_at,
                        })
                        .collect(),
                    holds,
                }
            })
            .collect();
        WaitingLists { specialties }
    })))
}

/// A patient, named by their document, leaving one specialty's waiting list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaveWaitingListRequest {
    #[schema(value_type = Code)]
    specialty: Specialty,
    /// The patient's document (policy or certificate number).
    document: String,
}

/// Leave a waiting list
///
/// **Roles:** parent (the patient, named by their document, as when joining), registrar
/// (and admin). The patient leaves the specialty's waiting list; a freed slot held for them
/// passes at once to the next patient on the list. A specialty that does not exist answers
/// 404, a patient not on its list 409 (both naming `specialty`).
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/waiting-list/leave",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = LeaveWaitingListRequest,
    responses(
        (status = 200, description = "Left.", body = EventsResponse),
        (status = 403, description = "This role may not.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such specialty.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The patient is not on this waiting list.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn leave_waiting_list(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<LeaveWaitingListRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Registrar], body)?;
    let w = write.writer(&authority)?;
    let command = Command::LeaveWaitingList {
        specialty: req.specialty,
        patient: person_key(&write.state.config.person_secret, "document", &req.document)?,
    };
    write.answer(&w, command, StatusCode::OK).await
}
