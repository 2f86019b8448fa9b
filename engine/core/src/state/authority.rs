//! The authority's own part of the state: its settings and institutions, and the erasure
//! of personal data, which crosses every service.

use serde::{Deserialize, Serialize};

use crate::domain::{InstitutionId, InstitutionKind};
use crate::event::Event;

use super::{InstitutionIdx, State};

/// An institution as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Institution {
    pub id: InstitutionId,
    pub kind: InstitutionKind,
    pub name: String,
    pub version: u32,
    /// The district it serves, if registered with one (docs/RULES.md#authority-institutions).
    /// Left out of the state's encoding when absent, so the state hash of a log without
    /// districts is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl State {
    pub fn institution_idx(&self, id: &InstitutionId) -> Option<InstitutionIdx> {
        self.institution_by_id.get(id).copied()
    }

    pub fn institution(&self, idx: InstitutionIdx) -> &Institution {
        &self.data.institutions[idx as usize]
    }

    pub fn institutions(&self) -> &[Institution] {
        &self.data.institutions
    }

    /// Folds the authority's events, in the order of [`Event`].
    pub(super) fn apply_authority(&mut self, event: &Event) {
        match event {
            Event::AuthorityConfigured { config } => {
                self.data.config = Some(config.clone());
                self.data.config_version += 1;
            }
            Event::InstitutionRegistered {
                id,
                kind,
                name,
                district,
                address,
            } => {
                let idx = self.data.institutions.len() as InstitutionIdx;
                self.data.institutions.push(Institution {
                    id: id.clone(),
                    kind: *kind,
                    name: name.clone(),
                    version: 1,
                    district: district.clone(),
                    address: address.clone(),
                });
                self.institution_by_id.insert(id.clone(), idx);
            }
            Event::PersonalDataErased {
                person,
                applications,
                ..
            } => {
                // Only the personal data goes: no queue, status or version changes.
                for number in applications {
                    let app = &mut self.data.applications[number.0 as usize - 1];
                    app.sealed = None;
                    app.erased = true;
                }
                for campaign in &mut self.data.campaigns {
                    if let Some(draft) = campaign.drafts.get_mut(person) {
                        draft.sealed = None;
                    }
                }
                *self.data.erasures.entry(*person).or_insert(0) += 1;
            }
            other => unreachable!("{} is not an authority event", other.type_name()),
        }
    }
}
