//! Commands: what users ask the engine to do. A command is decided into events or a rejection.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplicationNumber, AuthorityConfig, BookingNumber, CampaignId, Channel, DoctorId,
    InstitutionId, InstitutionKind, PersonKey, RoundId, SlotId, Specialty,
};
use crate::ordering::{Privilege, TieBreak};

/// Personal data (names, contacts, the document as typed) sealed outside the core with the
/// applicant's data key: an opaque nonce and ciphertext, lower-case hex. The core only
/// carries it into the event, where the chain hash covers it; destroying the key
/// (crypto-shredding) makes it unreadable without touching the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub nonce: String,
    pub ciphertext: String,
}

/// Hex characters of a sealed nonce (24 bytes, XChaCha20-Poly1305).
pub const SEALED_NONCE_HEX: usize = 48;
/// Most hex characters of a sealed ciphertext (4 KiB of plaintext and its tag).
pub const SEALED_CIPHERTEXT_HEX_MAX: usize = 2 * (4096 + 16);

/// A kindergarten application as the parent fills it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindergartenForm {
    pub child: PersonKey,
    pub birth_date: NaiveDate,
    /// Ranked kindergartens, best first (1..=max_kindergarten_preferences).
    pub preferences: Vec<InstitutionId>,
    pub desired_start: NaiveDate,
    /// Offer any other kindergarten if none of the listed ones has a place.
    #[serde(default)]
    pub any_other: bool,
    /// Privileges claimed with the application; an officer confirms them later.
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    #[serde(default)]
    pub channel: Channel,
    /// The account that submitted it (opaque subject id, no personal data).
    pub submitted_by: String,
    /// The applicant's personal data, sealed (absent when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

/// A first-grade application (or draft) as the parent fills it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolForm {
    pub campaign: CampaignId,
    pub child: PersonKey,
    pub birth_date: NaiveDate,
    /// One school, or a ranked list when the campaign allows it.
    pub schools: Vec<InstitutionId>,
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    #[serde(default)]
    pub channel: Channel,
    pub submitted_by: String,
    /// The applicant's personal data, sealed (absent when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

/// How a first-grade campaign fills its seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CampaignMode {
    /// One school per application; seats filled in queue order (today's Russian practice).
    SingleSchool,
    /// A ranked list of up to `max_choices` schools, allocated by deferred acceptance.
    Ranked { max_choices: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CampaignSchool {
    pub institution: InstitutionId,
    pub seats: u32,
}

/// A first-grade enrollment campaign. Stage dates are local calendar days in the authority's
/// time zone; each stage opens at local midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    pub id: CampaignId,
    /// The school year's start: children's ages are taken on 1 September of this year.
    pub year: i32,
    /// Stage 1 (privileged, siblings, catchment residents) opens at local midnight of this day.
    pub stage1_opens: NaiveDate,
    /// Stage 2 (everyone, while seats remain) opens at local midnight of this day.
    pub stage2_opens: NaiveDate,
    /// Applications are accepted until local midnight at the start of this day.
    pub closes: NaiveDate,
    pub tie_break: TieBreak,
    pub mode: CampaignMode,
    pub schools: Vec<CampaignSchool>,
}

/// A slot a doctor publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    pub id: SlotId,
    pub start: DateTime<Utc>,
    pub duration_minutes: u16,
}

/// Seats of one age group of a kindergarten for one intake year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgeGroupSeats {
    /// Age in full years on 1 September of the intake year.
    pub age_group: u8,
    /// Seats the authority fills through the queue in this group for the year, including
    /// those already offered or taken.
    pub seats: u32,
}

/// Why a child outside the first-grade age range may still start school: the law lets the
/// education authority admit a child earlier or later than the usual age, on the parents'
/// request (docs/RULES.md#school-age-requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgeExceptionCategory {
    /// Younger than the minimum age on 1 September (under six and a half).
    Earlier,
    /// At or over the maximum age on 1 September (eight or older).
    Later,
}

/// An officer's answer to a family's age-exception request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgeExceptionDecision {
    /// The exception is granted: the child may apply whatever the age.
    Grant,
    /// The exception is refused, with the reason the family is told (1-500 characters).
    Refuse { reason: String },
}

/// A stage of a first-grade campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CampaignStage {
    /// Stage 1: the applications registered before stage 2 opened.
    One,
    /// Stage 2: every active application, while seats remain.
    Two,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    // Authority and institutions.
    ConfigureAuthority {
        config: AuthorityConfig,
    },
    RegisterInstitution {
        id: InstitutionId,
        kind: InstitutionKind,
        name: String,
        /// The district the institution serves, which the demand report groups by
        /// (docs/RULES.md#authority-institutions). Optional: commands and events without it
        /// decode as before, and it is left out of their encoding when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        district: Option<String>,
        /// The street address, for people; optional like `district`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },

    // Kindergarten queue.
    SubmitKindergartenApplication {
        form: KindergartenForm,
    },
    AmendKindergartenPreferences {
        application: ApplicationNumber,
        preferences: Vec<InstitutionId>,
        desired_start: NaiveDate,
        any_other: bool,
    },
    /// Withdraws a kindergarten or first-grade application.
    WithdrawApplication {
        application: ApplicationNumber,
        reason: String,
    },
    ClaimPrivilege {
        application: ApplicationNumber,
        privilege: Privilege,
    },
    ConfirmPrivilege {
        application: ApplicationNumber,
        privilege: Privilege,
    },
    RevokePrivilege {
        application: ApplicationNumber,
        privilege: Privilege,
        reason: String,
    },
    /// Sets the seats of some age groups of a kindergarten for an intake year.
    PublishKindergartenSeats {
        institution: InstitutionId,
        intake_year: i32,
        seats: Vec<AgeGroupSeats>,
    },
    /// Runs an allocation round (комплектование) for an intake year: deferred acceptance over
    /// the free seats; every placement becomes an offer with a deadline.
    RunKindergartenRound {
        round: RoundId,
        intake_year: i32,
        /// The day the placed children start; applications whose desired start is later wait
        /// for a later round. Defaults to 1 September of the intake year.
        #[serde(default)]
        intake_date: Option<NaiveDate>,
        /// The officer's reason to run the round outside the authority's round calendar
        /// (docs/RULES.md#kindergarten-round-calendar); recorded in the round's event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        calendar_override: Option<String>,
    },
    /// The parent (or an officer) accepts the application's outstanding offer.
    AcceptOffer {
        application: ApplicationNumber,
    },
    /// The parent (or an officer) declines the application's outstanding offer.
    DeclineOffer {
        application: ApplicationNumber,
    },
    /// Expires every offer whose deadline has passed at the time of deciding. The shell sends
    /// it periodically; it is a no-op when nothing is due.
    ExpireOffers {},

    // First-grade enrollment.
    ConfigureCampaign {
        config: CampaignConfig,
    },
    SaveSchoolDraft {
        form: SchoolForm,
    },
    SubmitSchoolDraft {
        campaign: CampaignId,
        child: PersonKey,
    },
    SubmitSchoolApplication {
        form: SchoolForm,
    },
    GrantAgeException {
        campaign: CampaignId,
        child: PersonKey,
    },
    /// A parent asks the authority for a first-grade age exception for their child.
    RequestAgeException {
        campaign: CampaignId,
        child: PersonKey,
        birth_date: NaiveDate,
        category: AgeExceptionCategory,
        /// The account that asked (opaque subject id).
        requested_by: String,
    },
    /// An officer grants or refuses a pending age-exception request.
    DecideAgeException {
        campaign: CampaignId,
        child: PersonKey,
        decision: AgeExceptionDecision,
    },
    /// Issues the enrollment decisions of a campaign stage: single-school campaigns fill each
    /// school in queue order until full, ranked campaigns allocate by deferred acceptance.
    RunSchoolEnrollment {
        round: RoundId,
        campaign: CampaignId,
        stage: CampaignStage,
    },

    // Clinic appointments.
    ConfigureSpecialty {
        specialty: Specialty,
        referral_only: bool,
    },
    PublishSlots {
        doctor: DoctorId,
        specialty: Specialty,
        slots: Vec<SlotSpec>,
    },
    BookSlot {
        slot: SlotId,
        patient: PersonKey,
        #[serde(default)]
        referral: Option<String>,
        /// The account that booked (opaque subject id).
        booked_by: String,
        /// Booked by staff (a registrar) for the patient rather than by the patient: the
        /// block after repeated no-shows is on self-booking only
        /// (docs/RULES.md#clinic-no-shows).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_staff: bool,
    },
    CancelBooking {
        booking: BookingNumber,
    },
    JoinWaitingList {
        specialty: Specialty,
        patient: PersonKey,
        #[serde(default = "general_tier")]
        tier: u8,
        /// The account that puts the patient on the list (opaque subject id): a parent may
        /// later see and leave only the entries their own account made
        /// (docs/RULES.md#clinic-waiting-list).
        joined_by: String,
    },
    RecordNoShow {
        booking: BookingNumber,
    },
    /// Passes every lapsed waiting-list hold on a freed slot to the next patient on the list,
    /// or opens the slot to everyone when the list is exhausted. Sent periodically.
    ExpireSlotHolds {},
    /// Takes a patient off a specialty's waiting list; a freed slot held for them passes on
    /// at once (docs/RULES.md#clinic-waiting-list).
    LeaveWaitingList {
        specialty: Specialty,
        patient: PersonKey,
        /// The account asking (opaque subject id).
        left_by: String,
        /// Asked by staff (a registrar), who may take any patient off a list; anyone else
        /// only an entry their own account made.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_staff: bool,
    },

    // Privacy.
    /// Records that the person's data key was destroyed on a lawful erasure request: their
    /// sealed personal data is unreadable from now on. Queues do not change.
    RecordPersonalDataErasure {
        person: PersonKey,
    },
}

fn general_tier() -> u8 {
    crate::ordering::TIER_GENERAL
}

impl Command {
    /// A short name for logs and metrics (never personal data).
    pub fn name(&self) -> &'static str {
        match self {
            Command::ConfigureAuthority { .. } => "configure_authority",
            Command::RegisterInstitution { .. } => "register_institution",
            Command::SubmitKindergartenApplication { .. } => "submit_kindergarten_application",
            Command::AmendKindergartenPreferences { .. } => "amend_kindergarten_preferences",
            Command::WithdrawApplication { .. } => "withdraw_application",
            Command::ClaimPrivilege { .. } => "claim_privilege",
            Command::ConfirmPrivilege { .. } => "confirm_privilege",
            Command::RevokePrivilege { .. } => "revoke_privilege",
            Command::PublishKindergartenSeats { .. } => "publish_kindergarten_seats",
            Command::RunKindergartenRound { .. } => "run_kindergarten_round",
            Command::AcceptOffer { .. } => "accept_offer",
            Command::DeclineOffer { .. } => "decline_offer",
            Command::ExpireOffers { .. } => "expire_offers",
            Command::RunSchoolEnrollment { .. } => "run_school_enrollment",
            Command::ExpireSlotHolds { .. } => "expire_slot_holds",
            Command::ConfigureCampaign { .. } => "configure_campaign",
            Command::SaveSchoolDraft { .. } => "save_school_draft",
            Command::SubmitSchoolDraft { .. } => "submit_school_draft",
            Command::SubmitSchoolApplication { .. } => "submit_school_application",
            Command::GrantAgeException { .. } => "grant_age_exception",
            Command::RequestAgeException { .. } => "request_age_exception",
            Command::DecideAgeException { .. } => "decide_age_exception",
            Command::ConfigureSpecialty { .. } => "configure_specialty",
            Command::PublishSlots { .. } => "publish_slots",
            Command::BookSlot { .. } => "book_slot",
            Command::CancelBooking { .. } => "cancel_booking",
            Command::JoinWaitingList { .. } => "join_waiting_list",
            Command::RecordNoShow { .. } => "record_no_show",
            Command::LeaveWaitingList { .. } => "leave_waiting_list",
            Command::RecordPersonalDataErasure { .. } => "record_personal_data_erasure",
        }
    }
}
