//! The officer's desk: finding an application by the child's document, by a name or by its
//! number, and the worklist of privilege claims waiting for an officer's decision.
//!
//! Names live only in the families' sealed contacts (`http::personal`): a search by name
//! opens each contact of the authority with its applicant's key (kept in memory once read)
//! and compares, so it costs one decryption per application with a contact. Only officers
//! (and admins) reach this service; auditors and registrars get 403 and never see a name.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use ochered_core::command::{AgeExceptionDecision, Command, Sealed};
use ochered_core::domain::{ApplicationNumber, CampaignId, PersonKey};
use ochered_core::ordering::{Privilege, PrivilegeStatus};
use ochered_core::state::AgeRequestStatus;
use ochered_core::state::{Application, ApplicationStatus, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::{self, parse_number, query_error};
use crate::http::auth::{Caller, Role};
use crate::http::command::{EventsResponse, Write};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::http::personal::open_contact;
use crate::state::AppState;
use crate::wire::schema::{Code, Problem};
use crate::wire::{self, age_requests, person_key, AgeRequestView, ApplicationView};

/// Most applications one search answers.
pub const SEARCH_RESULTS_MAX: usize = 50;
/// Most claims the privilege worklist answers at once (oldest registrations first).
pub const WORKLIST_MAX: usize = 500;
/// Shortest name fragment a search takes, in characters.
const NAME_MIN_CHARS: usize = 2;
const NAME_MAX_CHARS: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_applications))
        .routes(routes!(privilege_worklist))
        .routes(routes!(age_exception_worklist))
        .routes(routes!(decide_age_exception))
}

/// What to look for: exactly one of the three.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// The child's document number (birth certificate), in any spacing or case.
    document: Option<String>,
    /// A part of the child's or the guardian's name (2-200 characters, any case).
    name: Option<String>,
    /// An application number.
    number: Option<String>,
}

/// Applications found, newest registration last, with the child's name where the family
/// gave it.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    /// Which parameter was searched: `document`, `name` or `number`.
    #[schema(example = "document")]
    by: &'static str,
    applications: Vec<ApplicationView>,
    /// More applications matched than are listed (at most 50 are).
    truncated: bool,
}

/// Search applications
///
/// **Roles:** officer (and admin). By the child's `document` (matched through its keyed
/// hash, as the queue deduplicates children: every application of that child, in both
/// services), by `name` (a part of the child's or the guardian's name as the family gave it,
/// case-insensitive, `ё` = `е`; applications without a contact or erased are not found by
/// name), or by application `number`. Exactly one parameter; at most 50 applications.
/// Auditors and registrars get 403: names are shown to officers only.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/officer/search",
    tag = "officer",
    security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "The applications found (possibly none).", body = SearchResults),
        (status = 403, description = "Not an officer.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "None or more than one parameter, or a bad value; `field` names it.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn search_applications(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    caller.require(&[Role::Officer])?;
    let Query(query) = query.map_err(|e| query_error(e, "document"))?;
    let given: Vec<&str> = [
        ("document", query.document.is_some()),
        ("name", query.name.is_some()),
        ("number", query.number.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if given.len() != 1 {
        // None given names the first parameter; several name the first one too many.
        let field = given.get(1).copied().unwrap_or("document");
        return Err(ApiError::invalid(
            field,
            "give exactly one of document, name or number",
        ));
    }
    let w = access::writer(&state, &authority)?;
    let (by, numbers, truncated) = if let Some(document) = &query.document {
        let child = person_key(&state.config.person_secret, "document", document)?;
        let numbers = w.read(|s| {
            s.applications()
                .iter()
                .filter(|a| a.child == child)
                .map(|a| a.number)
                .collect::<Vec<_>>()
        });
        ("document", numbers, false)
    } else if let Some(number) = &query.number {
        let number = parse_number(number.trim())?;
        let found = w.read(|s| s.application(ApplicationNumber(number)).map(|a| a.number));
        ("number", found.into_iter().collect(), false)
    } else {
        let name = query.name.as_deref().unwrap_or_default();
        let needle = fold(name.trim());
        let chars = needle.chars().count();
        if !(NAME_MIN_CHARS..=NAME_MAX_CHARS).contains(&chars) {
            return Err(ApiError::invalid(
                "name",
                format!("must be {NAME_MIN_CHARS}-{NAME_MAX_CHARS} characters"),
            ));
        }
        let sealed = w.read(|s| {
            s.applications()
                .iter()
                .filter(|a| !a.erased)
                .filter_map(|a| {
                    a.sealed
                        .as_deref()
                        .map(|sealed| (a.number, a.child, sealed.clone()))
                })
                .collect::<Vec<_>>()
        });
        let mut numbers = Vec::new();
        let mut truncated = false;
        for (number, child, sealed) in sealed {
            let Some(contact) =
                open_contact(&state, &authority, &child, Some(&sealed), false).await?
            else {
                continue;
            };
            if fold(&contact.child_name).contains(&needle)
                || fold(&contact.guardian_name).contains(&needle)
            {
                if numbers.len() == SEARCH_RESULTS_MAX {
                    truncated = true;
                    break;
                }
                numbers.push(number);
            }
        }
        ("name", numbers, truncated)
    };
    let truncated = truncated || numbers.len() > SEARCH_RESULTS_MAX;
    let applications = with_names(
        &state,
        &authority,
        &w,
        &numbers[..numbers.len().min(SEARCH_RESULTS_MAX)],
        |_| true,
    )
    .await?;
    Ok(Json(SearchResults {
        by,
        applications: applications.into_iter().map(|(view, _)| view).collect(),
        truncated,
    }))
}

/// A name as compared: lower case, `ё` as `е`.
fn fold(name: &str) -> String {
    name.to_lowercase().replace('ё', "е")
}

/// The views of these applications with the child's name opened, each with what `keep`
/// picked from the application.
async fn with_names<T>(
    state: &AppState,
    authority: &str,
    w: &ochered_writer::Writer,
    numbers: &[ApplicationNumber],
    keep: impl Fn(&Application) -> T,
) -> Result<Vec<(ApplicationView, T)>, ApiError> {
    let found: Vec<(ApplicationView, PersonKey, Option<Sealed>, T)> = w.read(|s: &State| {
        numbers
            .iter()
            .filter_map(|n| s.application(*n))
            .map(|a| {
                (
                    wire::application_view(s, a),
                    a.child,
                    a.sealed.as_deref().cloned(),
                    keep(a),
                )
            })
            .collect()
    });
    let mut out = Vec::with_capacity(found.len());
    for (mut view, child, sealed, kept) in found {
        let contact = open_contact(state, authority, &child, sealed.as_ref(), view.erased).await?;
        view.child_name = contact.map(|c| c.child_name);
        out.push((view, kept));
    }
    Ok(out)
}

/// One application with privileges claimed and not yet decided.
#[derive(Serialize, ToSchema)]
pub struct PrivilegeWork {
    /// The application (with the child's name where given).
    application: ApplicationView,
    /// The claims waiting for confirmation or revocation
    /// (`POST …/applications/{number}/privileges/confirm` or `…/revoke`).
    waiting: Vec<Privilege>,
}

#[derive(Serialize, ToSchema)]
pub struct PrivilegeWorklist {
    /// Oldest registration first.
    items: Vec<PrivilegeWork>,
    /// Applications waiting in all (the list holds at most 500).
    total: usize,
}

/// List privilege claims waiting for confirmation
///
/// **Roles:** officer (and admin). Every application still in the queues (active or offered)
/// with a privilege its family claimed and no officer has confirmed or revoked yet, oldest
/// registration first, at most 500 (`total` counts all). Confirm or revoke each with
/// `POST …/applications/{number}/privileges/confirm` or `…/revoke`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/officer/privileges",
    tag = "officer",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The worklist.", body = PrivilegeWorklist),
        (status = 403, description = "Not an officer.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such authority.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn privilege_worklist(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<PrivilegeWorklist>, ApiError> {
    caller.require(&[Role::Officer])?;
    let w = access::writer(&state, &authority)?;
    let waiting = |a: &Application| -> Vec<Privilege> {
        a.privileges
            .iter()
            .filter(|c| c.status == PrivilegeStatus::Claimed)
            .map(|c| c.privilege.clone())
            .collect()
    };
    let (numbers, total) = w.read(|s| {
        let mut numbers: Vec<_> = s
            .applications()
            .iter()
            .filter(|a| {
                matches!(
                    a.status,
                    ApplicationStatus::Active | ApplicationStatus::Offered
                )
            })
            .filter(|a| {
                a.privileges
                    .iter()
                    .any(|c| c.status == PrivilegeStatus::Claimed)
            })
            .map(|a| (a.registered_at, a.number))
            .collect();
        numbers.sort();
        let total = numbers.len();
        numbers.truncate(WORKLIST_MAX);
        (
            numbers.into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
            total,
        )
    });
    let items = with_names(&state, &authority, &w, &numbers, waiting)
        .await?
        .into_iter()
        .map(|(application, waiting)| PrivilegeWork {
            application,
            waiting,
        })
        .collect();
    Ok(Json(PrivilegeWorklist { items, total }))
}

#[derive(Serialize, ToSchema)]
pub struct AgeExceptionWorklist {
    /// Pending requests, oldest first (at most 500).
    items: Vec<AgeRequestView>,
    /// Pending requests in all.
    total: usize,
}

/// List age-exception requests waiting for a decision
///
/// **Roles:** officer (and admin). Every family's first-grade age-exception request no
/// officer has granted or refused yet, in every campaign, oldest first, at most 500 (`total`
/// counts all). Decide each with `POST …/officer/age-exceptions/decide`.
#[utoipa::path(
    get,
    path = "/api/v1/authorities/{authority}/officer/age-exceptions",
    tag = "officer",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The worklist.", body = AgeExceptionWorklist),
        (status = 403, description = "Not an officer.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such authority.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn age_exception_worklist(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    caller: Caller,
) -> Result<Json<AgeExceptionWorklist>, ApiError> {
    caller.require(&[Role::Officer])?;
    let w = access::writer(&state, &authority)?;
    let mut items = w.read(|s| age_requests(s, |r| r.status == AgeRequestStatus::Pending));
    let total = items.len();
    items.truncate(WORKLIST_MAX);
    Ok(Json(AgeExceptionWorklist { items, total }))
}

/// What an officer answers a family's age-exception request.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Decision {
    Grant,
    Refuse,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AgeExceptionDecisionRequest {
    #[schema(value_type = Code)]
    campaign: CampaignId,
    /// The child's key as the worklist gives it (64 hex digits).
    child: String,
    decision: Decision,
    /// Why it is refused (1-500 characters): required with `refuse`, absent with `grant`.
    #[serde(default)]
    reason: Option<String>,
}

/// Grant or refuse an age-exception request
///
/// **Roles:** officer (and admin). Once per request: granting is the same grant as
/// `POST …/school/age-exceptions` (the child may then apply whatever the age), refusing
/// records the reason the family sees.
#[utoipa::path(
    post,
    path = "/api/v1/authorities/{authority}/officer/age-exceptions/decide",
    tag = "officer",
    security(("bearer" = [])),
    request_body = AgeExceptionDecisionRequest,
    responses(
        (status = 200, description = "Decided.", body = EventsResponse),
        (status = 404, description = "No request for this child in the campaign (`no_age_exception_request`, field `child`) or no such campaign.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided (`age_exception_decided`, field `decision`).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `child` key, or a `reason` missing for a refusal or given with a grant.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn decide_age_exception(
    Path(authority): Path<String>,
    write: Write,
    body: Result<Body<AgeExceptionDecisionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let req = write.body(&[Role::Officer], body)?;
    let child =
        PersonKey::from_hex(&req.child).map_err(|e| ApiError::invalid("child", e.reason))?;
    let decision = match (req.decision, req.reason) {
        (Decision::Grant, None) => AgeExceptionDecision::Grant,
        (Decision::Refuse, Some(reason)) => AgeExceptionDecision::Refuse { reason },
        (Decision::Grant, Some(_)) => {
            return Err(ApiError::invalid("reason", "must be absent when granting"))
        }
        (Decision::Refuse, None) => {
            return Err(ApiError::invalid("reason", "is required when refusing"))
        }
    };
    let w = write.writer(&authority)?;
    let command = Command::DecideAgeException {
        campaign: req.campaign,
        child,
        decision,
    };
    write.answer(&w, command, StatusCode::OK).await
}
