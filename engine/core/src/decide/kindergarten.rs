//! Rules of the kindergarten queue: applications, seats, allocation rounds and offers
//! (docs/RULES.md#kindergarten).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::command::{AgeGroupSeats, Command, KindergartenForm};
use crate::domain::{
    intake_year_for, september_first, ApplicationNumber, AuthorityConfig, BirthDate, InstitutionId,
    InstitutionKind, PersonKey, RoundId,
};
use crate::event::Event;
use crate::ordering::{kindergarten_tier, PrivilegeStatus, TieBreak};
use crate::rejection::Rejection;
use crate::rounds::{
    check_new_round, next_september_after, RoundInput, RoundScope, RoundSeatGroup,
};
use crate::state::{
    Application, ApplicationStatus, InstitutionIdx, PlacementStatus, ServiceKind, State,
};

use super::applications::{active_application, check_privileges};
use super::checks::{check_institutions, check_sealed, check_subject};
use super::Context;

/// Most seats in one kindergarten age group.
pub const AGE_GROUP_SEATS_MAX: u32 = 10_000;

/// The kindergarten commands, in the order of [`Command`].
pub(super) fn decide(cx: Context, command: &Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::SubmitKindergartenApplication { form } => submit(cx, form),
        Command::AmendKindergartenPreferences {
            application,
            preferences,
            desired_start,
            any_other,
        } => amend_preferences(cx, *application, preferences, *desired_start, *any_other),
        Command::PublishKindergartenSeats {
            institution,
            intake_year,
            seats,
        } => publish_seats(cx, institution, *intake_year, seats),
        Command::RunKindergartenRound {
            round,
            intake_year,
            intake_date,
            calendar_override,
        } => run_round(cx, round, *intake_year, *intake_date, calendar_override),
        Command::AcceptOffer { application } => accept_offer(cx, *application),
        Command::DeclineOffer { application } => decline_offer(cx, *application),
        Command::ExpireOffers {} => Ok(expire_offers(cx)),
        other => unreachable!("{} is not a kindergarten command", other.name()),
    }
}

/// One active application per child; the registration time is the time of receipt
/// (docs/RULES.md#kindergarten-application, #applications-one-per-child).
fn submit(cx: Context, form: &KindergartenForm) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    check_subject("submitted_by", &form.submitted_by)?;
    check_sealed(form.sealed.as_ref())?;
    let birth_date = BirthDate::parse(form.birth_date, config.local_date(now))
        .map_err(|e| Rejection::invalid(e.field, e.reason))?;
    check_preferences(state, config, &form.preferences)?;
    check_not_current_kindergarten(state, &form.child, &form.preferences)?;
    check_age(config, birth_date, form.desired_start)?;
    check_desired_start_not_past(cx, form.desired_start)?;
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

/// Amending keeps the registration time (docs/RULES.md#kindergarten-order).
fn amend_preferences(
    cx: Context,
    application: ApplicationNumber,
    preferences: &[InstitutionId],
    desired_start: NaiveDate,
    any_other: bool,
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    let app = active_application(state, application)?;
    if app.service != ServiceKind::Kindergarten {
        return Err(Rejection::WrongService {
            number: application,
            expected: "kindergarten".into(),
        });
    }
    check_preferences(state, config, preferences)?;
    check_not_current_kindergarten(state, &app.child, preferences)?;
    check_age(config, app.birth_date, desired_start)?;
    // An application that has waited past its desired start keeps it when amended; only a
    // new desired start must not be in the past.
    if desired_start != app.desired_start {
        check_desired_start_not_past(cx, desired_start)?;
    }
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
        number: application,
        preferences: preferences.to_vec(),
        desired_start,
        any_other,
        at: now,
    }])
}

/// Seats per age group and intake year; never below those already offered or taken
/// (docs/RULES.md#kindergarten-seats).
fn publish_seats(
    cx: Context,
    institution: &InstitutionId,
    intake_year: i32,
    seats: &[AgeGroupSeats],
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, .. } = cx;
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

/// An allocation round (комплектование): deferred acceptance over the free seats of an
/// intake year; every placement is an offer with a deadline
/// (docs/RULES.md#kindergarten-rounds, #allocation-rounds).
fn run_round(
    cx: Context,
    round: &RoundId,
    intake_year: i32,
    intake_date: Option<NaiveDate>,
    calendar_override: &Option<String>,
) -> Result<Vec<Event>, Rejection> {
    let Context { state, config, now } = cx;
    check_new_round(state, round)?;
    if !(2000..=2200).contains(&intake_year) {
        return Err(Rejection::invalid("intake_year", "must be 2000-2200"));
    }
    let year_start = september_first(intake_year);
    let intake_date = intake_date.unwrap_or(year_start);
    if intake_date < year_start || intake_date >= september_first(intake_year + 1) {
        return Err(Rejection::invalid(
            "intake_date",
            format!("must fall in the school year that starts on {year_start}"),
        ));
    }

    // Groups of free seats, in the order of institutions, then age groups.
    let seats: Vec<RoundSeatGroup> = state
        .kindergarten_seats()
        .iter()
        .filter(|g| g.intake_year == intake_year && g.published > g.taken)
        .map(|g| RoundSeatGroup {
            institution: g.institution,
            age_group: Some(g.age_group),
            capacity: g.published - g.taken,
        })
        .collect();
    if seats.is_empty() {
        return Err(Rejection::NoFreeSeats { intake_year });
    }
    let calendar_override =
        check_round_calendar(state, config, intake_year, now, calendar_override)?;
    let group_of: HashMap<(InstitutionIdx, u8), u32> = seats
        .iter()
        .enumerate()
        .map(|(i, g)| ((g.institution, g.age_group.unwrap_or(0)), i as u32))
        .collect();
    let mut groups_by_age: BTreeMap<u8, Vec<(u32, InstitutionIdx)>> = BTreeMap::new();
    for (i, g) in seats.iter().enumerate() {
        groups_by_age
            .entry(g.age_group.unwrap_or(0))
            .or_default()
            .push((i as u32, g.institution));
    }

    let mut input = RoundInput::new(seats);
    for app in state.applications() {
        if app.service != ServiceKind::Kindergarten
            || app.status != ApplicationStatus::Active
            || app.desired_start > intake_date
        {
            continue;
        }
        let age = app.birth_date.age_on(year_start);
        let Ok(age_group) = u8::try_from(age) else {
            continue;
        };
        let current = state.enrolled_kindergarten(&app.child);
        let mut preferences = Vec::new();
        let mut classes = Vec::new();
        for &institution in app.preferences.iter() {
            if Some(institution) == current {
                continue;
            }
            if let Some(&g) = group_of.get(&(institution, age_group)) {
                preferences.push(g);
                classes.push(kindergarten_tier(
                    &app.privileges,
                    &state.institution(institution).id,
                ));
            }
        }
        if app.any_other {
            for &(g, institution) in groups_by_age.get(&age_group).into_iter().flatten() {
                if Some(institution) != current && !app.preferences.contains(&institution) {
                    preferences.push(g);
                }
            }
        }
        if preferences.is_empty() {
            continue;
        }
        let key =
            TieBreak::RegistrationTime.key(app.registered_at, app.birth_date.date(), app.number);
        input.push(key, app.number, preferences, classes);
    }
    let solved = input.solve(state);
    Ok(vec![Event::KindergartenRoundCompleted {
        round: round.clone(),
        intake_year,
        intake_date,
        offer_deadline: now + Duration::days(i64::from(config.offer_deadline_days)),
        at: now,
        seats: solved.seats,
        applicants: solved.applicants,
        placements: solved.placements,
        calendar_override,
    }])
}

/// Longest stated reason to run a round outside the calendar, in characters.
pub const CALENDAR_OVERRIDE_MAX_CHARS: usize = 500;

/// The round calendar (docs/RULES.md#kindergarten-round-calendar): the main round of an
/// intake year within its season, a top-up a full interval after the intake year's previous
/// round; an officer's stated reason overrides both and is returned to be recorded.
fn check_round_calendar(
    state: &State,
    config: &AuthorityConfig,
    intake_year: i32,
    now: DateTime<Utc>,
    calendar_override: &Option<String>,
) -> Result<Option<String>, Rejection> {
    if let Some(reason) = calendar_override {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > CALENDAR_OVERRIDE_MAX_CHARS {
            return Err(Rejection::invalid(
                "calendar_override",
                format!("must state the reason in 1-{CALENDAR_OVERRIDE_MAX_CHARS} characters"),
            ));
        }
        return Ok(Some(reason.to_owned()));
    }
    let calendar = &config.round_calendar;
    let previous = state
        .rounds()
        .iter()
        .filter(|r| {
            matches!(r.scope, RoundScope::Kindergarten { intake_year: y, .. } if y == intake_year)
        })
        .max_by_key(|r| r.at);
    match previous {
        None if !calendar.in_main_season(config.local_date(now)) => {
            Err(Rejection::RoundOutOfSeason {
                from: calendar.main_round_from.to_string(),
                until: calendar.main_round_until.to_string(),
            })
        }
        Some(previous) if now < previous.at + calendar.top_up_interval() => {
            Err(Rejection::TopUpTooSoon {
                previous: previous.id.to_string(),
                next_allowed: previous.at + calendar.top_up_interval(),
            })
        }
        _ => Ok(None),
    }
}

/// Accepting enrolls the child (docs/RULES.md#kindergarten-offers); for a transfer, the
/// child leaves the current place only now that the new one is taken
/// (docs/RULES.md#kindergarten-transfer).
fn accept_offer(cx: Context, application: ApplicationNumber) -> Result<Vec<Event>, Rejection> {
    let Context { state, now, .. } = cx;
    let app = outstanding_offer(state, application, now)?;
    let mut events = vec![Event::OfferAccepted {
        number: application,
        at: now,
    }];
    if let Some(previous) = state.enrolled_application_of(&app.child) {
        events.push(Event::TransferCompleted {
            number: previous,
            to: application,
            at: now,
        });
    }
    Ok(events)
}

/// Declining moves the desired start to the next 1 September and keeps the registration
/// time (docs/RULES.md#kindergarten-offers).
fn decline_offer(cx: Context, application: ApplicationNumber) -> Result<Vec<Event>, Rejection> {
    let Context { state, now, .. } = cx;
    let app = outstanding_offer(state, application, now)?;
    let intake_date = offer_intake_date(state, app);
    Ok(vec![Event::OfferDeclined {
        number: application,
        desired_start: next_september_after(intake_date),
        at: now,
    }])
}

/// Every offer past its deadline expires, with the consequences of a decline. Nothing due
/// is no event.
fn expire_offers(cx: Context) -> Vec<Event> {
    let Context { state, now, .. } = cx;
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
            desired_start: next_september_after(offer_intake_date(state, app)),
            at: now,
        });
    }
    events
}

/// 1..=N distinct kindergartens, N from the authority's settings.
fn check_preferences(
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

/// The desired start is after birth, and the child is below the oldest kindergarten age on
/// 1 September of the intake year (docs/RULES.md#kindergarten-age).
fn check_age(
    config: &AuthorityConfig,
    birth_date: BirthDate,
    desired_start: NaiveDate,
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
            max_months: config.kindergarten_max_age_years as i32 * 12,
        });
    }
    Ok(())
}

/// A desired start is today (as soon as possible) or later, in the authority's calendar
/// (docs/RULES.md#kindergarten-application).
fn check_desired_start_not_past(cx: Context, desired_start: NaiveDate) -> Result<(), Rejection> {
    let today = cx.config.local_date(cx.now);
    if desired_start < today {
        return Err(Rejection::invalid(
            "desired_start",
            format!("is in the past (today is {today})"),
        ));
    }
    Ok(())
}

/// The application, if its outstanding offer can still be answered.
fn outstanding_offer(
    state: &State,
    number: ApplicationNumber,
    now: DateTime<Utc>,
) -> Result<&Application, Rejection> {
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
fn offer_intake_date(state: &State, app: &Application) -> NaiveDate {
    let placement = state.placement(
        app.placement
            .expect("an offered application has a placement"),
    );
    match state.rounds()[placement.round as usize].scope {
        RoundScope::Kindergarten { intake_date, .. } => intake_date,
        RoundScope::School { .. } => september_first(placement.intake_year),
    }
}
