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
use utoipa::ToSchema;

use crate::error::ApiError;

/// Normalises a document number and derives its dedup key; the document itself is not kept.
pub fn person_key(secret: &[u8], field: &str, raw: &str) -> Result<PersonKey, ApiError> {
    let document = DocumentNumber::parse(raw).map_err(|e| ApiError::invalid(field, e.reason))?;
    Ok(PersonKey::derive(secret, &document))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindergartenApplicationRequest {
    /// The child's birth certificate number.
    #[schema(example = "II-АБ 123456")]
    pub document: String,
    pub birth_date: NaiveDate,
    /// Ranked kindergartens, best first.
    #[schema(value_type = Vec<crate::openapi::Code>)]
    pub preferences: Vec<InstitutionId>,
    pub desired_start: NaiveDate,
    /// Offer any other kindergarten if none of the listed ones has a place.
    #[serde(default)]
    pub any_other: bool,
    /// Privileges claimed; an officer confirms them later.
    #[serde(default)]
    #[schema(value_type = Vec<crate::openapi::PrivilegeSchema>)]
    pub privileges: Vec<Privilege>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmendRequest {
    #[schema(value_type = Vec<crate::openapi::Code>)]
    pub preferences: Vec<InstitutionId>,
    pub desired_start: NaiveDate,
    #[serde(default)]
    pub any_other: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeRequest {
    #[schema(value_type = crate::openapi::PrivilegeSchema)]
    pub privilege: Privilege,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchoolApplicationRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub campaign: CampaignId,
    /// The child's birth certificate number.
    pub document: String,
    pub birth_date: NaiveDate,
    /// One school, or a ranked list when the campaign allows it.
    #[schema(value_type = Vec<crate::openapi::Code>)]
    pub schools: Vec<InstitutionId>,
    #[serde(default)]
    #[schema(value_type = Vec<crate::openapi::PrivilegeSchema>)]
    pub privileges: Vec<Privilege>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitDraftRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub campaign: CampaignId,
    pub document: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeExceptionRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub campaign: CampaignId,
    pub document: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstitutionRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub id: InstitutionId,
    #[schema(value_type = crate::openapi::InstitutionKindSchema)]
    pub kind: InstitutionKind,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    #[serde(flatten)]
    #[schema(value_type = crate::openapi::CampaignConfigSchema)]
    pub config: CampaignConfig,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecialtyRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub specialty: Specialty,
    #[serde(default)]
    pub referral_only: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotsRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub doctor: DoctorId,
    #[schema(value_type = crate::openapi::Code)]
    pub specialty: Specialty,
    #[schema(value_type = Vec<crate::openapi::SlotSpecSchema>)]
    pub slots: Vec<SlotSpec>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub slot: SlotId,
    /// The patient's document (policy or certificate number).
    pub document: String,
    #[serde(default)]
    pub referral: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingListRequest {
    #[schema(value_type = crate::openapi::Code)]
    pub specialty: Specialty,
    pub document: String,
    /// Priority tier, 0 (highest) to 3 (general, the default); only a registrar may set a
    /// tier other than 3.
    #[serde(default = "general_tier")]
    #[schema(default = 3, maximum = 3)]
    pub tier: u8,
}

fn general_tier() -> u8 {
    ochered_core::ordering::TIER_GENERAL
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionView {
    pub queue: String,
    #[serde(flatten)]
    #[schema(value_type = crate::openapi::QueueDescriptionSchema)]
    pub description: QueueDescription,
    pub position: usize,
    pub queue_size: usize,
    pub tier: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    #[schema(value_type = u32)]
    pub number: ApplicationNumber,
    #[schema(value_type = crate::openapi::ServiceKindSchema)]
    pub service: ochered_core::state::ServiceKind,
    pub status: &'static str,
    pub registered_at: DateTime<Utc>,
    pub birth_date: NaiveDate,
    pub desired_start: NaiveDate,
    #[schema(value_type = Vec<crate::openapi::Code>)]
    pub preferences: Vec<InstitutionId>,
    pub any_other: bool,
    #[schema(value_type = Vec<crate::openapi::PrivilegeClaimSchema>)]
    pub privileges: Vec<PrivilegeClaim>,
    #[schema(value_type = crate::openapi::ChannelSchema)]
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::Code>)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingView {
    #[schema(value_type = u32)]
    pub number: BookingNumber,
    #[schema(value_type = crate::openapi::Code)]
    pub slot: SlotId,
    #[schema(value_type = crate::openapi::Code)]
    pub specialty: Specialty,
    #[schema(value_type = crate::openapi::BookingStatusSchema)]
    pub status: ochered_core::state::BookingStatus,
    pub booked_at: DateTime<Utc>,
}
