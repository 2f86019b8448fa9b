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
//! correctly; times are RFC 3339 in the authority's time zone with their offset, and a time
//! column's header names the zone (`registered_at (Asia/Novosibirsk)`). The XLSX workbook has
//! the same table on its first sheet (times as Excel date-times in that zone) and what was
//! exported, when, in which zone and by which rule on a second sheet, `about`. Round results
//! name each kindergarten next to its id. Auditors' files are anonymised (queues: position,
//! application number, tier, registration time; rounds: the placements only); officers'
//! files add the families' contacts (`child_name,guardian_name,phone,email`) and, for
//! rounds, their answers, as `GET …/rounds/{round}` does.

mod csv;
mod demand;
mod exports;
mod table;

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ochered_core::command::{AgeGroupSeats, Command};
use ochered_core::decide::AGE_GROUP_SEATS_MAX;
use ochered_core::domain::InstitutionId;
use ochered_core::Rejection;
use ochered_writer::{Outcome, Writer};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use self::csv::{
    column_of, parse_kind, read_table, CsvUpload, RowErrors, Rows, UPLOAD_LIMIT_BYTES,
};
use crate::http::auth::Role;
use crate::http::command::{mark_replayed, Write};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::wire::schema::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    let upload_limit = || DefaultBodyLimit::max(UPLOAD_LIMIT_BYTES);
    let router = OpenApiRouter::new()
        .routes(routes!(import_institutions).layer(upload_limit()))
        .routes(routes!(import_seats).layer(upload_limit()))
        .merge(exports::router())
        .merge(demand::router());
    router
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
    /// For `exists`: whether the registered kind and name equal the row's, and so do the
    /// district and address where the row gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<bool>,
    /// For `created`: the place of the registration in the authority's chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_seq: Option<i64>,
    /// For `refused`: the problem+json the rules answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
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
    pub seats: Vec<AgeGroupSeats>,
    /// `published` or `refused`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Import institutions from CSV
///
/// **Roles:** officer (and admin). Columns `id,kind,name` and optionally `district,address`
/// (any order); `kind` is `kindergarten`, `school` or `clinic`; an empty `district` or
/// `address` cell registers none. All rows are checked before anything is written: a
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
        description = "UTF-8 CSV with a header row: `id,kind,name` and optionally `district,address`. Example:\n\n```\nid,kind,name,district,address\nK001,kindergarten,\"Детский сад №1 «Солнышко»\",Центральный,\"ул. Ленина, 5\"\nS001,school,Школа №1,Северный,\n```",
    ),
    responses(
        (status = 201, description = "At least one institution was registered.", body = InstitutionsImport),
        (status = 200, description = "Nothing new: every row already existed.", body = InstitutionsImport),
        (status = 422, description = "A row or the header is bad; nothing was written. `field` names the first (`row 3, kind`), `errors` lists all.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn import_institutions(
    Path(authority): Path<String>,
    write: Write,
    body: Result<CsvUpload, ApiError>,
) -> Result<Response, ApiError> {
    let (w, rows) = upload(
        &write,
        &authority,
        body,
        &["id", "kind", "name"],
        &["district", "address"],
    )?;
    let n_rows = rows.len();

    let mut errors = RowErrors::default();
    let mut first_row_of: HashMap<InstitutionId, u64> = HashMap::new();
    let mut jobs = Vec::new();
    for (row, values) in rows {
        let [id, kind, name, district, address] =
            <[String; 5]>::try_from(values).expect("five columns");
        let optional = |value: String| (!value.is_empty()).then_some(value);
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
                command: Command::RegisterInstitution {
                    id,
                    kind,
                    name,
                    district: optional(district),
                    address: optional(address),
                },
            });
        }
    }

    // The rules, asked on the current state without recording anything: an existing
    // institution is fine (reported below), anything else is the row's error.
    for (job, check) in jobs
        .iter()
        .zip(w.check(jobs.iter().map(|job| &job.command)))
    {
        match check {
            Ok(()) | Err(Rejection::InstitutionExists { .. }) => {}
            Err(r) => match r.field() {
                Some(field) => errors.push(job.rows[0], column_of(field, "name"), r.to_string()),
                None => return Err(ApiError::from_rejection(&r)),
            },
        }
    }
    errors.into_result()?;

    let (sent, replayed) = submit_all(&write, &w, jobs).await?;
    let mut results = Vec::with_capacity(sent.len());
    for (job, outcome) in sent {
        let Command::RegisterInstitution {
            id,
            kind,
            name,
            district,
            address,
        } = job.command
        else {
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
                        existing.kind == kind
                            && existing.name == name
                            && (district.is_none() || existing.district == district)
                            && (address.is_none() || existing.address == address)
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
    Ok(mark_replayed(
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
        (status = 422, description = "A row or the header is bad; nothing was written. `field` names the first (`row 4, seats`), `errors` lists all.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn import_seats(
    Path(authority): Path<String>,
    write: Write,
    body: Result<CsvUpload, ApiError>,
) -> Result<Response, ApiError> {
    let (w, rows) = upload(
        &write,
        &authority,
        body,
        &["institution", "intake_year", "age_group", "seats"],
        &[],
    )?;
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

    for (job, check) in jobs
        .iter()
        .zip(w.check(jobs.iter().map(|job| &job.command)))
    {
        let Err(r) = check else {
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
            (_, None) => return Err(ApiError::from_rejection(&r)),
        }
    }
    errors.into_result()?;

    let (sent, replayed) = submit_all(&write, &w, jobs).await?;
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
    Ok(mark_replayed(
        (status, Json(body)).into_response(),
        replayed,
    ))
}

/// The rows of one institution and intake year, with the seats each gives.
type SeatRows = Vec<(u64, AgeGroupSeats)>;

/// One command of an upload and the rows it came from.
struct Job {
    rows: Vec<u64>,
    command: Command,
}

/// Sends the jobs in file order ([`Write::send_rows`]): row N under `KEY#row-N`. Answers each
/// job's outcome and whether every answer was a replay. If the writer could not take a
/// command (overloaded, store down), answers that problem with the results so far: a retry
/// with the same key is safe.
async fn submit_all(
    write: &Write,
    w: &Writer,
    jobs: Vec<Job>,
) -> Result<(Vec<(Job, Outcome)>, bool), ApiError> {
    let commands = jobs
        .iter()
        .map(|job| (job.rows[0], job.command.clone()))
        .collect();
    let answers = write.send_rows(w, commands).await?;
    let mut failure = None;
    let mut done = Vec::with_capacity(answers.len());
    // Refusals are decided afresh on a retry (only accepted commands are stored under their
    // key), so the upload counts as replayed when every accepted row was.
    let mut any_replayed = false;
    let mut fresh_write = false;
    let mut report = Vec::new();
    for (job, answer) in jobs.into_iter().zip(answers) {
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

/// What both imports do first: the role, the file, the authority's writer, the table.
fn upload(
    write: &Write,
    authority: &str,
    body: Result<CsvUpload, ApiError>,
    columns: &[&str],
    optional: &[&str],
) -> Result<(Writer, Rows), ApiError> {
    write.allow(&[Role::Officer])?;
    let CsvUpload(text) = body?;
    let w = write.writer(authority)?;
    let rows = read_table(&text, columns, optional)?;
    Ok((w, rows))
}
