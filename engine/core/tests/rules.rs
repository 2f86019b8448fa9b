//! The rules of each service as given/when/then cases: given these events, when this command
//! at this time, then these events or this rejection. No database, no clock.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use ochered_core::command::{
    CampaignConfig, CampaignMode, CampaignSchool, Command, KindergartenForm, SchoolForm, SlotSpec,
};
use ochered_core::domain::{
    ApplicationNumber, AuthorityConfig, AuthorityId, BookingNumber, CampaignId, Channel,
    DocumentNumber, DoctorId, InstitutionId, InstitutionKind, PersonKey, SlotId, Specialty,
};
use ochered_core::ordering::{Privilege, TieBreak};
use ochered_core::queues::Cause;
use ochered_core::{decide, Event, Rejection, State};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn inst(id: &str) -> InstitutionId {
    InstitutionId::parse(id).unwrap()
}

fn child(n: u32) -> PersonKey {
    PersonKey::derive(b"test-secret", &DocumentNumber::parse(&format!("IV-AB {n:06}")).unwrap())
}

fn config(tz: chrono_tz::Tz) -> AuthorityConfig {
    AuthorityConfig::with_defaults(AuthorityId::parse("test-city").unwrap(), "Test city", tz)
}

/// An authority in Moscow time with kindergartens K1..K4, schools S1..S3, a therapist
/// specialty open to self-booking and a referral-only cardiology.
fn authority() -> Vec<Event> {
    authority_in(chrono_tz::Europe::Moscow)
}

fn authority_in(tz: chrono_tz::Tz) -> Vec<Event> {
    let mut events = vec![Event::AuthorityConfigured { config: config(tz) }];
    for (id, kind) in [
        ("K1", InstitutionKind::Kindergarten),
        ("K2", InstitutionKind::Kindergarten),
        ("K3", InstitutionKind::Kindergarten),
        ("K4", InstitutionKind::Kindergarten),
        ("S1", InstitutionKind::School),
        ("S2", InstitutionKind::School),
        ("S3", InstitutionKind::School),
        ("P1", InstitutionKind::Clinic),
    ] {
        events.push(Event::InstitutionRegistered {
            id: inst(id),
            kind,
            name: format!("Institution {id}"),
        });
    }
    events.push(Event::SpecialtyConfigured {
        specialty: Specialty::parse("therapist").unwrap(),
        referral_only: false,
    });
    events.push(Event::SpecialtyConfigured {
        specialty: Specialty::parse("cardiology").unwrap(),
        referral_only: true,
    });
    events
}

fn kg_form(n: u32, prefs: &[&str]) -> KindergartenForm {
    KindergartenForm {
        child: child(n),
        birth_date: date(2023, 3, 10),
        preferences: prefs.iter().map(|p| inst(p)).collect(),
        desired_start: date(2026, 9, 1),
        any_other: false,
        privileges: Vec::new(),
        channel: Channel::Portal,
        submitted_by: format!("parent-{n}"),
    }
}

fn submit_kg(n: u32, prefs: &[&str]) -> Command {
    Command::SubmitKindergartenApplication {
        form: kg_form(n, prefs),
    }
}

struct Scenario {
    state: State,
}

fn given(events: impl IntoIterator<Item = Event>) -> Scenario {
    let mut state = State::new();
    for e in events {
        state.apply(&e);
    }
    Scenario { state }
}

impl Scenario {
    /// Decides a command that must be accepted, folds its events, and returns them.
    fn accept(&mut self, command: Command, now: DateTime<Utc>) -> Vec<Event> {
        let events = decide(&self.state, &command, now)
            .unwrap_or_else(|r| panic!("{} was rejected: {r:?}", command.name()));
        for e in &events {
            self.state.apply(e);
        }
        events
    }

    fn when(&self, command: Command, now: DateTime<Utc>) -> Result<Vec<Event>, Rejection> {
        decide(&self.state, &command, now)
    }
}

fn then_rejected(result: Result<Vec<Event>, Rejection>, expected: Rejection) {
    match result {
        Ok(events) => panic!("expected {expected:?}, got events {events:?}"),
        Err(r) => assert_eq!(r, expected),
    }
}

fn then_invalid(result: Result<Vec<Event>, Rejection>, field: &str) {
    match result {
        Err(Rejection::InvalidField { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected an invalid {field}, got {other:?}"),
    }
}

const NOW: &str = "2026-02-01T09:00:00Z";

// ---------------------------------------------------------------------------------------------
// Kindergarten queue

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
        }]
    );
}

#[test]
fn nothing_is_accepted_before_the_authority_is_configured() {
    let s = given([]);
    then_rejected(s.when(submit_kg(1, &["K1"]), t(NOW)), Rejection::AuthorityNotConfigured);
}

#[test]
fn authority_is_configured_once() {
    let s = given(authority());
    then_rejected(
        s.when(
            Command::ConfigureAuthority {
                config: config(chrono_tz::Europe::Moscow),
            },
            t(NOW),
        ),
        Rejection::AuthorityAlreadyConfigured,
    );
}

#[test]
fn institution_ids_are_unique() {
    let s = given(authority());
    then_rejected(
        s.when(
            Command::RegisterInstitution {
                id: inst("K1"),
                kind: InstitutionKind::Kindergarten,
                name: "again".into(),
            },
            t(NOW),
        ),
        Rejection::InstitutionExists { id: "K1".into() },
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
    again.child =
        PersonKey::derive(b"test-secret", &DocumentNumber::parse("iv ab №000001").unwrap());
    then_rejected(
        s.when(Command::SubmitKindergartenApplication { form: again }, t(NOW)),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
        },
    );
}

#[test]
fn a_withdrawn_child_may_apply_again() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    s.accept(
        Command::WithdrawApplication {
            application: ApplicationNumber(1),
            reason: "moved".into(),
        },
        t(NOW),
    );
    let events = s.accept(submit_kg(1, &["K1"]), t(NOW));
    assert!(matches!(
        events[0],
        Event::KindergartenApplicationSubmitted {
            number: ApplicationNumber(2),
            ..
        }
    ));
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
        s.when(Command::SubmitKindergartenApplication { form: future }, t(NOW)),
        "birth_date",
    );
    let mut early = kg_form(1, &["K1"]);
    early.desired_start = date(2022, 9, 1);
    then_invalid(
        s.when(Command::SubmitKindergartenApplication { form: early }, t(NOW)),
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
            max_months: 83,
        },
    );
    let mut subject = kg_form(1, &["K1"]);
    subject.submitted_by = String::new();
    then_invalid(
        s.when(Command::SubmitKindergartenApplication { form: subject }, t(NOW)),
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
        s.when(Command::SubmitKindergartenApplication { form: catchment }, t(NOW)),
        "privileges",
    );
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
    assert_eq!(positions, vec![("K2".to_string(), 1), ("K3".to_string(), 1)]);
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

fn positions_of(state: &State, n: u32) -> Vec<(String, usize)> {
    let app = state.application(ApplicationNumber(n)).unwrap();
    state
        .queue_entries(app)
        .into_iter()
        .map(|(q, k)| {
            (
                state.describe_queue(&q).institution.to_string(),
                state.queues.position(&q, &k).unwrap(),
            )
        })
        .collect()
}

#[test]
fn confirmed_privileges_order_the_queue_by_tier_then_time() {
    let mut s = given(authority());
    for n in 1..=4 {
        s.accept(submit_kg(n, &["K1", "K2"]), t(NOW) + Duration::minutes(n as i64));
    }
    // Child 4 claims a sibling at K2, child 3 first-priority; only confirmation counts.
    let sibling = Privilege::Sibling {
        institution: inst("K2"),
    };
    s.accept(
        Command::ClaimPrivilege {
            application: ApplicationNumber(4),
            privilege: sibling.clone(),
        },
        t(NOW),
    );
    s.accept(
        Command::ClaimPrivilege {
            application: ApplicationNumber(3),
            privilege: Privilege::FirstPriority,
        },
        t(NOW),
    );
    assert_eq!(positions_of(&s.state, 4), vec![("K1".into(), 4), ("K2".into(), 4)]);
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(4),
            privilege: sibling.clone(),
        },
        t(NOW),
    );
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(3),
            privilege: Privilege::FirstPriority,
        },
        t(NOW),
    );
    // First-priority leads everywhere; the sibling privilege counts at K2 only.
    assert_eq!(positions_of(&s.state, 3), vec![("K1".into(), 1), ("K2".into(), 1)]);
    assert_eq!(positions_of(&s.state, 4), vec![("K1".into(), 4), ("K2".into(), 2)]);
    assert_eq!(positions_of(&s.state, 1), vec![("K1".into(), 2), ("K2".into(), 3)]);
    // Revocation puts child 3 back in time order.
    s.accept(
        Command::RevokePrivilege {
            application: ApplicationNumber(3),
            privilege: Privilege::FirstPriority,
            reason: "certificate expired".into(),
        },
        t(NOW),
    );
    assert_eq!(positions_of(&s.state, 3), vec![("K1".into(), 3), ("K2".into(), 4)]);
}

#[test]
fn privilege_commands_are_refused_out_of_turn() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    let confirm = Command::ConfirmPrivilege {
        application: ApplicationNumber(1),
        privilege: Privilege::Extraordinary,
    };
    then_rejected(
        s.when(confirm.clone(), t(NOW)),
        Rejection::PrivilegeNotClaimed {
            number: ApplicationNumber(1),
        },
    );
    let claim = Command::ClaimPrivilege {
        application: ApplicationNumber(1),
        privilege: Privilege::Extraordinary,
    };
    s.accept(claim.clone(), t(NOW));
    then_rejected(
        s.when(claim, t(NOW)),
        Rejection::PrivilegeAlreadyClaimed {
            number: ApplicationNumber(1),
        },
    );
    then_invalid(
        s.when(
            Command::RevokePrivilege {
                application: ApplicationNumber(1),
                privilege: Privilege::Extraordinary,
                reason: String::new(),
            },
            t(NOW),
        ),
        "reason",
    );
    then_rejected(
        s.when(
            Command::RevokePrivilege {
                application: ApplicationNumber(1),
                privilege: Privilege::FirstPriority,
                reason: "no".into(),
            },
            t(NOW),
        ),
        Rejection::PrivilegeNotClaimed {
            number: ApplicationNumber(1),
        },
    );
    s.accept(confirm.clone(), t(NOW));
    then_rejected(
        s.when(confirm, t(NOW)),
        Rejection::PrivilegeNotClaimed {
            number: ApplicationNumber(1),
        },
    );
}

#[test]
fn age_groups_and_intake_years_are_separate_queues() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t(NOW));
    let mut younger = kg_form(2, &["K1"]);
    younger.birth_date = date(2024, 6, 1);
    s.accept(Command::SubmitKindergartenApplication { form: younger }, t(NOW));
    let mut later = kg_form(3, &["K1"]);
    later.desired_start = date(2027, 3, 1);
    s.accept(Command::SubmitKindergartenApplication { form: later }, t(NOW));
    for n in 1..=3 {
        assert_eq!(positions_of(&s.state, n), vec![("K1".into(), 1)], "child {n}");
    }
    let app = s.state.application(ApplicationNumber(3)).unwrap();
    let (queue, _) = s.state.queue_entries(app)[0];
    let d = s.state.describe_queue(&queue);
    assert_eq!((d.age_group, d.intake_year), (Some(4), Some(2027)));
}

#[test]
fn explanation_names_what_moved_a_position() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t("2026-01-01T10:00:00Z"));
    s.accept(submit_kg(2, &["K1"]), t("2026-01-02T10:00:00Z"));
    s.accept(submit_kg(3, &["K1"]), t("2026-01-03T10:00:00Z"));
    let mut privileged = kg_form(4, &["K1"]);
    privileged.privileges = vec![Privilege::Extraordinary];
    s.accept(Command::SubmitKindergartenApplication { form: privileged }, t("2026-01-04T10:00:00Z"));
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(4),
            privilege: Privilege::Extraordinary,
        },
        t("2026-01-05T10:00:00Z"),
    );
    s.accept(
        Command::WithdrawApplication {
            application: ApplicationNumber(1),
            reason: String::new(),
        },
        t("2026-01-06T10:00:00Z"),
    );
    let app = s.state.application(ApplicationNumber(3)).unwrap();
    let (queue, key) = s.state.queue_entries(app)[0];
    let explanation = s.state.queues.explain(&queue, &key, t("2026-01-01T00:00:00Z"), 100);
    assert_eq!(explanation.position_now, Some(3));
    let steps: Vec<_> = explanation
        .movements
        .iter()
        .map(|m| (m.cause, m.other_application.map(|n| n.0), m.position_before, m.position_after))
        .collect();
    assert_eq!(
        steps,
        vec![
            (Cause::Submitted, None, None, Some(3)),
            (Cause::PrivilegeConfirmed, Some(4), Some(3), Some(4)),
            (Cause::Withdrawn, Some(1), Some(4), Some(3)),
        ]
    );
    // Child 4's own promotion: from 4th to 1st.
    let app4 = s.state.application(ApplicationNumber(4)).unwrap();
    let (queue4, key4) = s.state.queue_entries(app4)[0];
    let e4 = s.state.queues.explain(&queue4, &key4, t("2026-01-04T12:00:00Z"), 100);
    assert_eq!(
        e4.movements
            .iter()
            .map(|m| (m.cause, m.position_before, m.position_after))
            .collect::<Vec<_>>(),
        vec![
            (Cause::PrivilegeConfirmed, Some(4), Some(1)),
            // Child 1 was behind child 4 by then, so its withdrawal did not move child 4.
        ]
    );
    // A limit keeps the newest movements and says so.
    let short = s.state.queues.explain(&queue, &key, t("2026-01-01T00:00:00Z"), 1);
    assert!(short.truncated);
    assert_eq!(short.movements.len(), 1);
    assert_eq!(short.movements[0].cause, Cause::Withdrawn);
}

// ---------------------------------------------------------------------------------------------
// First-grade enrollment

fn campaign(tie_break: TieBreak, mode: CampaignMode) -> CampaignConfig {
    CampaignConfig {
        id: CampaignId::parse("school-2026").unwrap(),
        year: 2026,
        stage1_opens: date(2026, 4, 1),
        stage2_opens: date(2026, 7, 6),
        closes: date(2026, 9, 6),
        tie_break,
        mode,
        schools: ["S1", "S2", "S3"]
            .iter()
            .map(|s| CampaignSchool {
                institution: inst(s),
                seats: 2,
            })
            .collect(),
    }
}

fn with_campaign(tz: chrono_tz::Tz, tie_break: TieBreak, mode: CampaignMode) -> Scenario {
    let mut events = authority_in(tz);
    events.push(Event::CampaignConfigured {
        config: campaign(tie_break, mode),
    });
    given(events)
}

fn school_form(n: u32, schools: &[&str], privileges: Vec<Privilege>) -> SchoolForm {
    SchoolForm {
        campaign: CampaignId::parse("school-2026").unwrap(),
        child: child(n),
        birth_date: date(2019, 5, 20),
        schools: schools.iter().map(|s| inst(s)).collect(),
        privileges,
        channel: Channel::Portal,
        submitted_by: format!("parent-{n}"),
    }
}

fn submit_school(n: u32, schools: &[&str], privileges: Vec<Privilege>) -> Command {
    Command::SubmitSchoolApplication {
        form: school_form(n, schools, privileges),
    }
}

fn catchment(s: &str) -> Vec<Privilege> {
    vec![Privilege::Catchment {
        institution: inst(s),
    }]
}

#[test]
fn campaigns_are_checked_when_configured() {
    let s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    then_rejected(
        s.when(
            Command::ConfigureCampaign {
                config: campaign(TieBreak::RegistrationTime, CampaignMode::SingleSchool),
            },
            t(NOW),
        ),
        Rejection::CampaignExists {
            id: "school-2026".into(),
        },
    );
    let mut bad = campaign(TieBreak::BirthDate, CampaignMode::SingleSchool);
    bad.id = CampaignId::parse("other").unwrap();
    bad.stage2_opens = date(2026, 3, 1);
    then_invalid(s.when(Command::ConfigureCampaign { config: bad.clone() }, t(NOW)), "stage2_opens");
    bad.stage2_opens = date(2026, 7, 6);
    bad.schools[0].institution = inst("K1");
    then_rejected(
        s.when(Command::ConfigureCampaign { config: bad }, t(NOW)),
        Rejection::WrongInstitutionKind {
            field: "schools".into(),
            id: "K1".into(),
            expected: "school".into(),
        },
    );
}

#[test]
fn stages_open_at_local_midnight_in_each_time_zone() {
    // Kamchatka (UTC+12) opens 12 hours before Moscow-independent UTC midnight.
    let kamchatka = with_campaign(chrono_tz::Asia::Kamchatka, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    let opening = t("2026-03-31T12:00:00Z");
    then_rejected(
        kamchatka.when(submit_school(1, &["S1"], catchment("S1")), opening - Duration::seconds(1)),
        Rejection::CampaignNotOpen {
            id: "school-2026".into(),
            opens_at: opening,
        },
    );
    assert!(kamchatka.when(submit_school(1, &["S1"], catchment("S1")), opening).is_ok());
    // Kaliningrad (UTC+2) is still closed at that instant.
    let kaliningrad = with_campaign(chrono_tz::Europe::Kaliningrad, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    then_rejected(
        kaliningrad.when(submit_school(1, &["S1"], catchment("S1")), opening),
        Rejection::CampaignNotOpen {
            id: "school-2026".into(),
            opens_at: t("2026-03-31T22:00:00Z"),
        },
    );
}

#[test]
fn stage_one_is_for_priority_applicants_and_stage_two_for_everyone() {
    let s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    then_rejected(
        s.when(submit_school(1, &["S1"], vec![]), t("2026-04-01T10:00:00Z")),
        Rejection::StageOneOnlyForPriority {
            id: "school-2026".into(),
            stage2_opens_at: t("2026-07-05T21:00:00Z"),
        },
    );
    assert!(s.when(submit_school(1, &["S1"], vec![]), t("2026-07-05T21:00:00Z")).is_ok());
    then_rejected(
        s.when(submit_school(1, &["S1"], vec![]), t("2026-09-05T21:00:00Z")),
        Rejection::CampaignClosed {
            id: "school-2026".into(),
            closed_at: t("2026-09-05T21:00:00Z"),
        },
    );
}

#[test]
fn school_age_is_six_and_a_half_to_eight_unless_excepted() {
    let mut s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    let at = t("2026-07-10T10:00:00Z");
    let mut young = school_form(1, &["S1"], vec![]);
    young.birth_date = date(2020, 3, 2); // 6 years 5 months on 1 September 2026
    then_rejected(
        s.when(Command::SubmitSchoolApplication { form: young.clone() }, at),
        Rejection::AgeOutOfRange {
            age_months: 77,
            on: date(2026, 9, 1),
            min_months: 78,
            max_months: 95,
        },
    );
    let mut old = school_form(2, &["S1"], vec![]);
    old.birth_date = date(2018, 9, 1); // exactly 8
    assert!(matches!(
        s.when(Command::SubmitSchoolApplication { form: old }, at),
        Err(Rejection::AgeOutOfRange { age_months: 96, .. })
    ));
    s.accept(
        Command::GrantAgeException {
            campaign: CampaignId::parse("school-2026").unwrap(),
            child: child(1),
        },
        at,
    );
    assert!(s.when(Command::SubmitSchoolApplication { form: young }, at).is_ok());
}

#[test]
fn school_choices_follow_the_campaign_mode() {
    let s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    let at = t("2026-07-10T10:00:00Z");
    then_rejected(
        s.when(submit_school(1, &["S1", "S2"], vec![]), at),
        Rejection::TooMany {
            field: "schools".into(),
            count: 2,
            max: 1,
        },
    );
    let ranked = with_campaign(chrono_tz::Europe::Moscow, TieBreak::RegistrationTime, CampaignMode::Ranked { max_choices: 2 });
    assert!(ranked.when(submit_school(1, &["S1", "S2"], vec![]), at).is_ok());
    then_rejected(
        ranked.when(submit_school(1, &["S1", "S2", "S3"], vec![]), at),
        Rejection::TooMany {
            field: "schools".into(),
            count: 3,
            max: 2,
        },
    );
    then_rejected(
        s.when(submit_school(1, &["UNKNOWN"], vec![]), at),
        Rejection::UnknownInstitution {
            field: "schools".into(),
            id: "UNKNOWN".into(),
        },
    );
    then_rejected(
        s.when(
            Command::SubmitSchoolApplication {
                form: SchoolForm {
                    campaign: CampaignId::parse("nope").unwrap(),
                    ..school_form(1, &["S1"], vec![])
                },
            },
            at,
        ),
        Rejection::UnknownCampaign { id: "nope".into() },
    );
}

#[test]
fn drafts_are_saved_early_and_stamped_when_submitted() {
    let mut s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::RegistrationTime, CampaignMode::SingleSchool);
    s.accept(
        Command::SaveSchoolDraft {
            form: school_form(1, &["S1"], catchment("S1")),
        },
        t("2026-03-20T10:00:00Z"),
    );
    let submit_draft = Command::SubmitSchoolDraft {
        campaign: CampaignId::parse("school-2026").unwrap(),
        child: child(1),
    };
    assert!(matches!(
        s.when(submit_draft.clone(), t("2026-03-31T20:59:59Z")),
        Err(Rejection::CampaignNotOpen { .. })
    ));
    let events = s.accept(submit_draft.clone(), t("2026-03-31T21:00:00.250Z"));
    match &events[0] {
        Event::SchoolApplicationSubmitted {
            from_draft,
            registered_at,
            number,
            ..
        } => {
            assert!(*from_draft);
            assert_eq!(*registered_at, t("2026-03-31T21:00:00.250Z"));
            assert_eq!(*number, ApplicationNumber(1));
        }
        other => panic!("unexpected {other:?}"),
    }
    then_rejected(
        s.when(submit_draft, t("2026-04-01T10:00:00Z")),
        Rejection::NoDraft {
            id: "school-2026".into(),
        },
    );
    then_rejected(
        s.when(submit_school(1, &["S2"], catchment("S2")), t("2026-04-01T10:00:00Z")),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
        },
    );
}

#[test]
fn school_queues_follow_the_campaign_policy() {
    let at = t("2026-07-10T10:00:00Z");
    // Birth date: older children first, whatever the submission order.
    let mut s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::BirthDate, CampaignMode::SingleSchool);
    for (n, born) in [(1, date(2019, 12, 1)), (2, date(2019, 1, 1)), (3, date(2019, 6, 1))] {
        let mut form = school_form(n, &["S1"], vec![]);
        form.birth_date = born;
        s.accept(Command::SubmitSchoolApplication { form }, at + Duration::seconds(n as i64));
    }
    assert_eq!(positions_of(&s.state, 2), vec![("S1".into(), 1)]);
    assert_eq!(positions_of(&s.state, 3), vec![("S1".into(), 2)]);
    assert_eq!(positions_of(&s.state, 1), vec![("S1".into(), 3)]);
    // Priority tiers come first in every policy: a confirmed catchment resident leads.
    s.accept(
        Command::ClaimPrivilege {
            application: ApplicationNumber(1),
            privilege: Privilege::Catchment {
                institution: inst("S1"),
            },
        },
        at,
    );
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(1),
            privilege: Privilege::Catchment {
                institution: inst("S1"),
            },
        },
        at,
    );
    assert_eq!(positions_of(&s.state, 1), vec![("S1".into(), 1)]);

    // Lottery: the order is the seeded draw, identical on every replay.
    let order_for = |seed| {
        let mut s = with_campaign(chrono_tz::Europe::Moscow, TieBreak::Lottery { seed }, CampaignMode::SingleSchool);
        for n in 1..=6 {
            s.accept(submit_school(n, &["S1"], vec![]), at + Duration::seconds(n as i64));
        }
        (1..=6).map(|n| positions_of(&s.state, n)[0].1).collect::<Vec<_>>()
    };
    assert_eq!(order_for(7), order_for(7));
    assert_ne!(order_for(7), order_for(8));
    let mut sorted = order_for(7);
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3, 4, 5, 6]);
}

// ---------------------------------------------------------------------------------------------
// Clinic appointments

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
        Rejection::UnknownSpecialty { id: "dentist".into() },
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
    then_rejected(s.when(book("T9", 1), t(NOW)), Rejection::UnknownSlot { id: "T9".into() });
    then_rejected(
        s.when(book("T2", 2), t("2026-02-10T09:40:00Z")),
        Rejection::SlotInThePast { id: "T2".into() },
    );
    // Cancelling frees the slot at once.
    s.accept(Command::CancelBooking { booking: BookingNumber(1) }, t(NOW));
    then_rejected(
        s.when(Command::CancelBooking { booking: BookingNumber(1) }, t(NOW)),
        Rejection::BookingNotActive {
            number: BookingNumber(1),
        },
    );
    then_rejected(
        s.when(Command::CancelBooking { booking: BookingNumber(5) }, t(NOW)),
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
        },
        t(NOW),
    );
}

#[test]
fn two_no_shows_within_a_year_block_self_booking() {
    let mut s = with_slots();
    s.accept(book("T1", 1), t(NOW));
    then_invalid(
        s.when(Command::RecordNoShow { booking: BookingNumber(1) }, t(NOW)),
        "booking",
    );
    s.accept(Command::RecordNoShow { booking: BookingNumber(1) }, t("2026-02-10T10:00:00Z"));
    s.accept(book("T3", 1), t("2026-02-10T09:00:00Z"));
    s.accept(Command::RecordNoShow { booking: BookingNumber(2) }, t("2026-02-10T11:00:00Z"));
    then_rejected(
        s.when(book("T4", 1), t("2026-02-10T09:05:00Z")),
        Rejection::SelfBookingBlocked {
            no_shows: 2,
            until: t("2027-02-10T10:00:00Z"),
        },
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
    let order: Vec<_> = s.state.specialty(&therapist()).unwrap().waiting.iter().map(|w| w.patient).collect();
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
fn upcasting_fills_fields_added_later() {
    let v1 = r#"{"number":1,"child":"0000000000000000000000000000000000000000000000000000000000000000","birth_date":"2023-03-10","preferences":["K1"],"desired_start":"2026-09-01","privileges":[],"registered_at":"2026-02-01T09:00:00Z","channel":"portal","submitted_by":"p"}"#;
    let event = ochered_core::upcast::decode("KindergartenApplicationSubmitted", 1, v1).unwrap();
    assert!(matches!(event, Event::KindergartenApplicationSubmitted { any_other: false, .. }));
    assert!(ochered_core::upcast::decode("KindergartenApplicationSubmitted", 2, v1).is_err());
    assert!(ochered_core::upcast::decode("KindergartenApplicationSubmitted", 99, v1).is_err());
}

#[test]
fn events_round_trip_through_their_payload() {
    for event in authority() {
        let text = serde_json::to_string(&event.to_payload()).unwrap();
        let back = ochered_core::upcast::decode(event.type_name(), ochered_core::SCHEMA_VERSION, &text).unwrap();
        assert_eq!(back, event);
    }
    let _ = Utc.timestamp_opt(0, 0);
}
