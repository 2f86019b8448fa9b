//! Wire types: request and response bodies of the HTTP API. Requests turn into core commands
//! here; the core knows nothing about HTTP.

use chrono::{DateTime, NaiveDate, Utc};
use ochered_core::command::{CampaignConfig, SlotSpec};
use ochered_core::domain::{
    ApplicationNumber, BookingNumber, CampaignId, Channel, DoctorId, DocumentNumber, InstitutionId,
    InstitutionKind, PersonKey, SlotId, Specialty,
};
use ochered_core::ordering::{Privilege, PrivilegeClaim};
use ochered_core::state::{Application, QueueDescription, State};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Normalises a document number and derives its dedup key; the document itself is not kept.
pub fn person_key(secret: &[u8], field: &str, raw: &str) -> Result<PersonKey, ApiError> {
    let document = DocumentNumber::parse(raw).map_err(|e| ApiError::invalid(field, e.reason))?;
    Ok(PersonKey::derive(secret, &document))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindergartenApplicationRequest {
    /// The child's birth certificate number.
    pub document: String,
    pub birth_date: NaiveDate,
    pub preferences: Vec<InstitutionId>,
    pub desired_start: NaiveDate,
    #[serde(default)]
    pub any_other: bool,
    #[serde(default)]
    pub privileges: Vec<Privilege>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmendRequest {
    pub preferences: Vec<InstitutionId>,
    pub desired_start: NaiveDate,
    #[serde(default)]
    pub any_other: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeRequest {
    pub privilege: Privilege,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolApplicationRequest {
    pub campaign: CampaignId,
    pub document: String,
    pub birth_date: NaiveDate,
    pub schools: Vec<InstitutionId>,
    #[serde(default)]
    pub privileges: Vec<Privilege>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitDraftRequest {
    pub campaign: CampaignId,
    pub document: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgeExceptionRequest {
    pub campaign: CampaignId,
    pub document: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstitutionRequest {
    pub id: InstitutionId,
    pub kind: InstitutionKind,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    #[serde(flatten)]
    pub config: CampaignConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialtyRequest {
    pub specialty: Specialty,
    #[serde(default)]
    pub referral_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsRequest {
    pub doctor: DoctorId,
    pub specialty: Specialty,
    pub slots: Vec<SlotSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    pub slot: SlotId,
    /// The patient's document (policy or certificate number).
    pub document: String,
    #[serde(default)]
    pub referral: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitingListRequest {
    pub specialty: Specialty,
    pub document: String,
    #[serde(default = "general_tier")]
    pub tier: u8,
}

fn general_tier() -> u8 {
    ochered_core::ordering::TIER_GENERAL
}

#[derive(Debug, Serialize)]
pub struct PositionView {
    pub queue: String,
    #[serde(flatten)]
    pub description: QueueDescription,
    pub position: usize,
    pub queue_size: usize,
    pub tier: u8,
}

#[derive(Debug, Serialize)]
pub struct ApplicationView {
    pub number: ApplicationNumber,
    pub service: ochered_core::state::ServiceKind,
    pub status: &'static str,
    pub registered_at: DateTime<Utc>,
    pub birth_date: NaiveDate,
    pub desired_start: NaiveDate,
    pub preferences: Vec<InstitutionId>,
    pub any_other: bool,
    pub privileges: Vec<PrivilegeClaim>,
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignId>,
    pub from_draft: bool,
    pub positions: Vec<PositionView>,
}

/// A stable, readable id of a queue for URLs: `kindergarten.K001.3.2027`, `school.school-2027.S001`.
pub fn queue_id(d: &QueueDescription) -> String {
    match (&d.campaign, d.age_group, d.intake_year) {
        (Some(c), _, _) => format!("school.{c}.{}", d.institution),
        (None, Some(age), Some(year)) => format!("kindergarten.{}.{age}.{year}", d.institution),
        _ => format!("queue.{}", d.institution),
    }
}

pub fn positions(state: &State, app: &Application) -> Vec<PositionView> {
    state
        .queue_entries(app)
        .into_iter()
        .map(|(queue, key)| {
            let description = state.describe_queue(&queue);
            PositionView {
                queue: queue_id(&description),
                description,
                position: state.queues.position(&queue, &key).unwrap_or(0),
                queue_size: state.queues.len(&queue),
                tier: key.tier,
            }
        })
        .collect()
}

pub fn application_view(state: &State, app: &Application) -> ApplicationView {
    ApplicationView {
        number: app.number,
        service: app.service,
        status: app.status.as_str(),
        registered_at: app.registered_at,
        birth_date: app.birth_date.date(),
        desired_start: app.desired_start,
        preferences: app
            .preferences
            .iter()
            .map(|&i| state.institution(i).id.clone())
            .collect(),
        any_other: app.any_other,
        privileges: app.privileges.clone(),
        channel: app.channel,
        campaign: app.campaign.map(|c| state.campaign(c).config.id.clone()),
        from_draft: app.from_draft,
        positions: positions(state, app),
    }
}

#[derive(Debug, Serialize)]
pub struct BookingView {
    pub number: BookingNumber,
    pub slot: SlotId,
    pub specialty: Specialty,
    pub status: ochered_core::state::BookingStatus,
    pub booked_at: DateTime<Utc>,
}
