//! The OpenAPI 3.1 document of the HTTP API and its interactive documentation.
//!
//! The document is generated from the code: each handler carries a `#[utoipa::path]`
//! annotation (method, path, request body, success responses, roles in its description) and
//! the wire types derive `ToSchema`. Core types, which know nothing about HTTP or OpenAPI,
//! are described by the small mirror schemas below, and [`Conventions`] adds what every
//! operation shares: the bearer scheme, the path parameters, the `Idempotency-Key` header of
//! every POST and the problem+json answers (RFC 9457) each kind of operation can give.
//!
//! `GET /api/openapi.json` serves the document and `GET /docs` the Swagger UI. The UI's files
//! are compiled into the binary from the `utoipa-swagger-ui-vendored` crate (the `vendored`
//! feature of `utoipa-swagger-ui`): nothing is downloaded at build or run time, and the UI
//! is configured not to call the public spec validator.

use std::collections::BTreeMap;

use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ochered",
        description = "The HTTP API of ochered, an event-sourced engine for the electronic queues of public services: kindergarten queues, first-grade enrollment and clinic appointments.\n\n\
**Authentication.** Every call that reads personal data or changes anything needs `Authorization: Bearer <JWT>` (HS256) whose claims carry a `role` (`parent`, `officer`, `registrar`, `auditor`, `admin`) and a `sub`. For development, `ochered token --role officer --sub NAME` mints one. An admin may do everything; each operation's description names the other roles allowed.\n\n\
**Writes.** Every POST takes an optional `Idempotency-Key` header: a retry with the same key gets the first answer with `Idempotent-Replayed: true`, the same key with a different body gets 422 and a key still in flight 409. Past its capacity (too many API requests in progress, or the writer's queue full) the server answers 503 `overloaded` with `Retry-After` at once, without reading the body; nothing was written, so a retry with the same key is safe.\n\n\
**Errors** are `application/problem+json` (RFC 9457) with a stable `code` and, where one field is at fault, its `field`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::routes::list_authorities,
        crate::routes::configure_authority,
        crate::routes::authority_info,
        crate::routes::list_institutions,
        crate::routes::register_institution,
        crate::routes::submit_kindergarten,
        crate::routes::my_applications,
        crate::routes::get_application,
        crate::routes::explain_application,
        application_events,
        crate::routes::amend_preferences,
        crate::routes::withdraw,
        crate::routes::claim_privilege,
        crate::routes::confirm_privilege,
        crate::routes::revoke_privilege,
        crate::routes::accept_offer,
        crate::routes::decline_offer,
        crate::routes::publish_seats,
        crate::routes::list_seats,
        crate::routes::run_kindergarten_round,
        crate::routes::expire_offers,
        crate::routes::list_campaigns,
        crate::routes::configure_campaign,
        crate::routes::save_draft,
        crate::routes::submit_draft,
        crate::routes::submit_school,
        crate::routes::grant_age_exception,
        crate::routes::run_school_enrollment,
        crate::routes::list_rounds,
        crate::routes::round_results,
        crate::routes::round_instance,
        crate::routes::configure_specialty,
        crate::routes::list_slots,
        crate::routes::publish_slots,
        crate::routes::expire_slot_holds,
        crate::routes::my_bookings,
        crate::routes::book,
        crate::routes::cancel_booking,
        crate::routes::record_no_show,
        crate::routes::join_waiting_list,
        crate::routes::list_queues,
        crate::routes::queue_entries,
        crate::routes::audit_head,
        crate::routes::erase_personal_data,
        crate::files::import_institutions,
        crate::files::import_seats,
        crate::files::export_queue,
        crate::files::export_queue_xlsx,
        crate::files::export_round,
        crate::files::export_round_xlsx,
        health,
        ready,
        metrics,
        openapi_json,
    ),
    components(schemas(Problem, Code)),
    modifiers(&Conventions),
    tags(
        (name = "authorities", description = "Authorities (municipalities) and their institutions"),
        (name = "applications", description = "Kindergarten and first-grade applications, their positions and why they moved"),
        (name = "kindergarten", description = "Kindergarten seats, allocation rounds (комплектование) and offers"),
        (name = "school", description = "First-grade enrollment campaigns, drafts and enrollment decisions"),
        (name = "rounds", description = "Results of allocation rounds and their exported instances"),
        (name = "clinic", description = "Doctors' slots, bookings and waiting lists"),
        (name = "public", description = "Anonymised queues and the audit chain head, readable by anyone"),
        (name = "files", description = "Officers' files: CSV imports, CSV and XLSX exports"),
        (name = "service", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json` and the Swagger UI under `/docs` (`/docs` redirects to `/docs/`).
pub fn router() -> Router<AppState> {
    let config = Config::new([OPENAPI_PATH])
        // The default would send the document to validator.swagger.io for a badge.
        .validator_url("none")
        .filter(true)
        .display_request_duration(true)
        .try_it_out_enabled(true);
    SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, document())
        .config(config)
        .into()
}

// ---------------------------------------------------------------------------------------------
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
#[allow(dead_code)]
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
#[allow(dead_code)]
pub struct PrivilegeClaimSchema {
    privilege: PrivilegeSchema,
    status: PrivilegeStatusSchema,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PrivilegeStatus)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PrivilegeStatusSchema {
    Claimed,
    Confirmed,
    Revoked,
}

#[derive(Serialize, ToSchema)]
#[schema(as = InstitutionKind)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum InstitutionKindSchema {
    Kindergarten,
    School,
    Clinic,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ServiceKind)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ServiceKindSchema {
    Kindergarten,
    School,
}

/// Through which channel an application arrived.
#[derive(Serialize, ToSchema)]
#[schema(as = Channel)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ChannelSchema {
    Portal,
    ServiceCentre,
    Api,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BookingStatus)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum BookingStatusSchema {
    Active,
    Cancelled,
    NoShow,
}

/// An authority's configuration: its time zone and the variants of the default rules.
#[derive(Serialize, ToSchema)]
#[schema(as = AuthorityConfig)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
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
    #[schema(default = 90)]
    no_show_window_days: u16,
}

/// How applications of equal tier are ordered.
#[derive(Serialize, ToSchema)]
#[schema(as = TieBreak)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TieBreakSchema {
    RegistrationTime,
    BirthDate,
    Lottery { seed: u64 },
}

/// How a first-grade campaign fills its seats.
#[derive(Serialize, ToSchema)]
#[schema(as = CampaignMode)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CampaignModeSchema {
    SingleSchool,
    Ranked { max_choices: u8 },
}

#[derive(Serialize, ToSchema)]
#[schema(as = CampaignSchool)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CampaignSchoolSchema {
    #[schema(value_type = Code)]
    institution: String,
    seats: u32,
}

/// A first-grade enrollment campaign; stage dates are local days of the authority.
#[derive(Serialize, ToSchema)]
#[schema(as = CampaignConfig)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
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
#[allow(dead_code)]
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
#[allow(dead_code)]
pub struct AgeGroupSeatsSchema {
    /// Age in full years on 1 September of the intake year.
    age_group: u8,
    seats: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CampaignStage)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CampaignStageSchema {
    One,
    Two,
}

/// What a queue is: the service, the institution and the age group and intake year
/// (kindergarten) or the campaign (school).
#[derive(Serialize, ToSchema)]
#[schema(as = QueueDescription)]
#[allow(dead_code)]
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
#[allow(dead_code)]
pub struct InstitutionSchema {
    #[schema(value_type = Code)]
    id: String,
    kind: InstitutionKindSchema,
    name: String,
    version: u32,
}

// ---------------------------------------------------------------------------------------------
// Response bodies built by the handlers

/// An event as committed: its place in the authority's chain and the event (tagged by
/// `type`).
#[derive(Serialize, ToSchema)]
#[schema(as = CommittedEvent)]
#[allow(dead_code)]
pub struct CommittedEventSchema {
    authority_seq: i64,
    recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

/// The events a command recorded.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct EventsResponse {
    events: Vec<CommittedEventSchema>,
}

/// A submitted application and the events that recorded it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SubmittedResponse {
    application: Option<crate::wire::ApplicationView>,
    events: Vec<CommittedEventSchema>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AuthoritySummary {
    #[schema(value_type = Code)]
    id: String,
    name: Option<String>,
    time_zone: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AuthoritiesList {
    authorities: Vec<AuthoritySummary>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AuthorityInfo {
    #[schema(value_type = Code)]
    id: String,
    config: Option<AuthorityConfigSchema>,
    institutions: usize,
    applications: usize,
    active_applications: usize,
    events: u64,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct InstitutionsList {
    institutions: Vec<InstitutionSchema>,
}

/// Published seats of one kindergarten age group for an intake year.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SeatGroupView {
    institution: Code,
    intake_year: i32,
    age_group: u8,
    published: u32,
    taken: u32,
    free: u32,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SeatsList {
    seats: Vec<SeatGroupView>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ApplicationsList {
    applications: Vec<crate::wire::ApplicationView>,
}

/// Why an application's positions changed, queue by queue.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ExplanationResponse {
    application: u32,
    since: DateTime<Utc>,
    queues: Vec<QueueExplanation>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct QueueExplanation {
    queue: String,
    description: QueueDescriptionSchema,
    /// The position then and now, and each change in between with its cause.
    #[schema(value_type = Object)]
    explanation: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CampaignsList {
    campaigns: Vec<CampaignConfigSchema>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FreeSlot {
    #[schema(value_type = Code)]
    id: String,
    #[schema(value_type = Code)]
    doctor: String,
    #[schema(value_type = Code)]
    specialty: String,
    start: DateTime<Utc>,
    duration_minutes: u16,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FreeSlots {
    /// At most 1000.
    free_slots: Vec<FreeSlot>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct BookingsList {
    bookings: Vec<crate::wire::BookingView>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct QueueSummary {
    /// The queue's id in URLs, e.g. `kindergarten.K001.3.2027` or `school.school-2027.S001`.
    queue: String,
    description: QueueDescriptionSchema,
    size: usize,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct QueuesList {
    queues: Vec<QueueSummary>,
}

/// One place in a queue, anonymised.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct QueueEntry {
    position: usize,
    application: u32,
    /// 0 extraordinary, 1 first priority, 2 sibling or catchment, 3 general.
    tier: u8,
    registered_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct QueueEntries {
    queue: String,
    description: QueueDescriptionSchema,
    size: usize,
    offset: usize,
    entries: Vec<QueueEntry>,
}

/// The head of the authority's hash chain.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AuditHead {
    #[schema(value_type = Code)]
    authority: String,
    authority_seq: i64,
    /// Hex SHA-256 of the last event's link.
    head_hash: String,
    events: u64,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RoundSummary {
    #[schema(value_type = Code)]
    id: String,
    at: DateTime<Utc>,
    /// `kindergarten` or `school`.
    service: String,
    applicants: usize,
    placed: usize,
    seats: u64,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RoundsList {
    rounds: Vec<RoundSummary>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RoundSeats {
    /// `K001/3` (kindergarten age group) or `S001` (school).
    id: String,
    #[schema(value_type = Code)]
    institution: String,
    age_group: Option<u8>,
    capacity: u32,
}

/// A placement; `status`, `deadline` and `answered_at` are shown to officers only.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RoundPlacementView {
    application: u32,
    /// The id of the seat group, as in `seats`.
    seats: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_at: Option<DateTime<Utc>>,
}

/// A round's summary and placements.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RoundView {
    #[schema(value_type = Code)]
    id: String,
    at: DateTime<Utc>,
    /// `{"service": "kindergarten", "intake_year", "intake_date", "offer_deadline"}` or
    /// `{"service": "school", "campaign", "stage"}`.
    #[schema(value_type = Object)]
    scope: serde_json::Value,
    applicants: usize,
    placed: usize,
    seats: Vec<RoundSeats>,
    placements: Vec<RoundPlacementView>,
}

/// The answer to running a round.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RoundResponse {
    round: Option<RoundView>,
    authority_seq: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Operations served outside the `/api/v1` handlers of `routes`, documented here

/// Status updates of one application (Server-Sent Events)
///
/// **Roles:** the parent who submitted the application, officer (and admin). A stream of
/// `status` events as the application's status and positions change; reconnecting with
/// `Last-Event-ID` replays what was missed.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/applications/{number}/events",
    tag = "applications",
    security(("bearer" = [])),
    responses((status = 200, description = "An event stream.", content_type = "text/event-stream", body = String))
)]
#[allow(dead_code)]
fn application_events() {}

/// Liveness
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process answers.", body = Object, example = json!({"status": "ok"}))))]
#[allow(dead_code)]
fn health() {}

/// Readiness
///
/// Ready when the store answers and every writer runs; otherwise 503.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "Ready, with the authorities served.", body = Object, example = json!({"status": "ready", "authorities": ["demo"]})),
        (status = 503, description = "Not ready.", body = Problem, content_type = "application/problem+json"),
    ))]
#[allow(dead_code)]
fn ready() {}

/// Metrics
///
/// Prometheus text format: request rate and latency per route, writer batch size, commit
/// latency, queue depth, shed requests.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// This document
///
/// The OpenAPI 3.1 document of the API; browse it at `/docs`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1.", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

// ---------------------------------------------------------------------------------------------
// What every operation shares

/// Adds the bearer scheme, the path parameters, the `Idempotency-Key` header of POSTs and the
/// problem answers each operation can give, without overriding what a handler declared.
pub struct Conventions;

fn path_parameter_description(name: &str) -> &'static str {
    match name {
        "authority" => "The authority (municipality) id, e.g. `demo`.",
        "number" => "An application or booking number: a positive integer.",
        "queue" => "A queue id, e.g. `kindergarten.K001.3.2027` or `school.school-2027.S001`.",
        "round" => "A round id, e.g. `2027-main`.",
        _ => "A path parameter.",
    }
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    if description.starts_with("Unavailable") || description.starts_with("Too many") {
        response.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying."))
                .build()
                .into(),
        );
    }
    response.into()
}

impl Conventions {
    fn operation(path: &str, method: &str, op: &mut Operation) {
        let protected = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let is_post = method == "post";
        let has_body = op.request_body.is_some();
        let has_query = op.parameters.as_ref().is_some_and(|ps| {
            ps.iter()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query))
        });

        // Path parameters, from the template; described when a handler left them bare.
        let params = op.parameters.get_or_insert_with(Vec::new);
        for param in params.iter_mut() {
            if let RefOr::T(p) = param {
                if p.parameter_in == ParameterIn::Path && p.description.is_none() {
                    p.description = Some(path_parameter_description(&p.name).to_owned());
                }
            }
        }
        let declared: Vec<String> = params
            .iter()
            .filter_map(|p| match p {
                RefOr::T(p) if p.parameter_in == ParameterIn::Path => Some(p.name.clone()),
                _ => None,
            })
            .collect();
        let mut rest = path;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let name = &rest[start + 1..start + len];
            if !declared.iter().any(|d| d == name) {
                params.push(RefOr::T(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .description(Some(path_parameter_description(name)))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                ));
            }
            rest = &rest[start + len..];
        }
        if is_post {
            params.push(RefOr::T(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes the request safe to retry: a retry with the same key gets the first answer with `Idempotent-Replayed: true`; the same key with a different body gets 422; a key still in flight gets 409. 1-255 visible ASCII characters, scoped to the caller.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255)),
                    ))
                    .build(),
            ));
            params.push(RefOr::T(
                ParameterBuilder::new()
                    .name("X-Correlation-Id")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("Recorded with the events (at most 128 bytes)."))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .max_length(Some(128)),
                    ))
                    .build(),
            ));
            for (status, response) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    response.headers.entry("Idempotent-Replayed".into()).or_insert_with(|| {
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"]))))
                            .description(Some("`true` when this is the stored first answer to an earlier request with the same Idempotency-Key."))
                            .build()
                            .into()
                    });
                }
            }
        }
        if params.is_empty() {
            op.parameters = None;
        }

        let mut problems: Vec<(&str, &str)> = Vec::new();
        if path.starts_with("/api/v1/") {
            if is_post && has_body {
                problems.push(("400", "Malformed body (for JSON: not valid JSON)."));
                problems.push(("413", "The body is larger than the server accepts."));
                problems.push(("415", "Wrong Content-Type."));
            }
            if protected {
                problems.push(("401", "No valid bearer token."));
                problems.push((
                    "403",
                    "The caller's role may not do this (checked before the body is read).",
                ));
            }
            if path.contains('{') {
                problems.push(("404", "The authority, or a resource named in the path, does not exist (someone else's application looks missing too)."));
            }
            if is_post {
                problems.push(("409", "Refused by the rules as a conflict (e.g. the same child twice: `existing` names the application), or a request with this Idempotency-Key is still in flight."));
            }
            if is_post || has_query || path.contains("{number}") || path.contains("{round}") {
                problems.push(("422", "A field is invalid (`field` names it), a rule refused the request, or the Idempotency-Key was used for a different request."));
            }
            if is_post && crate::ratelimit::SUBMISSION_ROUTES.contains(&path) {
                problems.push(("429", "Too many submissions from this client (the token's subject; without a valid token, the peer address) in a short time: nothing was written. Retry after `Retry-After` seconds."));
            }
            problems.push(("503", "Unavailable: the server has too many requests in progress or the writer's queue is full (`overloaded`, answered at once, before the body is read), the store does not answer (`unavailable`), or the request timed out (`timeout`); nothing was accepted. Retry after `Retry-After` seconds, with the same Idempotency-Key."));
        }
        for (status, description) in problems {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| problem_response(description));
        }
    }
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with the claims `role` (parent, officer, registrar, auditor, admin), `sub` and `exp`. `ochered token --role officer --sub NAME` mints one for development.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                Self::operation(path, method, op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document with every object's keys sorted, pretty-printed: key order carries no
    /// meaning in JSON, so this is the form the committed snapshot is kept in.
    fn canonical(doc: &utoipa::openapi::OpenApi) -> String {
        fn sort(value: serde_json::Value) -> serde_json::Value {
            match value {
                serde_json::Value::Object(map) => {
                    let sorted: BTreeMap<String, serde_json::Value> =
                        map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                    serde_json::Value::Object(sorted.into_iter().collect())
                }
                serde_json::Value::Array(items) => {
                    serde_json::Value::Array(items.into_iter().map(sort).collect())
                }
                other => other,
            }
        }
        let value = sort(serde_json::to_value(doc).expect("the document serialises"));
        serde_json::to_string_pretty(&value).expect("JSON serialises") + "\n"
    }

    /// The served document equals the committed snapshot: moving handlers or rewriting how
    /// they are registered must not change what clients see. A deliberate change updates the
    /// snapshot with `OCHERED_UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p ochered-api openapi`
    /// and says why in its commit.
    #[test]
    fn document_matches_the_committed_snapshot() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi.json");
        let now = canonical(&document());
        if std::env::var_os("OCHERED_UPDATE_OPENAPI_SNAPSHOT").is_some() {
            std::fs::write(&path, &now).expect("write the snapshot");
        }
        let snapshot = std::fs::read_to_string(&path).expect("read the snapshot");
        if now != snapshot {
            let first = now
                .lines()
                .zip(snapshot.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(now.lines().count().min(snapshot.lines().count()));
            panic!(
                "the OpenAPI document differs from {} from line {}:\n now:      {:?}\n snapshot: {:?}",
                path.display(),
                first + 1,
                now.lines().nth(first),
                snapshot.lines().nth(first),
            );
        }
    }

    /// Every (method, path) the document describes.
    fn operations_listed(doc: &utoipa::openapi::OpenApi) -> BTreeMap<String, Vec<&'static str>> {
        let mut out = BTreeMap::new();
        for (path, item) in &doc.paths.paths {
            let mut methods = Vec::new();
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                if op.is_some() {
                    methods.push(method);
                }
            }
            out.insert(path.clone(), methods);
        }
        out
    }

    #[test]
    fn document_is_openapi_3_1_with_every_operation_described() {
        let doc = document();
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let mut operation_ids = std::collections::HashSet::new();
        for (path, methods) in operations_listed(&doc) {
            for method in methods {
                let op = &json["paths"][&path][method];
                assert!(op["summary"].is_string(), "{method} {path} has no summary");
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(operation_ids.insert(id.clone()), "operationId {id} twice");
                if op["security"].is_array() {
                    let description = op["description"].as_str().unwrap_or("");
                    assert!(
                        description.contains("**Roles:**"),
                        "{method} {path} does not name its roles"
                    );
                }
            }
        }
        // Every API operation may be shed by admission control: a 503 problem with
        // Retry-After (crate::admission).
        for (path, methods) in operations_listed(&doc) {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for method in methods {
                let shed = &json["paths"][&path][method]["responses"]["503"];
                assert_eq!(
                    shed["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path}: no 503 problem"
                );
                assert_eq!(
                    shed["headers"]["Retry-After"]["schema"]["type"], "integer",
                    "{method} {path}: 503 without Retry-After"
                );
            }
        }
        // Every referenced schema exists.
        let text = json.to_string();
        let schemas = json["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.contains_key(name), "missing schema {name}");
        }
    }
}
