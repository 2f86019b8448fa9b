//! Rules of clinic appointments: specialties, slots, bookings, the waiting list and its
//! holds on freed slots, and no-shows (docs/RULES.md#clinic).

use std::collections::BTreeSet;

use chrono::Duration;

use crate::command::{Command, SlotSpec};
use crate::domain::{BookingNumber, DoctorId, PersonKey, SlotId, Specialty};
use crate::event::Event;
use crate::ordering::TIER_GENERAL;
use crate::rejection::Rejection;
use crate::state::{BookingStatus, Hold};

use super::checks::check_subject;
use super::Context;

/// Most slots published in one command.
pub const SLOTS_PER_COMMAND_MAX: usize = 5_000;

/// The clinic commands, in the order of [`Command`].
pub(super) fn decide(cx: Context, command: &Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::ConfigureSpecialty {
            specialty,
            referral_only,
        } => Ok(vec![Event::SpecialtyConfigured {
            specialty: specialty.clone(),
            referral_only: *referral_only,
        }]),
        Command::PublishSlots {
            doctor,
            specialty,
            slots,
        } => publish_slots(cx, doctor, specialty, slots),
        Command::BookSlot {
            slot,
            patient,
            referral,
            booked_by,
            by_staff,
        } => book_slot(
            cx,
            slot,
            patient,
            referral.as_deref(),
            Booker {
                subject: booked_by,
                staff: *by_staff,
            },
        ),
        Command::CancelBooking { booking } => cancel_booking(cx, *booking),
        Command::JoinWaitingList {
            specialty,
            patient,
            tier,
        } => join_waiting_list(cx, specialty, patient, *tier),
        Command::RecordNoShow { booking } => record_no_show(cx, *booking),
        Command::ExpireSlotHolds {} => Ok(expire_slot_holds(cx)),
        Command::LeaveWaitingList { specialty, patient } => {
            leave_waiting_list(cx, specialty, patient)
        }
        other => unreachable!("{} is not a clinic command", other.name()),
    }
}

/// Slots of a configured specialty, new ids, 5-480 minutes, starting in the future
/// (docs/RULES.md#clinic-slots).
fn publish_slots(
    cx: Context,
    doctor: &DoctorId,
    specialty: &Specialty,
    slots: &[SlotSpec],
) -> Result<Vec<Event>, Rejection> {
    let Context { state, now, .. } = cx;
    if state.specialty(specialty).is_none() {
        return Err(Rejection::UnknownSpecialty {
            id: specialty.to_string(),
        });
    }
    if slots.is_empty() {
        return Err(Rejection::invalid("slots", "must list at least one slot"));
    }
    if slots.len() > SLOTS_PER_COMMAND_MAX {
        return Err(Rejection::TooMany {
            field: "slots".into(),
            count: slots.len(),
            max: SLOTS_PER_COMMAND_MAX,
        });
    }
    let mut seen = BTreeSet::new();
    for slot in slots {
        if state.slot(&slot.id).is_some() || !seen.insert(&slot.id) {
            return Err(Rejection::SlotExists {
                id: slot.id.to_string(),
            });
        }
        if !(5..=480).contains(&slot.duration_minutes) {
            return Err(Rejection::invalid(
                "slots.duration_minutes",
                "must be 5-480 minutes",
            ));
        }
        if slot.start <= now {
            return Err(Rejection::SlotInThePast {
                id: slot.id.to_string(),
            });
        }
    }
    check_no_overlap(cx, doctor, slots)?;
    Ok(vec![Event::SlotsPublished {
        doctor: doctor.clone(),
        specialty: specialty.clone(),
        slots: slots.to_vec(),
    }])
}

/// A doctor is in one place at a time: the slots of one doctor never overlap, neither among
/// those published together nor with those published before (a slot may start when the
/// previous one ends).
fn check_no_overlap(cx: Context, doctor: &DoctorId, slots: &[SlotSpec]) -> Result<(), Rejection> {
    let end = |slot: &SlotSpec| slot.start + Duration::minutes(i64::from(slot.duration_minutes));
    let mut by_start: Vec<&SlotSpec> = slots.iter().collect();
    by_start.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    for pair in by_start.windows(2) {
        if pair[1].start < end(pair[0]) {
            return Err(Rejection::SlotOverlaps {
                id: pair[1].id.to_string(),
                other: pair[0].id.to_string(),
            });
        }
    }
    for slot in slots {
        if let Some((other, other_end)) = cx.state.doctor_slot_starting_before(doctor, end(slot)) {
            if other_end > slot.start {
                return Err(Rejection::SlotOverlaps {
                    id: slot.id.to_string(),
                    other: other.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Who books: the account, and whether it is staff booking for the patient.
struct Booker<'a> {
    subject: &'a str,
    staff: bool,
}

/// Never two bookings on one slot, one active booking per patient and specialty, a referral
/// where the specialty needs one, no self-booking after repeated no-shows, and a held slot
/// only for its holder (docs/RULES.md#clinic-booking, #clinic-referrals,
/// #clinic-waiting-list, #clinic-no-shows).
fn book_slot(
    cx: Context,
    slot_id: &SlotId,
    patient: &PersonKey,
    referral: Option<&str>,
    booker: Booker,
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    let booked_by = booker.subject;
    check_subject("booked_by", booked_by)?;
    let slot = state.slot(slot_id).ok_or_else(|| Rejection::UnknownSlot {
        id: slot_id.to_string(),
    })?;
    if slot.start <= now {
        return Err(Rejection::SlotInThePast {
            id: slot_id.to_string(),
        });
    }
    if let Some(booking) = slot.booking {
        return Err(Rejection::SlotTaken {
            id: slot_id.to_string(),
            booking,
        });
    }
    if let Hold::HeldFor {
        patient: holder,
        until,
        ..
    } = state.effective_hold(config, slot, now)
    {
        if holder != *patient {
            return Err(Rejection::SlotHeld {
                id: slot_id.to_string(),
                until,
            });
        }
    }
    let specialty = state
        .specialty(&slot.specialty)
        .expect("a slot's specialty exists");
    if specialty.referral_only {
        match referral {
            Some(r) if !r.trim().is_empty() && r.len() <= 64 => {}
            _ => {
                return Err(Rejection::ReferralRequired {
                    id: slot.specialty.to_string(),
                })
            }
        }
    }
    if let Some(p) = state.patient(patient) {
        if let Some(existing) = p.active_bookings.get(&slot.specialty) {
            return Err(Rejection::PatientHasActiveBooking {
                existing: *existing,
            });
        }
    }
    // The block after repeated no-shows is on booking oneself: staff may still book the
    // patient.
    if !booker.staff {
        if let Some((no_shows, until)) = state.self_booking_blocked(config, patient, now) {
            return Err(Rejection::SelfBookingBlocked { no_shows, until });
        }
    }
    Ok(vec![Event::SlotBooked {
        booking: state.next_booking_number(),
        slot: slot_id.clone(),
        patient: *patient,
        referral: referral.map(str::to_owned),
        booked_by: booked_by.to_owned(),
        at: now,
    }])
}

/// Cancelling frees the slot at once, held first for the head of the waiting list
/// (docs/RULES.md#clinic-waiting-list).
fn cancel_booking(cx: Context, booking: BookingNumber) -> Result<Vec<Event>, Rejection> {
    let b = cx
        .state
        .booking(booking)
        .ok_or(Rejection::UnknownBooking { number: booking })?;
    if b.status != BookingStatus::Active {
        return Err(Rejection::BookingNotActive { number: booking });
    }
    let mut events = vec![Event::BookingCancelled {
        booking,
        at: cx.now,
    }];
    events.extend(hold_after_cancellation(cx, &b.slot));
    Ok(events)
}

/// Once per specialty, and not while the patient holds a booking there.
fn join_waiting_list(
    cx: Context,
    specialty: &Specialty,
    patient: &PersonKey,
    tier: u8,
) -> Result<Vec<Event>, Rejection> {
    let state = cx.state;
    let s = state
        .specialty(specialty)
        .ok_or_else(|| Rejection::UnknownSpecialty {
            id: specialty.to_string(),
        })?;
    if tier > TIER_GENERAL {
        return Err(Rejection::invalid("tier", "must be 0-3"));
    }
    if s.waiting.iter().any(|w| w.patient == *patient) {
        return Err(Rejection::AlreadyOnWaitingList {
            id: specialty.to_string(),
        });
    }
    if let Some(existing) = state
        .patient(patient)
        .and_then(|p| p.active_bookings.get(specialty))
    {
        return Err(Rejection::PatientHasActiveBooking {
            existing: *existing,
        });
    }
    Ok(vec![Event::WaitingListJoined {
        specialty: specialty.clone(),
        patient: *patient,
        tier,
        at: cx.now,
    }])
}

/// Only a patient on the list can leave it; a freed slot held for them now passes at once to
/// the next patient on the list, or opens to everyone (docs/RULES.md#clinic-waiting-list).
fn leave_waiting_list(
    cx: Context,
    specialty: &Specialty,
    patient: &PersonKey,
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    let s = state
        .specialty(specialty)
        .ok_or_else(|| Rejection::UnknownSpecialty {
            id: specialty.to_string(),
        })?;
    if !s.waiting.iter().any(|w| w.patient == *patient) {
        return Err(Rejection::NotOnWaitingList {
            id: specialty.to_string(),
        });
    }
    let mut events = vec![Event::WaitingListLeft {
        specialty: specialty.clone(),
        patient: *patient,
        at: now,
    }];
    for (id, slot) in state.held_slots() {
        if slot.specialty != *specialty || slot.booking.is_some() || slot.start <= now {
            continue;
        }
        let Hold::HeldFor {
            patient: holder,
            mut passed_over,
            ..
        } = state.effective_hold(config, slot, now)
        else {
            continue;
        };
        if holder != *patient {
            continue;
        }
        passed_over.push(holder);
        let recorded = slot.hold.as_ref().map(|h| (h.patient, &h.passed_over));
        let next = s.waiting.iter().find(|w| {
            !passed_over.contains(&w.patient)
                && recorded.is_none_or(|(first, earlier)| {
                    w.patient != first && !earlier.contains(&w.patient)
                })
                && state
                    .self_booking_blocked(config, &w.patient, now)
                    .is_none()
        });
        events.push(match next {
            Some(next) => Event::SlotHeld {
                slot: id.clone(),
                specialty: specialty.clone(),
                patient: next.patient,
                until: now + config.clinic_hold(),
                passed_over,
                at: now,
            },
            None => Event::SlotHoldLapsed {
                slot: id.clone(),
                specialty: specialty.clone(),
                passed_over,
                at: now,
            },
        });
    }
    Ok(events)
}

/// A no-show is recorded only once the slot has started (docs/RULES.md#clinic-no-shows).
fn record_no_show(cx: Context, booking: BookingNumber) -> Result<Vec<Event>, Rejection> {
    let state = cx.state;
    let b = state
        .booking(booking)
        .ok_or(Rejection::UnknownBooking { number: booking })?;
    if b.status != BookingStatus::Active {
        return Err(Rejection::BookingNotActive { number: booking });
    }
    let slot = state.slot(&b.slot).expect("a booking's slot exists");
    if cx.now < slot.start {
        return Err(Rejection::invalid(
            "booking",
            "a no-show can be recorded only after the slot has started",
        ));
    }
    Ok(vec![Event::NoShowRecorded {
        booking,
        at: cx.now,
    }])
}

/// The hold that follows a cancellation of a booking on `slot_id`, if the waiting list has
/// somebody and the slot is still ahead.
fn hold_after_cancellation(cx: Context, slot_id: &SlotId) -> Option<Event> {
    let Context { state, config, now } = cx;
    let slot = state.slot(slot_id)?;
    if slot.start <= now || config.clinic_hold_minutes == 0 {
        return None;
    }
    // The first patient on the list who may book (no-shows can block that).
    let head = state.specialty(&slot.specialty)?.waiting.iter().find(|w| {
        state
            .self_booking_blocked(config, &w.patient, now)
            .is_none()
    })?;
    Some(Event::SlotHeld {
        slot: slot_id.clone(),
        specialty: slot.specialty.clone(),
        patient: head.patient,
        until: now + config.clinic_hold(),
        passed_over: Vec::new(),
        at: now,
    })
}

/// Records the passing of every lapsed hold: to the next patient on the list, or to
/// everyone when the list is exhausted. Booking decisions do not wait for this command
/// (see [`crate::state::State::effective_hold`]); it only makes the passing an event that
/// patients can be told about.
fn expire_slot_holds(cx: Context) -> Vec<Event> {
    let Context { state, config, now } = cx;
    let mut events = Vec::new();
    for (id, slot) in state.held_slots() {
        let Some(hold) = &slot.hold else { continue };
        if now < hold.until {
            continue;
        }
        // A slot that has started cannot be booked any more: its hold simply ends.
        let effective = if slot.start <= now {
            Hold::Lapsed {
                passed_over: vec![hold.patient],
            }
        } else {
            state.effective_hold(config, slot, now)
        };
        match effective {
            Hold::Open => {}
            // Announced now, the hold runs its full length from now even if the chain
            // reached this patient earlier.
            Hold::HeldFor {
                patient,
                until,
                passed_over,
            } => events.push(Event::SlotHeld {
                slot: id.clone(),
                specialty: slot.specialty.clone(),
                patient,
                until: until.max(now + config.clinic_hold()),
                passed_over,
                at: now,
            }),
            Hold::Lapsed { passed_over } => events.push(Event::SlotHoldLapsed {
                slot: id.clone(),
                specialty: slot.specialty.clone(),
                passed_over,
                at: now,
            }),
        }
    }
    events
}
