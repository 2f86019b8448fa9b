//! Clinic appointments: specialties, doctors' slots, bookings, no-shows and the waiting list
//! that freed slots are held for.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use ochered_core::command::Command;
use ochered_core::domain::{BookingNumber, DoctorId, SlotId, Specialty};
use ochered_core::state::Hold;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::{self, parse_number};
use crate::http::auth::{Caller, Role};
use crate::http::command::{respond, EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::state::AppState;
use crate::wire::schema::Code;
use crate::wire::{
    person_key, BookedResponse, BookingRequest, BookingView, SlotsRequest, SpecialtyRequest,
    WaitingListRequest, WaitingPlacesRequest,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_specialties, configure_specialty))
        .routes(routes!(list_slots, publish_slots))
        .routes(routes!(expire_slot_holds))
        .routes(routes!(my_bookings, book))
        .routes(routes!(cancel_booking))
        .routes(routes!(record_no_show))
        .routes(routes!(join_waiting_list))
        .routes(routes!(waiting_places))
}

/// A specialty as the public sees it: whether it needs a referral and how long its waiting
/// list is (a count, nothing personal).
#[derive(Serialize, ToSchema)]
pub struct SpecialtyView {
    #[schema(value_type = Code)]
    id: Specialty,
    referral_only: bool,
    /// Patients on the waiting list now.
    waiting: usize,
}

#[derive(Serialize, ToSchema)]
pub struct SpecialtiesList {
    specialties: Vec<SpecialtyView>,
}

/// List specialties
///
/// Public: no token needed (counts only, no personal data). Every configured specialty,
/// whether it needs a referral and how many patients wait on its waiting list.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/specialties",
    tag = "clinic",
    responses((status = 200, description = "The specialties.", body = SpecialtiesList))
)]
async fn list_specialties(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<SpecialtiesList>, ApiError> {
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        SpecialtiesList {
            specialties: s
                .data
                .specialties
                .iter()
                .map(|(id, specialty)| SpecialtyView {
                    id: id.clone(),
                    referral_only: specialty.referral_only,
                    waiting: specialty.waiting.len(),
                })
                .collect(),
        }
    })))
}

/// Configure a specialty
///
/// **Roles:** registrar (and admin). A specialty may require a referral.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/specialties",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = SpecialtyRequest,
    responses((status = 201, description = "Configured.", body = EventsResponse))
)]
async fn configure_specialty(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<SpecialtyRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Registrar], body)?;
    let w = write.writer(&authority)?;
    let command = Command::ConfigureSpecialty {
        specialty: req.specialty,
        referral_only: req.referral_only,
    };
    write.answer(&w, command, StatusCode::CREATED).await
}

/// Publish a doctor's slots
///
/// **Roles:** registrar (and admin). Slot ids are unique within the authority.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/slots",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = SlotsRequest,
    responses((status = 201, description = "Published.", body = EventsResponse))
)]
async fn publish_slots(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<SlotsRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Registrar], body)?;
    let w = write.writer(&authority)?;
    let command = Command::PublishSlots {
        doctor: req.doctor,
        specialty: req.specialty,
        slots: req.slots,
    };
    write.answer(&w, command, StatusCode::CREATED).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotQuery {
    specialty: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FreeSlot {
    #[schema(value_type = Code)]
    id: SlotId,
    #[schema(value_type = Code)]
    doctor: DoctorId,
    #[schema(value_type = Code)]
    specialty: Specialty,
    start: DateTime<Utc>,
    duration_minutes: u16,
}

#[derive(Serialize, ToSchema)]
pub struct FreeSlots {
    /// At most 1000.
    free_slots: Vec<FreeSlot>,
}

/// List free slots
///
/// Public: no token needed. The slots anyone may book now (at most 1000), optionally of one
/// specialty, earliest first: not started, not booked, and not held for a patient of the
/// waiting list.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/slots",
    tag = "clinic",
    params(("specialty" = Option<String>, Query, description = "Only slots of this specialty.")),
    responses((status = 200, description = "Free slots.", body = FreeSlots))
)]
async fn list_slots(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    query: Result<Query<SlotQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FreeSlots>, ApiError> {
    let Query(query) = query.map_err(|e| crate::http::access::query_error(e, "specialty"))?;
    let w = access::writer(&state, &authority)?;
    let now = Utc::now();
    Ok(Json(w.read(|s| {
        let Some(config) = s.config() else {
            return FreeSlots {
                free_slots: Vec::new(),
            };
        };
        FreeSlots {
            free_slots: s
                .free_slots(config, query.specialty.as_deref(), now)
                .into_iter()
                .take(1000)
                .map(|(id, slot)| FreeSlot {
                    id: id.clone(),
                    doctor: slot.doctor.clone(),
                    specialty: slot.specialty.clone(),
                    start: slot.start,
                    duration_minutes: slot.duration_minutes,
                })
                .collect(),
        }
    })))
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
    responses((status = 200, description = "Done.", body = EventsResponse))
)]
async fn expire_slot_holds(
    Path(authority): Path<String>,
    write: Write,
) -> Result<Response, ApiError> {
    write.allow(&[Role::Registrar, Role::Officer])?;
    let w = write.writer(&authority)?;
    write
        .answer(&w, Command::ExpireSlotHolds {}, StatusCode::OK)
        .await
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
    request_body = BookingRequest,
    responses((status = 201, description = "Booked, with the server's signed receipt.", body = BookedResponse))
)]
async fn book(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<BookingRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Registrar], body)?;
    let w = write.writer(&authority)?;
    let command = Command::BookSlot {
        slot: req.slot,
        patient: person_key(&write.state.config.person_secret, "document", &req.document)?,
        referral: req.referral,
        booked_by: write.caller.sub.clone(),
        by_staff: write.caller.role != Role::Parent,
    };
    let reply = write.send(&w, command).await?;
    let receipt = write.state.transparency.receipt_for(&w, &reply).await;
    Ok(respond(reply, StatusCode::CREATED, |events| {
        BookedResponse { events, receipt }
    }))
}

#[derive(Serialize, ToSchema)]
pub struct BookingsList {
    bookings: Vec<BookingView>,
}

/// List my bookings
///
/// **Roles:** parent (and admin). The bookings the calling account made.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/bookings",
    tag = "clinic",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's bookings.", body = BookingsList))
)]
async fn my_bookings(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<BookingsList>, ApiError> {
    caller.require(&[Role::Parent])?;
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        BookingsList {
            bookings: s
                .data
                .bookings
                .iter()
                .filter(|b| *b.booked_by == *caller.sub)
                .filter_map(|b| booking_view(s, b))
                .collect(),
        }
    })))
}

/// A booking with its slot's doctor and time (slots are never removed, so every booking's
/// slot is there).
fn booking_view(
    s: &ochered_core::state::State,
    b: &ochered_core::state::Booking,
) -> Option<BookingView> {
    let slot = s.slot(&b.slot)?;
    Some(BookingView {
        number: b.number,
        slot: b.slot.clone(),
        specialty: b.specialty.clone(),
        doctor: slot.doctor.clone(),
        start: slot.start,
        duration_minutes: slot.duration_minutes,
        status: b.status,
        booked_at: b.booked_at,
    })
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
    responses((status = 200, description = "Cancelled.", body = EventsResponse))
)]
async fn cancel_booking(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
) -> Result<Response, ApiError> {
    write.allow(&[Role::Parent, Role::Registrar])?;
    let number = parse_number(&number)?;
    let w = write.writer(&authority)?;
    if write.caller.role == Role::Parent {
        let mine = w.read(|s| {
            s.booking(BookingNumber(number))
                .is_some_and(|b| *b.booked_by == *write.caller.sub)
        });
        if !mine {
            return Err(ApiError::not_found(format!(
                "booking {number} does not exist"
            )));
        }
    }
    let command = Command::CancelBooking {
        booking: BookingNumber(number),
    };
    write.answer(&w, command, StatusCode::OK).await
}

/// Record a no-show
///
/// **Roles:** registrar (and admin). Repeated no-shows block self-booking for a while.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/bookings/{number}/no-show",
    tag = "clinic",
    security(("bearer" = [])),
    responses((status = 200, description = "Recorded.", body = EventsResponse))
)]
async fn record_no_show(
    Path((authority, number)): Path<(String, String)>,
    write: Write,
) -> Result<Response, ApiError> {
    write.allow(&[Role::Registrar])?;
    let booking = BookingNumber(parse_number(&number)?);
    let w = write.writer(&authority)?;
    write
        .answer(&w, Command::RecordNoShow { booking }, StatusCode::OK)
        .await
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
    request_body = WaitingListRequest,
    responses((status = 201, description = "Joined.", body = EventsResponse))
)]
async fn join_waiting_list(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<WaitingListRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Parent, Role::Registrar], body)?;
    // Only a registrar may place a patient in a priority tier.
    if write.caller.role == Role::Parent && req.tier != ochered_core::ordering::TIER_GENERAL {
        return Err(
            ApiError::forbidden("only a registrar may set a priority tier").with_field("tier"),
        );
    }
    let w = write.writer(&authority)?;
    let command = Command::JoinWaitingList {
        specialty: req.specialty,
        patient: person_key(&write.state.config.person_secret, "document", &req.document)?,
        tier: req.tier,
    };
    write.answer(&w, command, StatusCode::CREATED).await
}

/// A patient's place on one specialty's waiting list.
#[derive(Serialize, ToSchema)]
pub struct WaitingPlace {
    #[schema(value_type = Code)]
    specialty: Specialty,
    /// 1 for the head of the list (tier, then time of joining).
    position: usize,
    /// Patients on the list now.
    waiting: usize,
    tier: u8,
    joined_at: DateTime<Utc>,
}

/// A freed slot held for the patient now: only they may book it until `until`.
#[derive(Serialize, ToSchema)]
pub struct HeldSlot {
    #[schema(value_type = Code)]
    slot: SlotId,
    #[schema(value_type = Code)]
    doctor: DoctorId,
    #[schema(value_type = Code)]
    specialty: Specialty,
    start: DateTime<Utc>,
    duration_minutes: u16,
    until: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct WaitingPlaces {
    places: Vec<WaitingPlace>,
    holds: Vec<HeldSlot>,
    /// The patient's bookings that another account made for them (a registrar booking on
    /// their behalf), so that the patient sees them too; a parent's own bookings are in
    /// `GET /bookings`.
    booked_for_you: Vec<BookingView>,
}

/// A patient's places on the waiting lists
///
/// **Roles:** parent, registrar (and admin). The patient is named by their document (in the
/// body, so that it stays out of URLs and logs): their place on each specialty's waiting list,
/// the freed slots held for them now with the instant each hold ends, and the bookings another
/// account (a registrar) made for them. Changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/waiting-list/places",
    tag = "clinic",
    security(("bearer" = [])),
    request_body = WaitingPlacesRequest,
    responses((status = 200, description = "The patient's places and holds.", body = WaitingPlaces))
)]
async fn waiting_places(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    body: Result<Body<WaitingPlacesRequest>, ApiError>,
) -> Result<Json<WaitingPlaces>, ApiError> {
    caller.require(&[Role::Parent, Role::Registrar])?;
    let Body(req) = body?;
    let patient = person_key(&state.config.person_secret, "document", &req.document)?;
    let w = access::writer(&state, &authority)?;
    let now = Utc::now();
    Ok(Json(w.read(|s| {
        let places = s
            .data
            .specialties
            .iter()
            .filter_map(|(id, specialty)| {
                let index = specialty
                    .waiting
                    .iter()
                    .position(|e| e.patient == patient)?;
                let entry = &specialty.waiting[index];
                Some(WaitingPlace {
                    specialty: id.clone(),
                    position: index + 1,
                    waiting: specialty.waiting.len(),
                    tier: entry.tier,
                    joined_at: entry.joined_at,
                })
            })
            .collect();
        let mut holds: Vec<HeldSlot> = match s.config() {
            None => Vec::new(),
            Some(config) => s
                .held_slots()
                .filter(|(_, slot)| slot.booking.is_none())
                .filter_map(|(id, slot)| match s.effective_hold(config, slot, now) {
                    Hold::HeldFor {
                        patient: holder,
                        until,
                        ..
                    } if holder == patient => Some(HeldSlot {
                        slot: id.clone(),
                        doctor: slot.doctor.clone(),
                        specialty: slot.specialty.clone(),
                        start: slot.start,
                        duration_minutes: slot.duration_minutes,
                        until,
                    }),
                    _ => None,
                })
                .collect(),
        };
        holds.sort_by(|a, b| (a.start, &a.slot).cmp(&(b.start, &b.slot)));
        let booked_for_you = s
            .data
            .bookings
            .iter()
            .filter(|b| b.patient == patient && *b.booked_by != *caller.sub)
            .filter_map(|b| booking_view(s, b))
            .collect();
        WaitingPlaces {
            places,
            holds,
            booked_for_you,
        }
    })))
}
