//! Authorities (municipalities) and their institutions, and the public, anonymised reads of
//! an authority: its queues and the head of its hash chain.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use ochered_core::command::Command;
use ochered_core::domain::AuthorityConfig;
use ochered_core::state::{Institution, QueueDescription};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access;
use crate::http::auth::Role;
use crate::http::command::{EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::state::AppState;
use crate::wire::schema::Code;
use crate::wire::{self, InstitutionRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_authorities, configure_authority))
        .routes(routes!(authority_info))
        .routes(routes!(list_institutions, register_institution))
        .routes(routes!(list_queues))
        .routes(routes!(queue_entries))
        .routes(routes!(audit_head))
}

#[derive(Serialize, ToSchema)]
pub struct AuthoritySummary {
    #[schema(value_type = Code)]
    id: String,
    name: Option<String>,
    time_zone: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuthoritiesList {
    authorities: Vec<AuthoritySummary>,
}

/// List the authorities
///
/// Public: no token needed. Every authority served, with its name and time zone.
#[utoipa::path(
    get,
    path = "/api/v1/authorities",
    tag = "authorities",
    responses((status = 200, description = "The authorities.", body = AuthoritiesList))
)]
async fn list_authorities(AxumState(state): AxumState<AppState>) -> Json<AuthoritiesList> {
    // Every authority this node serves: in cluster mode also those another node writes.
    let authorities = state
        .engine
        .served()
        .iter()
        .map(|(w, _)| {
            w.read(|s| AuthoritySummary {
                id: w.authority().to_owned(),
                name: s.config().map(|c| c.name.clone()),
                time_zone: s.config().map(|c| c.time_zone.name().to_owned()),
            })
        })
        .collect();
    Json(AuthoritiesList { authorities })
}

/// Configure a new authority
///
/// **Roles:** admin. Starts a writer for the authority and records its configuration; an
/// authority is configured once. A configuration the rules refuse creates nothing.
#[utoipa::path(
    post,
    path = "/api/v1/authorities",
    tag = "authorities",
    security(("bearer" = [])),
    request_body = AuthorityConfig,
    responses((status = 201, description = "Configured.", body = EventsResponse))
)]
async fn configure_authority(
    write: Write,
    body: Result<Body<AuthorityConfig>, ApiError>,
) -> Result<Response, ApiError> {
    let config = write.body(&[], body)?;
    // A configuration the rules refuse starts no writer: the authority is not created.
    ochered_core::decide::check_authority_config(&config)
        .map_err(|rejection| ApiError::from_rejection(&rejection))?;
    let (writer, _) = write
        .state
        .engine
        .writer_or_start(config.id.as_str())
        .await
        .map_err(ApiError::from_writer)?;
    let command = Command::ConfigureAuthority { config };
    write.answer(&writer, command, StatusCode::CREATED).await
}

#[derive(Serialize, ToSchema)]
pub struct AuthorityInfo {
    #[schema(value_type = Code)]
    id: String,
    config: Option<AuthorityConfig>,
    institutions: usize,
    applications: usize,
    active_applications: usize,
    events: u64,
}

/// Describe an authority
///
/// Public: no token needed. Its configuration and counts of institutions, applications and
/// events.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}",
    tag = "authorities",
    responses((status = 200, description = "The authority.", body = AuthorityInfo))
)]
async fn authority_info(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<AuthorityInfo>, ApiError> {
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| AuthorityInfo {
        config: s.config().cloned(),
        institutions: s.institutions().len(),
        applications: s.applications().len(),
        active_applications: s.n_active_applications(),
        events: s.n_events(),
        id: authority,
    })))
}

#[derive(Serialize, ToSchema)]
pub struct InstitutionsList {
    institutions: Vec<Institution>,
}

/// List institutions
///
/// Public: no token needed. Kindergartens, schools and clinics registered with the authority.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/institutions",
    tag = "authorities",
    responses((status = 200, description = "The institutions.", body = InstitutionsList))
)]
async fn list_institutions(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<InstitutionsList>, ApiError> {
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| InstitutionsList {
        institutions: s.institutions().to_vec(),
    })))
}

/// Register an institution
///
/// **Roles:** officer, registrar (and admin). An existing id is a 409 (`institution_exists`).
/// Many at once: `POST …/files/institutions.csv`.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/institutions",
    tag = "authorities",
    security(("bearer" = [])),
    request_body = InstitutionRequest,
    responses((status = 201, description = "Registered.", body = EventsResponse))
)]
async fn register_institution(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<InstitutionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer, Role::Registrar], body)?;
    let w = write.writer(&authority)?;
    let command = Command::RegisterInstitution {
        id: req.id,
        kind: req.kind,
        name: req.name,
        district: req.district,
        address: req.address,
    };
    write.answer(&w, command, StatusCode::CREATED).await
}

// ---------------------------------------------------------------------------------------------
// Public, anonymised reads and audit

#[derive(Serialize, ToSchema)]
pub struct QueueSummary {
    /// The queue's id in URLs, e.g. `kindergarten.K001.3.2027` or `school.school-2027.S001`.
    queue: String,
    description: QueueDescription,
    size: usize,
}

#[derive(Serialize, ToSchema)]
pub struct QueuesList {
    queues: Vec<QueueSummary>,
}

/// List the queues
///
/// Public: no token needed. Every non-empty queue with its size; anonymised.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/queues",
    tag = "public",
    responses((status = 200, description = "The queues.", body = QueuesList))
)]
async fn list_queues(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<QueuesList>, ApiError> {
    let w = access::writer(&state, &authority)?;
    Ok(Json(w.read(|s| {
        QueuesList {
            queues: s
                .queues
                .iter()
                .filter(|(_, q)| !q.members.is_empty())
                .map(|(key, q)| {
                    let description = s.describe_queue(key);
                    QueueSummary {
                        queue: wire::queue_id(&description),
                        description,
                        size: q.members.len(),
                    }
                })
                .collect(),
        }
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// One place in a queue, anonymised.
#[derive(Serialize, ToSchema)]
pub struct QueueEntry {
    position: usize,
    #[schema(value_type = u32)]
    application: ochered_core::domain::ApplicationNumber,
    /// The priority tier in this queue (lower first). Kindergarten queues: 0 extraordinary,
    /// 1 first priority, 2 sibling, 3 general. First-grade (school) queues: 0 extraordinary or
    /// first priority, 1 sibling, 2 catchment, 3 general.
    tier: u8,
    registered_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueEntries {
    queue: String,
    description: QueueDescription,
    size: usize,
    offset: usize,
    entries: Vec<QueueEntry>,
}

/// Read a queue
///
/// Public: no token needed. A page of the queue, anonymised: position, application number,
/// tier, registration time. The whole queue as a file: `GET …/files/queues/{queue}.csv`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/queues/{queue}",
    tag = "public",
    params(("offset" = Option<usize>, Query, description = "Skip this many entries (default 0)."), ("limit" = Option<usize>, Query, description = "At most this many entries, 1-1000 (default 100).")),
    responses((status = 200, description = "A page of the queue.", body = QueueEntries))
)]
async fn queue_entries(
    AxumState(state): AxumState<AppState>,
    Path((authority, queue_name)): Path<(String, String)>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<QueueEntries>, ApiError> {
    let Query(page) = query.map_err(|e| crate::http::access::query_error(e, "offset"))?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let w = access::writer(&state, &authority)?;
    w.read(|s| {
        let (key, q) = access::find_queue(s, &queue_name)?;
        // Anonymised: the application number, tier and registration time, nothing personal.
        let entries = q
            .members
            .range_from(offset)
            .take(limit)
            .enumerate()
            .map(|(i, sort_key)| QueueEntry {
                position: offset + i + 1,
                application: sort_key.number,
                tier: sort_key.tier,
                registered_at: s.application(sort_key.number).map(|a| a.registered_at),
            })
            .collect();
        Ok(Json(QueueEntries {
            description: s.describe_queue(key),
            size: q.members.len(),
            offset,
            entries,
            queue: queue_name,
        }))
    })
}

/// The head of the authority's hash chain.
#[derive(Serialize, ToSchema)]
pub struct AuditHead {
    #[schema(value_type = Code)]
    authority: String,
    authority_seq: i64,
    /// Hex SHA-256 of the last event's link.
    head_hash: String,
    events: u64,
}

/// Read the chain head
///
/// Public: no token needed. The sequence number and hash of the last event of the authority's
/// hash chain, to verify an exported log against.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/audit/head",
    tag = "public",
    responses((status = 200, description = "The chain head.", body = AuditHead))
)]
async fn audit_head(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
) -> Result<Json<AuditHead>, ApiError> {
    let w = access::writer(&state, &authority)?;
    let head = w.head();
    let events = w.read(|s| s.n_events());
    Ok(Json(AuditHead {
        authority,
        authority_seq: head.authority_seq,
        head_hash: head.hash,
        events,
    }))
}
