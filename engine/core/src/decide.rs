//! `decide`: every rule of the three services. Takes the state, a command and the time;
//! returns the events that follow or the rejection. Never mutates the state.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, Utc};

use crate::command::{
    AgeGroupSeats, CampaignConfig, CampaignMode, Command, KindergartenForm, SchoolForm, Sealed,
    SEALED_CIPHERTEXT_HEX_MAX, SEALED_NONCE_HEX,
};
use crate::domain::{
    intake_year_for, september_first, AuthorityConfig, BirthDate, InstitutionId, InstitutionKind,
    PersonKey,
};
use crate::event::Event;
use crate::ordering::{Privilege, PrivilegeStatus};
use crate::rejection::Rejection;
use crate::state::{ApplicationStatus, BookingStatus, PlacementStatus, ServiceKind, State};

/// Longest free-text field (names, reasons, subjects) in characters.
pub const TEXT_MAX_CHARS: usize = 500;
/// Most slots published in one command.
pub const SLOTS_PER_COMMAND_MAX: usize = 5_000;
/// Most schools in one campaign.
pub const CAMPAIGN_SCHOOLS_MAX: usize = 10_000;
/// Most seats in one kindergarten age group.
pub const AGE_GROUP_SEATS_MAX: u32 = 10_000;

/// Decides a command against the state at time `now`.
pub fn decide(
    state: &State,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    if let Command::ConfigureAuthority { config } = command {
        return configure_authority(state, config);
    }
    let config = state.config().ok_or(Rejection::AuthorityNotConfigured)?;
    match command {
        Command::ConfigureAuthority { .. } => unreachable!("handled above"),
        Command::RegisterInstitution { id, kind, name } => {
            check_text("name", name, 1)?;
            if state.institution_idx(id).is_some() {
                return Err(Rejection::InstitutionExists { id: id.to_string() });
            }
            Ok(vec![Event::InstitutionRegistered {
                id: id.clone(),
                kind: *kind,
                name: name.clone(),
            }])
        }
        Command::SubmitKindergartenApplication { form } => {
            submit_kindergarten(state, config, form, now)
        }
        Command::RecordPersonalDataErasure { person } => record_erasure(state, person, now),
        Command::AmendKindergartenPreferences {
            application,
            preferences,
            desired_start,
            any_other,
        } => {
            let app = active_application(state, *application)?;
            if app.service != ServiceKind::Kindergarten {
                return Err(Rejection::WrongService {
                    number: *application,
                    expected: "kindergarten".into(),
                });
            }
            check_kindergarten_preferences(state, config, preferences)?;
            check_not_current_kindergarten(state, &app.child, preferences)?;
            check_kindergarten_age(config, app.birth_date, *desired_start)?;
            // Sibling privileges must still point at a listed kindergarten.
            for claim in &app.privileges {
                if let Some(inst) = claim.privilege.institution() {
                    if claim.status != PrivilegeStatus::Revoked && !preferences.contains(inst) {
                        return Err(Rejection::invalid(
                            "preferences",
                            format!("a sibling privilege is claimed at {inst}; keep it in the list or have it revoked first"),
                        ));
                    }
                }
            }
            Ok(vec![Event::KindergartenPreferencesAmended {
                number: *application,
                preferences: preferences.clone(),
                desired_start: *desired_start,
                any_other: *any_other,
                at: now,
            }])
        }
        Command::WithdrawApplication {
            application,
            reason,
        } => {
            // Withdrawing with an outstanding offer gives the offered seat back.
            let app = state
                .application(*application)
                .ok_or(Rejection::UnknownApplication {
                    number: *application,
                })?;
            if !matches!(
                app.status,
                ApplicationStatus::Active | ApplicationStatus::Offered
            ) {
                return Err(Rejection::ApplicationNotActive {
                    number: *application,
                    status: app.status.as_str().into(),
                });
            }
            check_text("reason", reason, 0)?;
            Ok(vec![Event::ApplicationWithdrawn {
                number: *application,
                reason: reason.clone(),
                at: now,
            }])
        }
        Command::ClaimPrivilege {
            application,
            privilege,
        } => {
            let app = active_application(state, *application)?;
            let listed: Vec<InstitutionId> = app
                .preferences
                .iter()
                .map(|&i| state.institution(i).id.clone())
                .collect();
            check_privilege(app.service, privilege, &listed)?;
            let existing = app.privileges.iter().find(|c| &c.privilege == privilege);
            if existing.is_some_and(|c| c.status != PrivilegeStatus::Revoked) {
                return Err(Rejection::PrivilegeAlreadyClaimed {
                    number: *application,
                });
            }
            Ok(vec![Event::PrivilegeClaimed {
                number: *application,
                privilege: privilege.clone(),
                at: now,
            }])
        }
        Command::ConfirmPrivilege {
            application,
            privilege,
        } => {
            let app = active_application(state, *application)?;
            let claimed = app
                .privileges
                .iter()
                .any(|c| &c.privilege == privilege && c.status == PrivilegeStatus::Claimed);
            if !claimed {
                return Err(Rejection::PrivilegeNotClaimed {
                    number: *application,
                });
            }
            Ok(vec![Event::PrivilegeConfirmed {
                number: *application,
                privilege: privilege.clone(),
                at: now,
            }])
        }
        Command::RevokePrivilege {
            application,
            privilege,
            reason,
        } => {
            let app = active_application(state, *application)?;
            check_text("reason", reason, 1)?;
            let held = app
                .privileges
                .iter()
                .any(|c| &c.privilege == privilege && c.status != PrivilegeStatus::Revoked);
            if !held {
                return Err(Rejection::PrivilegeNotClaimed {
                    number: *application,
                });
            }
            Ok(vec![Event::PrivilegeRevoked {
                number: *application,
                privilege: privilege.clone(),
                reason: reason.clone(),
                at: now,
            }])
        }
        Command::PublishKindergartenSeats {
            institution,
            intake_year,
            seats,
        } => publish_kindergarten_seats(state, config, institution, *intake_year, seats),
        Command::RunKindergartenRound {
            round,
            intake_year,
            intake_date,
        } => crate::rounds::run_kindergarten_round(
            state,
            config,
            round,
            *intake_year,
            *intake_date,
            now,
        ),
        Command::AcceptOffer { application } => {
            let app = outstanding_offer(state, *application, now)?;
            let mut events = vec![Event::OfferAccepted {
                number: *application,
                at: now,
            }];
            // A transfer: the child leaves the current place only now that the new one is
            // taken.
            if let Some(previous) = state.enrolled_application_of(&app.child) {
                events.push(Event::TransferCompleted {
                    number: previous,
                    to: *application,
                    at: now,
                });
            }
            Ok(events)
        }
        Command::DeclineOffer { application } => {
            let app = outstanding_offer(state, *application, now)?;
            let intake_date = offer_intake_date(state, app);
            Ok(vec![Event::OfferDeclined {
                number: *application,
                desired_start: crate::rounds::next_september_after(intake_date),
                at: now,
            }])
        }
        Command::ExpireOffers {} => {
            let mut events = Vec::new();
            for p in &state.data.placements {
                if p.status != PlacementStatus::Offered || p.deadline.is_some_and(|d| now < d) {
                    continue;
                }
                let app = state
                    .application(p.application)
                    .expect("a placement's application exists");
                events.push(Event::OfferExpired {
                    number: p.application,
                    desired_start: crate::rounds::next_september_after(offer_intake_date(
                        state, app,
                    )),
                    at: now,
                });
            }
            Ok(events)
        }
        Command::RunSchoolEnrollment {
            round,
            campaign,
            stage,
        } => crate::rounds::run_school_enrollment(state, config, round, campaign, *stage, now),
        Command::ExpireSlotHolds {} => Ok(crate::clinic::expire_slot_holds(state, config, now)),
        Command::ConfigureCampaign { config: campaign } => configure_campaign(state, campaign),
        Command::SaveSchoolDraft { form } => {
            let campaign = campaign_of(state, form)?;
            let closes = config.local_midnight(campaign.closes);
            if now >= closes {
                return Err(Rejection::CampaignClosed {
                    id: campaign.id.to_string(),
                    closed_at: closes,
                });
            }
            check_school_form(state, config, form, now)?;
            Ok(vec![Event::SchoolDraftSaved {
                form: form.clone(),
                at: now,
            }])
        }
        Command::SubmitSchoolDraft { campaign, child } => {
            let idx = state
                .campaign_idx(campaign)
                .ok_or_else(|| Rejection::UnknownCampaign {
                    id: campaign.to_string(),
                })?;
            let form = state
                .campaign(idx)
                .drafts
                .get(child)
                .ok_or_else(|| Rejection::NoDraft {
                    id: campaign.to_string(),
                })?;
            submit_school(state, config, form, now, true)
        }
        Command::SubmitSchoolApplication { form } => submit_school(state, config, form, now, false),
        Command::GrantAgeException { campaign, child } => {
            let idx = state
                .campaign_idx(campaign)
                .ok_or_else(|| Rejection::UnknownCampaign {
                    id: campaign.to_string(),
                })?;
            if state.campaign(idx).age_exceptions.contains(child) {
                return Ok(Vec::new());
            }
            Ok(vec![Event::AgeExceptionGranted {
                campaign: campaign.clone(),
                child: *child,
                at: now,
            }])
        }
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
        } => {
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
            Ok(vec![Event::SlotsPublished {
                doctor: doctor.clone(),
                specialty: specialty.clone(),
                slots: slots.clone(),
            }])
        }
        Command::BookSlot {
            slot,
            patient,
            referral,
            booked_by,
        } => {
            check_subject("booked_by", booked_by)?;
            book_slot(
                state,
                config,
                slot,
                patient,
                referral.as_deref(),
                booked_by,
                now,
            )
        }
        Command::CancelBooking { booking } => {
            let b = state
                .booking(*booking)
                .ok_or(Rejection::UnknownBooking { number: *booking })?;
            if b.status != BookingStatus::Active {
                return Err(Rejection::BookingNotActive { number: *booking });
            }
            let mut events = vec![Event::BookingCancelled {
                booking: *booking,
                at: now,
            }];
            // The freed slot is held for the head of the waiting list first.
            events.extend(crate::clinic::hold_after_cancellation(
                state, config, &b.slot, now,
            ));
            Ok(events)
        }
        Command::RecordNoShow { booking } => {
            let b = state
                .booking(*booking)
                .ok_or(Rejection::UnknownBooking { number: *booking })?;
            if b.status != BookingStatus::Active {
                return Err(Rejection::BookingNotActive { number: *booking });
            }
            let slot = state.slot(&b.slot).expect("a booking's slot exists");
            if now < slot.start {
                return Err(Rejection::invalid(
                    "booking",
                    "a no-show can be recorded only after the slot has started",
                ));
            }
            Ok(vec![Event::NoShowRecorded {
                booking: *booking,
                at: now,
            }])
        }
        Command::JoinWaitingList {
            specialty,
            patient,
            tier,
        } => {
            let s = state
                .specialty(specialty)
                .ok_or_else(|| Rejection::UnknownSpecialty {
                    id: specialty.to_string(),
                })?;
            if *tier > crate::ordering::TIER_GENERAL {
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
                tier: *tier,
                at: now,
            }])
        }
    }
}

fn configure_authority(state: &State, config: &AuthorityConfig) -> Result<Vec<Event>, Rejection> {
    if state.config().is_some() {
        return Err(Rejection::AuthorityAlreadyConfigured);
    }
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
    Ok(vec![Event::AuthorityConfigured {
        config: config.clone(),
    }])
}

fn check_text(field: &str, value: &str, min_chars: usize) -> Result<(), Rejection> {
    let n = value.chars().count();
    if n < min_chars {
        return Err(Rejection::invalid(field, "must not be empty"));
    }
    if n > TEXT_MAX_CHARS {
        return Err(Rejection::invalid(
            field,
            format!("must be at most {TEXT_MAX_CHARS} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Rejection::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn active_application(
    state: &State,
    number: crate::domain::ApplicationNumber,
) -> Result<&crate::state::Application, Rejection> {
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

fn check_institutions(
    state: &State,
    field: &str,
    ids: &[InstitutionId],
    kind: InstitutionKind,
    max: usize,
) -> Result<(), Rejection> {
    if ids.is_empty() {
        return Err(Rejection::invalid(
            field,
            "must list at least one institution",
        ));
    }
    if ids.len() > max {
        return Err(Rejection::TooMany {
            field: field.into(),
            count: ids.len(),
            max,
        });
    }
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Rejection::invalid(field, format!("{id} is listed twice")));
        }
        let idx = state
            .institution_idx(id)
            .ok_or_else(|| Rejection::UnknownInstitution {
                field: field.into(),
                id: id.to_string(),
            })?;
        if state.institution(idx).kind != kind {
            return Err(Rejection::WrongInstitutionKind {
                field: field.into(),
                id: id.to_string(),
                expected: format!("{kind:?}").to_lowercase(),
            });
        }
    }
    Ok(())
}

fn check_kindergarten_preferences(
    state: &State,
    config: &AuthorityConfig,
    preferences: &[InstitutionId],
) -> Result<(), Rejection> {
    check_institutions(
        state,
        "preferences",
        preferences,
        InstitutionKind::Kindergarten,
        config.max_kindergarten_preferences as usize,
    )
}

fn check_kindergarten_age(
    config: &AuthorityConfig,
    birth_date: BirthDate,
    desired_start: chrono::NaiveDate,
) -> Result<(), Rejection> {
    if desired_start < birth_date.date() {
        return Err(Rejection::invalid(
            "desired_start",
            "is before the child's birth date",
        ));
    }
    if !(2000..2200).contains(&desired_start.year()) {
        return Err(Rejection::invalid(
            "desired_start",
            "must be a date from 2000 to 2199",
        ));
    }
    let intake = september_first(intake_year_for(desired_start));
    let age = birth_date.age_on(intake);
    if age >= config.kindergarten_max_age_years as i32 {
        return Err(Rejection::AgeOutOfRange {
            age_months: birth_date.age_in_months_on(intake),
            on: intake,
            min_months: 0,
            max_months: config.kindergarten_max_age_years as i32 * 12 - 1,
        });
    }
    Ok(())
}

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

fn check_privileges(
    service: ServiceKind,
    privileges: &[Privilege],
    listed: &[InstitutionId],
) -> Result<(), Rejection> {
    if privileges.len() > 8 {
        return Err(Rejection::TooMany {
            field: "privileges".into(),
            count: privileges.len(),
            max: 8,
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

fn check_subject(field: &str, subject: &str) -> Result<(), Rejection> {
    check_text(field, subject, 1)?;
    if subject.len() > 128 {
        return Err(Rejection::invalid(field, "must be at most 128 bytes"));
    }
    Ok(())
}

/// A sealed value must look like what the shell's sealing produces: a 24-byte nonce and a
/// bounded ciphertext of at least the 16-byte tag, both lower-case hex. The core cannot
/// decrypt it; this only keeps malformed or oversized blobs out of the log.
fn check_sealed(sealed: Option<&Sealed>) -> Result<(), Rejection> {
    let Some(sealed) = sealed else {
        return Ok(());
    };
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if sealed.nonce.len() != SEALED_NONCE_HEX || !is_hex(&sealed.nonce) {
        return Err(Rejection::invalid(
            "sealed.nonce",
            format!("must be {SEALED_NONCE_HEX} lower-case hexadecimal digits"),
        ));
    }
    let n = sealed.ciphertext.len();
    if !(32..=SEALED_CIPHERTEXT_HEX_MAX).contains(&n) || n % 2 != 0 || !is_hex(&sealed.ciphertext) {
        return Err(Rejection::invalid(
            "sealed.ciphertext",
            format!("must be 32-{SEALED_CIPHERTEXT_HEX_MAX} lower-case hexadecimal digits, an even number"),
        ));
    }
    Ok(())
}

/// An erasure covers the person's applications not erased before (and their first-grade
/// drafts); nothing left is a no-op (erasing twice changes nothing). A person the authority
/// never saw (no application, draft or booking) is unknown.
fn record_erasure(
    state: &State,
    person: &PersonKey,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
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

fn submit_kindergarten(
    state: &State,
    config: &AuthorityConfig,
    form: &KindergartenForm,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    check_subject("submitted_by", &form.submitted_by)?;
    check_sealed(form.sealed.as_ref())?;
    let birth_date = BirthDate::parse(form.birth_date, config.local_date(now))
        .map_err(|e| Rejection::invalid(e.field, e.reason))?;
    check_kindergarten_preferences(state, config, &form.preferences)?;
    check_not_current_kindergarten(state, &form.child, &form.preferences)?;
    check_kindergarten_age(config, birth_date, form.desired_start)?;
    check_privileges(
        ServiceKind::Kindergarten,
        &form.privileges,
        &form.preferences,
    )?;
    if let Some(existing) = state.active_application_of(ServiceKind::Kindergarten, &form.child) {
        return Err(Rejection::DuplicateApplication { existing });
    }
    Ok(vec![Event::KindergartenApplicationSubmitted {
        number: state.next_application_number(),
        child: form.child,
        birth_date: form.birth_date,
        preferences: form.preferences.clone(),
        desired_start: form.desired_start,
        any_other: form.any_other,
        privileges: form.privileges.clone(),
        registered_at: now,
        channel: form.channel,
        submitted_by: form.submitted_by.clone(),
        sealed: form.sealed.clone(),
    }])
}

fn configure_campaign(state: &State, campaign: &CampaignConfig) -> Result<Vec<Event>, Rejection> {
    if state.campaign_idx(&campaign.id).is_some() {
        return Err(Rejection::CampaignExists {
            id: campaign.id.to_string(),
        });
    }
    if !(2000..=2200).contains(&campaign.year) {
        return Err(Rejection::invalid("year", "must be 2000-2200"));
    }
    if campaign.stage2_opens < campaign.stage1_opens {
        return Err(Rejection::invalid(
            "stage2_opens",
            "must not be before stage1_opens",
        ));
    }
    if campaign.closes <= campaign.stage2_opens {
        return Err(Rejection::invalid("closes", "must be after stage2_opens"));
    }
    if let CampaignMode::Ranked { max_choices } = campaign.mode {
        if !(1..=10).contains(&max_choices) {
            return Err(Rejection::invalid("mode.max_choices", "must be 1-10"));
        }
    }
    let ids: Vec<InstitutionId> = campaign
        .schools
        .iter()
        .map(|s| s.institution.clone())
        .collect();
    check_institutions(
        state,
        "schools",
        &ids,
        InstitutionKind::School,
        CAMPAIGN_SCHOOLS_MAX,
    )?;
    Ok(vec![Event::CampaignConfigured {
        config: campaign.clone(),
    }])
}

fn campaign_of<'a>(state: &'a State, form: &SchoolForm) -> Result<&'a CampaignConfig, Rejection> {
    let idx = state
        .campaign_idx(&form.campaign)
        .ok_or_else(|| Rejection::UnknownCampaign {
            id: form.campaign.to_string(),
        })?;
    Ok(&state.campaign(idx).config)
}

/// Checks everything about a first-grade form except the time window and duplicates.
fn check_school_form(
    state: &State,
    config: &AuthorityConfig,
    form: &SchoolForm,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    check_subject("submitted_by", &form.submitted_by)?;
    check_sealed(form.sealed.as_ref())?;
    let idx = state
        .campaign_idx(&form.campaign)
        .expect("checked by caller");
    let campaign = state.campaign(idx);
    let max_choices = match campaign.config.mode {
        CampaignMode::SingleSchool => 1,
        CampaignMode::Ranked { max_choices } => max_choices as usize,
    };
    check_institutions(
        state,
        "schools",
        &form.schools,
        InstitutionKind::School,
        max_choices,
    )?;
    for school in &form.schools {
        if !campaign
            .config
            .schools
            .iter()
            .any(|s| &s.institution == school)
        {
            return Err(Rejection::invalid(
                "schools",
                format!(
                    "{school} does not take part in campaign {}",
                    campaign.config.id
                ),
            ));
        }
    }
    check_privileges(ServiceKind::School, &form.privileges, &form.schools)?;
    let birth_date = BirthDate::parse(form.birth_date, config.local_date(now))
        .map_err(|e| Rejection::invalid(e.field, e.reason))?;
    let on = september_first(campaign.config.year);
    let months = birth_date.age_in_months_on(on);
    let (min, max) = (
        config.school_min_age_months as i32,
        config.school_max_age_months as i32,
    );
    // "6.5 to 8 years": at least 78 months and under 96 months on 1 September.
    if !(min..max).contains(&months) && !campaign.age_exceptions.contains(&form.child) {
        return Err(Rejection::AgeOutOfRange {
            age_months: months,
            on,
            min_months: min,
            max_months: max - 1,
        });
    }
    Ok(())
}

fn submit_school(
    state: &State,
    config: &AuthorityConfig,
    form: &SchoolForm,
    now: DateTime<Utc>,
    from_draft: bool,
) -> Result<Vec<Event>, Rejection> {
    let campaign = campaign_of(state, form)?;
    let stage1 = config.local_midnight(campaign.stage1_opens);
    let stage2 = config.local_midnight(campaign.stage2_opens);
    let closes = config.local_midnight(campaign.closes);
    if now < stage1 {
        return Err(Rejection::CampaignNotOpen {
            id: campaign.id.to_string(),
            opens_at: stage1,
        });
    }
    if now >= closes {
        return Err(Rejection::CampaignClosed {
            id: campaign.id.to_string(),
            closed_at: closes,
        });
    }
    check_school_form(state, config, form, now)?;
    if now < stage2 && form.privileges.is_empty() {
        return Err(Rejection::StageOneOnlyForPriority {
            id: campaign.id.to_string(),
            stage2_opens_at: stage2,
        });
    }
    if let Some(existing) = state.active_application_of(ServiceKind::School, &form.child) {
        return Err(Rejection::DuplicateApplication { existing });
    }
    Ok(vec![Event::SchoolApplicationSubmitted {
        number: state.next_application_number(),
        campaign: form.campaign.clone(),
        child: form.child,
        birth_date: form.birth_date,
        schools: form.schools.clone(),
        privileges: form.privileges.clone(),
        registered_at: now,
        from_draft,
        channel: form.channel,
        submitted_by: form.submitted_by.clone(),
        sealed: form.sealed.clone(),
    }])
}

fn book_slot(
    state: &State,
    config: &AuthorityConfig,
    slot_id: &crate::domain::SlotId,
    patient: &PersonKey,
    referral: Option<&str>,
    booked_by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
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
    if let crate::clinic::Hold::HeldFor {
        patient: holder,
        until,
        ..
    } = crate::clinic::effective_hold(state, config, slot, now)
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
        let window = Duration::days(config.no_show_window_days as i64);
        let recent: Vec<_> = p.no_shows.iter().filter(|t| **t > now - window).collect();
        if config.no_show_block_count > 0 && recent.len() >= config.no_show_block_count as usize {
            let oldest_counted = recent[recent.len() - config.no_show_block_count as usize];
            return Err(Rejection::SelfBookingBlocked {
                no_shows: recent.len() as u32,
                until: *oldest_counted + window,
            });
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

/// A transfer application lists kindergartens other than the one the child attends.
fn check_not_current_kindergarten(
    state: &State,
    child: &PersonKey,
    preferences: &[InstitutionId],
) -> Result<(), Rejection> {
    if let Some(current) = state.enrolled_kindergarten(child) {
        let id = &state.institution(current).id;
        if preferences.contains(id) {
            return Err(Rejection::AlreadyAttends {
                institution: id.to_string(),
            });
        }
    }
    Ok(())
}

fn publish_kindergarten_seats(
    state: &State,
    config: &AuthorityConfig,
    institution: &InstitutionId,
    intake_year: i32,
    seats: &[AgeGroupSeats],
) -> Result<Vec<Event>, Rejection> {
    check_institutions(
        state,
        "institution",
        std::slice::from_ref(institution),
        InstitutionKind::Kindergarten,
        1,
    )?;
    if !(2000..=2200).contains(&intake_year) {
        return Err(Rejection::invalid("intake_year", "must be 2000-2200"));
    }
    if seats.is_empty() {
        return Err(Rejection::invalid(
            "seats",
            "must list at least one age group",
        ));
    }
    let max_age = config.kindergarten_max_age_years;
    let idx = state.institution_idx(institution).expect("checked above");
    let mut seen = BTreeSet::new();
    for group in seats {
        if group.age_group >= max_age {
            return Err(Rejection::invalid(
                "seats.age_group",
                format!("must be below {max_age}"),
            ));
        }
        if !seen.insert(group.age_group) {
            return Err(Rejection::invalid(
                "seats.age_group",
                format!("age group {} is listed twice", group.age_group),
            ));
        }
        if group.seats > AGE_GROUP_SEATS_MAX {
            return Err(Rejection::invalid(
                "seats.seats",
                format!("must be at most {AGE_GROUP_SEATS_MAX}"),
            ));
        }
        let taken = state
            .seat_group(idx, group.age_group, intake_year)
            .map_or(0, |g| g.taken);
        if group.seats < taken {
            return Err(Rejection::SeatsBelowTaken {
                institution: institution.to_string(),
                age_group: group.age_group,
                seats: group.seats,
                taken,
            });
        }
    }
    Ok(vec![Event::KindergartenSeatsPublished {
        institution: institution.clone(),
        intake_year,
        seats: seats.to_vec(),
    }])
}

/// The application, if its outstanding offer can still be answered.
fn outstanding_offer(
    state: &State,
    number: crate::domain::ApplicationNumber,
    now: DateTime<Utc>,
) -> Result<&crate::state::Application, Rejection> {
    let app = state
        .application(number)
        .ok_or(Rejection::UnknownApplication { number })?;
    let offer = state
        .outstanding_offer(app)
        .ok_or(Rejection::NoOutstandingOffer { number })?;
    let deadline = offer.deadline.expect("kindergarten offers have a deadline");
    if now >= deadline {
        return Err(Rejection::OfferExpired { number, deadline });
    }
    Ok(app)
}

/// The intake date of the round that made the application's latest offer.
fn offer_intake_date(state: &State, app: &crate::state::Application) -> chrono::NaiveDate {
    let placement = state.placement(
        app.placement
            .expect("an offered application has a placement"),
    );
    match state.rounds()[placement.round as usize].scope {
        crate::rounds::RoundScope::Kindergarten { intake_date, .. } => intake_date,
        crate::rounds::RoundScope::School { .. } => september_first(placement.intake_year),
    }
}
