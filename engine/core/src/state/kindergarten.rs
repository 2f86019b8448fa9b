//! The kindergarten queue in the state: applications, seats per age group and intake year,
//! rounds' offers and their answers, and transfers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ApplicationNumber, BirthDate, PersonKey};
use crate::event::Event;
use crate::queues::Cause;
use crate::rounds::RoundScope;

use super::applications::claimed;
use super::{
    Application, ApplicationStatus, InstitutionIdx, Placement, PlacementStatus, ServiceKind, State,
};

/// Seats of a kindergarten age group for an intake year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatGroup {
    pub intake_year: i32,
    pub institution: InstitutionIdx,
    pub age_group: u8,
    /// As last published by an officer.
    pub published: u32,
    /// Outstanding offers plus enrolled children.
    pub taken: u32,
}

impl State {
    /// The enrolled kindergarten application of a child.
    pub fn enrolled_application_of(&self, child: &PersonKey) -> Option<ApplicationNumber> {
        self.enrolled_by_child.get(child).copied()
    }

    /// The kindergarten a child attends (through an accepted offer), if any.
    pub fn enrolled_kindergarten(&self, child: &PersonKey) -> Option<InstitutionIdx> {
        let app = self.application(self.enrolled_application_of(child)?)?;
        Some(self.placement(app.placement?).institution)
    }

    /// Every published kindergarten seat group, by intake year, institution and age group.
    pub fn kindergarten_seats(&self) -> &[SeatGroup] {
        &self.data.kindergarten_seats
    }

    /// Seats of a kindergarten age group for an intake year, if published.
    pub fn seat_group(
        &self,
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    ) -> Option<&SeatGroup> {
        self.seat_group_position(institution, age_group, intake_year)
            .ok()
            .map(|i| &self.data.kindergarten_seats[i])
    }

    fn seat_group_position(
        &self,
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    ) -> Result<usize, usize> {
        self.data
            .kindergarten_seats
            .binary_search_by_key(&(intake_year, institution, age_group), |g| {
                (g.intake_year, g.institution, g.age_group)
            })
    }

    fn seat_group_mut(
        &mut self,
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    ) -> &mut SeatGroup {
        let i = match self.seat_group_position(institution, age_group, intake_year) {
            Ok(i) => i,
            Err(i) => {
                self.data.kindergarten_seats.insert(
                    i,
                    SeatGroup {
                        intake_year,
                        institution,
                        age_group,
                        published: 0,
                        taken: 0,
                    },
                );
                i
            }
        };
        &mut self.data.kindergarten_seats[i]
    }

    /// Folds the kindergarten events, in the order of [`Event`].
    pub(super) fn apply_kindergarten(&mut self, event: &Event, cause: Cause) {
        match event {
            Event::KindergartenApplicationSubmitted {
                number,
                child,
                birth_date,
                preferences,
                desired_start,
                any_other,
                privileges,
                registered_at,
                channel,
                submitted_by,
                sealed,
            } => {
                let app = Application {
                    number: *number,
                    service: ServiceKind::Kindergarten,
                    campaign: None,
                    child: *child,
                    birth_date: BirthDate::from_event(*birth_date),
                    registered_at: *registered_at,
                    preferences: self.resolve_institutions(preferences),
                    desired_start: *desired_start,
                    any_other: *any_other,
                    privileges: claimed(privileges),
                    status: ApplicationStatus::Active,
                    channel: *channel,
                    from_draft: false,
                    submitted_by: submitted_by.as_str().into(),
                    placement: None,
                    version: 1,
                    sealed: sealed.clone().map(Box::new),
                    erased: false,
                };
                self.insert_application(app, cause, *registered_at);
            }
            Event::KindergartenPreferencesAmended {
                number,
                preferences,
                desired_start,
                any_other,
                at,
            } => {
                let preferences = self.resolve_institutions(preferences);
                self.change_application(*number, cause, *at, |app| {
                    app.preferences = preferences;
                    app.desired_start = *desired_start;
                    app.any_other = *any_other;
                });
            }
            Event::KindergartenSeatsPublished {
                institution,
                intake_year,
                seats,
            } => {
                let idx = self.institution_by_id[institution];
                for group in seats {
                    self.seat_group_mut(idx, group.age_group, *intake_year)
                        .published = group.seats;
                }
                self.data.institutions[idx as usize].version += 1;
            }
            Event::KindergartenRoundCompleted {
                round,
                intake_year,
                intake_date,
                offer_deadline,
                at,
                seats,
                applicants,
                placements,
                calendar_override,
            } => {
                let scope = RoundScope::Kindergarten {
                    intake_year: *intake_year,
                    intake_date: *intake_date,
                    offer_deadline: *offer_deadline,
                };
                let round_idx = self.insert_round(round, scope, *at, seats, applicants, placements);
                self.data.rounds[round_idx as usize].calendar_override = calendar_override.clone();
                let groups = self.data.rounds[round_idx as usize].seats.clone();
                for p in placements {
                    let group = groups[p.seats as usize];
                    let age_group = group
                        .age_group
                        .expect("kindergarten seats have an age group");
                    self.seat_group_mut(group.institution, age_group, *intake_year)
                        .taken += 1;
                    let placement = self.push_placement(Placement {
                        round: round_idx,
                        application: p.number,
                        institution: group.institution,
                        age_group: Some(age_group),
                        intake_year: *intake_year,
                        deadline: Some(*offer_deadline),
                        status: PlacementStatus::Offered,
                        answered_at: None,
                    });
                    // The round's event is not on the application's stream: no new version.
                    self.change_application_unversioned(
                        p.number,
                        Cause::Round(round_idx as u16),
                        *at,
                        |app| {
                            app.status = ApplicationStatus::Offered;
                            app.placement = Some(placement);
                        },
                    );
                }
            }
            Event::OfferAccepted { number, at } => {
                let app = self
                    .application(*number)
                    .expect("accepted application exists");
                let placement = app
                    .placement
                    .expect("an offered application has a placement");
                let child = app.child;
                let p = &mut self.data.placements[placement as usize];
                p.status = PlacementStatus::Accepted;
                p.answered_at = Some(*at);
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Enrolled;
                });
                self.active_by_child.remove(
                    &self.data.applications,
                    ServiceKind::Kindergarten,
                    &child,
                );
                self.enrolled_by_child.insert(child, *number);
            }
            Event::OfferDeclined {
                number,
                desired_start,
                at,
            }
            | Event::OfferExpired {
                number,
                desired_start,
                at,
            } => {
                let status = if matches!(event, Event::OfferDeclined { .. }) {
                    PlacementStatus::Declined
                } else {
                    PlacementStatus::Expired
                };
                self.end_offer(*number, status, *at);
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Active;
                    app.desired_start = *desired_start;
                });
            }
            Event::TransferCompleted { number, at, .. } => {
                let app = self
                    .application(*number)
                    .expect("transferred application exists");
                let placement = app
                    .placement
                    .expect("an enrolled application has a placement");
                let child = app.child;
                let p = &mut self.data.placements[placement as usize];
                p.status = PlacementStatus::Released;
                p.answered_at = Some(*at);
                let (institution, age_group, intake_year) =
                    (p.institution, p.age_group, p.intake_year);
                if let Some(age_group) = age_group {
                    let group = self.seat_group_mut(institution, age_group, intake_year);
                    group.taken = group.taken.saturating_sub(1);
                }
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Transferred;
                });
                if self.enrolled_by_child.get(&child) == Some(number) {
                    self.enrolled_by_child.remove(&child);
                }
            }
            other => unreachable!("{} is not a kindergarten event", other.type_name()),
        }
    }

    /// Ends the application's outstanding offer, if it has one, and returns its seat.
    pub(super) fn end_offer(
        &mut self,
        number: ApplicationNumber,
        status: PlacementStatus,
        at: DateTime<Utc>,
    ) {
        let Some(placement) = self.application(number).and_then(|a| a.placement) else {
            return;
        };
        let p = &mut self.data.placements[placement as usize];
        if p.status != PlacementStatus::Offered {
            return;
        }
        p.status = status;
        p.answered_at = Some(at);
        let (institution, age_group, intake_year) = (p.institution, p.age_group, p.intake_year);
        if let Some(age_group) = age_group {
            let group = self.seat_group_mut(institution, age_group, intake_year);
            group.taken = group.taken.saturating_sub(1);
        }
    }
}
