//! The demand report: kindergarten applications against seats by district × age group ×
//! intake year (docs/RULES.md#kindergarten-demand), as JSON, CSV and XLSX. Counts only, no
//! personal data, so auditors may read it as officers do.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State as AxumState};
use axum::response::Response;
use axum::Json;
use ochered_core::domain::{intake_year_for, september_first};
use ochered_core::state::{ApplicationStatus, ServiceKind};
use ochered_core::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::table::{columns, time_zone, Cell, Format, Table};
use crate::http::access;
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::wire::schema::BinaryFile;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(demand_report))
        .routes(routes!(demand_report_csv))
        .routes(routes!(demand_report_xlsx))
}

/// Who may read the report: counts only, so auditors too.
const READERS: &[Role] = &[Role::Officer, Role::Auditor];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DemandQuery {
    /// Only this intake year (2000–2200): the year of the 1 September the children start.
    intake_year: Option<i32>,
}

/// One district, age group and intake year.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct DemandRow {
    /// The district of the kindergartens counted; `null` gathers kindergartens registered
    /// without one.
    #[schema(example = "Central")]
    pub district: Option<String>,
    pub intake_year: i32,
    pub age_group: u8,
    /// Waiting applications whose first choice is in the district.
    pub applications_first_choice: u32,
    /// Waiting applications that list at least one kindergarten of the district (each counted
    /// once per district, however many of its kindergartens it lists).
    pub applications_any_choice: u32,
    /// Seats published for the group in the district's kindergartens.
    pub seats_published: u32,
    /// Of them, held by outstanding offers or enrolled children.
    pub seats_taken: u32,
    /// `seats_published − seats_taken` (never below 0 per kindergarten).
    pub seats_free: u32,
    /// Projected shortage: `applications_first_choice − seats_free` when positive, else 0.
    pub shortage: u32,
    /// Projected surplus: `seats_free − applications_first_choice` when positive, else 0.
    pub surplus: u32,
}

impl DemandRow {
    fn add(&mut self, other: &DemandRow) {
        self.applications_first_choice += other.applications_first_choice;
        self.applications_any_choice += other.applications_any_choice;
        self.seats_published += other.seats_published;
        self.seats_taken += other.seats_taken;
        self.seats_free += other.seats_free;
        self.shortage += other.shortage;
        self.surplus += other.surplus;
    }
}

/// A district's totals for an intake year: the sums of its rows over the age groups.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DistrictDemand {
    #[schema(example = "Central")]
    pub district: Option<String>,
    pub intake_year: i32,
    pub applications_first_choice: u32,
    /// Waiting applications listing a kindergarten of the district in any age group; an
    /// application is in one age group, so this is the sum of the rows.
    pub applications_any_choice: u32,
    pub seats_published: u32,
    pub seats_taken: u32,
    pub seats_free: u32,
    /// The sum of the age groups' shortages: free seats of one age group do not make up for
    /// children of another.
    pub shortage: u32,
    /// The sum of the age groups' surpluses.
    pub surplus: u32,
}

/// Kindergarten demand against seats.
#[derive(Debug, Serialize, ToSchema)]
pub struct DemandReport {
    #[schema(example = "demo")]
    pub authority: String,
    /// The intake year asked for, if any.
    pub intake_year: Option<i32>,
    /// Events of the authority folded into the counts: the report is as of this point of
    /// its chain.
    pub as_of_events: u64,
    /// By intake year, district (named ones alphabetically, then `null`) and age group; only
    /// groups with applications or published seats.
    pub rows: Vec<DemandRow>,
    /// By intake year and district, in the same order.
    pub districts: Vec<DistrictDemand>,
}

/// How rows sort: intake year, then named districts alphabetically, then the unnamed one,
/// then age group.
type RowKey = (i32, bool, String, u8);

fn row_key(intake_year: i32, district: Option<&str>, age_group: u8) -> RowKey {
    (
        intake_year,
        district.is_none(),
        district.unwrap_or_default().to_owned(),
        age_group,
    )
}

/// The row of a district, age group and intake year, made empty on first use.
fn row<'a>(
    rows: &'a mut BTreeMap<RowKey, DemandRow>,
    intake_year: i32,
    district: Option<&str>,
    age_group: u8,
) -> &'a mut DemandRow {
    rows.entry(row_key(intake_year, district, age_group))
        .or_insert_with(|| DemandRow {
            district: district.map(str::to_owned),
            intake_year,
            age_group,
            ..DemandRow::default()
        })
}

/// Counts the report from the state (docs/RULES.md#kindergarten-demand).
pub fn demand(s: &State, authority: &str, intake_year: Option<i32>) -> DemandReport {
    let mut rows: BTreeMap<RowKey, DemandRow> = BTreeMap::new();
    let district_of = |idx: u32| s.institution(idx).district.as_deref();
    // Waiting applications, in the queue they wait in (docs/RULES.md#kindergarten-age).
    for app in s.applications() {
        if app.service != ServiceKind::Kindergarten || app.status != ApplicationStatus::Active {
            continue;
        }
        let year = intake_year_for(app.desired_start);
        if intake_year.is_some_and(|y| y != year) {
            continue;
        }
        let age_group = app
            .birth_date
            .age_on(september_first(year))
            .clamp(0, i32::from(u8::MAX)) as u8;
        let Some(&first) = app.preferences.first() else {
            continue;
        };
        row(&mut rows, year, district_of(first), age_group).applications_first_choice += 1;
        let districts: BTreeSet<Option<&str>> =
            app.preferences.iter().map(|&i| district_of(i)).collect();
        for district in districts {
            row(&mut rows, year, district, age_group).applications_any_choice += 1;
        }
    }

    for g in s.kindergarten_seats() {
        if intake_year.is_some_and(|y| y != g.intake_year) {
            continue;
        }
        let r = row(
            &mut rows,
            g.intake_year,
            district_of(g.institution),
            g.age_group,
        );
        r.seats_published += g.published;
        r.seats_taken += g.taken;
        r.seats_free += g.published.saturating_sub(g.taken);
    }

    let mut totals: BTreeMap<(i32, bool, String), DemandRow> = BTreeMap::new();
    let rows: Vec<DemandRow> = rows
        .into_iter()
        .map(|((year, unnamed, name, _), mut r)| {
            let first = r.applications_first_choice;
            r.shortage = first.saturating_sub(r.seats_free);
            r.surplus = r.seats_free.saturating_sub(first);
            totals
                .entry((year, unnamed, name))
                .or_insert_with(|| DemandRow {
                    district: r.district.clone(),
                    intake_year: year,
                    ..DemandRow::default()
                })
                .add(&r);
            r
        })
        .collect();
    let districts = totals
        .into_values()
        .map(|t| DistrictDemand {
            district: t.district,
            intake_year: t.intake_year,
            applications_first_choice: t.applications_first_choice,
            applications_any_choice: t.applications_any_choice,
            seats_published: t.seats_published,
            seats_taken: t.seats_taken,
            seats_free: t.seats_free,
            shortage: t.shortage,
            surplus: t.surplus,
        })
        .collect();
    DemandReport {
        authority: authority.to_owned(),
        intake_year,
        as_of_events: s.n_events(),
        rows,
        districts,
    }
}

/// The caller, the authority and the query, checked; the report counted.
fn read_report(
    state: &AppState,
    authority: &str,
    caller: &Caller,
    query: Result<Query<DemandQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(DemandReport, chrono_tz::Tz), ApiError> {
    caller.require(READERS)?;
    let Query(query) = query.map_err(|e| access::query_error(e, "intake_year"))?;
    if let Some(year) = query.intake_year {
        if !(2000..=2200).contains(&year) {
            return Err(ApiError::invalid("intake_year", "must be a year 2000-2200"));
        }
    }
    let w = access::writer(state, authority)?;
    Ok(w.read(|s| (demand(s, authority, query.intake_year), time_zone(s))))
}

/// Demand against seats
///
/// **Roles:** officer, auditor (and admin). Kindergarten applications waiting in the queues
/// against the seats published, by district × age group × intake year, with the projected
/// shortage or surplus of each (docs/RULES.md#kindergarten-demand): an application counts in
/// the district of its first choice (`applications_first_choice`, each application once) and
/// in every district it lists (`applications_any_choice`); `shortage` is first-choice
/// applications minus free seats when positive, `surplus` the reverse. Counts only, no
/// personal data. As files: `…/reports/demand.csv` and `…/reports/demand.xlsx`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/reports/demand",
    tag = "reports",
    security(("bearer" = [])),
    params(DemandQuery),
    responses((status = 200, description = "The report.", body = DemandReport))
)]
async fn demand_report(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    query: Result<Query<DemandQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DemandReport>, ApiError> {
    read_report(&state, &authority, &caller, query).map(|(report, _)| Json(report))
}

/// Demand against seats as CSV
///
/// **Roles:** officer, auditor (and admin). The rows of `GET …/reports/demand`, one per
/// district, age group and intake year: columns `district,intake_year,age_group,
/// applications_first_choice,applications_any_choice,seats_published,seats_taken,seats_free,
/// shortage,surplus` (an empty `district` gathers kindergartens registered without one).
/// UTF-8 with a byte-order mark, CRLF line ends (RFC 4180).
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/reports/demand.csv",
    tag = "reports",
    security(("bearer" = [])),
    params(DemandQuery),
    responses(
        (status = 200, description = "The report as CSV (`Content-Disposition: attachment`).", content_type = "text/csv", body = String),
    )
)]
async fn demand_report_csv(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    query: Result<Query<DemandQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (report, zone) = read_report(&state, &authority, &caller, query)?;
    report_file(report, zone, Format::Csv)
}

/// Demand against seats as XLSX
///
/// **Roles:** officer, auditor (and admin). The same table as the CSV on the sheet `demand`,
/// and what was counted, how, and as of which point of the chain on the sheet `about`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/reports/demand.xlsx",
    tag = "reports",
    security(("bearer" = [])),
    params(DemandQuery),
    responses(
        (status = 200, description = "The report as an Excel workbook (`Content-Disposition: attachment`).", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = BinaryFile),
    )
)]
async fn demand_report_xlsx(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    query: Result<Query<DemandQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (report, zone) = read_report(&state, &authority, &caller, query)?;
    report_file(report, zone, Format::Xlsx)
}

/// The columns of the report's files, in the order of [`DemandRow`]'s fields.
const COLUMNS: [&str; 10] = [
    "district",
    "intake_year",
    "age_group",
    "applications_first_choice",
    "applications_any_choice",
    "seats_published",
    "seats_taken",
    "seats_free",
    "shortage",
    "surplus",
];

fn report_file(
    report: DemandReport,
    zone: chrono_tz::Tz,
    format: Format,
) -> Result<Response, ApiError> {
    let count = |n: u32| Cell::Int(i64::from(n));
    let rows = report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.district.clone().map_or(Cell::Empty, Cell::Text),
                Cell::Int(i64::from(r.intake_year)),
                Cell::Int(i64::from(r.age_group)),
                count(r.applications_first_choice),
                count(r.applications_any_choice),
                count(r.seats_published),
                count(r.seats_taken),
                count(r.seats_free),
                count(r.shortage),
                count(r.surplus),
            ]
        })
        .collect();
    let year = report.intake_year.map(|y| y.to_string());
    let stem = match &year {
        Some(year) => format!("{}-demand-{year}", report.authority),
        None => format!("{}-demand", report.authority),
    };
    let table = Table {
        sheet: "demand",
        columns: columns(&COLUMNS),
        time_zone: zone,
        rows,
        about: vec![
            ("authority", report.authority),
            ("intake_year", year.unwrap_or_else(|| "all".into())),
            ("as_of_events", report.as_of_events.to_string()),
            (
                "content",
                "waiting kindergarten applications against published seats by district, age \
                 group and intake year; counts only, no personal data"
                    .into(),
            ),
            (
                "rules",
                "first choice: each waiting application in the district of its first choice; \
                 any choice: in every district it lists, once each; seats_free = published - \
                 taken (offers and enrolled); shortage = first choice - free when positive, \
                 surplus = free - first choice when positive (docs/RULES.md#kindergarten-demand)"
                    .into(),
            ),
        ],
    };
    table.respond(format, &stem)
}
