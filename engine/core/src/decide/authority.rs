//! Rules of the authority as a whole: its one-time configuration, its institutions, and the
//! erasure of a person's personal data, which crosses every service
//! (docs/RULES.md#authority-settings, #authority-institutions, #privacy-erasure).

use crate::command::Command;
use crate::domain::{AuthorityConfig, InstitutionId, InstitutionKind, PersonKey};
use crate::event::Event;
use crate::rejection::Rejection;
use crate::state::State;

use super::checks::check_text;
use super::Context;

/// The authority's commands, in the order of [`Command`].
pub(super) fn decide(cx: Context, command: &Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::ConfigureAuthority { config } => configure_authority(cx.state, config),
        Command::RegisterInstitution {
            id,
            kind,
            name,
            district,
            address,
        } => register_institution(
            cx.state,
            id,
            *kind,
            name,
            district.as_deref(),
            address.as_deref(),
        ),
        Command::RecordPersonalDataErasure { person } => record_erasure(cx, person),
        other => unreachable!("{} is not an authority command", other.name()),
    }
}

/// The configuration is set once; its variants of the default rules are bounded.
pub(super) fn configure_authority(
    state: &State,
    config: &AuthorityConfig,
) -> Result<Vec<Event>, Rejection> {
    if state.config().is_some() {
        return Err(Rejection::AuthorityAlreadyConfigured);
    }
    check_authority_config(config)?;
    Ok(vec![Event::AuthorityConfigured {
        config: config.clone(),
    }])
}

/// The bounds of an authority's settings, checked without any state: the shell checks a new
/// authority's configuration before it starts a writer for it, so that a refused
/// configuration leaves nothing behind (docs/RULES.md#authority-settings).
pub fn check_authority_config(config: &AuthorityConfig) -> Result<(), Rejection> {
    check_text("name", &config.name, 1)?;
    if !(1..=10).contains(&config.max_kindergarten_preferences) {
        return Err(Rejection::invalid(
            "max_kindergarten_preferences",
            "must be 1-10",
        ));
    }
    if !(1..=90).contains(&config.offer_deadline_days) {
        return Err(Rejection::invalid("offer_deadline_days", "must be 1-90"));
    }
    if config.school_min_age_months >= config.school_max_age_months {
        return Err(Rejection::invalid(
            "school_min_age_months",
            "must be below school_max_age_months",
        ));
    }
    Ok(())
}

fn register_institution(
    state: &State,
    id: &InstitutionId,
    kind: InstitutionKind,
    name: &str,
    district: Option<&str>,
    address: Option<&str>,
) -> Result<Vec<Event>, Rejection> {
    check_text("name", name, 1)?;
    if let Some(district) = district {
        check_district(district)?;
    }
    if let Some(address) = address {
        check_text("address", address, 1)?;
    }
    if state.institution_idx(id).is_some() {
        return Err(Rejection::InstitutionExists { id: id.to_string() });
    }
    Ok(vec![Event::InstitutionRegistered {
        id: id.clone(),
        kind,
        name: name.to_owned(),
        district: district.map(str::to_owned),
        address: address.map(str::to_owned),
    }])
}

/// Longest district name in characters.
pub const DISTRICT_MAX_CHARS: usize = 100;

/// A district names a group of the demand report, so it is one line of text without
/// surrounding spaces: `"Central"` and `"Central "` would otherwise be two districts
/// (docs/RULES.md#authority-institutions).
pub fn check_district(district: &str) -> Result<(), Rejection> {
    check_text("district", district, 1)?;
    if district.chars().count() > DISTRICT_MAX_CHARS {
        return Err(Rejection::invalid(
            "district",
            format!("must be at most {DISTRICT_MAX_CHARS} characters"),
        ));
    }
    if district.contains('\n') || district.trim() != district {
        return Err(Rejection::invalid(
            "district",
            "must be one line without leading or trailing spaces",
        ));
    }
    Ok(())
}

/// An erasure covers the person's applications not erased before (and their first-grade
/// drafts); nothing left is a no-op (erasing twice changes nothing). A person the authority
/// never saw (no application, draft or booking) is unknown.
fn record_erasure(cx: Context, person: &PersonKey) -> Result<Vec<Event>, Rejection> {
    let Context { state, now, .. } = cx;
    let mut known = state.patient(person).is_some();
    let mut applications = Vec::new();
    for app in state.applications().iter().filter(|a| a.child == *person) {
        known = true;
        if !app.erased {
            applications.push(app.number);
        }
    }
    let mut sealed_drafts = false;
    for campaign in state.campaigns() {
        if let Some(draft) = campaign.drafts.get(person) {
            known = true;
            sealed_drafts |= draft.sealed.is_some();
        }
    }
    if !known {
        return Err(Rejection::UnknownPerson);
    }
    if applications.is_empty() && !sealed_drafts {
        return Ok(Vec::new());
    }
    Ok(vec![Event::PersonalDataErased {
        person: *person,
        applications,
        at: now,
    }])
}
