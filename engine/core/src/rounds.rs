//! Allocation rounds: kindergarten rounds (комплектование) and first-grade enrollment runs.
//!
//! A round takes the free seats and the eligible applications, runs student-proposing
//! deferred acceptance ([`crate::allocation`]) and records its whole input and its placements
//! in one event. The round's allocation instance (PRODUCT.md §4) is therefore a pure function
//! of that event: [`crate::State::round_instance`] rebuilds it, and solving it again gives the
//! recorded placements exactly.
//!
//! How a round is turned into an instance:
//! - One instance "institution" per group of seats: a kindergarten × age group of the round's
//!   intake year (id `K1/3`), or a school of the campaign (id `S1`). Its capacity is the
//!   group's free seats at the time of the round (published minus offered or taken). Groups
//!   without free seats are left out.
//! - One applicant per eligible application that lists at least one group (id: the
//!   application number). Its preferences are the listed kindergartens (schools) that have a
//!   group for it, best first; its class at each is its priority tier there (0 best, 3
//!   general). Its `rank` is its position in the tie-break order (kindergarten: registration
//!   time, then number; school: the campaign's tie-break, then number), from 1.
//! - The "any other kindergarten" flag appends every other group of the child's age group
//!   (in the order of the groups) *without a class*. An unnamed class ranks below every
//!   named one, so such a child gets a seat there only after everyone who listed that
//!   kindergarten: one deferred-acceptance pass that equals "a second pass over the seats
//!   left", except that it stays stable and exportable as a single instance.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::allocation::{
    deferred_acceptance, ApplicantSpec, Instance, InstitutionSpec, ProblemBuilder,
};
use crate::command::{CampaignMode, CampaignStage};
use crate::domain::{
    september_first, ApplicationNumber, AuthorityConfig, CampaignId, InstitutionId, RoundId,
};
use crate::event::Event;
use crate::ordering::{kindergarten_tier, school_tier, TieBreak};
use crate::rejection::Rejection;
use crate::state::{ApplicationStatus, CampaignIdx, InstitutionIdx, ServiceKind, State};

/// Most rounds an authority can run (rounds are at most monthly; the queue change log
/// stores the round's index in 16 bits).
pub const ROUNDS_MAX: usize = u16::MAX as usize;

/// One group of seats in a round, as recorded in the round event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundSeats {
    pub institution: InstitutionId,
    /// The kindergarten age group; none for schools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_group: Option<u8>,
    /// Free seats when the round ran.
    pub capacity: u32,
}

impl RoundSeats {
    /// The id of the group in the exported instance: `K1/3` or `S1`.
    pub fn instance_id(&self) -> String {
        match self.age_group {
            Some(age) => format!("{}/{age}", self.institution),
            None => self.institution.to_string(),
        }
    }
}

/// One eligible applicant of a round, as recorded in the round event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundApplicant {
    pub number: ApplicationNumber,
    /// Position in the tie-break order, from 1; unique in the round.
    pub rank: u32,
    /// Indices into the round's seats, best first.
    pub preferences: Vec<u32>,
    /// The class at `preferences[i]` for each `i < classes.len()`; the remaining preferences
    /// were added by the "any other kindergarten" flag and carry no class.
    pub classes: Vec<u8>,
}

/// A placement made by a round: an offer (kindergarten) or an enrollment (school).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundPlacement {
    pub number: ApplicationNumber,
    /// Index into the round's seats.
    pub seats: u32,
}

/// What a round was run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "service", rename_all = "snake_case")]
pub enum RoundScope {
    Kindergarten {
        intake_year: i32,
        intake_date: NaiveDate,
        offer_deadline: DateTime<Utc>,
    },
    School {
        campaign: CampaignIdx,
        stage: CampaignStage,
    },
}

/// A group of seats of a round with the institution resolved to its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundSeatGroup {
    pub institution: InstitutionIdx,
    pub age_group: Option<u8>,
    pub capacity: u32,
}

/// A round as kept in the state: its inputs in flat arrays (no allocation per applicant), and
/// its placements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub id: RoundId,
    pub scope: RoundScope,
    pub at: DateTime<Utc>,
    pub seats: Vec<RoundSeatGroup>,
    /// Applicants in the order of the event.
    pub numbers: Vec<ApplicationNumber>,
    pub ranks: Vec<u32>,
    /// `preference_starts[i]..preference_starts[i + 1]` is applicant `i`'s slice of
    /// `preferences` and `classes`.
    pub preference_starts: Vec<u32>,
    pub preferences: Vec<u32>,
    /// [`NO_CLASS`] where the preference carries no class.
    pub classes: Vec<u8>,
    pub placements: Vec<RoundPlacement>,
    pub version: u32,
}

/// Marks a preference added by the "any other kindergarten" flag in [`Round::classes`].
pub const NO_CLASS: u8 = u8::MAX;

impl Round {
    pub(crate) fn from_event(
        id: &RoundId,
        scope: RoundScope,
        at: DateTime<Utc>,
        seats: Vec<RoundSeatGroup>,
        applicants: &[RoundApplicant],
        placements: &[RoundPlacement],
    ) -> Self {
        let n_preferences = applicants.iter().map(|a| a.preferences.len()).sum();
        let mut round = Round {
            id: id.clone(),
            scope,
            at,
            seats,
            numbers: Vec::with_capacity(applicants.len()),
            ranks: Vec::with_capacity(applicants.len()),
            preference_starts: Vec::with_capacity(applicants.len() + 1),
            preferences: Vec::with_capacity(n_preferences),
            classes: Vec::with_capacity(n_preferences),
            placements: placements.to_vec(),
            version: 1,
        };
        round.preference_starts.push(0);
        for a in applicants {
            round.numbers.push(a.number);
            round.ranks.push(a.rank);
            round.preferences.extend_from_slice(&a.preferences);
            for i in 0..a.preferences.len() {
                round
                    .classes
                    .push(a.classes.get(i).copied().unwrap_or(NO_CLASS));
            }
            round.preference_starts.push(round.preferences.len() as u32);
        }
        round
    }

    pub fn n_applicants(&self) -> usize {
        self.numbers.len()
    }

    /// Applicant `i`'s preferences and classes.
    pub fn applicant(&self, i: usize) -> (&[u32], &[u8]) {
        let range = self.preference_starts[i] as usize..self.preference_starts[i + 1] as usize;
        (&self.preferences[range.clone()], &self.classes[range])
    }

    pub fn is_kindergarten(&self) -> bool {
        matches!(self.scope, RoundScope::Kindergarten { .. })
    }
}

impl State {
    pub fn rounds(&self) -> &[Round] {
        &self.data.rounds
    }

    /// The id of a round's group of seats in the exported instance.
    pub fn seat_group_id(&self, group: &RoundSeatGroup) -> String {
        let institution = &self.institution(group.institution).id;
        match group.age_group {
            Some(age) => format!("{institution}/{age}"),
            None => institution.to_string(),
        }
    }

    /// The allocation instance of a round (PRODUCT.md §4), rebuilt from what the round
    /// event recorded. `ochered allocate` on it reproduces [`State::round_assignment`].
    pub fn round_instance(&self, round: &Round) -> Instance {
        let ids: Vec<String> = round.seats.iter().map(|g| self.seat_group_id(g)).collect();
        let institutions = round
            .seats
            .iter()
            .zip(&ids)
            .map(|(g, id)| InstitutionSpec {
                id: id.clone(),
                capacity: i64::from(g.capacity),
            })
            .collect();
        let applicants = (0..round.n_applicants())
            .map(|i| {
                let (preferences, classes) = round.applicant(i);
                ApplicantSpec {
                    id: round.numbers[i].to_string(),
                    preferences: preferences
                        .iter()
                        .map(|&g| ids[g as usize].clone())
                        .collect(),
                    priorities: preferences
                        .iter()
                        .zip(classes)
                        .filter(|(_, &class)| class != NO_CLASS)
                        .map(|(&g, &class)| (ids[g as usize].clone(), i64::from(class)))
                        .collect(),
                    rank: u64::from(round.ranks[i]),
                }
            })
            .collect();
        Instance {
            institutions,
            applicants,
        }
    }

    /// A round's placements in the result format of `ochered allocate`: every applicant of
    /// the round, with its group of seats or `null`.
    pub fn round_assignment(&self, round: &Round) -> crate::allocation::AllocationResult {
        let mut assignments: BTreeMap<String, Option<String>> = round
            .numbers
            .iter()
            .map(|n| (n.to_string(), None))
            .collect();
        for p in &round.placements {
            let id = self.seat_group_id(&round.seats[p.seats as usize]);
            assignments.insert(p.number.to_string(), Some(id));
        }
        crate::allocation::AllocationResult { assignments }
    }
}

/// The inputs of a round before it is solved.
struct RoundInput {
    seats: Vec<RoundSeatGroup>,
    /// Applicants in rank order (rank = index + 1).
    applicants: Vec<RoundApplicant>,
}

impl RoundInput {
    /// Runs deferred acceptance and returns the placements in rank order.
    fn solve(&self) -> Vec<RoundPlacement> {
        let capacities = self.seats.iter().map(|g| g.capacity).collect();
        let n_preferences = self.applicants.iter().map(|a| a.preferences.len()).sum();
        let mut builder =
            ProblemBuilder::with_capacity(capacities, self.applicants.len(), n_preferences);
        let mut priorities = Vec::new();
        for a in &self.applicants {
            priorities.clear();
            priorities.extend(
                a.preferences
                    .iter()
                    .zip(&a.classes)
                    .map(|(&g, &class)| (g, u32::from(class))),
            );
            builder
                .push_applicant(&a.preferences, &priorities, u64::from(a.rank))
                .expect("round inputs are built valid: listed groups exist and are unique");
        }
        let problem = builder.build().expect("ranks are positions, hence unique");
        deferred_acceptance(&problem)
            .into_iter()
            .zip(&self.applicants)
            .filter_map(|(assigned, a)| {
                assigned.map(|seats| RoundPlacement {
                    number: a.number,
                    seats,
                })
            })
            .collect()
    }

    /// Sorts applicants by tie-break key and assigns ranks 1, 2, 3…
    fn ranked(mut keyed: Vec<(i64, RoundApplicant)>) -> Vec<RoundApplicant> {
        keyed.sort_by_key(|(key, a)| (*key, a.number));
        keyed
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut a))| {
                a.rank = i as u32 + 1;
                a
            })
            .collect()
    }
}

fn check_new_round(state: &State, round: &RoundId) -> Result<(), Rejection> {
    if state.round_idx(round).is_some() {
        return Err(Rejection::RoundExists {
            id: round.to_string(),
        });
    }
    if state.rounds().len() >= ROUNDS_MAX {
        return Err(Rejection::TooMany {
            field: "round".into(),
            count: state.rounds().len() + 1,
            max: ROUNDS_MAX,
        });
    }
    Ok(())
}

/// Decides `RunKindergartenRound`.
pub(crate) fn run_kindergarten_round(
    state: &State,
    config: &AuthorityConfig,
    round: &RoundId,
    intake_year: i32,
    intake_date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
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
        .data
        .kindergarten_seats
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
    let group_of: HashMap<(InstitutionIdx, u8), u32> = seats
        .iter()
        .enumerate()
        .map(|(i, g)| ((g.institution, g.age_group.unwrap_or(0)), i as u32))
        .collect();
    let mut groups_by_age: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    for (i, g) in seats.iter().enumerate() {
        groups_by_age
            .entry(g.age_group.unwrap_or(0))
            .or_default()
            .push(i as u32);
    }

    let mut keyed = Vec::new();
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
            for &g in groups_by_age.get(&age_group).into_iter().flatten() {
                let institution = seats[g as usize].institution;
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
        keyed.push((
            key,
            RoundApplicant {
                number: app.number,
                rank: 0,
                preferences,
                classes,
            },
        ));
    }
    let input = RoundInput {
        applicants: RoundInput::ranked(keyed),
        seats,
    };
    let placements = input.solve();
    let seats = seats_for_event(state, &input.seats);
    Ok(vec![Event::KindergartenRoundCompleted {
        round: round.clone(),
        intake_year,
        intake_date,
        offer_deadline: now + Duration::days(i64::from(config.offer_deadline_days)),
        at: now,
        seats,
        applicants: input.applicants,
        placements,
    }])
}

fn seats_for_event(state: &State, seats: &[RoundSeatGroup]) -> Vec<RoundSeats> {
    seats
        .iter()
        .map(|g| RoundSeats {
            institution: state.institution(g.institution).id.clone(),
            age_group: g.age_group,
            capacity: g.capacity,
        })
        .collect()
}

/// Decides `RunSchoolEnrollment`.
pub(crate) fn run_school_enrollment(
    state: &State,
    config: &AuthorityConfig,
    round: &RoundId,
    campaign_id: &CampaignId,
    stage: CampaignStage,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let campaign_idx =
        state
            .campaign_idx(campaign_id)
            .ok_or_else(|| Rejection::UnknownCampaign {
                id: campaign_id.to_string(),
            })?;
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
        return Err(Rejection::NoFreeSeats {
            intake_year: campaign.config.year,
        });
    }
    let group_of: HashMap<InstitutionIdx, u32> = seats
        .iter()
        .enumerate()
        .map(|(i, g)| (g.institution, i as u32))
        .collect();
    let mut keyed = Vec::new();
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
                preferences.push(g);
                classes.push(school_tier(
                    &app.privileges,
                    &state.institution(institution).id,
                ));
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
        keyed.push((
            key,
            RoundApplicant {
                number: app.number,
                rank: 0,
                preferences,
                classes,
            },
        ));
    }
    let input = RoundInput {
        applicants: RoundInput::ranked(keyed),
        seats,
    };
    let placements = input.solve();
    Ok(vec![Event::SchoolEnrollmentCompleted {
        round: round.clone(),
        campaign: campaign_id.clone(),
        stage,
        at: now,
        seats: seats_for_event(state, &input.seats),
        applicants: input.applicants,
        placements,
    }])
}

/// The first 1 September strictly after a round's intake date: where a declined or expired
/// offer moves the application's desired start.
pub fn next_september_after(intake_date: NaiveDate) -> NaiveDate {
    let this_year = september_first(chrono::Datelike::year(&intake_date));
    if intake_date < this_year {
        this_year
    } else {
        september_first(chrono::Datelike::year(&intake_date) + 1)
    }
}
