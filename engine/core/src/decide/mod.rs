//! `decide`: every rule of the three services. Takes the state, a command and the time;
//! returns the events that follow or the rejection. Never mutates the state.
//!
//! One module per service, each with one table of its commands in the order of
//! [`Command`]: `authority` (settings, institutions and the erasure of personal data, which
//! cross every service), `applications` (withdrawal and privileges, for an application of
//! either service), `kindergarten`, `school` and `clinic`. The rules themselves are
//! written out in docs/RULES.md; each function cites its section.

mod applications;
mod authority;
mod checks;
mod clinic;
mod kindergarten;
mod school;

use chrono::{DateTime, Utc};

use crate::command::Command;
use crate::domain::AuthorityConfig;
use crate::event::Event;
use crate::rejection::Rejection;
use crate::state::State;

pub use authority::{check_authority_config, check_district, DISTRICT_MAX_CHARS};
pub use checks::TEXT_MAX_CHARS;
pub use clinic::SLOTS_PER_COMMAND_MAX;
pub use kindergarten::AGE_GROUP_SEATS_MAX;
pub use school::CAMPAIGN_SCHOOLS_MAX;

/// What every rule decides against: the state, the authority's settings and the time.
#[derive(Clone, Copy)]
struct Context<'a> {
    state: &'a State,
    config: &'a AuthorityConfig,
    now: DateTime<Utc>,
}

/// Decides a command against the state at time `now`.
pub fn decide(
    state: &State,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    use Command::*;
    // Until the authority is configured, configuring it is the only thing that can happen.
    let Some(config) = state.config() else {
        return match command {
            ConfigureAuthority { config } => authority::configure_authority(state, config),
            _ => Err(Rejection::AuthorityNotConfigured),
        };
    };
    let cx = Context { state, config, now };
    match command {
        ConfigureAuthority { .. }
        | RegisterInstitution { .. }
        | RecordPersonalDataErasure { .. } => authority::decide(cx, command),
        WithdrawApplication { .. }
        | ClaimPrivilege { .. }
        | ConfirmPrivilege { .. }
        | RevokePrivilege { .. } => applications::decide(cx, command),
        SubmitKindergartenApplication { .. }
        | AmendKindergartenPreferences { .. }
        | PublishKindergartenSeats { .. }
        | RunKindergartenRound { .. }
        | AcceptOffer { .. }
        | DeclineOffer { .. }
        | ExpireOffers {} => kindergarten::decide(cx, command),
        ConfigureCampaign { .. }
        | SaveSchoolDraft { .. }
        | SubmitSchoolDraft { .. }
        | SubmitSchoolApplication { .. }
        | GrantAgeException { .. }
        | RequestAgeException { .. }
        | DecideAgeException { .. }
        | RunSchoolEnrollment { .. } => school::decide(cx, command),
        ConfigureSpecialty { .. }
        | PublishSlots { .. }
        | BookSlot { .. }
        | CancelBooking { .. }
        | JoinWaitingList { .. }
        | RecordNoShow { .. }
        | ExpireSlotHolds {}
        | LeaveWaitingList { .. } => clinic::decide(cx, command),
    }
}
