//! Exports: a queue or a round's results as CSV or XLSX. One route per kind of file, whose
//! handler splits the extension off; one documented operation per format.

use axum::extract::{Path, State as AxumState};
use axum::response::Response;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use ochered_core::command::Sealed;
use ochered_core::domain::PersonKey;
use ochered_core::state::Application;

use super::table::{columns, rfc3339, split_file, time_zone, zoned, Cell, Format, Table};
use crate::http::access::{self, find_round, parse_round};
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::http::personal::open_contact;
use crate::state::AppState;
use crate::wire::rounds::placement_in;
use crate::wire::schema::BinaryFile;

const BASE: &str = "/api/v1/authorities/{authority}/files";

/// The exports' documentation: one operation per file format, while the router has one
/// route per kind of file (a path parameter cannot be followed by `.csv` in the same segment,
/// so the handler splits the extension off).
#[derive(OpenApi)]
#[openapi(paths(
    export_queue_csv,
    export_queue_xlsx,
    export_round_csv,
    export_round_xlsx
))]
struct Exports;

pub fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .route(&format!("{BASE}/queues/{{file}}"), get(queue_file))
        .route(&format!("{BASE}/rounds/{{file}}"), get(round_file));
    router.get_openapi_mut().merge(Exports::openapi());
    router
}

/// The queue files' route: `{queue}.csv` or `{queue}.xlsx`.
async fn queue_file(
    AxumState(state): AxumState<AppState>,
    Path((authority, file)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let (queue, format) = split_file(&file, "queue")?;
    match format {
        Format::Csv => export_queue_csv(state, authority, queue, caller).await,
        Format::Xlsx => export_queue_xlsx(state, authority, queue, caller).await,
    }
}

/// Export a queue as CSV
///
/// **Roles:** officer, auditor (and admin). The whole queue in order: columns
/// `position,application,tier,registered_at (Zone)`, and for officers only the family's
/// contact as given with the application: `child_name,guardian_name,phone,email` (empty
/// when none was given or after erasure). Auditors get the anonymised columns only. UTF-8
/// with a byte-order mark, CRLF line ends (RFC 4180); `registered_at` is RFC 3339 in the
/// authority's time zone, with its offset, and the header names the zone
/// (`registered_at (Asia/Novosibirsk)`). Queue ids are those of
/// `GET /api/v1/authorities/{authority}/queues`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/queues/{queue}.csv",
    operation_id = "export_queue",
    tag = "files",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "A queue id, e.g. `kindergarten.K001.3.2027`")),
    responses(
        (status = 200, description = "The queue as CSV (`Content-Disposition: attachment`).", content_type = "text/csv", body = String),
    )
)]
async fn export_queue_csv(
    state: AppState,
    authority: String,
    queue: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    export_queue(state, authority, queue, caller, Format::Csv).await
}

/// Export a queue as XLSX
///
/// **Roles:** officer, auditor (and admin). The same table as the CSV on the sheet `queue`
/// (registration times as Excel date-times in the authority's time zone, named in the
/// header), and what was exported on the sheet `about`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/queues/{queue}.xlsx",
    tag = "files",
    security(("bearer" = [])),
    params(("queue" = String, Path, description = "A queue id, e.g. `kindergarten.K001.3.2027`")),
    responses(
        (status = 200, description = "The queue as an Excel workbook (`Content-Disposition: attachment`).", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = BinaryFile),
    )
)]
async fn export_queue_xlsx(
    state: AppState,
    authority: String,
    queue: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    export_queue(state, authority, queue, caller, Format::Xlsx).await
}

/// What the tiers of a queue mean: the kindergarten and the school numbering differ
/// (docs/RULES.md#kindergarten-order, #school-order).
fn tier_legend(key: &ochered_core::queues::QueueKey) -> &'static str {
    match key {
        ochered_core::queues::QueueKey::School { .. } => {
            "0 extraordinary or first priority, 1 sibling, 2 catchment, 3 general"
        }
        ochered_core::queues::QueueKey::Kindergarten { .. } => {
            "0 extraordinary, 1 first priority, 2 sibling, 3 general"
        }
    }
}

async fn export_queue(
    state: AppState,
    authority: String,
    queue_name: &str,
    caller: Caller,
    format: Format,
) -> Result<Response, ApiError> {
    let personal = sees_personal_data(&caller);
    let w = access::writer(&state, &authority)?;
    let (mut table, people) = w.read(|s| {
        let (key, q) = access::find_queue(s, queue_name)?;
        let zone = time_zone(s);
        let mut people = Vec::new();
        let rows = q
            .members
            .range_from(0)
            .enumerate()
            .map(|(i, sort_key)| {
                let app = s.application(sort_key.number);
                people.push(app.and_then(sealed_contact));
                vec![
                    Cell::Int(i as i64 + 1),
                    Cell::Int(i64::from(sort_key.number.0)),
                    Cell::Int(i64::from(sort_key.tier)),
                    app.map_or(Cell::Empty, |a| Cell::Time(a.registered_at)),
                ]
            })
            .collect();
        let description = s.describe_queue(key);
        let institution = s
            .institution_idx(&description.institution)
            .map(|idx| s.institution(idx).name.clone())
            .unwrap_or_default();
        let description = serde_json::to_string(&description).unwrap_or_default();
        let mut columns = columns(&["position", "application", "tier"]);
        columns.push(zoned("registered_at", zone));
        Ok::<_, ApiError>((
            Table {
                sheet: "queue",
                columns,
                time_zone: zone,
                rows,
                about: vec![
                    ("authority", authority.clone()),
                    ("queue", queue_name.to_owned()),
                    ("institution_name", institution),
                    ("description", description),
                    (
                        "content",
                        format!(
                            "{}: position, application number, priority tier ({}), registration time ({})",
                            if personal {
                                "with the families' contacts (officer view)"
                            } else {
                                "anonymised (auditor view)"
                            },
                            tier_legend(key),
                            zone.name(),
                        ),
                    ),
                ],
            },
            people,
        ))
    })?;
    if personal {
        add_contacts(&state, &authority, &mut table, people).await?;
    }
    table.respond(format, &format!("{authority}-queue-{queue_name}"))
}

/// Whether the caller's exports carry the families' names and contacts: officers' (and
/// admins') do, auditors' never.
fn sees_personal_data(caller: &Caller) -> bool {
    matches!(caller.role, Role::Officer | Role::Admin)
}

/// The sealed contact of an application, with whose key it is sealed (none when none was
/// given, or after erasure).
fn sealed_contact(app: &Application) -> Option<(PersonKey, Sealed)> {
    match &app.sealed {
        Some(sealed) if !app.erased => Some((app.child, (**sealed).clone())),
        _ => None,
    }
}

/// The columns of the families' contacts, opened row by row (`people` in the order of the
/// rows).
async fn add_contacts(
    state: &AppState,
    authority: &str,
    table: &mut Table,
    people: Vec<Option<(PersonKey, Sealed)>>,
) -> Result<(), ApiError> {
    table
        .columns
        .extend(columns(&["child_name", "guardian_name", "phone", "email"]));
    let text = |value: Option<String>| value.map_or(Cell::Empty, Cell::Text);
    for (row, person) in table.rows.iter_mut().zip(people) {
        let contact = match person {
            Some((child, sealed)) => {
                open_contact(state, authority, &child, Some(&sealed), false).await?
            }
            None => None,
        };
        match contact {
            Some(c) => row.extend([
                Cell::Text(c.child_name),
                Cell::Text(c.guardian_name),
                text(c.phone),
                text(c.email),
            ]),
            None => row.extend([Cell::Empty, Cell::Empty, Cell::Empty, Cell::Empty]),
        }
    }
    Ok(())
}

/// The round files' route: `{round}.csv` or `{round}.xlsx`.
async fn round_file(
    AxumState(state): AxumState<AppState>,
    Path((authority, file)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Officer, Role::Auditor])?;
    let (round, format) = split_file(&file, "round")?;
    match format {
        Format::Csv => export_round_csv(state, authority, round, caller).await,
        Format::Xlsx => export_round_xlsx(state, authority, round, caller).await,
    }
}

/// Export a round's results as CSV
///
/// **Roles:** officer, auditor (and admin). One row per placement: `application,
/// institution,institution_name,age_group,seat_group` and, for officers only, the family's
/// answer and contact: `status,deadline (Zone),answered_at (Zone),child_name,guardian_name,
/// phone,email`. Times are RFC 3339 in the authority's time zone, which the header names.
/// Auditors get the anonymised view, as from `GET …/rounds/{round}`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/files/rounds/{round}.csv",
    operation_id = "export_round",
    tag = "files",
    security(("bearer" = [])),
    params(("round" = String, Path, description = "A round id, e.g. `2027-main`")),
    responses(
        (status = 200, description = "The round's placements as CSV (`Content-Disposition: attachment`).", content_type = "text/csv", body = String),
    )
)]
async fn export_round_csv(
    state: AppState,
    authority: String,
    round: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    export_round(state, authority, round, caller, Format::Csv).await
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
        (status = 200, description = "The round's placements as an Excel workbook (`Content-Disposition: attachment`).", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = BinaryFile),
    )
)]
async fn export_round_xlsx(
    state: AppState,
    authority: String,
    round: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    export_round(state, authority, round, caller, Format::Xlsx).await
}

async fn export_round(
    state: AppState,
    authority: String,
    round_name: &str,
    caller: Caller,
    format: Format,
) -> Result<Response, ApiError> {
    let round_id = parse_round(round_name)?;
    let full = sees_personal_data(&caller);
    let w = access::writer(&state, &authority)?;
    let (mut table, people) = w.read(|s| {
        let round = find_round(s, &round_id)?;
        let zone = time_zone(s);
        let mut columns = columns(&[
            "application",
            "institution",
            "institution_name",
            "age_group",
            "seat_group",
        ]);
        if full {
            columns.extend([
                "status".to_owned(),
                zoned("deadline", zone),
                zoned("answered_at", zone),
            ]);
        }
        let mut people = Vec::new();
        let rows = round
            .placements
            .iter()
            .map(|p| {
                let group = &round.seats[p.seats as usize];
                let institution = s.institution(group.institution);
                people.push(s.application(p.number).and_then(sealed_contact));
                let mut row = vec![
                    Cell::Int(i64::from(p.number.0)),
                    Cell::Text(institution.id.to_string()),
                    Cell::Text(institution.name.clone()),
                    group
                        .age_group
                        .map_or(Cell::Empty, |a| Cell::Int(i64::from(a))),
                    Cell::Text(s.seat_group_id(group)),
                ];
                if full {
                    let placement = placement_in(s, round, p.number);
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
        let table = Table {
            sheet: "round",
            columns,
            time_zone: zone,
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
                        "placements with the families' answers and contacts (officer view)".into()
                    } else {
                        "placements, anonymised (auditor view: no answers or names of families)"
                            .into()
                    },
                ),
            ],
        };
        Ok::<_, ApiError>((table, people))
    })?;
    if full {
        add_contacts(&state, &authority, &mut table, people).await?;
    }
    table.respond(format, &format!("{authority}-round-{round_id}"))
}
