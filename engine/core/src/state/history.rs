//! Each application's history, step by step, folded from its events: what the parent's page
//! and `GET …/applications/{n}` show. A projection like the queues' change log: derived from
//! the events, not hashed, kept in snapshots beside the state.
//!
//! Memory: every application keeps the chain position of its submission (8 bytes); only
//! applications with later events (amendments, privileges, offers, answers, withdrawals) keep
//! a list of steps.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ApplicationNumber;
use crate::event::Event;
use crate::ordering::Privilege;

use super::segmented::Segmented;
use super::{InstitutionIdx, State};

/// One step of an application's history after its submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryStep {
    pub at: DateTime<Utc>,
    /// The event's position in the authority's hash chain (its `authority_seq`).
    pub seq: u64,
    pub kind: HistoryKind,
}

/// What happened to the application at a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// New ranked kindergartens and desired start.
    Amended {
        preferences: Box<[InstitutionIdx]>,
        desired_start: NaiveDate,
    },
    PrivilegeClaimed(Privilege),
    PrivilegeConfirmed(Privilege),
    PrivilegeRevoked {
        privilege: Privilege,
        reason: String,
    },
    /// A kindergarten round offered a place: the placement, an index into
    /// [`super::StateData::placements`], names the round, the institution and the deadline.
    Offered {
        placement: u32,
    },
    /// The family accepted the offer: the child is enrolled there.
    Accepted,
    /// Declined or expired: the application queues again from `desired_start`.
    Declined {
        desired_start: NaiveDate,
    },
    Expired {
        desired_start: NaiveDate,
    },
    /// A first-grade enrollment decision (the placement names the school and the stage's round).
    Enrolled {
        placement: u32,
    },
    /// The child left this place for the place of application `to`.
    Transferred {
        to: ApplicationNumber,
    },
    Withdrawn {
        reason: String,
    },
    PersonalDataErased,
}

/// Every application's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histories {
    /// The chain position of each application's submission, by application number - 1; in
    /// segments, as the applications are, so that growing never copies it.
    pub(super) submitted: Segmented<u64>,
    /// The later steps of the applications that have any, oldest first.
    pub(super) steps: HashMap<ApplicationNumber, Vec<HistoryStep>>,
}

impl Histories {
    /// The chain position of the application's submission.
    pub fn submitted_seq(&self, number: ApplicationNumber) -> Option<u64> {
        let index = (number.0 as usize).checked_sub(1)?;
        self.submitted.get(index).copied()
    }

    /// The application's steps after its submission, oldest first.
    pub fn steps(&self, number: ApplicationNumber) -> &[HistoryStep] {
        self.steps.get(&number).map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, number: ApplicationNumber, at: DateTime<Utc>, seq: u64, kind: HistoryKind) {
        self.steps
            .entry(number)
            .or_default()
            .push(HistoryStep { at, seq, kind });
    }
}

impl State {
    /// Each application's history.
    pub fn histories(&self) -> &Histories {
        &self.histories
    }

    /// Records the steps `event` made, once it has been folded into the state as the event at
    /// chain position `seq`.
    pub(super) fn record_history(&mut self, event: &Event, seq: u64) {
        use HistoryKind as K;
        let h = &mut self.histories;
        match event {
            Event::KindergartenApplicationSubmitted {
                number,
                privileges,
                registered_at,
                ..
            }
            | Event::SchoolApplicationSubmitted {
                number,
                privileges,
                registered_at,
                ..
            } => {
                let index = number.0 as usize - 1;
                while h.submitted.len() <= index {
                    h.submitted.push(0);
                }
                h.submitted[index] = seq;
                // Privileges claimed with the application are claims like later ones.
                for privilege in privileges {
                    let kind = K::PrivilegeClaimed(privilege.clone());
                    h.push(*number, *registered_at, seq, kind);
                }
            }
            Event::KindergartenPreferencesAmended {
                number,
                desired_start,
                at,
                ..
            } => {
                let preferences = self.data.applications[number.0 as usize - 1]
                    .preferences
                    .clone();
                let kind = K::Amended {
                    preferences,
                    desired_start: *desired_start,
                };
                self.histories.push(*number, *at, seq, kind);
            }
            Event::PrivilegeClaimed {
                number,
                privilege,
                at,
            } => h.push(*number, *at, seq, K::PrivilegeClaimed(privilege.clone())),
            Event::PrivilegeConfirmed {
                number,
                privilege,
                at,
            } => h.push(*number, *at, seq, K::PrivilegeConfirmed(privilege.clone())),
            Event::PrivilegeRevoked {
                number,
                privilege,
                reason,
                at,
            } => {
                let kind = K::PrivilegeRevoked {
                    privilege: privilege.clone(),
                    reason: reason.clone(),
                };
                h.push(*number, *at, seq, kind);
            }
            Event::KindergartenRoundCompleted { placements, at, .. }
            | Event::SchoolEnrollmentCompleted { placements, at, .. } => {
                let school = matches!(event, Event::SchoolEnrollmentCompleted { .. });
                for p in placements {
                    let app = &self.data.applications[p.number.0 as usize - 1];
                    let Some(placement) = app.placement else {
                        continue;
                    };
                    let kind = if school {
                        K::Enrolled { placement }
                    } else {
                        K::Offered { placement }
                    };
                    self.histories.push(p.number, *at, seq, kind);
                }
            }
            Event::OfferAccepted { number, at } => h.push(*number, *at, seq, K::Accepted),
            Event::OfferDeclined {
                number,
                desired_start,
                at,
            } => {
                let kind = K::Declined {
                    desired_start: *desired_start,
                };
                h.push(*number, *at, seq, kind);
            }
            Event::OfferExpired {
                number,
                desired_start,
                at,
            } => {
                let kind = K::Expired {
                    desired_start: *desired_start,
                };
                h.push(*number, *at, seq, kind);
            }
            Event::TransferCompleted { number, to, at } => {
                h.push(*number, *at, seq, K::Transferred { to: *to })
            }
            Event::ApplicationWithdrawn { number, reason, at } => {
                let kind = K::Withdrawn {
                    reason: reason.clone(),
                };
                h.push(*number, *at, seq, kind);
            }
            Event::PersonalDataErased {
                applications, at, ..
            } => {
                for number in applications {
                    h.push(*number, *at, seq, K::PersonalDataErased);
                }
            }
            _ => {}
        }
    }
}
