//! Clinic appointments: slots, bookings, referrals, no-shows, the waiting list and the hold
//! chain of freed slots (docs/RULES.md#clinic).

use chrono::Duration;
use ochered_core::command::SlotSpec;
use ochered_core::domain::{BookingNumber, DoctorId, SlotId};

use super::*;

fn therapist() -> Specialty {
    Specialty::parse("therapist").unwrap()
}

fn slot(id: &str) -> SlotId {
    SlotId::parse(id).unwrap()
}

fn with_slots() -> Scenario {
    let mut s = given(authority());
    let slots = (1..=4)
        .map(|i| SlotSpec {
            id: slot(&format!("T{i}")),
            start: t("2026-02-10T09:00:00Z") + Duration::minutes(20 * i),
            duration_minutes: 20,
        })
        .collect();
    s.accept(
        Command::PublishSlots {
            doctor: DoctorId::parse("dr-ivanova").unwrap(),
            specialty: therapist(),
            slots,
        },
        t(NOW),
    );
    s.accept(
        Command::PublishSlots {
            doctor: DoctorId::parse("dr-petrov").unwrap(),
            specialty: Specialty::parse("cardiology").unwrap(),
            slots: vec![SlotSpec {
                id: slot("C1"),
                start: t("2026-02-11T09:00:00Z"),
                duration_minutes: 30,
            }],
        },
        t(NOW),
    );
    s
}

fn book(slot_id: &str, patient: u32) -> Command {
    Command::BookSlot {
        slot: slot(slot_id),
        patient: child(patient),
        referral: None,
        booked_by: format!("patient-{patient}"),
        by_staff: false,
    }
}

#[test]
fn slots_are_checked_when_published() {
    let s = with_slots();
    let publish = |id: &str, start: &str, minutes| Command::PublishSlots {
        doctor: DoctorId::parse("dr-x").unwrap(),
        specialty: therapist(),
        slots: vec![SlotSpec {
            id: slot(id),
            start: t(start),
            duration_minutes: minutes,
        }],
    };
    then_rejected(
        s.when(publish("T1", "2026-03-01T09:00:00Z", 20), t(NOW)),
        Rejection::SlotExists { id: "T1".into() },
    );
    then_rejected(
        s.when(publish("X1", "2026-01-01T09:00:00Z", 20), t(NOW)),
        Rejection::SlotInThePast { id: "X1".into() },
    );
    then_invalid(
        s.when(publish("X1", "2026-03-01T09:00:00Z", 0), t(NOW)),
        "slots.duration_minutes",
    );
    then_rejected(
        s.when(
            Command::PublishSlots {
                doctor: DoctorId::parse("dr-x").unwrap(),
                specialty: Specialty::parse("dentist").unwrap(),
                slots: vec![],
            },
            t(NOW),
        ),
        Rejection::UnknownSpecialty {
            id: "dentist".into(),
        },
    );
}

#[test]
fn a_slot_is_never_booked_twice_and_a_patient_books_once_per_specialty() {
    let mut s = with_slots();
    let events = s.accept(book("T1", 1), t(NOW));
    assert_eq!(
        events,
        vec![Event::SlotBooked {
            booking: BookingNumber(1),
            slot: slot("T1"),
            patient: child(1),
            referral: None,
            booked_by: "patient-1".into(),
            at: t(NOW),
        }]
    );
    then_rejected(
        s.when(book("T1", 2), t(NOW)),
        Rejection::SlotTaken {
            id: "T1".into(),
            booking: BookingNumber(1),
        },
    );
    then_rejected(
        s.when(book("T2", 1), t(NOW)),
        Rejection::PatientHasActiveBooking {
            existing: BookingNumber(1),
        },
    );
    then_rejected(
        s.when(book("T9", 1), t(NOW)),
        Rejection::UnknownSlot { id: "T9".into() },
    );
    then_rejected(
        s.when(book("T2", 2), t("2026-02-10T09:40:00Z")),
        Rejection::SlotInThePast { id: "T2".into() },
    );
    // Cancelling frees the slot at once.
    s.accept(
        Command::CancelBooking {
            booking: BookingNumber(1),
        },
        t(NOW),
    );
    then_rejected(
        s.when(
            Command::CancelBooking {
                booking: BookingNumber(1),
            },
            t(NOW),
        ),
        Rejection::BookingNotActive {
            number: BookingNumber(1),
        },
    );
    then_rejected(
        s.when(
            Command::CancelBooking {
                booking: BookingNumber(5),
            },
            t(NOW),
        ),
        Rejection::UnknownBooking {
            number: BookingNumber(5),
        },
    );
    s.accept(book("T1", 2), t(NOW));
}

#[test]
fn referral_only_specialties_need_a_referral() {
    let mut s = with_slots();
    then_rejected(
        s.when(book("C1", 1), t(NOW)),
        Rejection::ReferralRequired {
            id: "cardiology".into(),
        },
    );
    s.accept(
        Command::BookSlot {
            slot: slot("C1"),
            patient: child(1),
            referral: Some("REF-2026-0042".into()),
            booked_by: "patient-1".into(),
            by_staff: false,
        },
        t(NOW),
    );
}

#[test]
fn two_no_shows_within_a_year_block_self_booking() {
    let mut s = with_slots();
    s.accept(book("T1", 1), t(NOW));
    then_invalid(
        s.when(
            Command::RecordNoShow {
                booking: BookingNumber(1),
            },
            t(NOW),
        ),
        "booking",
    );
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(1),
        },
        t("2026-02-10T10:00:00Z"),
    );
    s.accept(book("T3", 1), t("2026-02-10T09:00:00Z"));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(2),
        },
        t("2026-02-10T11:00:00Z"),
    );
    then_rejected(
        s.when(book("T4", 1), t("2026-02-10T09:05:00Z")),
        Rejection::SelfBookingBlocked {
            no_shows: 2,
            until: t("2027-02-10T10:00:00Z"),
        },
    );
}

#[test]
fn the_no_show_block_is_on_self_booking_only_a_registrar_still_books_the_patient() {
    let mut s = with_slots();
    s.accept(book("T1", 1), t(NOW));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(1),
        },
        t("2026-02-10T10:00:00Z"),
    );
    s.accept(book("T3", 1), t("2026-02-10T09:00:00Z"));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(2),
        },
        t("2026-02-10T11:00:00Z"),
    );
    // The patient is blocked from booking themselves...
    then_rejected(
        s.when(book("T4", 1), t("2026-02-10T09:05:00Z")),
        Rejection::SelfBookingBlocked {
            no_shows: 2,
            until: t("2027-02-10T10:00:00Z"),
        },
    );
    // ...but a registrar books the same slot for them.
    s.accept(
        Command::BookSlot {
            slot: slot("T4"),
            patient: child(1),
            referral: None,
            booked_by: "registrar-1".into(),
            by_staff: true,
        },
        t("2026-02-10T09:05:00Z"),
    );
}

#[test]
fn waiting_list_is_joined_once_and_left_by_booking() {
    let mut s = with_slots();
    let join = |p: u32, tier: u8| Command::JoinWaitingList {
        specialty: therapist(),
        patient: child(p),
        tier,
    };
    s.accept(join(1, 3), t(NOW));
    s.accept(join(2, 1), t(NOW) + Duration::minutes(1));
    then_rejected(
        s.when(join(1, 3), t(NOW)),
        Rejection::AlreadyOnWaitingList {
            id: "therapist".into(),
        },
    );
    then_invalid(s.when(join(3, 9), t(NOW)), "tier");
    let order: Vec<_> = s
        .state
        .specialty(&therapist())
        .unwrap()
        .waiting
        .iter()
        .map(|w| w.patient)
        .collect();
    assert_eq!(order, vec![child(2), child(1)], "tier first, then time");
    s.accept(book("T1", 1), t(NOW));
    assert_eq!(s.state.specialty(&therapist()).unwrap().waiting.len(), 1);
    then_rejected(
        s.when(join(1, 3), t(NOW)),
        Rejection::PatientHasActiveBooking {
            existing: BookingNumber(1),
        },
    );
}

#[test]
fn a_freed_slot_is_held_along_the_waiting_list_then_opens_to_everyone() {
    let mut s = with_slots();
    let join = |p: u32, tier: u8| Command::JoinWaitingList {
        specialty: therapist(),
        patient: child(p),
        tier,
    };
    s.accept(book("T1", 1), t(NOW));
    s.accept(join(2, 3), t(NOW));
    s.accept(join(3, 1), t(NOW) + Duration::minutes(1));
    // Cancelling frees T1 and holds it for the head of the list: tier first, then time.
    let cancelled_at = t("2026-02-05T08:00:00Z");
    let events = s.accept(
        Command::CancelBooking {
            booking: BookingNumber(1),
        },
        cancelled_at,
    );
    let hold_until = cancelled_at + Duration::minutes(120);
    assert_eq!(
        events,
        vec![
            Event::BookingCancelled {
                booking: BookingNumber(1),
                at: cancelled_at
            },
            Event::SlotHeld {
                slot: slot("T1"),
                specialty: therapist(),
                patient: child(3),
                until: hold_until,
                passed_over: vec![],
                at: cancelled_at,
            },
        ]
    );
    for other in [2, 4] {
        then_rejected(
            s.when(book("T1", other), cancelled_at + Duration::minutes(5)),
            Rejection::SlotHeld {
                id: "T1".into(),
                until: hold_until,
            },
        );
    }
    // Nothing to pass on before the hold lapses.
    assert_eq!(
        s.accept(
            Command::ExpireSlotHolds {},
            hold_until - Duration::seconds(1)
        ),
        vec![]
    );
    // After it lapses the slot passes to the next on the list, even before the shell says so.
    then_rejected(
        s.when(book("T1", 3), hold_until),
        Rejection::SlotHeld {
            id: "T1".into(),
            until: hold_until + Duration::minutes(120),
        },
    );
    assert!(s.when(book("T1", 2), hold_until).is_ok());
    // Recorded as soon as the first hold lapses (a later announcement would give the next
    // patient a full hold from then on).
    let events = s.accept(Command::ExpireSlotHolds {}, hold_until);
    assert_eq!(
        events,
        vec![Event::SlotHeld {
            slot: slot("T1"),
            specialty: therapist(),
            patient: child(2),
            until: hold_until + Duration::minutes(120),
            passed_over: vec![child(3)],
            at: hold_until,
        }]
    );
    then_rejected(
        s.when(book("T1", 4), hold_until + Duration::minutes(2)),
        Rejection::SlotHeld {
            id: "T1".into(),
            until: hold_until + Duration::minutes(120),
        },
    );
    // When the list is exhausted the slot opens to everyone.
    let open_at = hold_until + Duration::minutes(120);
    assert!(s.when(book("T1", 4), open_at).is_ok());
    let events = s.accept(Command::ExpireSlotHolds {}, open_at);
    assert_eq!(
        events,
        vec![Event::SlotHoldLapsed {
            slot: slot("T1"),
            specialty: therapist(),
            passed_over: vec![child(2)],
            at: open_at,
        }]
    );
    s.accept(book("T1", 4), open_at);
}

#[test]
fn the_held_patient_books_the_slot_and_leaves_the_list() {
    let mut s = with_slots();
    s.accept(book("T2", 1), t(NOW));
    s.accept(
        Command::JoinWaitingList {
            specialty: therapist(),
            patient: child(2),
            tier: 3,
        },
        t(NOW),
    );
    s.accept(
        Command::CancelBooking {
            booking: BookingNumber(1),
        },
        t(NOW),
    );
    s.accept(book("T2", 2), t(NOW) + Duration::minutes(10));
    let t2 = s.state.slot(&slot("T2")).unwrap();
    assert_eq!((t2.booking, &t2.hold), (Some(BookingNumber(2)), &None));
    assert!(s.state.specialty(&therapist()).unwrap().waiting.is_empty());
    assert_eq!(s.state.held_slots().count(), 0);
    // With nobody waiting, a cancellation frees the slot for everyone at once.
    let events = s.accept(
        Command::CancelBooking {
            booking: BookingNumber(2),
        },
        t(NOW) + Duration::minutes(20),
    );
    assert_eq!(events.len(), 1);
    s.accept(book("T2", 5), t(NOW) + Duration::minutes(21));
}

#[test]
fn free_slots_are_those_anyone_may_book_earliest_first() {
    let mut s = with_slots();
    // A slot published later but starting first comes first.
    s.accept(
        Command::PublishSlots {
            doctor: DoctorId::parse("dr-early").unwrap(),
            specialty: therapist(),
            slots: vec![SlotSpec {
                id: slot("Z1"),
                start: t("2026-02-10T09:00:00Z"),
                duration_minutes: 20,
            }],
        },
        t(NOW),
    );
    let free = |s: &Scenario, at: &str| -> Vec<String> {
        s.state
            .free_slots(s.state.config().unwrap(), Some("therapist"), t(at))
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect()
    };
    assert_eq!(free(&s, NOW), ["Z1", "T1", "T2", "T3", "T4"]);
    s.accept(book("T2", 1), t(NOW));
    s.accept(
        Command::JoinWaitingList {
            specialty: therapist(),
            patient: child(2),
            tier: 3,
        },
        t(NOW),
    );
    s.accept(
        Command::CancelBooking {
            booking: BookingNumber(1),
        },
        t(NOW),
    );
    // T2 is held for patient 2: not free, as booking it would be refused to anyone else.
    assert!(s.when(book("T2", 3), t(NOW)).is_err());
    assert_eq!(free(&s, NOW), ["Z1", "T1", "T3", "T4"]);
    // Once the hold lapses with nobody else waiting, T2 is free again; slots that have
    // started are not.
    assert_eq!(free(&s, "2026-02-10T09:30:00Z"), ["T2", "T3", "T4"]);
    assert!(s.when(book("T2", 3), t("2026-02-10T09:30:00Z")).is_ok());
}

#[test]
fn no_shows_block_booking_and_the_hold_chain_passes_a_blocked_patient_by() {
    let mut s = with_slots();
    s.accept(book("T1", 1), t(NOW));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(1),
        },
        t("2026-02-10T10:00:00Z"),
    );
    s.accept(book("T3", 1), t("2026-02-10T09:00:00Z"));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(2),
        },
        t("2026-02-10T11:00:00Z"),
    );
    s.accept(
        Command::JoinWaitingList {
            specialty: therapist(),
            patient: child(1),
            tier: 3,
        },
        t("2026-02-10T08:00:00Z"),
    );
    s.accept(book("T4", 2), t("2026-02-10T08:00:00Z"));
    s.accept(
        Command::CancelBooking {
            booking: BookingNumber(3),
        },
        t("2026-02-10T08:30:00Z"),
    );
    // The only patient waiting is blocked, so nobody holds the freed slot; booking it
    // themselves is still refused to the blocked patient.
    assert_eq!(s.state.slot(&slot("T4")).unwrap().hold, None);
    assert!(matches!(
        s.when(book("T4", 1), t("2026-02-10T08:40:00Z")),
        Err(Rejection::SelfBookingBlocked { no_shows: 2, .. })
    ));
}

/// One doctor is in one place at a time: overlapping slots are refused, among those published
/// together and with those published before; back-to-back slots are fine
/// (docs/RULES.md#clinic-slots).
#[test]
fn overlapping_slots_of_one_doctor_are_refused() {
    let s = with_slots();
    // dr-ivanova has T1..T4 back to back from 09:20 to 10:40.
    let publish = |doctor: &str, slots: &[(&str, &str, u16)]| Command::PublishSlots {
        doctor: DoctorId::parse(doctor).unwrap(),
        specialty: therapist(),
        slots: slots
            .iter()
            .map(|(id, start, minutes)| SlotSpec {
                id: slot(id),
                start: t(start),
                duration_minutes: *minutes,
            })
            .collect(),
    };
    then_rejected(
        s.when(
            publish(
                "dr-x",
                &[
                    ("X1", "2026-03-01T09:00:00Z", 15),
                    ("X2", "2026-03-01T09:05:00Z", 15),
                ],
            ),
            t(NOW),
        ),
        Rejection::SlotOverlaps {
            id: "X2".into(),
            other: "X1".into(),
        },
    );
    then_rejected(
        s.when(
            publish("dr-ivanova", &[("X3", "2026-02-10T09:30:00Z", 20)]),
            t(NOW),
        ),
        Rejection::SlotOverlaps {
            id: "X3".into(),
            other: "T2".into(),
        },
    );
    assert!(s
        .when(
            publish(
                "dr-ivanova",
                &[
                    ("X4", "2026-02-10T09:00:00Z", 20),
                    ("X5", "2026-02-10T10:40:00Z", 20)
                ],
            ),
            t(NOW),
        )
        .is_ok());
    // Another doctor may work at the same time.
    assert!(s
        .when(
            publish("dr-x", &[("X6", "2026-02-10T09:30:00Z", 20)]),
            t(NOW)
        )
        .is_ok());
}

/// A hold announced late still runs its full length from the announcement, and the chain
/// skips a patient whose no-shows block booking (docs/RULES.md#clinic-waiting-list).
#[test]
fn holds_run_their_full_length_and_skip_blocked_patients() {
    let mut s = with_slots();
    // Patient 1 has two no-shows: blocked.
    s.accept(book("T1", 1), t(NOW));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(1),
        },
        t("2026-02-10T10:00:00Z"),
    );
    s.accept(book("T3", 1), t("2026-02-10T09:00:00Z"));
    s.accept(
        Command::RecordNoShow {
            booking: BookingNumber(2),
        },
        t("2026-02-10T11:00:00Z"),
    );
    let join = |p: u32| Command::JoinWaitingList {
        specialty: therapist(),
        patient: child(p),
        tier: 3,
    };
    let noon = t("2026-02-10T12:00:00Z");
    s.accept(join(1), noon);
    s.accept(join(2), noon + Duration::minutes(1));
    s.accept(join(3), noon + Duration::minutes(2));
    s.accept(
        Command::PublishSlots {
            doctor: DoctorId::parse("dr-ivanova").unwrap(),
            specialty: therapist(),
            slots: vec![SlotSpec {
                id: slot("T9"),
                start: t("2026-03-01T09:00:00Z"),
                duration_minutes: 20,
            }],
        },
        noon,
    );
    s.accept(book("T9", 4), noon);
    let cancelled_at = noon + Duration::minutes(5);
    let events = s.accept(
        Command::CancelBooking {
            booking: BookingNumber(3),
        },
        cancelled_at,
    );
    // The blocked patient 1 is skipped: the hold goes to patient 2.
    assert!(matches!(
        &events[1],
        Event::SlotHeld { patient, until, .. }
            if *patient == child(2) && *until == cancelled_at + Duration::minutes(120)
    ));
    // The expiry is recorded late, 100 minutes into patient 3's two hours: patient 3 still
    // gets two hours from the announcement.
    let announced = cancelled_at + Duration::minutes(220);
    let events = s.accept(Command::ExpireSlotHolds {}, announced);
    assert_eq!(
        events,
        vec![Event::SlotHeld {
            slot: slot("T9"),
            specialty: therapist(),
            patient: child(3),
            until: announced + Duration::minutes(120),
            passed_over: vec![child(2)],
            at: announced,
        }]
    );
}

#[test]
fn a_patient_leaves_the_waiting_list_and_a_slot_held_for_them_passes_on() {
    let mut s = with_slots();
    let join = |p: u32| Command::JoinWaitingList {
        specialty: therapist(),
        patient: child(p),
        tier: 3,
    };
    let leave = |p: u32, specialty: &str| Command::LeaveWaitingList {
        specialty: Specialty::parse(specialty).unwrap(),
        patient: child(p),
    };
    s.accept(book("T1", 1), t(NOW));
    for p in [2, 3, 4] {
        s.accept(join(p), t(NOW) + Duration::minutes(p.into()));
    }
    then_rejected(
        s.when(leave(2, "dermatology"), t(NOW)),
        Rejection::UnknownSpecialty {
            id: "dermatology".into(),
        },
    );
    then_rejected(
        s.when(leave(9, "therapist"), t(NOW)),
        Rejection::NotOnWaitingList {
            id: "therapist".into(),
        },
    );
    // Leaving without a hold: only the list changes, the others move up.
    let left_at = t(NOW) + Duration::minutes(10);
    assert_eq!(
        s.accept(leave(3, "therapist"), left_at),
        vec![Event::WaitingListLeft {
            specialty: therapist(),
            patient: child(3),
            at: left_at,
        }]
    );
    let waiting = |s: &Scenario| -> Vec<_> {
        s.state
            .specialty(&therapist())
            .unwrap()
            .waiting
            .iter()
            .map(|w| w.patient)
            .collect()
    };
    assert_eq!(waiting(&s), vec![child(2), child(4)]);
    then_rejected(
        s.when(leave(3, "therapist"), left_at),
        Rejection::NotOnWaitingList {
            id: "therapist".into(),
        },
    );
    // The head holds a freed slot; leaving passes it at once to the next, for a full hold.
    let cancelled_at = t("2026-02-05T08:00:00Z");
    s.accept(
        Command::CancelBooking {
            booking: BookingNumber(1),
        },
        cancelled_at,
    );
    let gone_at = cancelled_at + Duration::minutes(30);
    assert_eq!(
        s.accept(leave(2, "therapist"), gone_at),
        vec![
            Event::WaitingListLeft {
                specialty: therapist(),
                patient: child(2),
                at: gone_at,
            },
            Event::SlotHeld {
                slot: slot("T1"),
                specialty: therapist(),
                patient: child(4),
                until: gone_at + Duration::minutes(120),
                passed_over: vec![child(2)],
                at: gone_at,
            },
        ]
    );
    then_rejected(
        s.when(book("T1", 2), gone_at),
        Rejection::SlotHeld {
            id: "T1".into(),
            until: gone_at + Duration::minutes(120),
        },
    );
    // The last one leaves: the slot opens to everyone.
    let last_at = gone_at + Duration::minutes(5);
    assert_eq!(
        s.accept(leave(4, "therapist"), last_at),
        vec![
            Event::WaitingListLeft {
                specialty: therapist(),
                patient: child(4),
                at: last_at,
            },
            Event::SlotHoldLapsed {
                slot: slot("T1"),
                specialty: therapist(),
                passed_over: vec![child(4)],
                at: last_at,
            },
        ]
    );
    assert!(waiting(&s).is_empty());
    s.accept(book("T1", 2), last_at);
}

/// The log hashes events over their stored bytes: leaving a waiting list is a new event type,
/// and the events written before it keep their exact bytes (pinned here) and decode as before.
#[test]
fn leaving_is_a_new_event_type_and_earlier_events_keep_their_bytes() {
    let at = t("2026-02-01T10:00:00Z");
    let joined = Event::WaitingListJoined {
        specialty: therapist(),
        patient: child(2),
        tier: 3,
        at,
    };
    let left = Event::WaitingListLeft {
        specialty: therapist(),
        patient: child(2),
        at,
    };
    let key = serde_json::to_string(&child(2)).unwrap();
    assert_eq!(
        joined.to_payload(),
        format!(
            r#"{{"type":"WaitingListJoined","specialty":"therapist","patient":{key},"tier":3,"at":"2026-02-01T10:00:00Z"}}"#
        )
    );
    assert_eq!(
        left.to_payload(),
        format!(
            r#"{{"type":"WaitingListLeft","specialty":"therapist","patient":{key},"at":"2026-02-01T10:00:00Z"}}"#
        )
    );
    for event in [joined, left] {
        let back = ochered_core::upcast::decode(
            event.type_name(),
            ochered_core::SCHEMA_VERSION,
            &event.to_payload(),
        )
        .unwrap();
        assert_eq!(back, event);
    }
}
