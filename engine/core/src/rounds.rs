//! Allocation rounds: kindergarten rounds (комплектование) and first-grade enrollment runs.
//!
//! A round takes the free seats and the eligible applications, runs student-proposing
//! deferred acceptance ([`crate::allocation`]) and records its whole input and its placements
//! in one event. The round's allocation instance (docs/RULES.md#allocation-instance) is
//! therefore a pure function of that event: [`crate::State::round_instance`] rebuilds it, and
//! solving it again gives the recorded placements exactly. Which applications and seats a
//! round takes is decided by each service's rules (`decide::kindergarten`, `decide::school`);
//! this module holds what they share.
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

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::allocation::{
    deferred_acceptance, ApplicantSpec, Instance, InstitutionSpec, ProblemBuilder,
};
use crate::command::CampaignStage;
use crate::domain::{september_first, ApplicationNumber, InstitutionId, RoundId};
use crate::rejection::Rejection;
use crate::state::{CampaignIdx, InstitutionIdx, State};

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
    /// The officer's stated reason when the round ran outside the round calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_override: Option<String>,
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
            calendar_override: None,
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

    /// The allocation instance of a round (docs/RULES.md#allocation-instance), rebuilt from what the round
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

/// The inputs of a round while the rules of its service gather them: the groups of free
/// seats, and each eligible applicant with its tie-break key.
pub(crate) struct RoundInput {
    seats: Vec<RoundSeatGroup>,
    keyed: Vec<(i64, RoundApplicant)>,
}

/// A solved round, as its event records it.
pub(crate) struct SolvedRound {
    pub(crate) seats: Vec<RoundSeats>,
    /// Applicants in rank order (rank = index + 1).
    pub(crate) applicants: Vec<RoundApplicant>,
    /// Placements in rank order.
    pub(crate) placements: Vec<RoundPlacement>,
}

impl RoundInput {
    pub(crate) fn new(seats: Vec<RoundSeatGroup>) -> Self {
        Self {
            seats,
            keyed: Vec::new(),
        }
    }

    /// Adds an eligible applicant: its groups of seats best first, its class at each listed
    /// one (groups past `classes.len()` carry none), and its tie-break key.
    pub(crate) fn push(
        &mut self,
        key: i64,
        number: ApplicationNumber,
        preferences: Vec<u32>,
        classes: Vec<u8>,
    ) {
        self.keyed.push((
            key,
            RoundApplicant {
                number,
                rank: 0,
                preferences,
                classes,
            },
        ));
    }

    /// Ranks the applicants by tie-break key (then number), runs deferred acceptance and
    /// names the groups of seats by institution id.
    pub(crate) fn solve(mut self, state: &State) -> SolvedRound {
        self.keyed.sort_by_key(|(key, a)| (*key, a.number));
        let applicants: Vec<RoundApplicant> = self
            .keyed
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut a))| {
                a.rank = i as u32 + 1;
                a
            })
            .collect();
        let capacities = self.seats.iter().map(|g| g.capacity).collect();
        let n_preferences = applicants.iter().map(|a| a.preferences.len()).sum();
        let mut builder =
            ProblemBuilder::with_capacity(capacities, applicants.len(), n_preferences);
        let mut priorities = Vec::new();
        for a in &applicants {
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
        let placements = deferred_acceptance(&problem)
            .into_iter()
            .zip(&applicants)
            .filter_map(|(assigned, a)| {
                assigned.map(|seats| RoundPlacement {
                    number: a.number,
                    seats,
                })
            })
            .collect();
        let seats = self
            .seats
            .iter()
            .map(|g| RoundSeats {
                institution: state.institution(g.institution).id.clone(),
                age_group: g.age_group,
                capacity: g.capacity,
            })
            .collect();
        SolvedRound {
            seats,
            applicants,
            placements,
        }
    }
}

/// A round's id is used once, and the number of rounds is bounded.
pub(crate) fn check_new_round(state: &State, round: &RoundId) -> Result<(), Rejection> {
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
