//! What a caller may reach: an authority whose state can be read now, and the applications
//! the caller's role may see.

use ochered_core::domain::{ApplicationNumber, RoundId};
use ochered_core::queues::{Queue, QueueKey};
use ochered_core::rounds::Round;
use ochered_core::state::{Application, State};
use ochered_writer::Writer;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::http::auth::{bearer, Caller, Role, Verified};
use crate::http::error::ApiError;
use crate::state::AppState;

/// The caller of a request, from its bearer token (checked by [`AppState::tokens`]), or as a
/// middleware already found it.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(Verified(caller)) = parts.extensions.get::<Verified>() {
            return Ok(caller.clone());
        }
        let token = bearer(&parts.headers)?;
        let claims = state.tokens.verify(token).await?;
        Ok(Caller {
            sub: claims.sub,
            role: claims.role,
        })
    }
}

/// The authority's writer (or, in cluster mode, its read-only copy), if the authority exists
/// and its state is consistent: while it is being rebuilt after a failed commit, reads and
/// writes are answered 503 rather than from an incomplete state.
pub fn writer(state: &AppState, authority: &str) -> Result<Writer, ApiError> {
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

/// A refused query string as a 422 naming the parameter at fault: the one serde names
/// (`limit: invalid digit…`, ``unknown field `page` ``), else `fallback`.
pub fn query_error(
    rejection: axum::extract::rejection::QueryRejection,
    fallback: &str,
) -> ApiError {
    let text = rejection.body_text();
    let message = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    let is_name = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let field = match message.split_once(": ") {
        Some((path, _)) if is_name(path) => Some(path.to_owned()),
        _ => ["unknown field `", "missing field `", "duplicate field `"]
            .iter()
            .find_map(|prefix| message.split_once(prefix).map(|(_, rest)| rest))
            .and_then(|rest| rest.split('`').next())
            .filter(|name| is_name(name))
            .map(str::to_owned),
    };
    ApiError::invalid(
        field.unwrap_or_else(|| fallback.to_owned()),
        message.to_owned(),
    )
}

/// An application or booking number from the path: a positive integer.
pub fn parse_number(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid("number", "must be a positive integer"))
}

/// The application, if the caller may see it: its submitter, officers and admins.
pub fn visible_application<'a>(
    state: &'a State,
    caller: &Caller,
    number: u32,
) -> Result<&'a Application, ApiError> {
    let app = state
        .application(ApplicationNumber(number))
        .ok_or_else(|| ApiError::not_found(format!("application {number} does not exist")))?;
    match caller.role {
        Role::Officer | Role::Admin => Ok(app),
        Role::Parent if *app.submitted_by == *caller.sub => Ok(app),
        // Someone else's application looks exactly like a missing one.
        Role::Parent => Err(ApiError::not_found(format!(
            "application {number} does not exist"
        ))),
        Role::Auditor | Role::Registrar => Err(ApiError::forbidden(
            "this role sees anonymised queues only, not applications",
        )),
    }
}

/// Checks that the caller may change the application, inside the writer's read.
pub fn check_owner(w: &Writer, caller: &Caller, number: u32) -> Result<(), ApiError> {
    w.read(|s| visible_application(s, caller, number).map(|_| ()))
}

/// A round id from the path.
pub fn parse_round(raw: &str) -> Result<RoundId, ApiError> {
    RoundId::parse(raw).map_err(|e| ApiError::invalid("round", e.reason))
}

/// The round, or a 404 naming it.
pub fn find_round<'a>(s: &'a State, id: &RoundId) -> Result<&'a Round, ApiError> {
    s.round_idx(id)
        .map(|idx| &s.rounds()[idx as usize])
        .ok_or_else(|| {
            ApiError::not_found(format!("round {id} does not exist")).with_field("round")
        })
}

/// The queue whose id (`kindergarten.K001.3.2027`, `school.school-2027.S001`) is `name`, or a
/// 404 naming it.
pub fn find_queue<'a>(s: &'a State, name: &str) -> Result<(&'a QueueKey, &'a Queue), ApiError> {
    s.queues
        .iter()
        .find(|(key, _)| crate::wire::queue_id(&s.describe_queue(key)) == name)
        .ok_or_else(|| {
            ApiError::not_found(format!("queue {name} does not exist")).with_field("queue")
        })
}
