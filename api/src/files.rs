//! Officers' files: institutions and kindergarten seats imported from CSV, queues and round
//! results exported as CSV and XLSX.
//!
//! **Imports** (`POST …/files/institutions.csv`, `POST …/files/seats.csv`, officer) take a
//! `text/csv` body of at most [`UPLOAD_LIMIT_BYTES`]: UTF-8 (a leading byte-order mark is
//! dropped), a header row naming the columns in any order, fields separated by commas, or by
//! semicolons when the header has semicolons and no commas (what Excel writes in locales with
//! a decimal comma). Rows are numbered as in a spreadsheet: the header is row 1. Every row is
//! checked first, against the file and against the authority's current state (the rules are
//! run without recording anything); if any row is bad the answer is a 422 whose `field` names
//! the first bad row and column (`row 3, kind`) and whose `errors` list every one, and nothing
//! is written. Then each row (institutions) or each institution and intake year (seats) is
//! sent as its own command. An institution that already exists is not an error: its row is
//! answered with the status `exists` (and whether its kind and name match the file) and left
//! unchanged. With an `Idempotency-Key`, row *N* is sent with the key `KEY#row-N`, so a retry
//! of the same file with the same key replays every row's first answer.
//!
//! **Exports** (`GET …/files/queues/{queue}.csv|.xlsx`, `GET …/files/rounds/{round}.csv|.xlsx`,
//! officer and auditor) carry a header row. CSV follows RFC 4180 (CRLF line ends, fields
//! quoted when needed) in UTF-8 with a byte-order mark, so that Excel reads Cyrillic text
//! correctly; times are RFC 3339 in UTC. The XLSX workbook has the same table on its first
//! sheet (times as Excel date-times, UTC) and what was exported, when and by which rule on a
//! second sheet, `about`. Queues are anonymised (position, application number, tier,
//! registration time); round results show auditors the placements only, officers also the
//! families' answers, as `GET …/rounds/{round}` does.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use futures_util::StreamExt;
use ochered_core::command::{AgeGroupSeats, Command};
use ochered_core::decide::AGE_GROUP_SEATS_MAX;
use ochered_core::domain::{InstitutionId, InstitutionKind, RoundId};
use ochered_core::Rejection;
use ochered_writer::{Outcome, Reply, RequestMeta, Writer, WriterError};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::{wire, AppState};

/// The largest CSV upload accepted (the general JSON body limit does not apply to files).
pub const UPLOAD_LIMIT_BYTES: usize = 2 * 1024 * 1024;
/// The most data rows one upload may have.
pub const UPLOAD_ROWS_MAX: usize = 10_000;
/// How many row errors a 422 lists (`errors_total` counts them all).
const ERRORS_LISTED_MAX: usize = 100;
/// Commands of one upload in the writer's queue at once.
const SUBMIT_CONCURRENCY: usize = 64;

pub const CSV_MEDIA_TYPE: &str = "text/csv; charset=utf-8; header=present";
pub const XLSX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

const BASE: &str = "/api/v1/authorities/{authority}/files";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            &format!("{BASE}/institutions.csv"),
            post(import_institutions).layer(DefaultBodyLimit::max(UPLOAD_LIMIT_BYTES)),
        )
        .route(
            &format!("{BASE}/seats.csv"),
            post(import_seats).layer(DefaultBodyLimit::max(UPLOAD_LIMIT_BYTES)),
        )
        // One route per kind of file: a path parameter cannot be followed by `.csv` in the
        // same segment, so the extension is split off by the handler.
        .route(&format!("{BASE}/queues/{{file}}"), get(export_queue))
        .route(&format!("{BASE}/rounds/{{file}}"), get(export_round))
}

// ---------------------------------------------------------------------------------------------
// Response bodies of the imports (also their OpenAPI schemas)

/// The answer to an institutions upload: one result per data row, in file order.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstitutionsImport {
    /// Data rows in the file.
    pub rows: usize,
    /// Rows registered now.
    pub created: usize,
    /// Rows whose institution already existed: left unchanged, not an error.
    pub existing: usize,
    /// Rows the rules refused while the file was being written (another request got there
    /// first); see their `problem`.
    pub refused: usize,
    pub results: Vec<InstitutionRowResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstitutionRowResult {
    /// The row in the file (the header is row 1).
    pub row: u64,
    #[schema(value_type = String, example = "K001")]
    pub id: InstitutionId,
    /// `created`, `exists` or `refused`.
    #[schema(example = "created")]
    pub status: &'static str,
    /// For `exists`: whether the registered kind and name equal the row's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<bool>,
    /// For `created`: the place of the registration in the authority's chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_seq: Option<i64>,
    /// For `refused`: the problem+json the rules answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::Problem>)]
    pub problem: Option<Value>,
}

/// The answer to a seats upload: one result per institution and intake year, in the order
/// they first appear in the file.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatsImport {
    /// Data rows in the file.
    pub rows: usize,
    /// Institution and intake year pairs, each published by one command.
    pub groups: usize,
    pub published: usize,
    pub refused: usize,
    pub results: Vec<SeatsGroupResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatsGroupResult {
    /// The rows of this institution and intake year.
    pub rows: Vec<u64>,
    #[schema(value_type = String, example = "K001")]
    pub institution: InstitutionId,
    pub intake_year: i32,
    #[schema(value_type = Vec<crate::openapi::AgeGroupSeatsSchema>)]
    pub seats: Vec<AgeGroupSeats>,
    /// `published` or `refused`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::Problem>)]
    pub problem: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Import institutions from CSV
///
/// **Roles:** officer (and admin). Columns `id,kind,name` (any order); `kind` is
/// `kindergarten`, `school` or `clinic`. All rows are checked before anything is written: a
/// bad row answers 422 with `field` such as `row 3, kind` and every error in `errors`, and
/// nothing is written. A row whose institution already exists is answered `exists` (with
/// `matches`) and left unchanged. With an `Idempotency-Key`, row N is sent under `KEY#row-N`,
/// so retrying the same file with the same key replays the first answer.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/files/institutions.csv",
    tag = "files",
    security(("bearer" = [])),
    request_body(
        content = String,
        content_type = "text/csv",
        description = "UTF-8 CSV with a header row: `id,kind,name`. Example:\n\n```\nid,kind,name\nK001,kindergarten,\"Детский сад №1 «Солнышко»\"\nS001,school,Школа №1\n```",
    ),
    responses(
        (status = 201, description = "At least one institution was registered.", body = InstitutionsImport),
        (status = 200, description = "Nothing new: every row already existed.", body = InstitutionsImport),
        (status = 422, description = "A row or the header is bad; nothing was written. `field` names the first (`row 3, kind`), `errors` lists all.", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn import_institutions(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<CsvUpload, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let CsvUpload(text) = body?;
    let w = writer(&state, &authority)?;
    let rows = read_table(&text, &["id", "kind", "name"])?;
    let n_rows = rows.len();

    let mut errors = RowErrors::default();
    let mut first_row_of: HashMap<InstitutionId, u64> = HashMap::new();
    let mut jobs = Vec::new();
    for (row, values) in rows {
        let [id, kind, name] = <[String; 3]>::try_from(values).expect("three columns");
        let id = InstitutionId::parse(&id)
            .map_err(|e| errors.push(row, "id", e.reason))
            .ok();
        let kind = parse_kind(&kind)
            .map_err(|detail| errors.push(row, "kind", detail))
            .ok();
        if name.is_empty() {
            errors.push(row, "name", "must not be empty".into());
        }
        let Some(id) = id else { continue };
        if let Some(first) = first_row_of.get(&id) {
            errors.push(row, "id", format!("{id} is also on row {first}"));
            continue;
        }
        first_row_of.insert(id.clone(), row);
        if let (Some(kind), false) = (kind, name.is_empty()) {
            jobs.push(Job {
                rows: vec![row],
                command: Command::RegisterInstitution { id, kind, name },
            });
        }
    }

    // The rules, run on the current state without recording anything: an existing
    // institution is fine (reported below), anything else is the row's error.
    let now = Utc::now();
    let fatal = w.read(|s| {
        for job in &jobs {
            match ochered_core::decide(s, &job.command, now) {
                Ok(_) | Err(Rejection::InstitutionExists { .. }) => {}
                Err(r) => match r.field() {
                    Some(field) => {
                        errors.push(job.rows[0], column_of(field, "name"), r.to_string())
                    }
                    None => return Some(r),
                },
            }
        }
        None
    });
    if let Some(rejection) = fatal {
        return Err(ApiError::from_rejection(&rejection));
    }
    errors.into_result()?;

    let (sent, replayed) = submit_all(&w, &caller, &headers, jobs).await?;
    let mut results = Vec::with_capacity(sent.len());
    for (job, outcome) in sent {
        let Command::RegisterInstitution { id, kind, name } = job.command else {
            unreachable!("institution jobs register institutions")
        };
        let mut result = InstitutionRowResult {
            row: job.rows[0],
            id,
            status: "created",
            matches: None,
            authority_seq: None,
            problem: None,
        };
        match outcome {
            Outcome::Accepted { events } => {
                result.authority_seq = events.last().map(|e| e.authority_seq);
            }
            Outcome::Rejected {
                rejection: Rejection::InstitutionExists { .. },
            } => {
                result.status = "exists";
                result.matches = Some(w.read(|s| {
                    s.institution_idx(&result.id).is_some_and(|idx| {
                        let existing = s.institution(idx);
                        existing.kind == kind && existing.name == name
                    })
                }));
            }
            Outcome::Rejected { rejection } => {
                result.status = "refused";
                result.problem = Some(ApiError::from_rejection(&rejection).body());
            }
        }
        results.push(result);
    }
    let count = |status: &str| results.iter().filter(|r| r.status == status).count();
    let body = InstitutionsImport {
        rows: n_rows,
        created: count("created"),
        existing: count("exists"),
        refused: count("refused"),
        results,
    };
    let status = if body.created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_replayed(
        (status, Json(body)).into_response(),
        replayed,
    ))
}

/// Import kindergarten seats from CSV
///
/// **Roles:** officer (and admin). Columns `institution,intake_year,age_group,seats` (any
/// order). The rows of one institution and intake year are published together, as one
/// `PublishKindergartenSeats` command (age groups not in the file keep their seats). All rows
/// are checked first, against the rules too (a kindergarten that exists, an age group below
/// the authority's maximum, no fewer seats than already taken); a bad row answers 422 naming
/// it (`row 4, seats`) and nothing is written.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/files/seats.csv",
    tag = "files",
    security(("bearer" = [])),
    request_body(
        content = String,
        content_type = "text/csv",
        description = "UTF-8 CSV with a header row: `institution,intake_year,age_group,seats`. Example:\n\n```\ninstitution,intake_year,age_group,seats\nK001,2027,3,20\nK001,2027,4,25\nK002,2027,3,15\n```",
    ),
    responses(
        (status = 201, description = "The seats were published.", body = SeatsImport),
        (status = 422, description = "A row or the header is bad; nothing was written. `field` names the first (`row 4, seats`), `errors` lists all.", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
async fn import_seats(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<CsvUpload, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer])?;
    let CsvUpload(text) = body?;
    let w = writer(&state, &authority)?;
    let rows = read_table(&text, &["institution", "intake_year", "age_group", "seats"])?;
    let n_rows = rows.len();
    let max_age = w.read(|s| s.config().map(|c| c.kindergarten_max_age_years));

    let mut errors = RowErrors::default();
    // (institution, intake year) in order of first appearance, with their rows.
    let mut groups: Vec<(InstitutionId, i32, SeatRows)> = Vec::new();
    let mut group_of: HashMap<(InstitutionId, i32), usize> = HashMap::new();
    let mut row_of: HashMap<(InstitutionId, i32, u8), u64> = HashMap::new();
    for (row, values) in rows {
        let [institution, intake_year, age_group, seats] =
            <[String; 4]>::try_from(values).expect("four columns");
        let institution = InstitutionId::parse(&institution)
            .map_err(|e| errors.push(row, "institution", e.reason))
            .ok();
        let intake_year = intake_year
            .parse::<i32>()
            .ok()
            .filter(|y| (2000..=2200).contains(y))
            .ok_or_else(|| errors.push(row, "intake_year", "must be a year 2000-2200".into()))
            .ok();
        let age_group = age_group
            .parse::<u8>()
            .ok()
            .filter(|a| max_age.is_none_or(|max| *a < max))
            .ok_or_else(|| {
                let detail = match max_age {
                    Some(max) => format!("must be a whole number of years below {max}"),
                    None => "must be a whole number of years".into(),
                };
                errors.push(row, "age_group", detail)
            })
            .ok();
        let seats = seats
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= AGE_GROUP_SEATS_MAX)
            .ok_or_else(|| {
                errors.push(
                    row,
                    "seats",
                    format!("must be a whole number 0-{AGE_GROUP_SEATS_MAX}"),
                )
            })
            .ok();
        let (Some(institution), Some(intake_year), Some(age_group), Some(seats)) =
            (institution, intake_year, age_group, seats)
        else {
            continue;
        };
        let key = (institution.clone(), intake_year, age_group);
        if let Some(first) = row_of.get(&key) {
            errors.push(
                row,
                "age_group",
                format!(
                    "{institution}, {intake_year}, age group {age_group} is also on row {first}"
                ),
            );
            continue;
        }
        row_of.insert(key, row);
        let g = *group_of
            .entry((institution.clone(), intake_year))
            .or_insert_with(|| {
                groups.push((institution, intake_year, Vec::new()));
                groups.len() - 1
            });
        groups[g].2.push((row, AgeGroupSeats { age_group, seats }));
    }

    let jobs: Vec<Job> = groups
        .into_iter()
        .map(|(institution, intake_year, rows)| Job {
            rows: rows.iter().map(|(row, _)| *row).collect(),
            command: Command::PublishKindergartenSeats {
                institution,
                intake_year,
                seats: rows.into_iter().map(|(_, seats)| seats).collect(),
            },
        })
        .collect();

    let now = Utc::now();
    let fatal = w.read(|s| {
        for job in &jobs {
            let Err(r) = ochered_core::decide(s, &job.command, now) else {
                continue;
            };
            let Command::PublishKindergartenSeats { seats, .. } = &job.command else {
                unreachable!("seat jobs publish seats")
            };
            let row_of_age = |age: u8| {
                seats
                    .iter()
                    .position(|g| g.age_group == age)
                    .map_or(job.rows[0], |i| job.rows[i])
            };
            match (&r, r.field()) {
                (Rejection::SeatsBelowTaken { age_group, .. }, _) => {
                    errors.push(row_of_age(*age_group), "seats", r.to_string())
                }
                (_, Some(field)) => {
                    errors.push(job.rows[0], column_of(field, "institution"), r.to_string())
                }
                (_, None) => return Some(r),
            }
        }
        None
    });
    if let Some(rejection) = fatal {
        return Err(ApiError::from_rejection(&rejection));
    }
    errors.into_result()?;

    let (sent, replayed) = submit_all(&w, &caller, &headers, jobs).await?;
    let results: Vec<SeatsGroupResult> = sent
        .into_iter()
        .map(|(job, outcome)| {
            let Command::PublishKindergartenSeats {
                institution,
                intake_year,
                seats,
            } = job.command
            else {
                unreachable!("seat jobs publish seats")
            };
            let mut result = SeatsGroupResult {
                rows: job.rows,
                institution,
                intake_year,
                seats,
                status: "published",
                authority_seq: None,
                problem: None,
            };
            match outcome {
                Outcome::Accepted { events } => {
                    result.authority_seq = events.last().map(|e| e.authority_seq)
                }
                Outcome::Rejected { rejection } => {
                    result.status = "refused";
                    result.problem = Some(ApiError::from_rejection(&rejection).body());
                }
            }
            result
        })
        .collect();
    let published = results.iter().filter(|r| r.status == "published").count();
    let body = SeatsImport {
        rows: n_rows,
        groups: results.len(),
        published,
        refused: results.len() - published,
        results,
    };
    let status = if published > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_replayed(
        (status, Json(body)).into_response(),
        replayed,
    ))
}

/// Export a queue as CSV
///
/// **Roles:** officer, auditor (and admin). The whole queue, anonymised, in order: columns
/// `position,application,tier,registered_at`. UTF-8 with a byte-order mark, CRLF line ends
/// (RFC 4180); `registered_at` is RFC 3339 in UTC. Queue ids are those of
/// `GET /api/v1/authorities/{authority}/queues`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/queues/{queue}.csv",
    tag = "files",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "A queue id, e.g. `kindergarten.K001.3.2027`")),
    responses(
        (status = 200, description = "The queue as CSV (`Content-Disposition: attachment`).", content_type = "text/csv", body = String),
    )
)]
async fn export_queue(
    AxumState(state): AxumState<AppState>,
    Path((authority, file)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let (queue_name, format) = split_file(&file, "queue")?;
    let w = writer(&state, &authority)?;
    let table = w.read(|s| {
        let (key, q) = s
            .queues
            .iter()
            .find(|(key, _)| wire::queue_id(&s.describe_queue(key)) == queue_name)
            .ok_or_else(|| {
                ApiError::not_found(format!("queue {queue_name} does not exist"))
                    .with_field("queue")
            })?;
        let rows = q
            .members
            .range_from(0)
            .enumerate()
            .map(|(i, sort_key)| {
                let registered_at = s.application(sort_key.number).map(|a| a.registered_at);
                vec![
                    Cell::Int(i as i64 + 1),
                    Cell::Int(i64::from(sort_key.number.0)),
                    Cell::Int(i64::from(sort_key.tier)),
                    registered_at.map_or(Cell::Empty, Cell::Time),
                ]
            })
            .collect();
        let description = serde_json::to_string(&s.describe_queue(key)).unwrap_or_default();
        Ok::<_, ApiError>(Table {
            sheet: "queue",
            columns: vec!["position", "application", "tier", "registered_at"],
            rows,
            about: vec![
                ("authority", authority.clone()),
                ("queue", queue_name.to_owned()),
                ("description", description),
                (
                    "content",
                    "anonymised: position, application number, priority tier (0 extraordinary, 1 first priority, 2 sibling or catchment, 3 general), registration time (UTC)".into(),
                ),
            ],
        })
    })?;
    table.respond(format, &format!("{authority}-queue-{queue_name}"))
}

/// Export a queue as XLSX
///
/// **Roles:** officer, auditor (and admin). The same table as the CSV on the sheet `queue`
/// (registration times as Excel date-times in UTC), and what was exported on the sheet
/// `about`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/queues/{queue}.xlsx",
    tag = "files",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "A queue id, e.g. `kindergarten.K001.3.2027`")),
    responses(
        (status = 200, description = "The queue as an Excel workbook (`Content-Disposition: attachment`).", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::openapi::BinaryFile),
    )
)]
#[allow(dead_code)]
fn export_queue_xlsx() {}

/// Export a round's results as CSV
///
/// **Roles:** officer, auditor (and admin). One row per placement: `application,
/// institution,age_group,seat_group` and, for officers only, the family's answer:
/// `status,deadline,answered_at`. Auditors get the anonymised view, as from
/// `GET …/rounds/{round}`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/rounds/{round}.csv",
    tag = "files",
    security(("bearer" = [])),
    params(("round" = String, Path, description = "A round id, e.g. `2027-main`")),
    responses(
        (status = 200, description = "The round's placements as CSV (`Content-Disposition: attachment`).", content_type = "text/csv", body = String),
    )
)]
async fn export_round(
    AxumState(state): AxumState<AppState>,
    Path((authority, file)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let (round_name, format) = split_file(&file, "round")?;
    let round_id = RoundId::parse(round_name).map_err(|e| ApiError::invalid("round", e.reason))?;
    let full = caller.role != Role::Auditor;
    let w = writer(&state, &authority)?;
    let table = w.read(|s| {
        let round = s
            .round_idx(&round_id)
            .map(|idx| &s.rounds()[idx as usize])
            .ok_or_else(|| {
                ApiError::not_found(format!("round {round_id} does not exist")).with_field("round")
            })?;
        let mut columns = vec!["application", "institution", "age_group", "seat_group"];
        if full {
            columns.extend(["status", "deadline", "answered_at"]);
        }
        let rows = round
            .placements
            .iter()
            .map(|p| {
                let group = &round.seats[p.seats as usize];
                let mut row = vec![
                    Cell::Int(i64::from(p.number.0)),
                    Cell::Text(s.institution(group.institution).id.to_string()),
                    group
                        .age_group
                        .map_or(Cell::Empty, |a| Cell::Int(i64::from(a))),
                    Cell::Text(s.seat_group_id(group)),
                ];
                if full {
                    let placement = s
                        .application(p.number)
                        .and_then(|app| app.placement)
                        .map(|idx| s.placement(idx))
                        .filter(|pl| s.rounds()[pl.round as usize].id == round.id);
                    let status = placement
                        .and_then(|pl| serde_json::to_value(pl.status).ok())
                        .and_then(|v| v.as_str().map(str::to_owned));
                    row.push(status.map_or(Cell::Empty, Cell::Text));
                    row.push(
                        placement
                            .and_then(|pl| pl.deadline)
                            .map_or(Cell::Empty, Cell::Time),
                    );
                    row.push(
                        placement
                            .and_then(|pl| pl.answered_at)
                            .map_or(Cell::Empty, Cell::Time),
                    );
                }
                row
            })
            .collect();
        let service = if round.is_kindergarten() {
            "kindergarten"
        } else {
            "school"
        };
        Ok::<_, ApiError>(Table {
            sheet: "round",
            columns,
            rows,
            about: vec![
                ("authority", authority.clone()),
                ("round", round_id.to_string()),
                ("service", service.into()),
                ("run_at", rfc3339(round.at)),
                ("applicants", round.n_applicants().to_string()),
                ("placed", round.placements.len().to_string()),
                (
                    "content",
                    if full {
                        "placements with the families' answers (officer view)".into()
                    } else {
                        "placements, anonymised (auditor view: no answers of families)".into()
                    },
                ),
            ],
        })
    })?;
    table.respond(format, &format!("{authority}-round-{round_id}"))
}

/// Export a round's results as XLSX
///
/// **Roles:** officer, auditor (and admin). The same table as the CSV on the sheet `round`,
/// and the round's summary on the sheet `about`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/rounds/{round}.xlsx",
    tag = "files",
    security(("bearer" = [])),
    params(("round" = String, Path, description = "A round id, e.g. `2027-main`")),
    responses(
        (status = 200, description = "The round's placements as an Excel workbook (`Content-Disposition: attachment`).", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::openapi::BinaryFile),
    )
)]
#[allow(dead_code)]
fn export_round_xlsx() {}

// ---------------------------------------------------------------------------------------------
// Plumbing

/// The authority's writer, if it exists and its state is consistent (as in `routes`).
fn writer(state: &AppState, authority: &str) -> Result<Writer, ApiError> {
    let writer = state.engine.writer(authority).ok_or_else(|| {
        ApiError::not_found(format!("authority {authority} does not exist")).with_field("authority")
    })?;
    if !writer.is_consistent() {
        return Err(ApiError::unavailable(
            "the store is unavailable and this authority's state is being restored; retry shortly",
        ));
    }
    Ok(writer)
}

fn parse_kind(raw: &str) -> Result<InstitutionKind, String> {
    serde_json::from_value(Value::String(raw.to_ascii_lowercase()))
        .map_err(|_| format!("{raw:?} is not a kind: use kindergarten, school or clinic"))
}

/// The CSV column a rejection's field points at (`seats.age_group` → `age_group`).
fn column_of<'a>(field: &'a str, default: &'a str) -> &'a str {
    let column = field.rsplit('.').next().unwrap_or(field);
    if column.is_empty() {
        default
    } else {
        column
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A CSV upload: the body as UTF-8 text, a leading byte-order mark dropped.
pub struct CsvUpload(pub String);

impl<S: Send + Sync> FromRequest<S> for CsvUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let csv_content = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("text/csv")
                    || mime.eq_ignore_ascii_case("application/csv")
            });
        if !csv_content {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the file as text/csv",
            )
            .with_field("Content-Type"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large(format!(
                    "the file is larger than {} MiB; split it",
                    UPLOAD_LIMIT_BYTES >> 20
                ))
            } else {
                ApiError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
            ApiError::invalid(
                "body",
                format!(
                    "the file is not UTF-8 text (bad byte at offset {}); save it as \"CSV UTF-8\"",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(CsvUpload(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        }))
    }
}

/// Errors of an upload's rows, reported all at once.
#[derive(Default)]
struct RowErrors(Vec<(u64, String, String)>);

impl RowErrors {
    fn push(&mut self, row: u64, column: &str, detail: String) {
        self.0.push((row, column.to_owned(), detail));
    }

    fn into_result(mut self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        self.0.sort_by_key(|(row, _, _)| *row);
        let total = self.0.len();
        let (row, column, detail) = &self.0[0];
        let field = format!("row {row}, {column}");
        let summary = if total == 1 {
            format!("{field}: {detail}; nothing was imported")
        } else {
            format!(
                "{field}: {detail} (and {} more errors, see `errors`); nothing was imported",
                total - 1
            )
        };
        let listed: Vec<Value> = self
            .0
            .iter()
            .take(ERRORS_LISTED_MAX)
            .map(|(row, column, detail)| json!({ "row": row, "column": column, "detail": detail }))
            .collect();
        Err(ApiError::invalid(field, summary)
            .with("errors", Value::Array(listed))
            .with("errors_total", json!(total)))
    }
}

/// Reads a CSV table whose header names exactly `columns` (in any order, any case). Returns
/// each data row's spreadsheet row number and its values in the order of `columns`; rows
/// with every field empty are skipped.
fn read_table(text: &str, columns: &[&str]) -> Result<Vec<(u64, Vec<String>)>, ApiError> {
    let first_line = text.lines().next().unwrap_or("");
    let delimiter = if first_line.contains(';') && !first_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let expected = columns.join(",");
    let header = reader
        .headers()
        .map_err(|e| ApiError::invalid("row 1", format!("the header row cannot be read: {e}")))?
        .clone();
    let names: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut index = Vec::with_capacity(columns.len());
    for column in columns {
        match names.iter().position(|n| n == column) {
            Some(i) => index.push(i),
            None => {
                return Err(ApiError::invalid(
                    format!("row 1, {column}"),
                    format!(
                        "the header row has no column {column}; expected the columns {expected}"
                    ),
                ))
            }
        }
    }
    for (i, name) in names.iter().enumerate() {
        if !columns.contains(&name.as_str()) && !name.is_empty() {
            return Err(ApiError::invalid(
                format!("row 1, {name}"),
                format!("unknown column {name:?}; expected the columns {expected}"),
            ));
        }
        if names[..i].contains(name) {
            return Err(ApiError::invalid(
                format!("row 1, {name}"),
                format!("the column {name} is named twice"),
            ));
        }
    }

    let mut errors = RowErrors::default();
    let mut rows = Vec::new();
    let mut rows_at = RowCounter {
        text: text.as_bytes(),
        byte: 0,
        newlines: 0,
    };
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let row = e.position().map_or(0, |p| rows_at.row(p.byte()));
                errors.push(row, "row", format!("cannot be read as CSV: {e}"));
                break;
            }
        };
        let row = record.position().map_or(0, |p| rows_at.row(p.byte()));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != header.len() {
            errors.push(
                row,
                columns[0],
                format!(
                    "has {} fields, the header has {}",
                    record.len(),
                    header.len()
                ),
            );
            continue;
        }
        if rows.len() == UPLOAD_ROWS_MAX {
            return Err(ApiError::invalid(
                "body",
                format!("the file has more than {UPLOAD_ROWS_MAX} rows; split it"),
            ));
        }
        let values = index.iter().map(|&i| record[i].to_owned()).collect();
        rows.push((row, values));
    }
    errors.into_result()?;
    if rows.is_empty() {
        return Err(ApiError::invalid("body", "the file has no data rows"));
    }
    Ok(rows)
}

/// Spreadsheet row numbers of records from their byte offsets (the CSV reader's own line
/// count is off after CRLF line ends). Offsets must not decrease.
struct RowCounter<'a> {
    text: &'a [u8],
    byte: usize,
    newlines: u64,
}

impl RowCounter<'_> {
    fn row(&mut self, byte: u64) -> u64 {
        // A record's offset may point at the line end before it.
        let mut start = (byte as usize).min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.byte {
            self.newlines += self.text[self.byte..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            self.byte = start;
        }
        self.newlines + 1
    }
}

/// The rows of one institution and intake year, with the seats each gives.
type SeatRows = Vec<(u64, AgeGroupSeats)>;

/// One command of an upload and the rows it came from.
struct Job {
    rows: Vec<u64>,
    command: Command,
}

/// Sends the commands in file order, a bounded number at a time, each with the request's
/// Idempotency-Key suffixed by its first row (scoped to the caller, as single commands are).
/// Answers each job's outcome and whether every answer was a replay. If the writer could not
/// take a command (overloaded, store down), answers that problem with the results so far:
/// a retry with the same key is safe.
async fn submit_all(
    w: &Writer,
    caller: &Caller,
    headers: &HeaderMap,
    jobs: Vec<Job>,
) -> Result<(Vec<(Job, Outcome)>, bool), ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty() && k.len() <= 240 && k.chars().all(|c| c.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        "must be 1-240 visible ASCII characters for a file upload",
                    )
                })?,
        ),
    };
    let actor = format!("{}:{}", caller.role.as_str(), caller.sub);
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned);
    let sends = jobs.into_iter().map(|job| {
        let meta = RequestMeta {
            idempotency_key: key.map(|k| format!("{actor}:{k}#row-{}", job.rows[0])),
            actor: Some(actor.clone()),
            // As for single commands: officers type files in at a service centre.
            channel: Some(
                match caller.role {
                    Role::Officer | Role::Registrar => "service_centre",
                    _ => "portal",
                }
                .into(),
            ),
            correlation_id: correlation_id.clone(),
        };
        async move {
            let name = job.command.name();
            let started = std::time::Instant::now();
            let reply: Result<Reply, WriterError> = w.submit(job.command.clone(), meta).await;
            metrics::histogram!("ochered_command_seconds", "command" => name)
                .record(started.elapsed().as_secs_f64());
            (job, reply)
        }
    });
    let answers: Vec<(Job, Result<Reply, WriterError>)> = futures_util::stream::iter(sends)
        .buffered(SUBMIT_CONCURRENCY)
        .collect()
        .await;
    let mut failure = None;
    let mut done = Vec::with_capacity(answers.len());
    // Refusals are decided afresh on a retry (only accepted commands are stored under their
    // key), so the upload counts as replayed when every accepted row was.
    let mut any_replayed = false;
    let mut fresh_write = false;
    let mut report = Vec::new();
    for (job, answer) in answers {
        match answer {
            Ok(reply) => {
                any_replayed |= reply.replayed;
                fresh_write |= !reply.replayed && matches!(reply.outcome, Outcome::Accepted { .. });
                let status = match &reply.outcome {
                    Outcome::Accepted { .. } => "written",
                    Outcome::Rejected { .. } => "refused",
                };
                report.push(json!({ "rows": job.rows, "status": status }));
                done.push((job, reply.outcome));
            }
            Err(e) => {
                report.push(json!({ "rows": job.rows, "status": "not_sent" }));
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok((done, any_replayed && !fresh_write)),
        Some(e) => Err(ApiError::from_writer(e).with("results", Value::Array(report))),
    }
}

fn with_replayed(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Xlsx,
}

/// Splits `kindergarten.K1.3.2027.csv` into the name and the format.
fn split_file<'a>(file: &'a str, what: &str) -> Result<(&'a str, Format), ApiError> {
    match file.rsplit_once('.') {
        Some((name, "csv")) if !name.is_empty() => Ok((name, Format::Csv)),
        Some((name, "xlsx")) if !name.is_empty() => Ok((name, Format::Xlsx)),
        _ => Err(
            ApiError::not_found(format!("no such file: ask for {what}.csv or {what}.xlsx"))
                .with_field(what),
        ),
    }
}

enum Cell {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Empty,
}

/// A table to export and what it is.
struct Table {
    sheet: &'static str,
    columns: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
    about: Vec<(&'static str, String)>,
}

impl Table {
    fn respond(self, format: Format, stem: &str) -> Result<Response, ApiError> {
        let (bytes, media_type, extension) = match format {
            Format::Csv => (self.to_csv()?, CSV_MEDIA_TYPE, "csv"),
            Format::Xlsx => (self.to_xlsx()?, XLSX_MEDIA_TYPE, "xlsx"),
        };
        let mut response = (StatusCode::OK, bytes).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
        // Ids are ASCII letters, digits, '-', '_' and '.', so the name needs no escaping.
        let disposition = format!("attachment; filename=\"{stem}.{extension}\"");
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).map_err(|_| ApiError::internal())?,
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Ok(response)
    }

    /// RFC 4180 CSV in UTF-8 with a byte-order mark (so that Excel detects UTF-8).
    fn to_csv(&self) -> Result<Vec<u8>, ApiError> {
        let mut out = "\u{feff}".as_bytes().to_vec();
        {
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .quote_style(csv::QuoteStyle::Necessary)
                .from_writer(&mut out);
            let failed = |e: csv::Error| {
                tracing::error!(error = %e, "csv export failed");
                ApiError::internal()
            };
            writer.write_record(&self.columns).map_err(failed)?;
            for row in &self.rows {
                let fields = row.iter().map(|cell| match cell {
                    Cell::Int(n) => n.to_string(),
                    Cell::Text(s) => s.clone(),
                    Cell::Time(t) => rfc3339(*t),
                    Cell::Empty => String::new(),
                });
                writer.write_record(fields).map_err(failed)?;
            }
            writer.flush().map_err(|e| failed(e.into()))?;
        }
        Ok(out)
    }

    fn to_xlsx(&self) -> Result<Vec<u8>, ApiError> {
        use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook, XlsxError};
        fn excel_time(t: DateTime<Utc>) -> Result<ExcelDateTime, XlsxError> {
            ExcelDateTime::from_ymd(
                u16::try_from(t.year()).unwrap_or(1900),
                t.month() as u8,
                t.day() as u8,
            )?
            .and_hms_milli(
                t.hour() as u16,
                t.minute() as u8,
                t.second() as u8,
                (t.timestamp_subsec_millis() % 1000) as u16,
            )
        }
        let build = || -> Result<Vec<u8>, XlsxError> {
            let bold = CellFormat::new().set_bold();
            let time = CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss.000");
            let mut workbook = Workbook::new();
            let sheet = workbook.add_worksheet();
            sheet.set_name(self.sheet)?;
            for (c, name) in self.columns.iter().enumerate() {
                let c = c as u16;
                sheet.write_string_with_format(0, c, *name, &bold)?;
                sheet.set_column_width(
                    c,
                    if name.ends_with("_at") || *name == "deadline" {
                        24
                    } else {
                        14
                    },
                )?;
            }
            for (r, row) in self.rows.iter().enumerate() {
                let r = r as u32 + 1;
                for (c, cell) in row.iter().enumerate() {
                    let c = c as u16;
                    match cell {
                        Cell::Int(n) => {
                            sheet.write_number(r, c, *n as f64)?;
                        }
                        Cell::Text(s) => {
                            sheet.write_string(r, c, s.as_str())?;
                        }
                        Cell::Time(t) => {
                            sheet.write_datetime_with_format(r, c, excel_time(*t)?, &time)?;
                        }
                        Cell::Empty => {}
                    }
                }
            }
            sheet.set_freeze_panes(1, 0)?;
            let last_column = self.columns.len().saturating_sub(1) as u16;
            sheet.autofilter(0, 0, self.rows.len() as u32, last_column)?;

            let about = workbook.add_worksheet();
            about.set_name("about")?;
            about.set_column_width(0, 16)?;
            about.set_column_width(1, 80)?;
            let exported_at = rfc3339(Utc::now());
            let mut lines: Vec<(&str, &str)> =
                self.about.iter().map(|(k, v)| (*k, v.as_str())).collect();
            lines.push(("exported_at", &exported_at));
            let rows = self.rows.len().to_string();
            lines.push(("rows", &rows));
            for (r, (key, value)) in lines.iter().enumerate() {
                about.write_string_with_format(r as u32, 0, *key, &bold)?;
                about.write_string(r as u32, 1, *value)?;
            }
            workbook.save_to_buffer()
        };
        build().map_err(|e| {
            tracing::error!(error = %e, "xlsx export failed");
            ApiError::internal()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn table() -> Table {
        let at = DateTime::parse_from_rfc3339("2026-03-01T09:30:15.250Z")
            .unwrap()
            .with_timezone(&Utc);
        Table {
            sheet: "queue",
            columns: vec!["position", "application", "tier", "registered_at"],
            rows: vec![
                vec![Cell::Int(1), Cell::Int(17), Cell::Int(3), Cell::Time(at)],
                vec![
                    Cell::Int(2),
                    Cell::Text("a, \"quoted\" Сад".into()),
                    Cell::Empty,
                    Cell::Empty,
                ],
            ],
            about: vec![("queue", "kindergarten.K1.3.2027".into())],
        }
    }

    #[test]
    fn csv_is_rfc4180_with_a_bom() {
        let bytes = table().to_csv().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "\u{feff}position,application,tier,registered_at\r\n\
             1,17,3,2026-03-01T09:30:15.250Z\r\n\
             2,\"a, \"\"quoted\"\" Сад\",,\r\n"
        );
    }

    #[test]
    fn xlsx_holds_the_table_and_the_about_sheet() {
        let bytes = table().to_xlsx().unwrap();
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut read = |name: &str| {
            let mut text = String::new();
            zip.by_name(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        let workbook = read("xl/workbook.xml");
        assert!(workbook.contains(r#"name="queue""#), "{workbook}");
        assert!(workbook.contains(r#"name="about""#), "{workbook}");
        let strings = read("xl/sharedStrings.xml");
        for s in [
            "registered_at",
            "a, \"quoted\" Сад",
            "kindergarten.K1.3.2027",
        ] {
            assert!(strings.contains(s), "{s} missing from {strings}");
        }
        let sheet = read("xl/worksheets/sheet1.xml");
        assert!(sheet.contains("<v>17</v>"), "{sheet}");
        // 2026-03-01 09:30:15.250 as an Excel serial date.
        assert!(sheet.contains("<v>46082.39600"), "{sheet}");
    }

    #[test]
    fn tables_name_the_bad_row_and_column() {
        // A byte-order mark the extractor did not drop is ignored too.
        let rows = read_table(
            "\u{feff}ID;Kind;Name\r\nK1;kindergarten;\"A; B\"\r\n;;\r\n",
            &["id", "kind", "name"],
        );
        assert_eq!(rows.unwrap().len(), 1);
        let rows = read_table(
            "Kind;ID;Name\r\nkindergarten;K1;\"A; B\"\r\n;;\r\nschool;S1;C\r\n",
            &["id", "kind", "name"],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (2, vec!["K1".into(), "kindergarten".into(), "A; B".into()]),
                (4, vec!["S1".into(), "school".into(), "C".into()]),
            ]
        );
        let rows = read_table(
            "id,kind,name\n\"K1\",school,\"two\nlines\"\n\nK2,school,x\n",
            &["id", "kind", "name"],
        )
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 5]);
        let e = read_table(
            "id,kind,name,extra\nK1,school,x,y\n",
            &["id", "kind", "name"],
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("row 1, extra"));
        let e = read_table("id,kind,name\nK1,school\n", &["id", "kind", "name"]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("row 2, id"));
        let e = read_table("id,kind,name\n", &["id", "kind", "name"]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert_eq!(column_of("seats.age_group", "x"), "age_group");
        assert_eq!(
            split_file("kindergarten.K1.3.2027.xlsx", "queue").unwrap(),
            ("kindergarten.K1.3.2027", Format::Xlsx)
        );
        assert!(split_file("x.pdf", "queue").is_err());
    }
}
