//! Schemas the handlers' own types cannot give: the problem+json body, an identifier, a
//! binary file, and the serde forms of the core's and the writer's types that travel in
//! requests and answers. The core knows nothing about HTTP or OpenAPI (and Rust's orphan rule
//! keeps `ToSchema` from being implemented here for its types), so each of those is described
//! by a schema-only type below that matches the type's serde form; the integration tests
//! check them against real requests and answers.

// The schema-only types are never built: they exist for their `ToSchema` derive.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

// Shared pieces

/// A problem (RFC 9457): what went wrong, in a stable machine-readable `code`, and which
/// `field` when one is at fault. Refusals by the rules add their facts (for example
/// `existing` with the number of the application a duplicate child already has); a 422 of a
/// file upload adds `errors`, one per bad row.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    example = json!({
        "type": "https://ochered.dev/problems/invalid_field",
        "title": "Invalid field",
        "status": 422,
        "detail": "must be 1-64 characters of ASCII letters, digits, '-', '_' or '.'",
        "code": "invalid_field",
        "field": "preferences[1]"
    })
)]
pub struct Problem {
    /// `https://ochered.dev/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    /// The offending field: a JSON path (`preferences[1]`), a header (`Idempotency-Key`), a
    /// path parameter (`authority`) or a file's row and column (`row 3, kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Facts of the refusal, e.g. `existing`, `errors`.
    #[serde(flatten)]
    pub facts: BTreeMap<String, serde_json::Value>,
}

/// An identifier chosen by the authority (institution, campaign, slot, specialty, doctor,
/// round): 1-64 ASCII letters, digits, `-`, `_` or `.`.
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9._-]{1,64}$", example = "K001")]
pub struct Code(String);

/// A binary file.
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryFile(Vec<u8>);

// ---------------------------------------------------------------------------------------------
// Mirror schemas of core types (the core stays free of OpenAPI). Each matches the type's
// serde form; the integration tests check them against real requests and answers.

/// A privilege a parent claims; an officer confirms or revokes it.
#[derive(Serialize, ToSchema)]
#[schema(as = Privilege)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrivilegeSchema {
    /// Внеочередное право: ahead of everyone, at every institution.
    Extraordinary,
    /// Первоочередное право: after extraordinary, at every institution.
    FirstPriority,
    /// A sibling attends this institution; applies there only.
    Sibling {
        #[schema(value_type = Code)]
        institution: String,
    },
    /// The child lives in the school's catchment area; applies to that school only.
    Catchment {
        #[schema(value_type = Code)]
        institution: String,
    },
}

#[derive(Serialize, ToSchema)]
#[schema(as = PrivilegeClaim)]
pub struct PrivilegeClaimSchema {
    privilege: PrivilegeSchema,
    status: PrivilegeStatusSchema,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PrivilegeStatus)]
#[serde(rename_all = "snake_case")]
pub enum PrivilegeStatusSchema {
    Claimed,
    Confirmed,
    Revoked,
}

#[derive(Serialize, ToSchema)]
#[schema(as = InstitutionKind)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionKindSchema {
    Kindergarten,
    School,
    Clinic,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ServiceKind)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKindSchema {
    Kindergarten,
    School,
}

/// Through which channel an application arrived.
#[derive(Serialize, ToSchema)]
#[schema(as = Channel)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSchema {
    Portal,
    ServiceCentre,
    Api,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BookingStatus)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatusSchema {
    Active,
    Cancelled,
    NoShow,
}

/// An authority's configuration: its time zone and the variants of the default rules.
#[derive(Serialize, ToSchema)]
#[schema(as = AuthorityConfig)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfigSchema {
    #[schema(value_type = Code, example = "novosibirsk")]
    id: String,
    #[schema(example = "Новосибирск")]
    name: String,
    /// An IANA time zone.
    #[schema(example = "Asia/Novosibirsk")]
    time_zone: String,
    #[serde(default)]
    #[schema(default = 3)]
    max_kindergarten_preferences: u8,
    #[serde(default)]
    #[schema(default = 15)]
    offer_deadline_days: u16,
    /// Oldest age (full years on 1 September of the intake year) a kindergarten accepts.
    #[serde(default)]
    #[schema(default = 7)]
    kindergarten_max_age_years: u8,
    /// Minimum age on 1 September of the campaign year for school, in months.
    #[serde(default)]
    #[schema(default = 78)]
    school_min_age_months: u16,
    /// Maximum age on 1 September of the campaign year for school, in months.
    #[serde(default)]
    #[schema(default = 96)]
    school_max_age_months: u16,
    #[serde(default)]
    #[schema(default = 120)]
    clinic_hold_minutes: u32,
    #[serde(default)]
    #[schema(default = 2)]
    no_show_block_count: u8,
    #[serde(default)]
    #[schema(default = 365)]
    no_show_window_days: u16,
}

/// How applications of equal tier are ordered.
#[derive(Serialize, ToSchema)]
#[schema(as = TieBreak)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TieBreakSchema {
    RegistrationTime,
    BirthDate,
    Lottery { seed: u64 },
}

/// How a first-grade campaign fills its seats.
#[derive(Serialize, ToSchema)]
#[schema(as = CampaignMode)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CampaignModeSchema {
    SingleSchool,
    Ranked { max_choices: u8 },
}

#[derive(Serialize, ToSchema)]
#[schema(as = CampaignSchool)]
#[serde(deny_unknown_fields)]
pub struct CampaignSchoolSchema {
    #[schema(value_type = Code)]
    institution: String,
    seats: u32,
}

/// A first-grade enrollment campaign; stage dates are local days of the authority.
#[derive(Serialize, ToSchema)]
#[schema(as = CampaignConfig)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfigSchema {
    #[schema(value_type = Code, example = "school-2027")]
    id: String,
    year: i32,
    stage1_opens: NaiveDate,
    stage2_opens: NaiveDate,
    closes: NaiveDate,
    tie_break: TieBreakSchema,
    mode: CampaignModeSchema,
    schools: Vec<CampaignSchoolSchema>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SlotSpec)]
#[serde(deny_unknown_fields)]
pub struct SlotSpecSchema {
    #[schema(value_type = Code)]
    id: String,
    start: DateTime<Utc>,
    duration_minutes: u16,
}

/// Seats of one age group of a kindergarten for one intake year.
#[derive(Serialize, ToSchema)]
#[schema(as = AgeGroupSeats)]
#[serde(deny_unknown_fields)]
pub struct AgeGroupSeatsSchema {
    /// Age in full years on 1 September of the intake year.
    age_group: u8,
    seats: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CampaignStage)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStageSchema {
    One,
    Two,
}

/// What a queue is: the service, the institution and the age group and intake year
/// (kindergarten) or the campaign (school).
#[derive(Serialize, ToSchema)]
#[schema(as = QueueDescription)]
pub struct QueueDescriptionSchema {
    service: ServiceKindSchema,
    #[schema(value_type = Code)]
    institution: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    age_group: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    intake_year: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Code>)]
    campaign: Option<String>,
}

/// An institution as registered.
#[derive(Serialize, ToSchema)]
#[schema(as = Institution)]
pub struct InstitutionSchema {
    #[schema(value_type = Code)]
    id: String,
    kind: InstitutionKindSchema,
    name: String,
    version: u32,
}

/// An event as committed: its place in the authority's chain and the event (tagged by
/// `type`).
#[derive(Serialize, ToSchema)]
#[schema(as = CommittedEvent)]
pub struct CommittedEventSchema {
    authority_seq: i64,
    recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    event: serde_json::Value,
}
