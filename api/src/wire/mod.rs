//! Wire types: request and response bodies of the HTTP API shared by several services.
//! Requests turn into core commands here; the core knows nothing about HTTP. A body only one
//! service uses lives beside its handler.

pub mod history;
pub mod rounds;
pub mod schema;

use chrono::{DateTime, NaiveDate, Utc};
use ochered_core::command::{AgeExceptionCategory, CampaignConfig, SlotSpec};
use ochered_core::domain::{
    september_first, ApplicationNumber, BirthDate, BookingNumber, CampaignId, Channel, DoctorId,
    DocumentNumber, InstitutionId, InstitutionKind, PersonKey, SlotId, Specialty,
};
use ochered_core::ordering::{Privilege, PrivilegeClaim};
use ochered_core::state::{AgeRequest, AgeRequestStatus, Application, QueueDescription, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ochered_core::Event;
use ochered_writer::{CommittedEvent, Writer};

use crate::http::error::ApiError;

/// Normalises a document number and derives its dedup key; the document itself is not kept.
pub fn person_key(secret: &[u8], field: &str, raw: &str) -> Result<PersonKey, ApiError> {
    let document = DocumentNumber::parse(raw).map_err(|e| ApiError::invalid(field, e.reason))?;
    Ok(PersonKey::derive(secret, &document))
}

/// How to reach the family: given with an application so officers can contact it about an
/// offer. Sealed (encrypted with a key of this applicant's own) before it reaches the
/// engine: the log holds only ciphertext, and an erasure destroys the key.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// The child's full name (1-200 characters).
    #[schema(example = "Анна Сергеевна Иванова")]
    pub child_name: String,
    /// The parent's or guardian's full name (1-200 characters).
    pub guardian_name: String,
    /// A phone number: digits with an optional leading `+`, spaces, hyphens and parentheses;
    /// 5-15 digits. A phone, an email or both.
    #[serde(default)]
    #[schema(example = "+7 913 123-45-67")]
    pub phone: Option<String>,
    /// An email address (at most 254 characters). A phone, an email or both.
    #[serde(default)]
    pub email: Option<String>,
}

/// The personal data as sealed and as shown back: the contact and the document as typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactView {
    pub child_name: String,
    pub guardian_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// The child's document number exactly as given.
    pub document: String,
}

/// Longest name in a contact, in characters.
pub const CONTACT_NAME_MAX_CHARS: usize = 200;

fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > CONTACT_NAME_MAX_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {CONTACT_NAME_MAX_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_phone(phone: &str) -> Result<String, ApiError> {
    let phone = phone.trim();
    let field = "contact.phone";
    let rest = phone.strip_prefix('+').unwrap_or(phone);
    if phone.len() > 32
        || !rest
            .chars()
            .all(|c| c.is_ascii_digit() || " -()".contains(c))
    {
        return Err(ApiError::invalid(
            field,
            "must be digits with an optional leading +, spaces, hyphens or parentheses",
        ));
    }
    let digits = rest.chars().filter(char::is_ascii_digit).count();
    if !(5..=15).contains(&digits) {
        return Err(ApiError::invalid(field, "must have 5-15 digits"));
    }
    Ok(phone.to_owned())
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let field = "contact.email";
    if email.len() > 254 {
        return Err(ApiError::invalid(field, "must be at most 254 characters"));
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && email.chars().all(|c| !c.is_whitespace() && !c.is_control())
        }
        None => false,
    };
    if !valid {
        return Err(ApiError::invalid(
            field,
            "must be an email address such as name@example.org",
        ));
    }
    Ok(email.to_owned())
}

impl ContactRequest {
    /// Checks every field (naming the bad one, e.g. `contact.phone`) and adds the document
    /// as given: the personal data to seal.
    pub fn validate(self, document: &str) -> Result<ContactView, ApiError> {
        let child_name = check_name("contact.child_name", &self.child_name)?;
        let guardian_name = check_name("contact.guardian_name", &self.guardian_name)?;
        let phone = self.phone.as_deref().map(check_phone).transpose()?;
        let email = self.email.as_deref().map(check_email).transpose()?;
        if phone.is_none() && email.is_none() {
            return Err(ApiError::invalid(
                "contact.phone",
                "give a phone, an email or both, so the family can be reached",
            ));
        }
        Ok(ContactView {
            child_name,
            guardian_name,
            phone,
            email,
            document: document.trim().to_owned(),
        })
    }
}

/// A lawful erasure request: the person's document, or the number of one of their
/// applications; exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The child's (or patient's) document number.
    #[serde(default)]
    pub document: Option<String>,
    /// The number of one of the person's applications.
    #[serde(default)]
    pub application: Option<u32>,
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    /// The person's pseudonymous key (keyed hash of the document) as the log knows it.
    pub person: String,
    /// Whether a data key existed and was destroyed now (false when erased before).
    pub key_destroyed: bool,
    /// The applications whose personal data this request erased (empty if already erased).
    #[schema(value_type = Vec<u32>)]
    pub applications: Vec<ApplicationNumber>,
    /// Every application of the person; all of them are erased now.
    #[schema(value_type = Vec<u32>)]
    pub erased: Vec<ApplicationNumber>,
    /// The `PersonalDataErased` event recorded, if one was (none when repeated).
    pub events: Vec<ochered_writer::CommittedEvent>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindergartenApplicationRequest {
    /// The child's birth certificate number.
    #[schema(example = "II-АБ 123456")]
    pub document: String,
    pub birth_date: NaiveDate,
    /// Ranked kindergartens, best first.
    #[schema(value_type = Vec<schema::Code>)]
    pub preferences: Vec<InstitutionId>,
    pub desired_start: NaiveDate,
    /// Offer any other kindergarten if none of the listed ones has a place.
    #[serde(default)]
    pub any_other: bool,
    /// Privileges claimed; an officer confirms them later.
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    /// How to reach the family (optional); stored only encrypted.
    #[serde(default)]
    pub contact: Option<ContactRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmendRequest {
    #[schema(value_type = Vec<schema::Code>)]
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
    pub privilege: Privilege,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchoolApplicationRequest {
    #[schema(value_type = schema::Code)]
    pub campaign: CampaignId,
    /// The child's birth certificate number.
    pub document: String,
    pub birth_date: NaiveDate,
    /// One school, or a ranked list when the campaign allows it.
    #[schema(value_type = Vec<schema::Code>)]
    pub schools: Vec<InstitutionId>,
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    /// How to reach the family (optional); stored only encrypted.
    #[serde(default)]
    pub contact: Option<ContactRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitDraftRequest {
    #[schema(value_type = schema::Code)]
    pub campaign: CampaignId,
    pub document: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeExceptionRequest {
    #[schema(value_type = schema::Code)]
    pub campaign: CampaignId,
    pub document: String,
}

/// A family's age-exception request and what became of it
/// (docs/RULES.md#school-age-requests).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgeRequestView {
    #[schema(value_type = schema::Code)]
    pub campaign: CampaignId,
    /// The child's key (64 hex digits): the keyed hash of the document, never the document.
    pub child: String,
    pub birth_date: NaiveDate,
    /// The child's age in full months on 1 September of the campaign year.
    pub age_months: i32,
    pub category: AgeExceptionCategory,
    pub requested_at: DateTime<Utc>,
    /// `pending`, `granted` or `refused`.
    #[schema(example = "pending")]
    pub status: &'static str,
    /// When an officer granted or refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// The officer's reason for a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every request of every campaign that `keep` picks, oldest first.
pub fn age_requests(state: &State, keep: impl Fn(&AgeRequest) -> bool) -> Vec<AgeRequestView> {
    let mut out: Vec<AgeRequestView> = state
        .campaigns()
        .iter()
        .flat_map(|c| {
            let on = september_first(c.config.year);
            c.age_requests
                .iter()
                .filter(|(_, r)| keep(r))
                .map(move |(child, r)| {
                    let (decided_at, reason) = match &r.status {
                        AgeRequestStatus::Pending => (None, None),
                        AgeRequestStatus::Granted { at } => (Some(*at), None),
                        AgeRequestStatus::Refused { reason, at } => {
                            (Some(*at), Some(reason.clone()))
                        }
                    };
                    AgeRequestView {
                        campaign: c.config.id.clone(),
                        child: child.to_hex(),
                        birth_date: r.birth_date,
                        age_months: BirthDate::from_event(r.birth_date).age_in_months_on(on),
                        category: r.category,
                        requested_at: r.requested_at,
                        status: r.status.name(),
                        decided_at,
                        reason,
                    }
                })
        })
        .collect();
    out.sort_by(|a, b| (a.requested_at, &a.child).cmp(&(b.requested_at, &b.child)));
    out
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstitutionRequest {
    #[schema(value_type = schema::Code)]
    pub id: InstitutionId,
    pub kind: InstitutionKind,
    pub name: String,
    /// The district the institution serves (1–100 characters, one line): the demand report
    /// groups by it. Optional.
    #[serde(default)]
    #[schema(example = "Central")]
    pub district: Option<String>,
    /// The street address (1–500 characters). Optional.
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    #[serde(flatten)]
    pub config: CampaignConfig,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecialtyRequest {
    #[schema(value_type = schema::Code)]
    pub specialty: Specialty,
    #[serde(default)]
    pub referral_only: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotsRequest {
    #[schema(value_type = schema::Code)]
    pub doctor: DoctorId,
    #[schema(value_type = schema::Code)]
    pub specialty: Specialty,
    pub slots: Vec<SlotSpec>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    #[schema(value_type = schema::Code)]
    pub slot: SlotId,
    /// The patient's document (policy or certificate number).
    pub document: String,
    #[serde(default)]
    pub referral: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingListRequest {
    #[schema(value_type = schema::Code)]
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
    pub description: QueueDescription,
    pub position: usize,
    pub queue_size: usize,
    pub tier: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    #[schema(value_type = u32)]
    pub number: ApplicationNumber,
    pub service: ochered_core::state::ServiceKind,
    pub status: &'static str,
    pub registered_at: DateTime<Utc>,
    pub birth_date: NaiveDate,
    pub desired_start: NaiveDate,
    #[schema(value_type = Vec<schema::Code>)]
    pub preferences: Vec<InstitutionId>,
    pub any_other: bool,
    pub privileges: Vec<PrivilegeClaim>,
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::Code>)]
    pub campaign: Option<CampaignId>,
    pub from_draft: bool,
    pub positions: Vec<PositionView>,
    /// The applicant's personal data was erased on request.
    pub erased: bool,
    /// How to reach the family, decrypted: only in the detail of one application, for the
    /// parent who submitted it and officers (null when none was given or after erasure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Option<ContactView>>,
    /// The authority's IANA time zone, in which the `*_local` times are given.
    #[schema(example = "Asia/Novosibirsk")]
    pub time_zone: String,
    /// `registered_at` in the authority's time zone, RFC 3339 with its offset.
    #[schema(example = "2026-03-10T09:15:02+07:00")]
    pub registered_at_local: String,
    /// The submission's position in the authority's hash chain (`authority_seq`): the
    /// registration can be checked against the chain head and an exported log.
    pub chain_position: u64,
    /// The child's name as the family gave it: in the parent's list and in the detail (absent
    /// when none was given or after erasure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_name: Option<String>,
    /// The latest place a round gave: a kindergarten offer (with its deadline) or a
    /// first-grade enrollment; absent before any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<history::OfferView>,
    /// Every step from the submission on, oldest first: only in the detail of one application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<history::HistoryEntry>>,
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
        erased: app.erased,
        contact: None,
        time_zone: history::time_zone(state),
        registered_at_local: history::local_time(state, app.registered_at),
        chain_position: state.histories().submitted_seq(app.number).unwrap_or(0),
        child_name: None,
        offer: history::latest_offer(state, app),
        history: None,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingView {
    #[schema(value_type = u32)]
    pub number: BookingNumber,
    #[schema(value_type = schema::Code)]
    pub slot: SlotId,
    #[schema(value_type = schema::Code)]
    pub specialty: Specialty,
    /// The slot's doctor.
    #[schema(value_type = schema::Code)]
    pub doctor: DoctorId,
    /// When the appointment starts.
    pub start: DateTime<Utc>,
    pub duration_minutes: u16,
    pub status: ochered_core::state::BookingStatus,
    pub booked_at: DateTime<Utc>,
}

/// A patient named by their document, whose places on the waiting lists are asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingPlacesRequest {
    pub document: String,
}

/// A submitted application, the events that recorded it and the server's signed receipt.
#[derive(Serialize, ToSchema)]
pub struct SubmittedResponse {
    pub application: Option<ApplicationView>,
    pub events: Vec<CommittedEvent>,
    /// The server's signed receipt (`ochered-receipt-v2`, docs/TRANSPARENCY.md): keep it;
    /// `ochered verify-receipt` checks it offline. Absent only when the event's hash could not
    /// be read (the store was away).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<ochered_transparency::Receipt>,
}

/// A booking's events and the server's signed receipt of it.
#[derive(Serialize, ToSchema)]
pub struct BookedResponse {
    pub events: Vec<CommittedEvent>,
    /// The server's signed receipt of the booking (`ochered-receipt-v2`, service `clinic`,
    /// `number` the booking's number; docs/TRANSPARENCY.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<ochered_transparency::Receipt>,
}

/// The answer to a submission: the application the events created, as it stands now, and
/// its receipt.
pub fn submitted(
    w: &Writer,
    events: Vec<CommittedEvent>,
    receipt: Option<ochered_transparency::Receipt>,
) -> SubmittedResponse {
    let number = events.iter().find_map(|e| match &e.event {
        Event::KindergartenApplicationSubmitted { number, .. }
        | Event::SchoolApplicationSubmitted { number, .. } => Some(*number),
        _ => None,
    });
    let application =
        number.and_then(|n| w.read(|s| s.application(n).map(|a| application_view(s, a))));
    SubmittedResponse {
        application,
        events,
        receipt,
    }
}
