//! The rules of each service as given/when/then cases: given these events, when this command
//! at this time, then these events or this rejection. No database, no clock.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use ochered_core::command::{
    CampaignConfig, CampaignMode, CampaignSchool, Command, KindergartenForm, SchoolForm, SlotSpec,
};
use ochered_core::domain::{
    ApplicationNumber, AuthorityConfig, AuthorityId, BookingNumber, CampaignId, Channel, DoctorId,
    DocumentNumber, InstitutionId, InstitutionKind, PersonKey, SlotId, Specialty,
};
use ochered_core::ordering::{Privilege, TieBreak};
use ochered_core::queues::Cause;
use ochered_core::{decide, Event, Rejection, State};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn inst(id: &str) -> InstitutionId {
    InstitutionId::parse(id).unwrap()
}

fn child(n: u32) -> PersonKey {
    PersonKey::derive(
        b"test-secret",
        &DocumentNumber::parse(&format!("IV-AB {n:06}")).unwrap(),
    )
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
        sealed: None,
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
            sealed: None,
        }]
    );
}

#[test]
fn nothing_is_accepted_before_the_authority_is_configured() {
    let s = given([]);
    then_rejected(
        s.when(submit_kg(1, &["K1"]), t(NOW)),
        Rejection::AuthorityNotConfigured,
    );
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
            max_months: 83,
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
        s.accept(
            submit_kg(n, &["K1", "K2"]),
            t(NOW) + Duration::minutes(n as i64),
        );
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
    assert_eq!(
        positions_of(&s.state, 4),
        vec![("K1".into(), 4), ("K2".into(), 4)]
    );
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
    assert_eq!(
        positions_of(&s.state, 3),
        vec![("K1".into(), 1), ("K2".into(), 1)]
    );
    assert_eq!(
        positions_of(&s.state, 4),
        vec![("K1".into(), 4), ("K2".into(), 2)]
    );
    assert_eq!(
        positions_of(&s.state, 1),
        vec![("K1".into(), 2), ("K2".into(), 3)]
    );
    // Revocation puts child 3 back in time order.
    s.accept(
        Command::RevokePrivilege {
            application: ApplicationNumber(3),
            privilege: Privilege::FirstPriority,
            reason: "certificate expired".into(),
        },
        t(NOW),
    );
    assert_eq!(
        positions_of(&s.state, 3),
        vec![("K1".into(), 3), ("K2".into(), 4)]
    );
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
fn explanation_names_what_moved_a_position() {
    let mut s = given(authority());
    s.accept(submit_kg(1, &["K1"]), t("2026-01-01T10:00:00Z"));
    s.accept(submit_kg(2, &["K1"]), t("2026-01-02T10:00:00Z"));
    s.accept(submit_kg(3, &["K1"]), t("2026-01-03T10:00:00Z"));
    let mut privileged = kg_form(4, &["K1"]);
    privileged.privileges = vec![Privilege::Extraordinary];
    s.accept(
        Command::SubmitKindergartenApplication { form: privileged },
        t("2026-01-04T10:00:00Z"),
    );
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
    let explanation = s
        .state
        .queues
        .explain(&queue, &key, t("2026-01-01T00:00:00Z"), 100);
    assert_eq!(explanation.position_now, Some(3));
    let steps: Vec<_> = explanation
        .movements
        .iter()
        .map(|m| {
            (
                m.cause,
                m.other_application.map(|n| n.0),
                m.position_before,
                m.position_after,
            )
        })
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
    let e4 = s
        .state
        .queues
        .explain(&queue4, &key4, t("2026-01-04T12:00:00Z"), 100);
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
    let short = s
        .state
        .queues
        .explain(&queue, &key, t("2026-01-01T00:00:00Z"), 1);
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
        sealed: None,
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
    let s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
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
    then_invalid(
        s.when(
            Command::ConfigureCampaign {
                config: bad.clone(),
            },
            t(NOW),
        ),
        "stage2_opens",
    );
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
    let kamchatka = with_campaign(
        chrono_tz::Asia::Kamchatka,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    let opening = t("2026-03-31T12:00:00Z");
    then_rejected(
        kamchatka.when(
            submit_school(1, &["S1"], catchment("S1")),
            opening - Duration::seconds(1),
        ),
        Rejection::CampaignNotOpen {
            id: "school-2026".into(),
            opens_at: opening,
        },
    );
    assert!(kamchatka
        .when(submit_school(1, &["S1"], catchment("S1")), opening)
        .is_ok());
    // Kaliningrad (UTC+2) is still closed at that instant.
    let kaliningrad = with_campaign(
        chrono_tz::Europe::Kaliningrad,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
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
    let s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    then_rejected(
        s.when(submit_school(1, &["S1"], vec![]), t("2026-04-01T10:00:00Z")),
        Rejection::StageOneOnlyForPriority {
            id: "school-2026".into(),
            stage2_opens_at: t("2026-07-05T21:00:00Z"),
        },
    );
    assert!(s
        .when(submit_school(1, &["S1"], vec![]), t("2026-07-05T21:00:00Z"))
        .is_ok());
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
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    let at = t("2026-07-10T10:00:00Z");
    let mut young = school_form(1, &["S1"], vec![]);
    young.birth_date = date(2020, 3, 2); // 6 years 5 months on 1 September 2026
    then_rejected(
        s.when(
            Command::SubmitSchoolApplication {
                form: young.clone(),
            },
            at,
        ),
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
    assert!(s
        .when(Command::SubmitSchoolApplication { form: young }, at)
        .is_ok());
}

#[test]
fn school_choices_follow_the_campaign_mode() {
    let s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    let at = t("2026-07-10T10:00:00Z");
    then_rejected(
        s.when(submit_school(1, &["S1", "S2"], vec![]), at),
        Rejection::TooMany {
            field: "schools".into(),
            count: 2,
            max: 1,
        },
    );
    let ranked = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::Ranked { max_choices: 2 },
    );
    assert!(ranked
        .when(submit_school(1, &["S1", "S2"], vec![]), at)
        .is_ok());
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
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
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
        s.when(
            submit_school(1, &["S2"], catchment("S2")),
            t("2026-04-01T10:00:00Z"),
        ),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
        },
    );
}

#[test]
fn school_queues_follow_the_campaign_policy() {
    let at = t("2026-07-10T10:00:00Z");
    // Birth date: older children first, whatever the submission order.
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::BirthDate,
        CampaignMode::SingleSchool,
    );
    for (n, born) in [
        (1, date(2019, 12, 1)),
        (2, date(2019, 1, 1)),
        (3, date(2019, 6, 1)),
    ] {
        let mut form = school_form(n, &["S1"], vec![]);
        form.birth_date = born;
        s.accept(
            Command::SubmitSchoolApplication { form },
            at + Duration::seconds(n as i64),
        );
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
        let mut s = with_campaign(
            chrono_tz::Europe::Moscow,
            TieBreak::Lottery { seed },
            CampaignMode::SingleSchool,
        );
        for n in 1..=6 {
            s.accept(
                submit_school(n, &["S1"], vec![]),
                at + Duration::seconds(n as i64),
            );
        }
        (1..=6)
            .map(|n| positions_of(&s.state, n)[0].1)
            .collect::<Vec<_>>()
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
fn upcasting_fills_fields_added_later() {
    let v1 = r#"{"number":1,"child":"0000000000000000000000000000000000000000000000000000000000000000","birth_date":"2023-03-10","preferences":["K1"],"desired_start":"2026-09-01","privileges":[],"registered_at":"2026-02-01T09:00:00Z","channel":"portal","submitted_by":"p"}"#;
    let event = ochered_core::upcast::decode("KindergartenApplicationSubmitted", 1, v1).unwrap();
    assert!(matches!(
        event,
        Event::KindergartenApplicationSubmitted {
            any_other: false,
            ..
        }
    ));
    assert!(ochered_core::upcast::decode("KindergartenApplicationSubmitted", 2, v1).is_err());
    assert!(ochered_core::upcast::decode("KindergartenApplicationSubmitted", 99, v1).is_err());
}

#[test]
fn events_round_trip_through_their_payload() {
    for event in authority() {
        let text = event.to_payload();
        let back =
            ochered_core::upcast::decode(event.type_name(), ochered_core::SCHEMA_VERSION, &text)
                .unwrap();
        assert_eq!(back, event);
    }
    let _ = Utc.timestamp_opt(0, 0);
}

// ---------------------------------------------------------------------------------------------
// Kindergarten seats, rounds and offers

use ochered_core::command::{AgeGroupSeats, CampaignStage};
use ochered_core::domain::RoundId;
use ochered_core::rounds::{RoundApplicant, RoundPlacement, RoundSeats};
use ochered_core::state::{ApplicationStatus, PlacementStatus};

fn round_id(id: &str) -> RoundId {
    RoundId::parse(id).unwrap()
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

fn status_of(s: &Scenario, n: u32) -> ApplicationStatus {
    s.state.application(ApplicationNumber(n)).unwrap().status
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
    };
    let events = s.accept(top_up, t("2026-10-01T07:00:00Z"));
    assert_eq!(offered(&events), vec![(2, "K1/3".into())]);
    then_invalid(
        s.when(
            Command::RunKindergartenRound {
                round: round_id("bad"),
                intake_year: 2026,
                intake_date: Some(date(2027, 9, 1)),
            },
            t(ROUND_AT),
        ),
        "intake_date",
    );
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
    let events = s.accept(run_round("top-up"), t(ROUND_AT) + Duration::days(2));
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
    s.accept(run_round("top-up"), deadline);
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
    let events = s.accept(run_round("transfers"), t(ROUND_AT) + Duration::days(2));
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
    s.accept(run_round("transfers-2"), t(ROUND_AT) + Duration::days(4));
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

// ---------------------------------------------------------------------------------------------
// First-grade enrollment decisions

fn enroll(id: &str, stage: CampaignStage) -> Command {
    Command::RunSchoolEnrollment {
        round: round_id(id),
        campaign: CampaignId::parse("school-2026").unwrap(),
        stage,
    }
}

fn enrolled(events: &[Event]) -> Vec<(u32, String)> {
    match events {
        [Event::SchoolEnrollmentCompleted {
            seats, placements, ..
        }] => placements
            .iter()
            .map(|p| (p.number.0, seats[p.seats as usize].instance_id()))
            .collect(),
        other => panic!("expected one enrollment event, got {other:?}"),
    }
}

#[test]
fn single_school_enrollment_fills_seats_in_queue_order_per_stage() {
    let mut s = with_campaign(
        chrono_tz::Asia::Kamchatka,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    // Stage 1 (opens 2026-03-31T12:00Z in Kamchatka): catchment residents.
    for n in 1..=3 {
        s.accept(
            submit_school(n, &["S1"], catchment("S1")),
            t("2026-04-01T00:00:00Z") + Duration::minutes(n as i64),
        );
    }
    then_rejected(
        s.when(enroll("s1", CampaignStage::One), t("2026-03-31T11:59:59Z")),
        Rejection::CampaignNotOpen {
            id: "school-2026".into(),
            opens_at: t("2026-03-31T12:00:00Z"),
        },
    );
    // Stage 2 applications arrive after stage 2 opens (local midnight, 2026-07-05T12:00Z).
    s.accept(submit_school(4, &["S2"], vec![]), t("2026-07-05T12:00:00Z"));
    // Claimed but unconfirmed catchment does not count; seats go in registration order.
    let events = s.accept(enroll("s1", CampaignStage::One), t("2026-07-05T12:00:00Z"));
    assert_eq!(enrolled(&events), vec![(1, "S1".into()), (2, "S1".into())]);
    assert_eq!(status_of(&s, 1), ApplicationStatus::Enrolled);
    assert_eq!(status_of(&s, 3), ApplicationStatus::Active);
    assert_eq!(positions_of(&s.state, 3), vec![("S1".into(), 1)]);
    // An enrolled child cannot apply again in the campaign.
    then_rejected(
        s.when(submit_school(1, &["S3"], vec![]), t("2026-07-06T00:00:00Z")),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
        },
    );
    then_rejected(
        s.when(enroll("s2", CampaignStage::Two), t("2026-07-05T11:59:59Z")),
        Rejection::CampaignNotOpen {
            id: "school-2026".into(),
            opens_at: t("2026-07-05T12:00:00Z"),
        },
    );
    let events = s.accept(enroll("s2", CampaignStage::Two), t("2026-07-10T00:00:00Z"));
    assert_eq!(enrolled(&events), vec![(4, "S2".into())]);
    // S1 is full: child 3 waits in vain, and the instance of the stage says why.
    let round = &s.state.rounds()[1];
    let instance = s.state.round_instance(round);
    assert_eq!(
        instance
            .institutions
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        vec!["S2", "S3"]
    );
    assert_eq!(
        ochered_core::allocation::solve_instance(&instance).unwrap(),
        s.state.round_assignment(round)
    );
}

#[test]
fn ranked_enrollment_is_deferred_acceptance_with_priority_tiers() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::Ranked { max_choices: 3 },
    );
    let at = t("2026-07-10T10:00:00Z");
    // Seats: 2 per school. Children 1-3 prefer S1; child 4 is a confirmed catchment resident
    // of S1 who registered last, and still beats the others there.
    for n in 1..=3 {
        s.accept(
            submit_school(n, &["S1", "S2"], vec![]),
            at + Duration::minutes(n as i64),
        );
    }
    s.accept(
        submit_school(4, &["S1", "S3"], catchment("S1")),
        at + Duration::minutes(4),
    );
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(4),
            privilege: Privilege::Catchment {
                institution: inst("S1"),
            },
        },
        at + Duration::minutes(5),
    );
    let events = s.accept(
        enroll("ranked", CampaignStage::Two),
        at + Duration::hours(1),
    );
    assert_eq!(
        enrolled(&events),
        vec![
            (1, "S1".into()),
            (2, "S2".into()),
            (3, "S2".into()),
            (4, "S1".into())
        ]
    );
    let round = &s.state.rounds()[0];
    assert_eq!(
        ochered_core::allocation::solve_instance(&s.state.round_instance(round)).unwrap(),
        s.state.round_assignment(round)
    );
}

// ---------------------------------------------------------------------------------------------
// Clinic waiting-list hold chain

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
    let events = s.accept(
        Command::ExpireSlotHolds {},
        hold_until + Duration::minutes(1),
    );
    assert_eq!(
        events,
        vec![Event::SlotHeld {
            slot: slot("T1"),
            specialty: therapist(),
            patient: child(2),
            until: hold_until + Duration::minutes(120),
            passed_over: vec![child(3)],
            at: hold_until + Duration::minutes(1),
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
fn no_shows_block_self_booking_even_for_a_held_slot() {
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
    assert_eq!(
        s.state
            .slot(&slot("T4"))
            .unwrap()
            .hold
            .as_ref()
            .unwrap()
            .patient,
        child(1)
    );
    assert!(matches!(
        s.when(book("T4", 1), t("2026-02-10T08:40:00Z")),
        Err(Rejection::SelfBookingBlocked { no_shows: 2, .. })
    ));
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

// ---------------------------------------------------------------------------------------------
// Privacy: sealed personal data and its erasure (crypto-shredding)

fn sealed(tag: u8) -> ochered_core::command::Sealed {
    ochered_core::command::Sealed {
        nonce: format!("{tag:02x}").repeat(24),
        ciphertext: format!("{tag:02x}").repeat(40),
    }
}

#[test]
fn sealed_personal_data_is_carried_into_the_event_and_the_state() {
    let mut s = given(authority());
    let form = KindergartenForm {
        sealed: Some(sealed(0xab)),
        ..kg_form(1, &["K1"])
    };
    let events = s.accept(Command::SubmitKindergartenApplication { form }, t(NOW));
    match &events[0] {
        Event::KindergartenApplicationSubmitted { sealed: got, .. } => {
            assert_eq!(got.as_ref(), Some(&sealed(0xab)));
        }
        other => panic!("unexpected {other:?}"),
    }
    let app = s.state.application(ApplicationNumber(1)).unwrap();
    assert_eq!(app.sealed, Some(sealed(0xab)));
    assert!(!app.erased);
}

#[test]
fn malformed_sealed_values_are_refused() {
    let s = given(authority());
    let mut bad_nonce = sealed(1);
    bad_nonce.nonce.truncate(10);
    let mut bad_text = sealed(1);
    bad_text.ciphertext = "XYZ".repeat(20);
    let mut huge = sealed(1);
    huge.ciphertext = "00".repeat(ochered_core::command::SEALED_CIPHERTEXT_HEX_MAX);
    for (value, field) in [
        (bad_nonce, "sealed.nonce"),
        (bad_text, "sealed.ciphertext"),
        (huge, "sealed.ciphertext"),
    ] {
        let form = KindergartenForm {
            sealed: Some(value),
            ..kg_form(1, &["K1"])
        };
        then_invalid(
            s.when(Command::SubmitKindergartenApplication { form }, t(NOW)),
            field,
        );
    }
}

/// Every application's position in each of its queues.
fn all_positions(state: &State) -> Vec<Vec<Option<usize>>> {
    state
        .applications()
        .iter()
        .map(|a| {
            state
                .queue_entries(a)
                .into_iter()
                .map(|(q, k)| state.queues.position(&q, &k))
                .collect()
        })
        .collect()
}

#[test]
fn erasure_forgets_personal_data_and_moves_no_queue() {
    let mut s = given(authority());
    for n in 1..=3 {
        let form = KindergartenForm {
            sealed: Some(sealed(n as u8)),
            ..kg_form(n, &["K1", "K2"])
        };
        s.accept(Command::SubmitKindergartenApplication { form }, t(NOW));
    }
    let before = all_positions(&s.state);
    let erase = Command::RecordPersonalDataErasure { person: child(2) };
    let events = s.accept(erase.clone(), t(NOW));
    assert_eq!(
        events,
        vec![Event::PersonalDataErased {
            person: child(2),
            applications: vec![ApplicationNumber(2)],
            at: t(NOW),
        }]
    );
    let app = s.state.application(ApplicationNumber(2)).unwrap();
    assert_eq!((app.sealed.as_ref(), app.erased), (None, true));
    assert_eq!(
        s.state.application(ApplicationNumber(1)).unwrap().sealed,
        Some(sealed(1))
    );
    let after = all_positions(&s.state);
    assert_eq!(before, after);
    // Twice is a no-op; a person never seen is unknown.
    assert_eq!(s.when(erase, t(NOW)), Ok(vec![]));
    then_rejected(
        s.when(
            Command::RecordPersonalDataErasure { person: child(99) },
            t(NOW),
        ),
        Rejection::UnknownPerson,
    );
}
