//! Events: facts that happened, named in the past tense. The state is a fold of them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::command::{
    AgeExceptionCategory, AgeGroupSeats, CampaignConfig, CampaignStage, SchoolForm, Sealed,
    SlotSpec,
};
use crate::domain::{
    ApplicationNumber, AuthorityConfig, BookingNumber, CampaignId, Channel, DoctorId,
    InstitutionId, InstitutionKind, PersonKey, RoundId, SlotId, Specialty,
};
use crate::ordering::Privilege;
use crate::rounds::{RoundApplicant, RoundPlacement, RoundSeats};

/// The current schema version of every event type. Older payloads are upcast on read
/// (see [`crate::upcast`]).
pub const SCHEMA_VERSION: i32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "PascalCase", deny_unknown_fields)]
pub enum Event {
    AuthorityConfigured {
        config: AuthorityConfig,
    },
    InstitutionRegistered {
        id: InstitutionId,
        kind: InstitutionKind,
        name: String,
        /// Added without a schema version change: an optional field, absent from events
        /// registered without it (so their stored bytes and hashes are unchanged) and
        /// decoded as `None` from older events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        district: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    KindergartenApplicationSubmitted {
        number: ApplicationNumber,
        child: PersonKey,
        birth_date: NaiveDate,
        preferences: Vec<InstitutionId>,
        desired_start: NaiveDate,
        /// Added in schema version 2; version 1 payloads are upcast with `false`.
        any_other: bool,
        privileges: Vec<Privilege>,
        registered_at: DateTime<Utc>,
        channel: Channel,
        submitted_by: String,
        /// The applicant's sealed personal data; absent when none was given (and in every
        /// event written before it existed, which therefore hash and decode unchanged).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<Sealed>,
    },
    KindergartenPreferencesAmended {
        number: ApplicationNumber,
        preferences: Vec<InstitutionId>,
        desired_start: NaiveDate,
        any_other: bool,
        at: DateTime<Utc>,
    },
    ApplicationWithdrawn {
        number: ApplicationNumber,
        reason: String,
        at: DateTime<Utc>,
    },
    PrivilegeClaimed {
        number: ApplicationNumber,
        privilege: Privilege,
        at: DateTime<Utc>,
    },
    PrivilegeConfirmed {
        number: ApplicationNumber,
        privilege: Privilege,
        at: DateTime<Utc>,
    },
    PrivilegeRevoked {
        number: ApplicationNumber,
        privilege: Privilege,
        reason: String,
        at: DateTime<Utc>,
    },
    /// An officer set the seats of some age groups of a kindergarten for an intake year.
    KindergartenSeatsPublished {
        institution: InstitutionId,
        intake_year: i32,
        seats: Vec<AgeGroupSeats>,
    },
    /// A kindergarten allocation round ran. It records its whole input (the free seats, the
    /// eligible applicants with their lists, classes and tie-break ranks) and its placements,
    /// so the round's allocation instance is a pure function of this one event. Each
    /// placement is an offer that expires at `offer_deadline`.
    KindergartenRoundCompleted {
        round: RoundId,
        intake_year: i32,
        intake_date: NaiveDate,
        offer_deadline: DateTime<Utc>,
        at: DateTime<Utc>,
        seats: Vec<RoundSeats>,
        applicants: Vec<RoundApplicant>,
        placements: Vec<RoundPlacement>,
        /// The officer's stated reason when the round ran outside the round calendar.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        calendar_override: Option<String>,
    },
    /// The parent accepted the offer: the child is enrolled and the seat is taken.
    OfferAccepted {
        number: ApplicationNumber,
        at: DateTime<Utc>,
    },
    /// The parent declined the offer: the seat returns, the application queues again from
    /// `desired_start` (the next 1 September) with its registration time kept.
    OfferDeclined {
        number: ApplicationNumber,
        desired_start: NaiveDate,
        at: DateTime<Utc>,
    },
    /// The offer's deadline passed unanswered; same consequences as a decline.
    OfferExpired {
        number: ApplicationNumber,
        desired_start: NaiveDate,
        at: DateTime<Utc>,
    },
    /// The child enrolled through application `to` and left the place held through
    /// application `number`; that seat returns.
    TransferCompleted {
        number: ApplicationNumber,
        to: ApplicationNumber,
        at: DateTime<Utc>,
    },
    CampaignConfigured {
        config: CampaignConfig,
    },
    /// Enrollment decisions of a campaign stage, with the stage's whole allocation input
    /// (see `KindergartenRoundCompleted`). Every placement is an enrollment.
    SchoolEnrollmentCompleted {
        round: RoundId,
        campaign: CampaignId,
        stage: CampaignStage,
        at: DateTime<Utc>,
        seats: Vec<RoundSeats>,
        applicants: Vec<RoundApplicant>,
        placements: Vec<RoundPlacement>,
    },
    SchoolDraftSaved {
        form: SchoolForm,
        at: DateTime<Utc>,
    },
    SchoolApplicationSubmitted {
        number: ApplicationNumber,
        campaign: CampaignId,
        child: PersonKey,
        birth_date: NaiveDate,
        schools: Vec<InstitutionId>,
        privileges: Vec<Privilege>,
        registered_at: DateTime<Utc>,
        from_draft: bool,
        channel: Channel,
        submitted_by: String,
        /// As in `KindergartenApplicationSubmitted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<Sealed>,
    },
    AgeExceptionGranted {
        campaign: CampaignId,
        child: PersonKey,
        at: DateTime<Utc>,
    },
    SpecialtyConfigured {
        specialty: Specialty,
        referral_only: bool,
    },
    SlotsPublished {
        doctor: DoctorId,
        specialty: Specialty,
        slots: Vec<SlotSpec>,
    },
    SlotBooked {
        booking: BookingNumber,
        slot: SlotId,
        patient: PersonKey,
        referral: Option<String>,
        booked_by: String,
        at: DateTime<Utc>,
    },
    BookingCancelled {
        booking: BookingNumber,
        at: DateTime<Utc>,
    },
    WaitingListJoined {
        specialty: Specialty,
        patient: PersonKey,
        tier: u8,
        at: DateTime<Utc>,
        /// The account that put the patient on the list. Absent in events written before it
        /// was recorded (which therefore keep their bytes and hashes); only staff may take
        /// such an entry off the list (docs/RULES.md#clinic-waiting-list).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        joined_by: Option<String>,
    },
    NoShowRecorded {
        booking: BookingNumber,
        at: DateTime<Utc>,
    },
    /// A freed slot is held for `patient` from the waiting list until `until`; nobody else
    /// may book it meanwhile. `passed_over` are the earlier holders whose holds lapsed.
    SlotHeld {
        slot: SlotId,
        specialty: Specialty,
        patient: PersonKey,
        until: DateTime<Utc>,
        passed_over: Vec<PersonKey>,
        at: DateTime<Utc>,
    },
    /// The waiting list had nobody left for a held slot: it is open to everyone.
    SlotHoldLapsed {
        slot: SlotId,
        specialty: Specialty,
        passed_over: Vec<PersonKey>,
        at: DateTime<Utc>,
    },
    /// The person's data key was destroyed on a lawful erasure request (crypto-shredding):
    /// the sealed personal data of `applications` (the person's applications not erased
    /// before) is unreadable from now on. Nothing else changes: no queue moves.
    PersonalDataErased {
        person: PersonKey,
        applications: Vec<ApplicationNumber>,
        at: DateTime<Utc>,
    },
    /// The patient left the specialty's waiting list (added after the other clinic events:
    /// a new type, so every event written before it is stored and hashed unchanged).
    WaitingListLeft {
        specialty: Specialty,
        patient: PersonKey,
        at: DateTime<Utc>,
    },
    /// A parent asked for a first-grade age exception for the child in a campaign. Granting
    /// it is recorded as `AgeExceptionGranted`, refusing it as `AgeExceptionRefused`.
    AgeExceptionRequested {
        campaign: CampaignId,
        child: PersonKey,
        birth_date: NaiveDate,
        category: AgeExceptionCategory,
        requested_by: String,
        at: DateTime<Utc>,
    },
    /// An officer refused the child's pending age-exception request.
    AgeExceptionRefused {
        campaign: CampaignId,
        child: PersonKey,
        reason: String,
        at: DateTime<Utc>,
    },
}

/// The stream (aggregate) an event belongs to; versions count per stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    Authority,
    Institution(InstitutionId),
    Application(ApplicationNumber),
    Campaign(CampaignId),
    Specialty(Specialty),
    Booking(BookingNumber),
    Round(RoundId),
    /// Erasures of one person's personal data.
    Person(PersonKey),
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamId::Authority => f.write_str("authority"),
            StreamId::Institution(id) => write!(f, "institution-{id}"),
            StreamId::Application(n) => write!(f, "application-{n}"),
            StreamId::Campaign(id) => write!(f, "campaign-{id}"),
            StreamId::Specialty(id) => write!(f, "specialty-{id}"),
            StreamId::Booking(n) => write!(f, "booking-{n}"),
            StreamId::Round(id) => write!(f, "round-{id}"),
            StreamId::Person(key) => write!(f, "person-{}", key.to_hex()),
        }
    }
}

impl Event {
    /// The event's type name as stored in the log.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AuthorityConfigured { .. } => "AuthorityConfigured",
            Event::InstitutionRegistered { .. } => "InstitutionRegistered",
            Event::KindergartenApplicationSubmitted { .. } => "KindergartenApplicationSubmitted",
            Event::KindergartenPreferencesAmended { .. } => "KindergartenPreferencesAmended",
            Event::ApplicationWithdrawn { .. } => "ApplicationWithdrawn",
            Event::PrivilegeClaimed { .. } => "PrivilegeClaimed",
            Event::PrivilegeConfirmed { .. } => "PrivilegeConfirmed",
            Event::PrivilegeRevoked { .. } => "PrivilegeRevoked",
            Event::CampaignConfigured { .. } => "CampaignConfigured",
            Event::SchoolDraftSaved { .. } => "SchoolDraftSaved",
            Event::SchoolApplicationSubmitted { .. } => "SchoolApplicationSubmitted",
            Event::AgeExceptionGranted { .. } => "AgeExceptionGranted",
            Event::SpecialtyConfigured { .. } => "SpecialtyConfigured",
            Event::SlotsPublished { .. } => "SlotsPublished",
            Event::SlotBooked { .. } => "SlotBooked",
            Event::BookingCancelled { .. } => "BookingCancelled",
            Event::WaitingListJoined { .. } => "WaitingListJoined",
            Event::NoShowRecorded { .. } => "NoShowRecorded",
            Event::KindergartenSeatsPublished { .. } => "KindergartenSeatsPublished",
            Event::KindergartenRoundCompleted { .. } => "KindergartenRoundCompleted",
            Event::OfferAccepted { .. } => "OfferAccepted",
            Event::OfferDeclined { .. } => "OfferDeclined",
            Event::OfferExpired { .. } => "OfferExpired",
            Event::TransferCompleted { .. } => "TransferCompleted",
            Event::SchoolEnrollmentCompleted { .. } => "SchoolEnrollmentCompleted",
            Event::SlotHeld { .. } => "SlotHeld",
            Event::SlotHoldLapsed { .. } => "SlotHoldLapsed",
            Event::PersonalDataErased { .. } => "PersonalDataErased",
            Event::WaitingListLeft { .. } => "WaitingListLeft",
            Event::AgeExceptionRequested { .. } => "AgeExceptionRequested",
            Event::AgeExceptionRefused { .. } => "AgeExceptionRefused",
        }
    }

    /// The stream this event belongs to.
    pub fn stream(&self) -> StreamId {
        match self {
            Event::AuthorityConfigured { .. } => StreamId::Authority,
            Event::InstitutionRegistered { id, .. } => StreamId::Institution(id.clone()),
            Event::KindergartenApplicationSubmitted { number, .. }
            | Event::KindergartenPreferencesAmended { number, .. }
            | Event::ApplicationWithdrawn { number, .. }
            | Event::PrivilegeClaimed { number, .. }
            | Event::PrivilegeConfirmed { number, .. }
            | Event::PrivilegeRevoked { number, .. }
            | Event::SchoolApplicationSubmitted { number, .. }
            | Event::OfferAccepted { number, .. }
            | Event::OfferDeclined { number, .. }
            | Event::OfferExpired { number, .. }
            | Event::TransferCompleted { number, .. } => StreamId::Application(*number),
            Event::KindergartenSeatsPublished { institution, .. } => {
                StreamId::Institution(institution.clone())
            }
            Event::KindergartenRoundCompleted { round, .. }
            | Event::SchoolEnrollmentCompleted { round, .. } => StreamId::Round(round.clone()),
            Event::CampaignConfigured { config } => StreamId::Campaign(config.id.clone()),
            Event::SchoolDraftSaved { form, .. } => StreamId::Campaign(form.campaign.clone()),
            Event::AgeExceptionGranted { campaign, .. }
            | Event::AgeExceptionRequested { campaign, .. }
            | Event::AgeExceptionRefused { campaign, .. } => StreamId::Campaign(campaign.clone()),
            Event::SpecialtyConfigured { specialty, .. }
            | Event::SlotsPublished { specialty, .. }
            | Event::WaitingListJoined { specialty, .. }
            | Event::WaitingListLeft { specialty, .. }
            | Event::SlotHeld { specialty, .. }
            | Event::SlotHoldLapsed { specialty, .. } => StreamId::Specialty(specialty.clone()),
            Event::SlotBooked { booking, .. }
            | Event::BookingCancelled { booking, .. }
            | Event::NoShowRecorded { booking, .. } => StreamId::Booking(*booking),
            Event::PersonalDataErased { person, .. } => StreamId::Person(*person),
        }
    }

    /// The payload as stored: the event's JSON, `type` tag first, in field order. One
    /// serialisation, no intermediate tree: this is on the hot path of every command.
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("events always serialise")
    }

    /// Rebuilds an event from its stored type and a payload tree brought to the current
    /// schema (payloads before version 3 carried no `type` tag; it is added here).
    pub fn from_payload(event_type: &str, payload: serde_json::Value) -> Result<Self, String> {
        let mut payload = payload;
        let map = payload
            .as_object_mut()
            .ok_or_else(|| format!("{event_type}: payload is not an object"))?;
        map.insert(
            "type".into(),
            serde_json::Value::String(event_type.to_owned()),
        );
        serde_json::from_value(payload).map_err(|e| format!("{event_type}: {e}"))
    }
}
