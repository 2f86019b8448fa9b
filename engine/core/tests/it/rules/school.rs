//! First-grade enrollment: campaigns, stages, ages, drafts, queue policies and the
//! enrollment decisions of each stage (docs/RULES.md#school).

use chrono::Duration;
use ochered_core::command::{
    AgeExceptionCategory, AgeExceptionDecision, CampaignConfig, CampaignMode, CampaignSchool,
    CampaignStage, SchoolForm,
};
use ochered_core::domain::CampaignId;
use ochered_core::ordering::{Privilege, TieBreak};
use ochered_core::state::AgeRequestStatus;

use super::*;

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

pub(super) fn with_campaign(
    tz: chrono_tz::Tz,
    tie_break: TieBreak,
    mode: CampaignMode,
) -> Scenario {
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

pub(super) fn submit_school(n: u32, schools: &[&str], privileges: Vec<Privilege>) -> Command {
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
            max_months: 96,
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

fn campaign_2026() -> CampaignId {
    CampaignId::parse("school-2026").unwrap()
}

/// Child `n`'s family asks for an exception: `birth_date` 2020-03-02 is 77 months on
/// 1 September 2026 (too young), 2018-09-01 is 96 months (too old).
fn request_exception(n: u32, birth_date: NaiveDate, category: AgeExceptionCategory) -> Command {
    Command::RequestAgeException {
        campaign: campaign_2026(),
        child: child(n),
        birth_date,
        category,
        requested_by: format!("parent-{n}"),
    }
}

fn decide_exception(n: u32, decision: AgeExceptionDecision) -> Command {
    Command::DecideAgeException {
        campaign: campaign_2026(),
        child: child(n),
        decision,
    }
}

#[test]
fn a_granted_age_exception_request_lets_the_application_through() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    let at = t("2026-07-10T10:00:00Z");
    let young = date(2020, 3, 2);
    let mut form = school_form(1, &["S1"], vec![]);
    form.birth_date = young;
    let submit = Command::SubmitSchoolApplication { form };
    assert!(matches!(
        s.when(submit.clone(), at),
        Err(Rejection::AgeOutOfRange { .. })
    ));

    // The family asks; the same request twice is refused, and so is one naming the wrong
    // category or for a child whose age needs none.
    let requested = s.accept(
        request_exception(1, young, AgeExceptionCategory::Earlier),
        at,
    );
    assert!(matches!(
        &requested[..],
        [Event::AgeExceptionRequested {
            category: AgeExceptionCategory::Earlier,
            ..
        }]
    ));
    then_rejected(
        s.when(
            request_exception(1, young, AgeExceptionCategory::Earlier),
            at,
        ),
        Rejection::AgeExceptionAlreadyRequested {
            id: "school-2026".into(),
            status: "pending".into(),
        },
    );
    then_invalid(
        s.when(request_exception(2, young, AgeExceptionCategory::Later), at),
        "category",
    );
    then_invalid(
        s.when(
            request_exception(2, date(2019, 5, 20), AgeExceptionCategory::Earlier),
            at,
        ),
        "birth_date",
    );
    // Asking does not let the child apply yet.
    assert!(matches!(
        s.when(submit.clone(), at),
        Err(Rejection::AgeOutOfRange { .. })
    ));

    // Granting it is the officer's grant: the application goes through. Deciding again is
    // refused, and so is asking again.
    let granted = s.accept(decide_exception(1, AgeExceptionDecision::Grant), at);
    assert_eq!(
        granted,
        [Event::AgeExceptionGranted {
            campaign: campaign_2026(),
            child: child(1),
            at,
        }]
    );
    let request = &s.state.campaign(0).age_requests[&child(1)];
    assert_eq!(request.status, AgeRequestStatus::Granted { at });
    then_rejected(
        s.when(
            decide_exception(
                1,
                AgeExceptionDecision::Refuse {
                    reason: "late".into(),
                },
            ),
            at,
        ),
        Rejection::AgeExceptionDecided {
            id: "school-2026".into(),
            status: "granted".into(),
        },
    );
    then_rejected(
        s.when(
            request_exception(1, young, AgeExceptionCategory::Earlier),
            at,
        ),
        Rejection::AgeExceptionAlreadyRequested {
            id: "school-2026".into(),
            status: "granted".into(),
        },
    );
    assert!(s.when(submit, at).is_ok());
}

#[test]
fn a_refused_age_exception_request_keeps_the_child_out() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    let at = t("2026-07-10T10:00:00Z");
    let old = date(2018, 9, 1);
    // Nothing to decide before the family asks; unknown campaigns are refused both ways.
    then_rejected(
        s.when(decide_exception(2, AgeExceptionDecision::Grant), at),
        Rejection::NoAgeExceptionRequest {
            id: "school-2026".into(),
        },
    );
    let other = CampaignId::parse("school-1999").unwrap();
    then_rejected(
        s.when(
            Command::RequestAgeException {
                campaign: other.clone(),
                child: child(2),
                birth_date: old,
                category: AgeExceptionCategory::Later,
                requested_by: "parent-2".into(),
            },
            at,
        ),
        Rejection::UnknownCampaign {
            id: "school-1999".into(),
        },
    );
    then_rejected(
        s.when(
            Command::DecideAgeException {
                campaign: other,
                child: child(2),
                decision: AgeExceptionDecision::Grant,
            },
            at,
        ),
        Rejection::UnknownCampaign {
            id: "school-1999".into(),
        },
    );

    s.accept(request_exception(2, old, AgeExceptionCategory::Later), at);
    // A refusal states its reason.
    for reason in ["", "a\u{7}b"] {
        then_invalid(
            s.when(
                decide_exception(
                    2,
                    AgeExceptionDecision::Refuse {
                        reason: reason.into(),
                    },
                ),
                at,
            ),
            "reason",
        );
    }
    let refused = s.accept(
        decide_exception(
            2,
            AgeExceptionDecision::Refuse {
                reason: "no medical grounds".into(),
            },
        ),
        at,
    );
    assert!(
        matches!(&refused[..], [Event::AgeExceptionRefused { reason, .. }] if reason == "no medical grounds")
    );
    then_rejected(
        s.when(decide_exception(2, AgeExceptionDecision::Grant), at),
        Rejection::AgeExceptionDecided {
            id: "school-2026".into(),
            status: "refused".into(),
        },
    );
    let mut form = school_form(2, &["S1"], vec![]);
    form.birth_date = old;
    assert!(matches!(
        s.when(Command::SubmitSchoolApplication { form }, at),
        Err(Rejection::AgeOutOfRange { .. })
    ));

    // After the campaign closes nobody may ask.
    then_rejected(
        s.when(
            request_exception(3, old, AgeExceptionCategory::Later),
            t("2026-09-05T21:00:00Z"),
        ),
        Rejection::CampaignClosed {
            id: "school-2026".into(),
            closed_at: t("2026-09-05T21:00:00Z"),
        },
    );
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
    // Submitted once, the draft has become application 1.
    then_rejected(
        s.when(submit_draft, t("2026-04-01T10:00:00Z")),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
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
    // An officer confirms the three catchment claims: equal tier, so seats go in
    // registration order.
    for n in 1..=3 {
        s.accept(
            Command::ConfirmPrivilege {
                application: ApplicationNumber(n),
                privilege: catchment("S1")[0].clone(),
            },
            t("2026-07-05T11:00:00Z"),
        );
    }
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

/// Stage 1 places confirmed rights only: a claim no officer has confirmed waits, and a later
/// stage-1 run places it once confirmed (docs/RULES.md#school-enrollment).
#[test]
fn stage_one_enrolls_only_confirmed_claims() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    for n in 1..=2 {
        s.accept(
            submit_school(n, &["S1"], catchment("S1")),
            t("2026-04-01T10:00:00Z") + Duration::minutes(n as i64),
        );
    }
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(2),
            privilege: catchment("S1")[0].clone(),
        },
        t("2026-04-02T10:00:00Z"),
    );
    let events = s.accept(enroll("s1", CampaignStage::One), t("2026-04-05T10:00:00Z"));
    assert_eq!(enrolled(&events), vec![(2, "S1".into())]);
    assert_eq!(status_of(&s, 1), ApplicationStatus::Active);
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(1),
            privilege: catchment("S1")[0].clone(),
        },
        t("2026-04-06T10:00:00Z"),
    );
    let events = s.accept(
        enroll("s1-b", CampaignStage::One),
        t("2026-04-07T10:00:00Z"),
    );
    assert_eq!(enrolled(&events), vec![(1, "S1".into())]);
}

/// Stage 2 is open while seats remain: once every seat of the listed schools is taken, an
/// application is refused, and a run with no seat left says so in school terms
/// (docs/RULES.md#school-stages, #school-enrollment).
#[test]
fn applications_and_runs_are_refused_once_every_seat_is_taken() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    let at = t("2026-07-10T10:00:00Z");
    for (n, school) in [
        (1, "S1"),
        (2, "S1"),
        (3, "S2"),
        (4, "S2"),
        (5, "S3"),
        (6, "S3"),
    ] {
        s.accept(
            submit_school(n, &[school], vec![]),
            at + Duration::minutes(n as i64),
        );
    }
    s.accept(enroll("s2", CampaignStage::Two), at + Duration::hours(1));
    then_rejected(
        s.when(submit_school(7, &["S1"], vec![]), at + Duration::hours(2)),
        Rejection::SchoolsFull {
            campaign: "school-2026".into(),
            schools: vec!["S1".into()],
        },
    );
    then_rejected(
        s.when(enroll("s2-b", CampaignStage::Two), at + Duration::hours(2)),
        Rejection::CampaignFull {
            id: "school-2026".into(),
        },
    );
}

/// Submitting a draft that was already submitted names the application it became
/// (docs/RULES.md#school-drafts).
#[test]
fn resubmitting_a_draft_names_its_application() {
    let mut s = with_campaign(
        chrono_tz::Europe::Moscow,
        TieBreak::RegistrationTime,
        CampaignMode::SingleSchool,
    );
    s.accept(
        Command::SaveSchoolDraft {
            form: school_form(1, &["S1"], vec![]),
        },
        t("2026-03-20T10:00:00Z"),
    );
    let submit_draft = Command::SubmitSchoolDraft {
        campaign: CampaignId::parse("school-2026").unwrap(),
        child: child(1),
    };
    s.accept(submit_draft.clone(), t("2026-07-06T10:00:00Z"));
    then_rejected(
        s.when(submit_draft, t("2026-07-06T10:05:00Z")),
        Rejection::DuplicateApplication {
            existing: ApplicationNumber(1),
        },
    );
}
