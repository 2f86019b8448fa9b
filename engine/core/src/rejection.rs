//! Rejections: a rule said no, with the facts that made it say no.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ApplicationNumber, BookingNumber};

/// How the shell should classify a rejection (the API maps these to status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// The input is invalid (422).
    Invalid,
    /// The thing referred to does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// Not allowed now, try later or never (403/409).
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "rejection", rename_all = "snake_case")]
pub enum Rejection {
    #[error("the authority is not configured yet")]
    AuthorityNotConfigured,
    #[error("the authority is already configured")]
    AuthorityAlreadyConfigured,
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("{field}: unknown institution {id}")]
    UnknownInstitution { field: String, id: String },
    #[error("{field}: institution {id} is not a {expected}")]
    WrongInstitutionKind {
        field: String,
        id: String,
        expected: String,
    },
    #[error("institution {id} already exists")]
    InstitutionExists { id: String },
    #[error("this child already has active application {existing}")]
    DuplicateApplication { existing: ApplicationNumber },
    #[error("application {number} does not exist")]
    UnknownApplication { number: ApplicationNumber },
    #[error("application {number} is {status}, not active")]
    ApplicationNotActive {
        number: ApplicationNumber,
        status: String,
    },
    #[error("application {number} is not a {expected} application")]
    WrongService {
        number: ApplicationNumber,
        expected: String,
    },
    /// `max_months` is the configured maximum, not included: a child must be younger.
    #[error("the child is {age_months} months old on {on}; the age must be at least {min_months} months and under {max_months} months")]
    AgeOutOfRange {
        age_months: i32,
        on: chrono::NaiveDate,
        min_months: i32,
        max_months: i32,
    },
    #[error("privilege already claimed on application {number}")]
    PrivilegeAlreadyClaimed { number: ApplicationNumber },
    #[error("privilege was not claimed on application {number}")]
    PrivilegeNotClaimed { number: ApplicationNumber },
    #[error("campaign {id} does not exist")]
    UnknownCampaign { id: String },
    #[error("campaign {id} already exists")]
    CampaignExists { id: String },
    #[error("campaign {id} opens at {opens_at}")]
    CampaignNotOpen { id: String, opens_at: DateTime<Utc> },
    #[error("campaign {id} closed at {closed_at}")]
    CampaignClosed {
        id: String,
        closed_at: DateTime<Utc>,
    },
    #[error("stage 1 of campaign {id} is for privileged, sibling and catchment applicants; stage 2 opens at {stage2_opens_at}")]
    StageOneOnlyForPriority {
        id: String,
        stage2_opens_at: DateTime<Utc>,
    },
    #[error("no draft for this child in campaign {id}")]
    NoDraft { id: String },
    #[error("specialty {id} does not exist")]
    UnknownSpecialty { id: String },
    #[error("slot {id} does not exist")]
    UnknownSlot { id: String },
    #[error("slot {id} already exists")]
    SlotExists { id: String },
    #[error("slot {id} overlaps slot {other} of the same doctor")]
    SlotOverlaps { id: String, other: String },
    #[error("slot {id} is taken by booking {booking}")]
    SlotTaken { id: String, booking: BookingNumber },
    #[error("slot {id} is held for the waiting list until {until}")]
    SlotHeld { id: String, until: DateTime<Utc> },
    #[error("slot {id} has already started")]
    SlotInThePast { id: String },
    #[error("the patient already has active booking {existing} in this specialty")]
    PatientHasActiveBooking { existing: BookingNumber },
    #[error("specialty {id} needs a referral")]
    ReferralRequired { id: String },
    #[error("self-booking blocked after {no_shows} no-shows until {until}")]
    SelfBookingBlocked { no_shows: u32, until: DateTime<Utc> },
    #[error("booking {number} does not exist")]
    UnknownBooking { number: BookingNumber },
    #[error("booking {number} is not active")]
    BookingNotActive { number: BookingNumber },
    #[error("the patient is already on the waiting list of {id}")]
    AlreadyOnWaitingList { id: String },
    #[error("the patient is not on the waiting list of {id}")]
    NotOnWaitingList { id: String },
    #[error("round {id} already exists")]
    RoundExists { id: String },
    #[error("no free seats are published for intake year {intake_year}")]
    NoFreeSeats { intake_year: i32 },
    #[error("the main round runs only from {from} to {until} (local days); an officer may run it now by stating a calendar_override reason")]
    RoundOutOfSeason { from: String, until: String },
    #[error("a top-up round may run only from {next_allowed}, a full interval after round {previous}; an officer may run it now by stating a calendar_override reason")]
    TopUpTooSoon {
        previous: String,
        next_allowed: DateTime<Utc>,
    },
    #[error("every seat of campaign {id} is taken")]
    CampaignFull { id: String },
    #[error("every seat at {} in campaign {campaign} is taken", .schools.join(", "))]
    SchoolsFull {
        campaign: String,
        schools: Vec<String>,
    },
    #[error("{institution}, age group {age_group}: {seats} seats is below the {taken} already offered or taken")]
    SeatsBelowTaken {
        institution: String,
        age_group: u8,
        seats: u32,
        taken: u32,
    },
    #[error("application {number} has no outstanding offer")]
    NoOutstandingOffer { number: ApplicationNumber },
    #[error("the offer to application {number} expired at {deadline}")]
    OfferExpired {
        number: ApplicationNumber,
        deadline: DateTime<Utc>,
    },
    #[error(
        "the child already attends {institution}; a transfer application lists other kindergartens"
    )]
    AlreadyAttends { institution: String },
    #[error("no application or booking of this person exists")]
    UnknownPerson,
    #[error("too many items: {count} given, at most {max}")]
    TooMany {
        field: String,
        count: usize,
        max: usize,
    },
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn kind(&self) -> RejectionKind {
        use Rejection::*;
        match self {
            InvalidField { .. }
            | UnknownInstitution { .. }
            | WrongInstitutionKind { .. }
            | AgeOutOfRange { .. }
            | ReferralRequired { .. }
            | AlreadyAttends { .. }
            | TooMany { .. } => RejectionKind::Invalid,
            UnknownApplication { .. }
            | UnknownCampaign { .. }
            | UnknownSpecialty { .. }
            | UnknownSlot { .. }
            | UnknownBooking { .. }
            | UnknownPerson
            | NoDraft { .. } => RejectionKind::NotFound,
            AuthorityNotConfigured
            | CampaignNotOpen { .. }
            | CampaignClosed { .. }
            | StageOneOnlyForPriority { .. }
            | SelfBookingBlocked { .. }
            | SlotInThePast { .. }
            | OfferExpired { .. }
            | SlotHeld { .. } => RejectionKind::Forbidden,
            AuthorityAlreadyConfigured
            | InstitutionExists { .. }
            | DuplicateApplication { .. }
            | ApplicationNotActive { .. }
            | WrongService { .. }
            | PrivilegeAlreadyClaimed { .. }
            | PrivilegeNotClaimed { .. }
            | CampaignExists { .. }
            | SlotExists { .. }
            | SlotOverlaps { .. }
            | SlotTaken { .. }
            | PatientHasActiveBooking { .. }
            | BookingNotActive { .. }
            | RoundExists { .. }
            | NoFreeSeats { .. }
            | RoundOutOfSeason { .. }
            | TopUpTooSoon { .. }
            | CampaignFull { .. }
            | SchoolsFull { .. }
            | SeatsBelowTaken { .. }
            | NoOutstandingOffer { .. }
            | AlreadyOnWaitingList { .. }
            | NotOnWaitingList { .. } => RejectionKind::Conflict,
        }
    }

    /// The request field a rejection is about, for problem+json.
    pub fn field(&self) -> Option<&str> {
        use Rejection::*;
        match self {
            InvalidField { field, .. }
            | UnknownInstitution { field, .. }
            | WrongInstitutionKind { field, .. }
            | TooMany { field, .. } => Some(field),
            AgeOutOfRange { .. } => Some("birth_date"),
            DuplicateApplication { .. } => Some("child"),
            ReferralRequired { .. } => Some("referral"),
            UnknownCampaign { .. } | CampaignFull { .. } => Some("campaign"),
            SchoolsFull { .. } => Some("schools"),
            UnknownSlot { .. } | SlotTaken { .. } | SlotHeld { .. } | SlotInThePast { .. } => {
                Some("slot")
            }
            UnknownSpecialty { .. } | NotOnWaitingList { .. } => Some("specialty"),
            UnknownApplication { .. } => Some("application"),
            UnknownBooking { .. } => Some("booking"),
            UnknownPerson => Some("document"),
            RoundExists { .. } => Some("round"),
            NoFreeSeats { .. } => Some("intake_year"),
            RoundOutOfSeason { .. } | TopUpTooSoon { .. } => Some("calendar_override"),
            SeatsBelowTaken { .. } => Some("seats"),
            SlotOverlaps { .. } => Some("slots"),
            NoOutstandingOffer { .. } | OfferExpired { .. } => Some("application"),
            AlreadyAttends { .. } => Some("preferences"),
            PrivilegeAlreadyClaimed { .. } | PrivilegeNotClaimed { .. } => Some("privilege"),
            _ => None,
        }
    }

    /// A stable machine-readable code (the serde tag).
    pub fn code(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| {
                v.get("rejection")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "rejected".to_owned())
    }
}
