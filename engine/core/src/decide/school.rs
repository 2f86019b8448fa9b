//! Rules of first-grade enrollment: campaigns, drafts, applications and the enrollment
//! decisions of each stage (docs/RULES.md#school).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::command::{
    AgeExceptionCategory, AgeExceptionDecision, CampaignConfig, CampaignMode, CampaignStage,
    Command, SchoolForm,
};
use crate::domain::{
    september_first, AuthorityConfig, BirthDate, CampaignId, InstitutionId, InstitutionKind,
    PersonKey, RoundId,
};
use crate::event::Event;
use crate::ordering::{school_tier, TIER_GENERAL};
use crate::rejection::Rejection;
use crate::rounds::{check_new_round, RoundInput, RoundSeatGroup};
use crate::state::{
    AgeRequestStatus, ApplicationStatus, CampaignIdx, InstitutionIdx, ServiceKind, State,
};

use super::applications::check_privileges;
use super::checks::{check_institutions, check_sealed, check_subject, check_text};
use super::Context;

/// Most schools in one campaign.
pub const CAMPAIGN_SCHOOLS_MAX: usize = 10_000;

/// The first-grade commands, in the order of [`Command`].
pub(super) fn decide(cx: Context, command: &Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::ConfigureCampaign { config } => configure_campaign(cx.state, config),
        Command::SaveSchoolDraft { form } => save_draft(cx, form),
        Command::SubmitSchoolDraft { campaign, child } => submit_draft(cx, campaign, child),
        Command::SubmitSchoolApplication { form } => submit(cx, form, false),
        Command::GrantAgeException { campaign, child } => grant_age_exception(cx, campaign, child),
        Command::RequestAgeException {
            campaign,
            child,
            birth_date,
            category,
            requested_by,
        } => request_age_exception(cx, campaign, child, *birth_date, *category, requested_by),
        Command::DecideAgeException {
            campaign,
            child,
            decision,
        } => decide_age_exception(cx, campaign, child, decision),
        Command::RunSchoolEnrollment {
            round,
            campaign,
            stage,
        } => run_enrollment(cx, round, campaign, *stage),
        other => unreachable!("{} is not a first-grade command", other.name()),
    }
}

/// A campaign's id is used once; its stages come in order (docs/RULES.md#school-campaign).
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

/// A draft may be saved any time before the campaign closes (docs/RULES.md#school-drafts).
fn save_draft(cx: Context, form: &SchoolForm) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
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

/// Submitting a draft is submitting its form now: the time of submission is stamped.
fn submit_draft(
    cx: Context,
    campaign: &CampaignId,
    child: &PersonKey,
) -> Result<Vec<Event>, Rejection> {
    let idx = campaign_index(cx.state, campaign)?;
    let Some(form) = cx.state.campaign(idx).drafts.get(child) else {
        // A draft that was submitted already is gone: name the application it became.
        let submitted = cx
            .state
            .active_application_of(ServiceKind::School, child)
            .filter(|&n| {
                cx.state
                    .application(n)
                    .is_some_and(|a| a.campaign == Some(idx))
            });
        return Err(match submitted {
            Some(existing) => Rejection::DuplicateApplication { existing },
            None => Rejection::NoDraft {
                id: campaign.to_string(),
            },
        });
    };
    submit(cx, form, true)
}

/// Accepted between the opening of stage 1 and the close, stage 1 only for priority
/// applicants; one current application per child (docs/RULES.md#school-stages).
fn submit(cx: Context, form: &SchoolForm, from_draft: bool) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
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
    check_seats_remain(state, form)?;
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

/// Granting an exception twice changes nothing (docs/RULES.md#school-age).
fn grant_age_exception(
    cx: Context,
    campaign: &CampaignId,
    child: &PersonKey,
) -> Result<Vec<Event>, Rejection> {
    let idx = campaign_index(cx.state, campaign)?;
    if cx.state.campaign(idx).age_exceptions.contains(child) {
        return Ok(Vec::new());
    }
    Ok(vec![Event::AgeExceptionGranted {
        campaign: campaign.clone(),
        child: *child,
        at: cx.now,
    }])
}

/// A family asks once per child and campaign, before the campaign closes, for a child whose
/// age on 1 September needs an exception, naming which one (docs/RULES.md#school-age-requests).
fn request_age_exception(
    cx: Context,
    campaign_id: &CampaignId,
    child: &PersonKey,
    birth_date: chrono::NaiveDate,
    category: AgeExceptionCategory,
    requested_by: &str,
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    check_subject("requested_by", requested_by)?;
    let idx = campaign_index(state, campaign_id)?;
    let campaign = state.campaign(idx);
    let closes = config.local_midnight(campaign.config.closes);
    if now >= closes {
        return Err(Rejection::CampaignClosed {
            id: campaign_id.to_string(),
            closed_at: closes,
        });
    }
    if let Some(request) = campaign.age_requests.get(child) {
        return Err(Rejection::AgeExceptionAlreadyRequested {
            id: campaign_id.to_string(),
            status: request.status.name().to_owned(),
        });
    }
    if campaign.age_exceptions.contains(child) {
        return Err(Rejection::AgeExceptionAlreadyRequested {
            id: campaign_id.to_string(),
            status: "granted".to_owned(),
        });
    }
    let birth = BirthDate::parse(birth_date, config.local_date(now))
        .map_err(|e| Rejection::invalid(e.field, e.reason))?;
    let on = september_first(campaign.config.year);
    let months = birth.age_in_months_on(on);
    let needed = if months < config.school_min_age_months as i32 {
        AgeExceptionCategory::Earlier
    } else if months >= config.school_max_age_months as i32 {
        AgeExceptionCategory::Later
    } else {
        return Err(Rejection::invalid(
            "birth_date",
            format!("the child is {months} months old on {on}, within the age range: no exception is needed"),
        ));
    };
    if category != needed {
        return Err(Rejection::invalid(
            "category",
            format!(
                "the child is {months} months old on {on}: the exception needed is {}",
                match needed {
                    AgeExceptionCategory::Earlier => "earlier",
                    AgeExceptionCategory::Later => "later",
                }
            ),
        ));
    }
    Ok(vec![Event::AgeExceptionRequested {
        campaign: campaign_id.clone(),
        child: *child,
        birth_date,
        category,
        requested_by: requested_by.to_owned(),
        at: now,
    }])
}

/// An officer decides a pending request once: granting it is the same grant as
/// `GrantAgeException`, refusing it states the reason (docs/RULES.md#school-age-requests).
fn decide_age_exception(
    cx: Context,
    campaign_id: &CampaignId,
    child: &PersonKey,
    decision: &AgeExceptionDecision,
) -> Result<Vec<Event>, Rejection> {
    if let AgeExceptionDecision::Refuse { reason } = decision {
        check_text("reason", reason, 1)?;
    }
    let idx = campaign_index(cx.state, campaign_id)?;
    let Some(request) = cx.state.campaign(idx).age_requests.get(child) else {
        return Err(Rejection::NoAgeExceptionRequest {
            id: campaign_id.to_string(),
        });
    };
    if request.status != AgeRequestStatus::Pending {
        return Err(Rejection::AgeExceptionDecided {
            id: campaign_id.to_string(),
            status: request.status.name().to_owned(),
        });
    }
    Ok(vec![match decision {
        AgeExceptionDecision::Grant => Event::AgeExceptionGranted {
            campaign: campaign_id.clone(),
            child: *child,
            at: cx.now,
        },
        AgeExceptionDecision::Refuse { reason } => Event::AgeExceptionRefused {
            campaign: campaign_id.clone(),
            child: *child,
            reason: reason.clone(),
            at: cx.now,
        },
    }])
}

/// The enrollment decisions of a stage: single-school campaigns fill each school in queue
/// order until full, ranked campaigns allocate by deferred acceptance
/// (docs/RULES.md#school-enrollment, #allocation-rounds).
fn run_enrollment(
    cx: Context,
    round: &RoundId,
    campaign_id: &CampaignId,
    stage: CampaignStage,
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    let campaign_idx = campaign_index(state, campaign_id)?;
    check_new_round(state, round)?;
    let campaign = state.campaign(campaign_idx);
    let stage2_opens = config.local_midnight(campaign.config.stage2_opens);
    let opens = match stage {
        CampaignStage::One => config.local_midnight(campaign.config.stage1_opens),
        CampaignStage::Two => stage2_opens,
    };
    if now < opens {
        return Err(Rejection::CampaignNotOpen {
            id: campaign_id.to_string(),
            opens_at: opens,
        });
    }
    let seats: Vec<RoundSeatGroup> = campaign
        .school_idx
        .iter()
        .zip(&campaign.config.schools)
        .enumerate()
        .filter_map(|(i, (&institution, school))| {
            let taken = campaign.seats_taken.get(i).copied().unwrap_or(0);
            (school.seats > taken).then(|| RoundSeatGroup {
                institution,
                age_group: None,
                capacity: school.seats - taken,
            })
        })
        .collect();
    if seats.is_empty() {
        return Err(Rejection::CampaignFull {
            id: campaign_id.to_string(),
        });
    }
    let group_of: HashMap<InstitutionIdx, u32> = seats
        .iter()
        .enumerate()
        .map(|(i, g)| (g.institution, i as u32))
        .collect();
    let mut input = RoundInput::new(seats);
    for app in state.applications() {
        if app.campaign != Some(campaign_idx)
            || app.status != ApplicationStatus::Active
            || (stage == CampaignStage::One && app.registered_at >= stage2_opens)
        {
            continue;
        }
        let mut preferences = Vec::new();
        let mut classes = Vec::new();
        // A single-school campaign has one school per application; filling each school in
        // queue order until full is deferred acceptance with one-item lists.
        let listed = match campaign.config.mode {
            CampaignMode::SingleSchool => &app.preferences[..app.preferences.len().min(1)],
            CampaignMode::Ranked { .. } => &app.preferences[..],
        };
        for &institution in listed {
            if let Some(&g) = group_of.get(&institution) {
                let class = school_tier(&app.privileges, &state.institution(institution).id);
                // Stage 1 places only confirmed rights at a school; a claim an officer has not
                // confirmed yet waits for a later run (docs/RULES.md#school-enrollment).
                if stage == CampaignStage::One && class == TIER_GENERAL {
                    continue;
                }
                preferences.push(g);
                classes.push(class);
            }
        }
        if preferences.is_empty() {
            continue;
        }
        let key =
            campaign
                .config
                .tie_break
                .key(app.registered_at, app.birth_date.date(), app.number);
        input.push(key, app.number, preferences, classes);
    }
    let solved = input.solve(state);
    Ok(vec![Event::SchoolEnrollmentCompleted {
        round: round.clone(),
        campaign: campaign_id.clone(),
        stage,
        at: now,
        seats: solved.seats,
        applicants: solved.applicants,
        placements: solved.placements,
    }])
}

fn campaign_index(state: &State, id: &CampaignId) -> Result<CampaignIdx, Rejection> {
    state
        .campaign_idx(id)
        .ok_or_else(|| Rejection::UnknownCampaign { id: id.to_string() })
}

/// Stage 2 is open while seats remain: an application that lists only schools whose every
/// seat is already taken could never be placed, and is refused (docs/RULES.md#school-stages).
fn check_seats_remain(state: &State, form: &SchoolForm) -> Result<(), Rejection> {
    let idx = state
        .campaign_idx(&form.campaign)
        .expect("checked by caller");
    let campaign = state.campaign(idx);
    let has_free_seat = |school: &InstitutionId| {
        campaign.config.schools.iter().enumerate().any(|(i, s)| {
            &s.institution == school && s.seats > campaign.seats_taken.get(i).copied().unwrap_or(0)
        })
    };
    if form.schools.iter().any(has_free_seat) {
        return Ok(());
    }
    Err(Rejection::SchoolsFull {
        campaign: form.campaign.to_string(),
        schools: form.schools.iter().map(ToString::to_string).collect(),
    })
}

fn campaign_of<'a>(state: &'a State, form: &SchoolForm) -> Result<&'a CampaignConfig, Rejection> {
    Ok(&state
        .campaign(campaign_index(state, &form.campaign)?)
        .config)
}

/// Checks everything about a first-grade form except the time window and duplicates: the
/// schools take part in the campaign, as many as its mode allows, and the child's age
/// (docs/RULES.md#school-age).
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
            max_months: max,
        });
    }
    Ok(())
}
