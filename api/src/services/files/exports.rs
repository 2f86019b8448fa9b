//! Exports: a queue or a round's results as CSV or XLSX. One route per kind of file, whose
//! handler splits the extension off; one documented operation per format.

use axum::extract::{Path, State as AxumState};
use axum::response::Response;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::table::{rfc3339, split_file, Cell, Format, Table};
use crate::http::access::{self, find_round, parse_round};
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
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
        Format::Csv => export_queue_csv(state, authority, queue).await,
        Format::Xlsx => export_queue_xlsx(state, authority, queue).await,
    }
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
) -> Result<Response, ApiError> {
    export_queue(state, authority, queue, Format::Csv).await
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
        (status = 200, description = "The queue as an Excel workbook (`Content-Disposition: attachment`).", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = BinaryFile),
    )
)]
async fn export_queue_xlsx(
    state: AppState,
    authority: String,
    queue: &str,
) -> Result<Response, ApiError> {
    export_queue(state, authority, queue, Format::Xlsx).await
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
    format: Format,
) -> Result<Response, ApiError> {
    let w = access::writer(&state, &authority)?;
    let table = w.read(|s| {
        let (key, q) = access::find_queue(s, queue_name)?;
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
                    format!(
                        "anonymised: position, application number, priority tier ({}), registration time (UTC)",
                        tier_legend(key)
                    ),
                ),
            ],
        })
    })?;
    table.respond(format, &format!("{authority}-queue-{queue_name}"))
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
/// institution,age_group,seat_group` and, for officers only, the family's answer:
/// `status,deadline,answered_at`. Auditors get the anonymised view, as from
/// `GET …/rounds/{round}`.
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
    let full = caller.role != Role::Auditor;
    let w = access::writer(&state, &authority)?;
    let table = w.read(|s| {
        let round = find_round(s, &round_id)?;
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
