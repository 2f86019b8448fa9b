//! Applications of either service (kindergarten or first grade) in the state: their
//! records, the queues they stand in, the placements rounds give them, and the events that
//! apply to an application of either service (withdrawal and privileges).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::command::Sealed;
use crate::domain::{
    intake_year_for, september_first, ApplicationNumber, BirthDate, CampaignId, Channel,
    InstitutionId, PersonKey, RoundId,
};
use crate::event::Event;
use crate::ordering::{
    kindergarten_tier, school_tier, Privilege, PrivilegeClaim, PrivilegeStatus, SortKey, TieBreak,
};
use crate::queues::{Cause, QueueKey, RoundLabel};
use crate::rounds::{
    Round, RoundApplicant, RoundPlacement, RoundScope, RoundSeatGroup, RoundSeats,
};

use super::{Applications, CampaignIdx, InstitutionIdx, State};

/// Which service an application belongs to; one active application per child per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Kindergarten,
    School,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    /// Waiting in its queues.
    Active,
    /// Holds an outstanding kindergarten offer; out of the queues until it is answered.
    Offered,
    /// The child got the place (accepted offer or enrollment decision).
    Enrolled,
    /// A kindergarten place the child left for the place of a later (transfer) application.
    Transferred,
    Withdrawn,
}

impl ApplicationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ApplicationStatus::Active => "active",
            ApplicationStatus::Offered => "offered",
            ApplicationStatus::Enrolled => "enrolled",
            ApplicationStatus::Transferred => "transferred",
            ApplicationStatus::Withdrawn => "withdrawn",
        }
    }

    /// Whether the application is the child's current one in its service, which blocks a
    /// second application. An enrolled kindergarten child may apply again (a transfer); an
    /// enrolled first-grader may not.
    pub fn is_current(&self, service: ServiceKind) -> bool {
        match self {
            ApplicationStatus::Active | ApplicationStatus::Offered => true,
            ApplicationStatus::Enrolled => service == ServiceKind::School,
            ApplicationStatus::Transferred | ApplicationStatus::Withdrawn => false,
        }
    }
}

/// One application (kindergarten or first grade). Kept after it closes, for history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub number: ApplicationNumber,
    pub service: ServiceKind,
    /// The campaign of a first-grade application.
    pub campaign: Option<CampaignIdx>,
    pub child: PersonKey,
    pub birth_date: BirthDate,
    /// Fixed at receipt; amending preferences keeps it.
    pub registered_at: DateTime<Utc>,
    /// Ranked institutions, best first, as indices into the institution table.
    pub preferences: Box<[InstitutionIdx]>,
    /// Kindergarten: the desired start date. First grade: 1 September of the campaign year.
    pub desired_start: NaiveDate,
    pub any_other: bool,
    pub privileges: Vec<PrivilegeClaim>,
    pub status: ApplicationStatus,
    pub channel: Channel,
    pub from_draft: bool,
    pub submitted_by: Box<str>,
    /// The application's latest placement (offer or enrollment), an index into
    /// [`super::StateData::placements`].
    #[serde(default)]
    pub placement: Option<u32>,
    pub version: u32,
    /// The applicant's sealed personal data, until it is erased. Boxed: most applications
    /// have none, and inline it would take 40 more bytes of every application (a tenth of a
    /// 10,000,000-application state's memory, each page of which a start must touch).
    /// Serialized as the value itself (the state hash does not see the box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Box<Sealed>>,
    /// The applicant's personal data was erased (its data key destroyed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub erased: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStatus {
    /// A kindergarten offer waiting for an answer.
    Offered,
    /// The child took the place (accepted offer, or a school enrollment decision).
    Accepted,
    Declined,
    Expired,
    /// The application was withdrawn while the offer was outstanding.
    Withdrawn,
    /// The child left the place for another (transfer).
    Released,
}

/// A place given by a round: a kindergarten offer or a school enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub round: u32,
    pub application: ApplicationNumber,
    pub institution: InstitutionIdx,
    /// Kindergarten age group and intake year; none for schools.
    pub age_group: Option<u8>,
    pub intake_year: i32,
    /// The offer's deadline; none for school enrollments.
    pub deadline: Option<DateTime<Utc>>,
    pub status: PlacementStatus,
    pub answered_at: Option<DateTime<Utc>>,
}

/// What a queue is: the service, the institution and the age group and intake year
/// (kindergarten) or the campaign (school), by their public identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueDescription {
    pub service: ServiceKind,
    pub institution: InstitutionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_group: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake_year: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignId>,
}

impl State {
    pub fn application(&self, number: ApplicationNumber) -> Option<&Application> {
        let index = (number.0 as usize).checked_sub(1)?;
        self.data.applications.get(index)
    }

    pub fn applications(&self) -> &Applications {
        &self.data.applications
    }

    pub fn next_application_number(&self) -> ApplicationNumber {
        ApplicationNumber(self.data.applications.len() as u32 + 1)
    }

    pub fn active_application_of(
        &self,
        service: ServiceKind,
        child: &PersonKey,
    ) -> Option<ApplicationNumber> {
        self.active_by_child
            .get(&self.data.applications, service, child)
    }

    /// Children with a current application (active, offered, or enrolled in first grade).
    pub fn n_active_applications(&self) -> usize {
        self.active_by_child.len()
    }

    /// The index of a round in [`State::rounds`] by id.
    pub fn round_idx(&self, id: &RoundId) -> Option<u32> {
        self.round_by_id.get(id).copied()
    }

    pub fn placement(&self, idx: u32) -> &Placement {
        &self.data.placements[idx as usize]
    }

    /// The application's outstanding offer, if it has one.
    pub fn outstanding_offer(&self, app: &Application) -> Option<&Placement> {
        let p = self.placement(app.placement?);
        (p.status == PlacementStatus::Offered).then_some(p)
    }

    /// The queues an application stands in, with its key in each, while it is active.
    pub fn queue_entries(&self, app: &Application) -> Vec<(QueueKey, SortKey)> {
        let mut entries = Vec::new();
        self.for_each_queue_entry(app, |queue, key| entries.push((queue, key)));
        entries
    }

    /// [`State::queue_entries`] one by one, without collecting them.
    pub(crate) fn for_each_queue_entry(
        &self,
        app: &Application,
        mut f: impl FnMut(QueueKey, SortKey),
    ) {
        // Offered, enrolled and closed applications wait in no queue.
        if app.status != ApplicationStatus::Active {
            return;
        }
        match app.service {
            ServiceKind::Kindergarten => {
                let intake_year = intake_year_for(app.desired_start);
                let age = app.birth_date.age_on(september_first(intake_year));
                let age_group = age.clamp(0, u8::MAX as i32) as u8;
                let tie_break = TieBreak::RegistrationTime.key(
                    app.registered_at,
                    app.birth_date.date(),
                    app.number,
                );
                for &institution in app.preferences.iter() {
                    let id = &self.institution(institution).id;
                    let key = SortKey {
                        tier: kindergarten_tier(&app.privileges, id),
                        tie_break,
                        number: app.number,
                    };
                    f(
                        QueueKey::Kindergarten {
                            institution,
                            age_group,
                            intake_year,
                        },
                        key,
                    );
                }
            }
            ServiceKind::School => {
                let campaign_idx = app.campaign.expect("school applications have a campaign");
                let campaign = self.campaign(campaign_idx);
                let tie_break = campaign.config.tie_break.key(
                    app.registered_at,
                    app.birth_date.date(),
                    app.number,
                );
                for &institution in app.preferences.iter() {
                    let id = &self.institution(institution).id;
                    let key = SortKey {
                        tier: school_tier(&app.privileges, id),
                        tie_break,
                        number: app.number,
                    };
                    f(
                        QueueKey::School {
                            campaign: campaign_idx,
                            institution,
                        },
                        key,
                    );
                }
            }
        }
    }

    /// A readable name of a queue, e.g. `kindergarten K1, age 3, intake 2027`.
    pub fn describe_queue(&self, queue: &QueueKey) -> QueueDescription {
        match *queue {
            QueueKey::Kindergarten {
                institution,
                age_group,
                intake_year,
            } => QueueDescription {
                service: ServiceKind::Kindergarten,
                institution: self.institution(institution).id.clone(),
                age_group: Some(age_group),
                intake_year: Some(intake_year),
                campaign: None,
            },
            QueueKey::School {
                campaign,
                institution,
            } => QueueDescription {
                service: ServiceKind::School,
                institution: self.institution(institution).id.clone(),
                age_group: None,
                intake_year: Some(self.campaign(campaign).config.year),
                campaign: Some(self.campaign(campaign).config.id.clone()),
            },
        }
    }

    /// Folds the events that apply to an application of either service, in the order of
    /// [`Event`].
    pub(super) fn apply_applications(&mut self, event: &Event, cause: Cause) {
        match event {
            Event::ApplicationWithdrawn { number, at, .. } => {
                self.end_offer(*number, PlacementStatus::Withdrawn, *at);
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Withdrawn;
                });
                let app = self
                    .application(*number)
                    .expect("withdrawn application exists");
                let (service, child) = (app.service, app.child);
                self.active_by_child
                    .remove(&self.data.applications, service, &child);
            }
            Event::PrivilegeClaimed {
                number,
                privilege,
                at,
            } => {
                self.change_application(*number, cause, *at, |app| {
                    set_privilege(app, privilege, PrivilegeStatus::Claimed);
                });
            }
            Event::PrivilegeConfirmed {
                number,
                privilege,
                at,
            } => {
                self.change_application(*number, cause, *at, |app| {
                    set_privilege(app, privilege, PrivilegeStatus::Confirmed);
                });
            }
            Event::PrivilegeRevoked {
                number,
                privilege,
                at,
                ..
            } => {
                self.change_application(*number, cause, *at, |app| {
                    set_privilege(app, privilege, PrivilegeStatus::Revoked);
                });
            }
            other => unreachable!("{} is not an application event", other.type_name()),
        }
    }

    pub(super) fn insert_round(
        &mut self,
        id: &RoundId,
        scope: RoundScope,
        at: DateTime<Utc>,
        seats: &[RoundSeats],
        applicants: &[RoundApplicant],
        placements: &[RoundPlacement],
    ) -> u32 {
        let groups = seats
            .iter()
            .map(|g| RoundSeatGroup {
                institution: self.institution_by_id[&g.institution],
                age_group: g.age_group,
                capacity: g.capacity,
            })
            .collect();
        let round = Round::from_event(id, scope, at, groups, applicants, placements);
        let idx = self.data.rounds.len() as u32;
        self.queues.label_round(self.round_label(&round));
        self.data.rounds.push(round);
        self.round_by_id.insert(id.clone(), idx);
        idx
    }

    /// How explanations name a round: "the round of 1 June 2026 (main-2026)".
    pub(super) fn round_label(&self, round: &Round) -> RoundLabel {
        let day = match self.config() {
            Some(config) => config.local_date(round.at),
            None => round.at.date_naive(),
        };
        let (what, verb) = if round.is_kindergarten() {
            ("the round", "placed")
        } else {
            ("the enrollment", "enrolled")
        };
        RoundLabel {
            id: round.id.to_string(),
            name: format!("{what} of {} ({})", day.format("%-d %B %Y"), round.id),
            verb,
        }
    }

    pub(super) fn push_placement(&mut self, placement: Placement) -> u32 {
        self.data.placements.push(placement);
        self.data.placements.len() as u32 - 1
    }

    pub(super) fn resolve_institutions(&self, ids: &[InstitutionId]) -> Box<[InstitutionIdx]> {
        ids.iter()
            .map(|id| self.institution_by_id[id])
            .collect::<Vec<_>>()
            .into_boxed_slice()
    }

    pub(super) fn insert_application(&mut self, app: Application, cause: Cause, at: DateTime<Utc>) {
        debug_assert_eq!(app.number, self.next_application_number());
        self.active_by_child
            .insert(&self.data.applications, app.service, &app.child, app.number);
        let entries = self.queue_entries(&app);
        self.data.applications.push(app);
        for (queue, key) in entries {
            self.queues.join(queue, key, cause, at);
        }
    }

    /// Changes an application and moves it between queue positions as the change requires.
    pub(super) fn change_application(
        &mut self,
        number: ApplicationNumber,
        cause: Cause,
        at: DateTime<Utc>,
        change: impl FnOnce(&mut Application),
    ) {
        self.change_application_unversioned(number, cause, at, change);
        self.data.applications[number.0 as usize - 1].version += 1;
    }

    /// Like `change_application`, for an event on another stream (a round's).
    pub(super) fn change_application_unversioned(
        &mut self,
        number: ApplicationNumber,
        cause: Cause,
        at: DateTime<Utc>,
        change: impl FnOnce(&mut Application),
    ) {
        let index = number.0 as usize - 1;
        let before = self.queue_entries(&self.data.applications[index]);
        change(&mut self.data.applications[index]);
        let after = self.queue_entries(&self.data.applications[index]);
        for (queue, key) in &before {
            if !after.contains(&(*queue, *key)) {
                self.queues.leave(*queue, *key, cause, at);
            }
        }
        for (queue, key) in after {
            if !before.contains(&(queue, key)) {
                self.queues.join(queue, key, cause, at);
            }
        }
    }
}

/// The privileges of a new application, as claimed (an officer confirms them later).
pub(super) fn claimed(privileges: &[Privilege]) -> Vec<PrivilegeClaim> {
    privileges
        .iter()
        .map(|p| PrivilegeClaim {
            privilege: p.clone(),
            status: PrivilegeStatus::Claimed,
        })
        .collect()
}

fn set_privilege(app: &mut Application, privilege: &Privilege, status: PrivilegeStatus) {
    match app
        .privileges
        .iter_mut()
        .find(|c| &c.privilege == privilege)
    {
        Some(claim) => claim.status = status,
        None => app.privileges.push(PrivilegeClaim {
            privilege: privilege.clone(),
            status,
        }),
    }
}
