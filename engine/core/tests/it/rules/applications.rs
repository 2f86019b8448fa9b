//! What applications of either service share: one current application per child,
//! withdrawal, privileges and the explanation of positions (docs/RULES.md#applications).

use chrono::Duration;
use ochered_core::ordering::Privilege;
use ochered_core::queues::Cause;

use super::*;

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

/// A change that leaves another application on the same side of this one moves nothing: a
/// privilege confirmed for an application that was ahead anyway is no movement, not a pair of
/// moves that cancel out (docs/RULES.md#applications-positions).
#[test]
fn a_change_that_moves_nobody_shows_no_movement() {
    let mut s = given(authority());
    let mut ahead = kg_form(1, &["K1"]);
    ahead.privileges = vec![Privilege::FirstPriority];
    s.accept(
        Command::SubmitKindergartenApplication { form: ahead },
        t("2026-01-01T10:00:00Z"),
    );
    s.accept(submit_kg(2, &["K1"]), t("2026-01-02T10:00:00Z"));
    s.accept(
        Command::ConfirmPrivilege {
            application: ApplicationNumber(1),
            privilege: Privilege::FirstPriority,
        },
        t("2026-01-03T10:00:00Z"),
    );
    let moves = |n: u32| {
        let app = s.state.application(ApplicationNumber(n)).unwrap();
        let (queue, key) = s.state.queue_entries(app)[0];
        s.state
            .queues
            .explain(&queue, &key, t("2026-01-01T00:00:00Z"), 100)
            .movements
            .iter()
            .map(|m| (m.cause, m.position_before, m.position_after))
            .collect::<Vec<_>>()
    };
    // The second child only joined; the first child's confirmation kept it first.
    assert_eq!(moves(2), vec![(Cause::Submitted, None, Some(2))]);
    assert_eq!(moves(1), vec![(Cause::Submitted, None, Some(1))]);
}
