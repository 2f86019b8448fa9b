//! The kindergarten queue: applications and their checks, queues, seats, allocation rounds,
//! offers and transfers (docs/RULES.md#kindergarten).

use chrono::Duration;
use ochered_core::command::AgeGroupSeats;
use ochered_core::command::CampaignMode;
use ochered_core::ordering::{Privilege, TieBreak};
use ochered_core::queues::Cause;
use ochered_core::rounds::{RoundApplicant, RoundPlacement, RoundSeats};
use ochered_core::state::PlacementStatus;

use super::school::{submit_school, with_campaign};

use super::*;

#[test]
fn kindergarten_submission_registers_at_receipt_time() {
    let s = given(authority());
    let events = s.when(submit_kg(1, &["K1", "K2"]), t(NOW)).unwrap();
    let form = kg_form(1, &["K1", "K2"]);
    assert_eq!(
        events,
        vec![Event::KindergartenApplicationSubmitted {
            number: ApplicationNumber(1),
            child: form.child,
            birth_date: form.birth_date,
            preferences: form.preferences,
            desired_start: form.desired_start,
            any_other: false,
            privileges: vec![],
            registered_at: t(NOW),
            channel: Channel::Portal,
            submitted_by: "parent-1".into(),
            sealed: None,
        }]
    );
}

#[test]
fn the_same_child_twice_is_refused_with_the_existing_number() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    // Another channel, another account, another spelling of the same document: still refused.
    let mut again = kg_form(1, &["K2"]);
    again.channel = Channel::ServiceCentre;
    again.submitted_by = "officer-desk".into();
    again.child = PersonKey::derive(
        b"test-secret",
        &DocumentNumber::parse("iv ab №000001").unwrap(),
    );
    then_rejected(
        s.when(
            Command::SubmitKindergartenApplication { form: again },
            t(NOW),
        ),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
        },
    );
}

#[test]
fn kindergarten_preferences_are_checked() {
    let s = given(authority());
    then_rejected(
        s.when(submit_kg(1, &["K9"]), t(NOW)),
        Rejection::UnknownInstitution {
            field: "preferences".into(),
            id: "K9".into(),
        },
    );
    then_rejected(
        s.when(submit_kg(1, &["S1"]), t(NOW)),
        Rejection::WrongInstitutionKind {
            field: "preferences".into(),
            id: "S1".into(),
            expected: "kindergarten".into(),
        },
    );
    then_rejected(
        s.when(submit_kg(1, &["K1", "K2", "K3", "K4"]), t(NOW)),
        Rejection::TooMany {
            field: "preferences".into(),
            count: 4,
            max: 3,
        },
    );
    then_invalid(s.when(submit_kg(1, &[]), t(NOW)), "preferences");
    then_invalid(s.when(submit_kg(1, &["K1", "K1"]), t(NOW)), "preferences");
}

#[test]
fn kindergarten_dates_are_checked() {
    let s = given(authority());
    let mut future = kg_form(1, &["K1"]);
    future.birth_date = date(2026, 5, 1);
    then_invalid(
        s.when(
            Command::SubmitKindergartenApplication { form: future },
            t(NOW),
        ),
        "birth_date",
    );
    let mut early = kg_form(1, &["K1"]);
    early.desired_start = date(2022, 9, 1);
    then_invalid(
        s.when(
            Command::SubmitKindergartenApplication { form: early },
            t(NOW),
        ),
        "desired_start",
    );
    // Seven full years on 1 September 2026: school age, not kindergarten.
    let mut old = kg_form(1, &["K1"]);
    old.birth_date = date(2019, 8, 31);
    then_rejected(
        s.when(Command::SubmitKindergartenApplication { form: old }, t(NOW)),
        Rejection::AgeOutOfRange {
            age_months: 84,
            on: date(2026, 9, 1),
            min_months: 0,
            max_months: 84,
        },
    );
    let mut subject = kg_form(1, &["K1"]);
    subject.submitted_by = String::new();
    then_invalid(
        s.when(
            Command::SubmitKindergartenApplication { form: subject },
            t(NOW),
        ),
        "submitted_by",
    );
}

#[test]
fn kindergarten_privileges_must_fit_the_list() {
    let s = given(authority());
    let mut sibling_elsewhere = kg_form(1, &["K1"]);
    sibling_elsewhere.privileges = vec![Privilege::Sibling {
        institution: inst("K2"),
    }];
    then_invalid(
        s.when(
            Command::SubmitKindergartenApplication {
                form: sibling_elsewhere,
            },
            t(NOW),
        ),
        "privileges",
    );
    let mut catchment = kg_form(1, &["K1"]);
    catchment.privileges = vec![Privilege::Catchment {
        institution: inst("K1"),
    }];
    then_invalid(
        s.when(
            Command::SubmitKindergartenApplication { form: catchment },
            t(NOW),
        ),
        "privileges",
    );
}

#[test]
fn age_groups_and_intake_years_are_separate_queues() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    let mut younger = kg_form(2, &["K1"]);
    younger.birth_date = date(2024, 6, 1);
    s.accept(
        Command::SubmitKindergartenApplication { form: younger },
        t(NOW),
    );
    let mut later = kg_form(3, &["K1"]);
    later.desired_start = date(2027, 3, 1);
    s.accept(
        Command::SubmitKindergartenApplication { form: later },
        t(NOW),
    );
    for n in 1..=3 {
        assert_eq!(
            positions_of(&s.state, n),
            vec![("K1".into(), 1)],
            "child {n}"
        );
    }
    let app = s.state.application(ApplicationNumber(3)).unwrap();
    let (queue, _) = s.state.queue_entries(app)[0];
    let d = s.state.describe_queue(&queue);
    assert_eq!((d.age_group, d.intake_year), (Some(4), Some(2027)));
}

#[test]
fn amending_preferences_keeps_the_registration_time() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t("2026-01-10T08:00:00Z"));
    s.accept(submit_kg(2, &["K2"]), t("2026-01-11T08:00:00Z"));
    s.accept(
        Command::AmendKindergartenPreferences {
            application: ApplicationNumber(1),
            preferences: vec![inst("K2"), inst("K3")],
            desired_start: date(2026, 9, 1),
            any_other: true,
        },
        t("2026-01-20T08:00:00Z"),
    );
    let app = s.state.application(ApplicationNumber(1)).unwrap();
    assert_eq!(app.registered_at, t("2026-01-10T08:00:00Z"));
    assert!(app.any_other);
    // Application 1 registered first, so it stands ahead of 2 in K2's queue.
    let positions = positions_of(&s.state, 1);
    assert_eq!(
        positions,
        vec![("K2".to_string(), 1), ("K3".to_string(), 1)]
    );
    assert_eq!(positions_of(&s.state, 2), vec![("K2".to_string(), 2)]);
}

#[test]
fn amending_is_refused_for_closed_unknown_and_school_applications() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(
        Command::WithdrawApplication {
            application: ApplicationNumber(1),
            reason: String::new(),
        },
        t(NOW),
    );
    let amend = |n| Command::AmendKindergartenPreferences {
        application: ApplicationNumber(n),
        preferences: vec![inst("K2")],
        desired_start: date(2026, 9, 1),
        any_other: false,
    };
    then_rejected(
        s.when(amend(1), t(NOW)),
        Rejection::ApplicationNotActive {
            number: ApplicationNumber(1),
            status: "withdrawn".into(),
        },
    );
    then_rejected(
        s.when(amend(7), t(NOW)),
        Rejection::UnknownApplication {
            number: ApplicationNumber(7),
        },
    );
    then_rejected(
        s.when(
            Command::WithdrawApplication {
                application: ApplicationNumber(1),
                reason: String::new(),
            },
            t(NOW),
        ),
        Rejection::ApplicationNotActive {
            number: ApplicationNumber(1),
            status: "withdrawn".into(),
        },
    );
}

#[test]
fn amending_cannot_drop_a_kindergarten_with_a_sibling_claim() {
    let mut s = given(authority());
    let mut form = kg_form(1, &["K1", "K2"]);
    form.privileges = vec![Privilege::Sibling {
        institution: inst("K2"),
    }];
    s.accept(Command::SubmitKindergartenApplication { form }, t(NOW));
    then_invalid(
        s.when(
            Command::AmendKindergartenPreferences {
                application: ApplicationNumber(1),
                preferences: vec![inst("K1")],
                desired_start: date(2026, 9, 1),
                any_other: false,
            },
            t(NOW),
        ),
        "preferences",
    );
}

#[test]
fn kindergarten_commands_refuse_first_grade_applications() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    s.accept(submit_school(1, &["S1"], vec![]), t("2026-07-10T10:00:00Z"));
    then_rejected(
        s.when(
            Command::AmendKindergartenPreferences {
                application: ApplicationNumber(1),
                preferences: vec![inst("K1")],
                desired_start: date(2026, 9, 1),
                any_other: false,
            },
            t("2026-07-10T10:00:00Z"),
        ),
        Rejection::WrongService {
            number: ApplicationNumber(1),
            expected: "kindergarten".into(),
        },
    );
}

fn seats(institution: &str, age_group: u8, n: u32) -> Command {
    Command::PublishKindergartenSeats {
        institution: inst(institution),
        intake_year: 2026,
        seats: vec![AgeGroupSeats {
            age_group,
            seats: n,
        }],
    }
}

fn run_round(id: &str) -> Command {
    Command::RunKindergartenRound {
        round: round_id(id),
        intake_year: 2026,
        intake_date: None,
        calendar_override: None,
    }
}

fn accept_offer(n: u32) -> Command {
    Command::AcceptOffer {
        application: ApplicationNumber(n),
    }
}

fn decline_offer(n: u32) -> Command {
    Command::DeclineOffer {
        application: ApplicationNumber(n),
    }
}

/// The kindergarten each application was offered by the round event, by number.
fn offered(events: &[Event]) -> Vec<(u32, String)> {
    match events {
        [Event::KindergartenRoundCompleted {
            seats, placements, ..
        }] => placements
            .iter()
            .map(|p| (p.number.0, seats[p.seats as usize].instance_id()))
            .collect(),
        other => panic!("expected one round event, got {other:?}"),
    }
}

const ROUND_AT: &str = "2026-06-01T07:00:00Z";

#[test]
fn seats_are_published_per_age_group_and_checked() {
    let mut s = given(authority());
    let events = s.accept(seats("K1", 3, 2), t(NOW));
    assert_eq!(
        events,
        vec![Event::KindergartenSeatsPublished {
            institution: inst("K1"),
            intake_year: 2026,
            seats: vec![AgeGroupSeats {
                age_group: 3,
                seats: 2
            }],
        }]
    );
    then_rejected(
        s.when(seats("S1", 3, 2), t(NOW)),
        Rejection::WrongInstitutionKind {
            field: "institution".into(),
            id: "S1".into(),
            expected: "kindergarten".into(),
        },
    );
    then_invalid(s.when(seats("K1", 7, 2), t(NOW)), "seats.age_group");
    then_invalid(
        s.when(
            Command::PublishKindergartenSeats {
                institution: inst("K1"),
                intake_year: 2026,
                seats: vec![
                    AgeGroupSeats {
                        age_group: 3,
                        seats: 1,
                    },
                    AgeGroupSeats {
                        age_group: 3,
                        seats: 2,
                    },
                ],
            },
            t(NOW),
        ),
        "seats.age_group",
    );
    // Seats already offered cannot be unpublished.
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(run_round("main"), t(ROUND_AT));
    then_rejected(
        s.when(seats("K1", 3, 0), t(ROUND_AT)),
        Rejection::SeatsBelowTaken {
            institution: "K1".into(),
            age_group: 3,
            seats: 0,
            taken: 1,
        },
    );
}

#[test]
fn a_round_offers_seats_by_tier_then_registration_time_with_a_deadline() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 2), t(NOW));
    for n in 1..=4 {
        s.accept(submit_kg(n, &["K1"]), t(NOW) + Duration::minutes(n as i64));
    }
    let mut privileged = kg_form(5, &["K1"]);
    privileged.privileges = vec![Privilege::FirstPriority];
    s.accept(
        Command::SubmitKindergartenApplication { form: privileged },
        t(NOW) + Duration::minutes(5),
    );
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(5),
            privilege: Privilege::FirstPriority,
        },
        t(NOW) + Duration::minutes(6),
    );
    let events = s.accept(run_round("main-2026"), t(ROUND_AT));
    let general = |n: u32| RoundApplicant {
        number: ApplicationNumber(n),
        rank: n,
        preferences: vec![0],
        classes: vec![3],
    };
    assert_eq!(
        events,
        vec![Event::KindergartenRoundCompleted {
            round: round_id("main-2026"),
            intake_year: 2026,
            intake_date: date(2026, 9, 1),
            offer_deadline: t(ROUND_AT) + Duration::days(15),
            at: t(ROUND_AT),
            calendar_override: None,
            seats: vec![RoundSeats {
                institution: inst("K1"),
                age_group: Some(3),
                capacity: 2,
            }],
            applicants: vec![
                general(1),
                general(2),
                general(3),
                general(4),
                RoundApplicant {
                    number: ApplicationNumber(5),
                    rank: 5,
                    preferences: vec![0],
                    classes: vec![1],
                },
            ],
            placements: vec![
                RoundPlacement {
                    number: ApplicationNumber(1),
                    seats: 0
                },
                RoundPlacement {
                    number: ApplicationNumber(5),
                    seats: 0
                },
            ],
        }]
    );
    assert_eq!(status_of(&s, 1), ApplicationStatus::Offered);
    assert_eq!(status_of(&s, 5), ApplicationStatus::Offered);
    // Offered applications leave the queue; the others move up, and the explanation names
    // the round once for both children it placed.
    assert_eq!(positions_of(&s.state, 2), vec![("K1".into(), 1)]);
    let app = s.state.application(ApplicationNumber(4)).unwrap();
    let (queue, key) = s.state.queue_entries(app)[0];
    let explanation = s.state.queues.explain(&queue, &key, t(ROUND_AT), 100);
    assert_eq!(explanation.movements.len(), 1);
    let movement = &explanation.movements[0];
    assert_eq!(
        (
            movement.cause,
            movement.applications,
            movement.position_before,
            movement.position_after
        ),
        (Cause::Round(0), 2, Some(5), Some(3))
    );
    assert_eq!(
        movement.reason,
        "the round of 1 June 2026 (main-2026) placed 2 children ahead of you"
    );
    assert_eq!(movement.round.as_deref(), Some("main-2026"));
    // The placed child's own explanation says the round placed it.
    let app1 = s.state.application(ApplicationNumber(1)).unwrap();
    let key1 = ochered_core::ordering::SortKey {
        tier: 3,
        tie_break: app1.registered_at.timestamp_micros(),
        number: app1.number,
    };
    let own = s.state.queues.explain(&queue, &key1, t(ROUND_AT), 100);
    assert_eq!(own.position_now, None);
    assert_eq!(
        own.movements[0].reason,
        "the round of 1 June 2026 (main-2026) placed this application"
    );
    // The round's id is used once; with every seat offered, nothing is left to allocate.
    then_rejected(
        s.when(run_round("main-2026"), t(ROUND_AT)),
        Rejection::RoundExists {
            id: "main-2026".into(),
        },
    );
    then_rejected(
        s.when(run_round("top-up"), t(ROUND_AT)),
        Rejection::NoFreeSeats { intake_year: 2026 },
    );
}

#[test]
fn a_round_takes_only_eligible_applications() {
    let mut s = given(authority());
    s.accept(
        Command::PublishKindergartenSeats {
            institution: inst("K1"),
            intake_year: 2026,
            seats: vec![
                AgeGroupSeats {
                    age_group: 3,
                    seats: 5,
                },
                AgeGroupSeats {
                    age_group: 2,
                    seats: 5,
                },
            ],
        },
        t(NOW),
    );
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    // Wants to start later than the round's intake date.
    let mut later = kg_form(2, &["K1"]);
    later.desired_start = date(2026, 11, 1);
    s.accept(
        Command::SubmitKindergartenApplication { form: later },
        t(NOW),
    );
    // A younger child: age group 2 on 1 September 2026.
    let mut younger = kg_form(3, &["K1"]);
    younger.birth_date = date(2024, 1, 5);
    s.accept(
        Command::SubmitKindergartenApplication { form: younger },
        t(NOW),
    );
    // Lists only kindergartens without seats.
    s.accept(submit_kg(4, &["K2"]), t(NOW));
    let events = s.accept(run_round("main"), t(ROUND_AT));
    assert_eq!(
        offered(&events),
        vec![(1, "K1/3".into()), (3, "K1/2".into())]
    );
    // A top-up round later in the school year reaches the later start date, and never makes
    // a second offer to a child who already holds one.
    let top_up = Command::RunKindergartenRound {
        round: round_id("top-up-nov"),
        intake_year: 2026,
        intake_date: Some(date(2026, 11, 1)),
        calendar_override: None,
    };
    let events = s.accept(top_up, t("2026-10-01T07:00:00Z"));
    assert_eq!(offered(&events), vec![(2, "K1/3".into())]);
    then_invalid(
        s.when(
            Command::RunKindergartenRound {
                round: round_id("bad"),
                intake_year: 2026,
                intake_date: Some(date(2027, 9, 1)),
                calendar_override: None,
            },
            t(ROUND_AT),
        ),
        "intake_date",
    );
}

#[test]
fn any_other_places_a_child_elsewhere_only_after_everyone_who_listed_it() {
    let mut s = given(authority());
    for k in ["K1", "K2", "K3"] {
        s.accept(seats(k, 3, 1), t(NOW));
    }
    // Child 1 registered first, wants K1 only, but accepts any other kindergarten.
    let mut flexible = kg_form(1, &["K1"]);
    flexible.any_other = true;
    s.accept(
        Command::SubmitKindergartenApplication { form: flexible },
        t(NOW),
    );
    // Child 2 has first priority at every kindergarten and takes K1.
    let mut privileged = kg_form(2, &["K1"]);
    privileged.privileges = vec![Privilege::FirstPriority];
    s.accept(
        Command::SubmitKindergartenApplication { form: privileged },
        t(NOW) + Duration::minutes(1),
    );
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(2),
            privilege: Privilege::FirstPriority,
        },
        t(NOW) + Duration::minutes(1),
    );
    // Child 3 registered later but listed K2: K2 is theirs before child 1's "any other".
    s.accept(submit_kg(3, &["K2"]), t(NOW) + Duration::minutes(2));
    let events = s.accept(run_round("main"), t(ROUND_AT));
    assert_eq!(
        offered(&events),
        vec![(1, "K3/3".into()), (2, "K1/3".into()), (3, "K2/3".into())]
    );
    // The "any other" seats are recorded without a class, after the listed one.
    match &events[0] {
        Event::KindergartenRoundCompleted { applicants, .. } => {
            assert_eq!(applicants[0].preferences, vec![0, 1, 2]);
            assert_eq!(applicants[0].classes, vec![3]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_round_instance_exports_and_solves_to_the_same_placements() {
    let mut s = given(authority());
    for (k, n) in [("K1", 1), ("K2", 2), ("K3", 1)] {
        s.accept(seats(k, 3, n), t(NOW));
    }
    let lists: [&[&str]; 6] = [
        &["K1", "K2"],
        &["K1"],
        &["K2", "K1"],
        &["K3", "K1"],
        &["K1", "K3"],
        &["K2"],
    ];
    for (i, list) in lists.iter().enumerate() {
        s.accept(
            submit_kg(i as u32 + 1, list),
            t(NOW) + Duration::minutes(i as i64),
        );
    }
    s.accept(run_round("main"), t(ROUND_AT));
    let round = &s.state.rounds()[0];
    let instance = s.state.round_instance(round);
    let json = serde_json::to_string(&instance).unwrap();
    assert!(json.contains(r#"{"id":"K1/3","capacity":1}"#), "{json}");
    let solved = ochered_core::allocation::solve_instance(&instance).unwrap();
    assert_eq!(solved, s.state.round_assignment(round));
    // Everyone ranks alike here, so it is the queue walked in order.
    assert_eq!(solved.assignments["2"], None);
    assert_eq!(solved.assignments["5"], None);
    assert_eq!(solved.assignments["6"].as_deref(), Some("K2/3"));
}

#[test]
fn accepting_an_offer_enrolls_the_child_and_takes_the_seat() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 1), t(NOW));
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(submit_kg(2, &["K1"]), t(NOW) + Duration::minutes(1));
    s.accept(run_round("main"), t(ROUND_AT));
    then_rejected(
        s.when(accept_offer(2), t(ROUND_AT)),
        Rejection::NoOutstandingOffer {
            number: ApplicationNumber(2),
        },
    );
    then_rejected(
        s.when(accept_offer(9), t(ROUND_AT)),
        Rejection::UnknownApplication {
            number: ApplicationNumber(9),
        },
    );
    let events = s.accept(accept_offer(1), t(ROUND_AT) + Duration::days(3));
    assert_eq!(
        events,
        vec![Event::OfferAccepted {
            number: ApplicationNumber(1),
            at: t(ROUND_AT) + Duration::days(3),
        }]
    );
    assert_eq!(status_of(&s, 1), ApplicationStatus::Enrolled);
    let group = s
        .state
        .seat_group(s.state.institution_idx(&inst("K1")).unwrap(), 3, 2026)
        .unwrap();
    assert_eq!((group.published, group.taken), (1, 1));
    then_rejected(
        s.when(accept_offer(1), t(ROUND_AT)),
        Rejection::NoOutstandingOffer {
            number: ApplicationNumber(1),
        },
    );
    // The seat is taken: the next round has nothing to offer.
    then_rejected(
        s.when(run_round("top-up"), t(ROUND_AT)),
        Rejection::NoFreeSeats { intake_year: 2026 },
    );
    // An enrolled application cannot be amended or withdrawn as if it were waiting.
    then_rejected(
        s.when(
            Command::WithdrawApplication {
                application: ApplicationNumber(1),
                reason: String::new(),
            },
            t(ROUND_AT),
        ),
        Rejection::ApplicationNotActive {
            number: ApplicationNumber(1),
            status: "enrolled".into(),
        },
    );
}

#[test]
fn declining_moves_the_desired_start_to_the_next_september_and_returns_the_seat() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 1), t(NOW));
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(submit_kg(2, &["K1"]), t(NOW) + Duration::minutes(1));
    s.accept(run_round("main"), t(ROUND_AT));
    let events = s.accept(decline_offer(1), t(ROUND_AT) + Duration::days(1));
    assert_eq!(
        events,
        vec![Event::OfferDeclined {
            number: ApplicationNumber(1),
            desired_start: date(2027, 9, 1),
            at: t(ROUND_AT) + Duration::days(1),
        }]
    );
    let app = s.state.application(ApplicationNumber(1)).unwrap();
    assert_eq!(app.status, ApplicationStatus::Active);
    assert_eq!(app.desired_start, date(2027, 9, 1));
    assert_eq!(app.registered_at, t(NOW), "the registration time is kept");
    // It queues for the 2027 intake (age group 4) now, first there by its old registration.
    let described: Vec<_> = s
        .state
        .queue_entries(app)
        .iter()
        .map(|(q, _)| {
            let d = s.state.describe_queue(q);
            (d.age_group, d.intake_year)
        })
        .collect();
    assert_eq!(described, vec![(Some(4), Some(2027))]);
    // The seat went back: a top-up round offers it to the next child.
    let events = s.accept(
        run_round_overriding("top-up", "a top-up within the month, to test offers"),
        t(ROUND_AT) + Duration::days(2),
    );
    assert_eq!(offered(&events), vec![(2, "K1/3".into())]);
    let placement = s.state.placement(0);
    assert_eq!(placement.status, PlacementStatus::Declined);
}

#[test]
fn unanswered_offers_expire_at_their_deadline() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 1), t(NOW));
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(run_round("main"), t(ROUND_AT));
    let deadline = t(ROUND_AT) + Duration::days(15);
    assert_eq!(
        s.accept(Command::ExpireOffers {}, deadline - Duration::seconds(1)),
        vec![]
    );
    then_rejected(
        s.when(accept_offer(1), deadline),
        Rejection::OfferExpired {
            number: ApplicationNumber(1),
            deadline,
        },
    );
    let events = s.accept(Command::ExpireOffers {}, deadline + Duration::hours(1));
    assert_eq!(
        events,
        vec![Event::OfferExpired {
            number: ApplicationNumber(1),
            desired_start: date(2027, 9, 1),
            at: deadline + Duration::hours(1),
        }]
    );
    assert_eq!(status_of(&s, 1), ApplicationStatus::Active);
    assert_eq!(s.state.placement(0).status, PlacementStatus::Expired);
    assert_eq!(
        s.accept(Command::ExpireOffers {}, deadline + Duration::hours(2)),
        vec![]
    );
    // Withdrawing while an offer is outstanding gives the seat back too.
    s.accept(submit_kg(2, &["K1"]), deadline);
    s.accept(
        run_round_overriding("top-up", "a top-up within the month, to test offers"),
        deadline,
    );
    s.accept(
        Command::WithdrawApplication {
            application: ApplicationNumber(2),
            reason: "moved".into(),
        },
        deadline,
    );
    assert_eq!(s.state.placement(1).status, PlacementStatus::Withdrawn);
    let group = s
        .state
        .seat_group(s.state.institution_idx(&inst("K1")).unwrap(), 3, 2026)
        .unwrap();
    assert_eq!(group.taken, 0);
}

#[test]
fn a_transfer_keeps_the_current_place_until_the_new_offer_is_accepted() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 1), t(NOW));
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(run_round("main"), t(ROUND_AT));
    s.accept(accept_offer(1), t(ROUND_AT));
    // Enrolled at K1, the child applies for a transfer; K1 itself cannot be listed.
    then_rejected(
        s.when(submit_kg(1, &["K2", "K1"]), t(ROUND_AT)),
        Rejection::AlreadyAttends {
            institution: "K1".into(),
        },
    );
    s.accept(submit_kg(1, &["K2"]), t(ROUND_AT) + Duration::days(1));
    then_rejected(
        s.when(
            Command::AmendKindergartenPreferences {
                application: ApplicationNumber(2),
                preferences: vec![inst("K1")],
                desired_start: date(2026, 9, 1),
                any_other: false,
            },
            t(ROUND_AT),
        ),
        Rejection::AlreadyAttends {
            institution: "K1".into(),
        },
    );
    s.accept(seats("K2", 3, 1), t(ROUND_AT) + Duration::days(1));
    let events = s.accept(
        run_round_overriding("transfers", "a top-up within the month, to test offers"),
        t(ROUND_AT) + Duration::days(2),
    );
    assert_eq!(offered(&events), vec![(2, "K2/3".into())]);
    // Declining the transfer offer keeps the K1 place.
    s.accept(decline_offer(2), t(ROUND_AT) + Duration::days(3));
    assert_eq!(status_of(&s, 1), ApplicationStatus::Enrolled);
    assert_eq!(
        s.state.enrolled_application_of(&child(1)),
        Some(ApplicationNumber(1))
    );
    // A later offer accepted: the child moves and the K1 seat returns.
    s.accept(
        Command::AmendKindergartenPreferences {
            application: ApplicationNumber(2),
            preferences: vec![inst("K2")],
            desired_start: date(2026, 9, 1),
            any_other: false,
        },
        t(ROUND_AT) + Duration::days(4),
    );
    s.accept(
        run_round_overriding("transfers-2", "a top-up within the month, to test offers"),
        t(ROUND_AT) + Duration::days(4),
    );
    let events = s.accept(accept_offer(2), t(ROUND_AT) + Duration::days(5));
    assert_eq!(
        events,
        vec![
            Event::OfferAccepted {
                number: ApplicationNumber(2),
                at: t(ROUND_AT) + Duration::days(5)
            },
            Event::TransferCompleted {
                number: ApplicationNumber(1),
                to: ApplicationNumber(2),
                at: t(ROUND_AT) + Duration::days(5),
            },
        ]
    );
    assert_eq!(status_of(&s, 1), ApplicationStatus::Transferred);
    assert_eq!(status_of(&s, 2), ApplicationStatus::Enrolled);
    assert_eq!(
        s.state.enrolled_kindergarten(&child(1)),
        s.state.institution_idx(&inst("K2"))
    );
    let k1 = s
        .state
        .seat_group(s.state.institution_idx(&inst("K1")).unwrap(), 3, 2026)
        .unwrap();
    assert_eq!(k1.taken, 0);
}

/// A desired start is today or later; an application that has waited past its desired start
/// keeps it when amended, but a new one must not be in the past
/// (docs/RULES.md#kindergarten-application).
#[test]
fn a_desired_start_in_the_past_is_refused() {
    let mut s = given(authority());
    let mut past = kg_form(1, &["K1"]);
    past.desired_start = date(2025, 9, 1);
    then_invalid(
        s.when(
            Command::SubmitKindergartenApplication { form: past },
            t(NOW),
        ),
        "desired_start",
    );
    // As soon as possible: today, in the authority's calendar.
    let mut today = kg_form(1, &["K1"]);
    today.desired_start = date(2026, 2, 1);
    s.accept(
        Command::SubmitKindergartenApplication { form: today },
        t(NOW),
    );
    let amend = |desired_start| Command::AmendKindergartenPreferences {
        application: ApplicationNumber(1),
        preferences: vec![inst("K2")],
        desired_start,
        any_other: false,
    };
    let a_year_later = t("2027-03-01T09:00:00Z");
    s.accept(amend(date(2026, 2, 1)), a_year_later);
    then_invalid(
        s.when(amend(date(2026, 9, 1)), a_year_later),
        "desired_start",
    );
}

/// The intake year of a desired start is the year of the first 1 September on or after it
/// (docs/RULES.md#kindergarten-age).
#[test]
fn the_intake_is_the_first_september_on_or_after_the_desired_start() {
    let mut s = given(authority());
    for (n, desired_start, intake) in [
        (1, date(2027, 9, 1), 2027),
        (2, date(2027, 9, 15), 2028),
        (3, date(2028, 3, 1), 2028),
    ] {
        let mut form = kg_form(n, &["K1"]);
        form.desired_start = desired_start;
        s.accept(Command::SubmitKindergartenApplication { form }, t(NOW));
        let app = s.state.application(ApplicationNumber(n)).unwrap();
        let (queue, _) = s.state.queue_entries(app)[0];
        assert_eq!(
            s.state.describe_queue(&queue).intake_year,
            Some(intake),
            "{desired_start}"
        );
    }
}

// The round calendar (docs/RULES.md#kindergarten-round-calendar).

fn run_round_overriding(id: &str, reason: &str) -> Command {
    Command::RunKindergartenRound {
        round: round_id(id),
        intake_year: 2026,
        intake_date: None,
        calendar_override: Some(reason.into()),
    }
}

fn calendar_override_of(events: &[Event]) -> Option<String> {
    match events {
        [Event::KindergartenRoundCompleted {
            calendar_override, ..
        }] => calendar_override.clone(),
        other => panic!("not one round: {other:?}"),
    }
}

#[test]
fn round_calendar_refuses_a_top_up_20_s_after_the_main_round_unless_an_officer_states_a_reason() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 2), t(NOW));
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    let main = s.accept(run_round("main"), t(ROUND_AT));
    assert_eq!(calendar_override_of(&main), None);
    s.accept(submit_kg(2, &["K1"]), t(ROUND_AT));
    let soon = t(ROUND_AT) + Duration::seconds(20);
    then_rejected(
        s.when(run_round("top-up"), soon),
        Rejection::TopUpTooSoon {
            previous: "main".into(),
            next_allowed: t(ROUND_AT) + Duration::days(30),
        },
    );
    // A reason must say something.
    then_invalid(
        s.when(run_round_overriding("top-up", "  "), soon),
        "calendar_override",
    );
    // With a stated reason the round runs, and its event records the reason.
    let reason = "a group reopened after repairs";
    let top_up = s.accept(run_round_overriding("top-up", reason), soon);
    assert_eq!(calendar_override_of(&top_up).as_deref(), Some(reason));
    // A month after the last round, a top-up needs no override.
    s.accept(submit_kg(3, &["K1"]), soon);
    s.accept(seats("K1", 3, 3), soon);
    let later = s.accept(run_round("top-up-2"), soon + Duration::days(30));
    assert_eq!(calendar_override_of(&later), None);
}

#[test]
fn round_calendar_refuses_a_main_round_outside_its_season() {
    let mut s = given(authority());
    s.accept(seats("K1", 3, 1), t(NOW));
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    // 1 February is outside the default season (1 June - 31 August, local days).
    then_rejected(
        s.when(run_round("early"), t(NOW)),
        Rejection::RoundOutOfSeason {
            from: "06-01".into(),
            until: "08-31".into(),
        },
    );
    // The last local day of the season is in it; the next one is not.
    let config = AuthorityConfig::with_defaults(
        AuthorityId::parse("test-city").unwrap(),
        "Test city",
        chrono_tz::Europe::Moscow,
    );
    assert!(config.round_calendar.in_main_season(date(2026, 8, 31)));
    assert!(!config.round_calendar.in_main_season(date(2026, 9, 1)));
    // An officer may run it early with a reason, and the reason is kept with the round.
    let events = s.accept(run_round_overriding("early", "court order"), t(NOW));
    assert_eq!(
        calendar_override_of(&events).as_deref(),
        Some("court order")
    );
    let round = s.state.rounds().last().expect("the round is kept");
    assert_eq!(round.calendar_override.as_deref(), Some("court order"));
}
