//! First-grade enrollment in the state: campaigns with their drafts and age exceptions,
//! applications, and the enrollment decisions of each stage.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::command::{AgeExceptionCategory, CampaignConfig, SchoolForm};
use crate::domain::{september_first, BirthDate, CampaignId, PersonKey};
use crate::event::Event;
use crate::queues::Cause;
use crate::rounds::RoundScope;

use super::applications::claimed;
use super::{
    Application, ApplicationStatus, CampaignIdx, InstitutionIdx, Placement, PlacementStatus,
    ServiceKind, State,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub config: CampaignConfig,
    pub school_idx: Box<[InstitutionIdx]>,
    /// Seats taken by enrollment decisions, per school in the order of `school_idx`.
    #[serde(default)]
    pub seats_taken: Vec<u32>,
    pub drafts: BTreeMap<PersonKey, SchoolForm>,
    pub age_exceptions: BTreeSet<PersonKey>,
    /// The families' age-exception requests, one per child (docs/RULES.md#school-age-requests).
    /// Absent from the serialised state while empty, so a state without requests hashes as
    /// it did before they existed (a v1 log's recorded state hash still matches).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub age_requests: BTreeMap<PersonKey, AgeRequest>,
    pub version: u32,
}

/// A family's request for a first-grade age exception, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgeRequest {
    pub birth_date: NaiveDate,
    pub category: AgeExceptionCategory,
    pub requested_by: Box<str>,
    pub requested_at: DateTime<Utc>,
    pub status: AgeRequestStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AgeRequestStatus {
    /// Waiting for an officer's decision.
    Pending,
    Granted {
        at: DateTime<Utc>,
    },
    Refused {
        reason: String,
        at: DateTime<Utc>,
    },
}

impl AgeRequestStatus {
    /// `pending`, `granted` or `refused`.
    pub fn name(&self) -> &'static str {
        match self {
            AgeRequestStatus::Pending => "pending",
            AgeRequestStatus::Granted { .. } => "granted",
            AgeRequestStatus::Refused { .. } => "refused",
        }
    }
}

impl State {
    pub fn campaign_idx(&self, id: &CampaignId) -> Option<CampaignIdx> {
        self.campaign_by_id.get(id).copied()
    }

    pub fn campaign(&self, idx: CampaignIdx) -> &Campaign {
        &self.data.campaigns[idx as usize]
    }

    pub fn campaigns(&self) -> &[Campaign] {
        &self.data.campaigns
    }

    /// Folds the first-grade events, in the order of [`Event`].
    pub(super) fn apply_school(&mut self, event: &Event, cause: Cause) {
        match event {
            Event::CampaignConfigured { config } => {
                let idx = self.data.campaigns.len() as CampaignIdx;
                let school_idx = config
                    .schools
                    .iter()
                    .map(|s| self.institution_by_id[&s.institution])
                    .collect();
                self.data.campaigns.push(Campaign {
                    config: config.clone(),
                    seats_taken: vec![0; config.schools.len()],
                    school_idx,
                    drafts: BTreeMap::new(),
                    age_exceptions: Default::default(),
                    age_requests: BTreeMap::new(),
                    version: 1,
                });
                self.campaign_by_id.insert(config.id.clone(), idx);
            }
            Event::SchoolEnrollmentCompleted {
                round,
                campaign,
                stage,
                at,
                seats,
                applicants,
                placements,
            } => {
                let campaign_idx = self.campaign_by_id[campaign];
                let scope = RoundScope::School {
                    campaign: campaign_idx,
                    stage: *stage,
                };
                let round_idx = self.insert_round(round, scope, *at, seats, applicants, placements);
                let groups = self.data.rounds[round_idx as usize].seats.clone();
                let year = self.campaign(campaign_idx).config.year;
                for p in placements {
                    let institution = groups[p.seats as usize].institution;
                    let c = &mut self.data.campaigns[campaign_idx as usize];
                    if let Some(i) = c.school_idx.iter().position(|&s| s == institution) {
                        if c.seats_taken.len() < c.school_idx.len() {
                            c.seats_taken.resize(c.school_idx.len(), 0);
                        }
                        c.seats_taken[i] += 1;
                    }
                    let placement = self.push_placement(Placement {
                        round: round_idx,
                        application: p.number,
                        institution,
                        age_group: None,
                        intake_year: year,
                        deadline: None,
                        status: PlacementStatus::Accepted,
                        answered_at: Some(*at),
                    });
                    self.change_application_unversioned(
                        p.number,
                        Cause::Round(round_idx as u16),
                        *at,
                        |app| {
                            app.status = ApplicationStatus::Enrolled;
                            app.placement = Some(placement);
                        },
                    );
                }
            }
            Event::SchoolDraftSaved { form, .. } => {
                let idx = self.campaign_by_id[&form.campaign];
                let campaign = &mut self.data.campaigns[idx as usize];
                campaign.drafts.insert(form.child, form.clone());
                campaign.version += 1;
            }
            Event::SchoolApplicationSubmitted {
                number,
                campaign,
                child,
                birth_date,
                schools,
                privileges,
                registered_at,
                from_draft,
                channel,
                submitted_by,
                sealed,
            } => {
                let campaign_idx = self.campaign_by_id[campaign];
                let year = self.campaign(campaign_idx).config.year;
                let app = Application {
                    number: *number,
                    service: ServiceKind::School,
                    campaign: Some(campaign_idx),
                    child: *child,
                    birth_date: BirthDate::from_event(*birth_date),
                    registered_at: *registered_at,
                    preferences: self.resolve_institutions(schools),
                    desired_start: september_first(year),
                    any_other: false,
                    privileges: claimed(privileges),
                    status: ApplicationStatus::Active,
                    channel: *channel,
                    from_draft: *from_draft,
                    submitted_by: submitted_by.as_str().into(),
                    placement: None,
                    version: 1,
                    sealed: sealed.clone().map(Box::new),
                    erased: false,
                };
                self.data.campaigns[campaign_idx as usize]
                    .drafts
                    .remove(child);
                self.insert_application(app, cause, *registered_at);
            }
            Event::AgeExceptionGranted {
                campaign,
                child,
                at,
                ..
            } => {
                let idx = self.campaign_by_id[campaign];
                let campaign = &mut self.data.campaigns[idx as usize];
                campaign.age_exceptions.insert(*child);
                // A grant answers the child's request, if the family made one.
                if let Some(request) = campaign.age_requests.get_mut(child) {
                    if !matches!(request.status, AgeRequestStatus::Granted { .. }) {
                        request.status = AgeRequestStatus::Granted { at: *at };
                    }
                }
                campaign.version += 1;
            }
            Event::AgeExceptionRequested {
                campaign,
                child,
                birth_date,
                category,
                requested_by,
                at,
            } => {
                let idx = self.campaign_by_id[campaign];
                let campaign = &mut self.data.campaigns[idx as usize];
                campaign.age_requests.insert(
                    *child,
                    AgeRequest {
                        birth_date: *birth_date,
                        category: *category,
                        requested_by: requested_by.as_str().into(),
                        requested_at: *at,
                        status: AgeRequestStatus::Pending,
                    },
                );
                campaign.version += 1;
            }
            Event::AgeExceptionRefused {
                campaign,
                child,
                reason,
                at,
            } => {
                let idx = self.campaign_by_id[campaign];
                let campaign = &mut self.data.campaigns[idx as usize];
                if let Some(request) = campaign.age_requests.get_mut(child) {
                    request.status = AgeRequestStatus::Refused {
                        reason: reason.clone(),
                        at: *at,
                    };
                }
                campaign.version += 1;
            }
            other => unreachable!("{} is not a first-grade event", other.type_name()),
        }
    }
}
