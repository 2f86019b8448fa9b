//! Rules that apply to an application of either service, kindergarten or first grade:
//! withdrawal and privileges (docs/RULES.md#applications-withdrawal,
//! #applications-privileges).

use std::collections::BTreeSet;

use crate::command::Command;
use crate::domain::{ApplicationNumber, InstitutionId};
use crate::event::Event;
use crate::ordering::{Privilege, PrivilegeStatus};
use crate::rejection::Rejection;
use crate::state::{Application, ApplicationStatus, ServiceKind, State};

use super::checks::check_text;
use super::Context;

/// Most privileges one application claims at once.
const PRIVILEGES_MAX: usize = 8;

/// The commands on any application, in the order of [`Command`].
pub(super) fn decide(cx: Context, command: &Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::WithdrawApplication {
            application,
            reason,
        } => withdraw(cx, *application, reason),
        Command::ClaimPrivilege {
            application,
            privilege,
        } => claim_privilege(cx, *application, privilege),
        Command::ConfirmPrivilege {
            application,
            privilege,
        } => confirm_privilege(cx, *application, privilege),
        Command::RevokePrivilege {
            application,
            privilege,
            reason,
        } => revoke_privilege(cx, *application, privilege, reason),
        other => unreachable!("{} is not an application command", other.name()),
    }
}

/// Withdrawing with an outstanding offer gives the offered seat back.
fn withdraw(
    cx: Context,
    application: ApplicationNumber,
    reason: &str,
) -> Result<Vec<Event>, Rejection> {
    let app = cx
        .state
        .application(application)
        .ok_or(Rejection::UnknownApplication {
            number: application,
        })?;
    if !matches!(
        app.status,
        ApplicationStatus::Active | ApplicationStatus::Offered
    ) {
        return Err(Rejection::ApplicationNotActive {
            number: application,
            status: app.status.as_str().into(),
        });
    }
    check_text("reason", reason, 0)?;
    Ok(vec![Event::ApplicationWithdrawn {
        number: application,
        reason: reason.to_owned(),
        at: cx.now,
    }])
}

fn claim_privilege(
    cx: Context,
    application: ApplicationNumber,
    privilege: &Privilege,
) -> Result<Vec<Event>, Rejection> {
    let state = cx.state;
    let app = active_application(state, application)?;
    let listed: Vec<InstitutionId> = app
        .preferences
        .iter()
        .map(|&i| state.institution(i).id.clone())
        .collect();
    check_privilege(app.service, privilege, &listed)?;
    let existing = app.privileges.iter().find(|c| &c.privilege == privilege);
    if existing.is_some_and(|c| c.status != PrivilegeStatus::Revoked) {
        return Err(Rejection::PrivilegeAlreadyClaimed {
            number: application,
        });
    }
    Ok(vec![Event::PrivilegeClaimed {
        number: application,
        privilege: privilege.clone(),
        at: cx.now,
    }])
}

fn confirm_privilege(
    cx: Context,
    application: ApplicationNumber,
    privilege: &Privilege,
) -> Result<Vec<Event>, Rejection> {
    let app = active_application(cx.state, application)?;
    let claimed = app
        .privileges
        .iter()
        .any(|c| &c.privilege == privilege && c.status == PrivilegeStatus::Claimed);
    if !claimed {
        return Err(Rejection::PrivilegeNotClaimed {
            number: application,
        });
    }
    Ok(vec![Event::PrivilegeConfirmed {
        number: application,
        privilege: privilege.clone(),
        at: cx.now,
    }])
}

fn revoke_privilege(
    cx: Context,
    application: ApplicationNumber,
    privilege: &Privilege,
    reason: &str,
) -> Result<Vec<Event>, Rejection> {
    let app = active_application(cx.state, application)?;
    check_text("reason", reason, 1)?;
    let held = app
        .privileges
        .iter()
        .any(|c| &c.privilege == privilege && c.status != PrivilegeStatus::Revoked);
    if !held {
        return Err(Rejection::PrivilegeNotClaimed {
            number: application,
        });
    }
    Ok(vec![Event::PrivilegeRevoked {
        number: application,
        privilege: privilege.clone(),
        reason: reason.to_owned(),
        at: cx.now,
    }])
}

/// The application, if it is waiting in its queues.
pub(super) fn active_application(
    state: &State,
    number: ApplicationNumber,
) -> Result<&Application, Rejection> {
    let app = state
        .application(number)
        .ok_or(Rejection::UnknownApplication { number })?;
    if app.status != ApplicationStatus::Active {
        return Err(Rejection::ApplicationNotActive {
            number,
            status: app.status.as_str().into(),
        });
    }
    Ok(app)
}

/// A sibling or catchment privilege is tied to an institution the application lists;
/// catchment areas belong to schools only.
fn check_privilege(
    service: ServiceKind,
    privilege: &Privilege,
    listed: &[InstitutionId],
) -> Result<(), Rejection> {
    match (service, privilege) {
        (ServiceKind::Kindergarten, Privilege::Catchment { .. }) => Err(Rejection::invalid(
            "privileges",
            "catchment applies to schools, not kindergartens",
        )),
        (_, Privilege::Sibling { institution } | Privilege::Catchment { institution })
            if !listed.contains(institution) =>
        {
            Err(Rejection::invalid(
                "privileges",
                format!("{institution} is not in the application's list"),
            ))
        }
        _ => Ok(()),
    }
}

/// The privileges claimed with a new application: few, distinct, each fitting the list.
pub(super) fn check_privileges(
    service: ServiceKind,
    privileges: &[Privilege],
    listed: &[InstitutionId],
) -> Result<(), Rejection> {
    if privileges.len() > PRIVILEGES_MAX {
        return Err(Rejection::TooMany {
            field: "privileges".into(),
            count: privileges.len(),
            max: PRIVILEGES_MAX,
        });
    }
    let mut seen = BTreeSet::new();
    for p in privileges {
        if !seen.insert(p) {
            return Err(Rejection::invalid(
                "privileges",
                "a privilege is listed twice",
            ));
        }
        check_privilege(service, p, listed)?;
    }
    Ok(())
}
