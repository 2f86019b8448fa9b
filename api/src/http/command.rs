//! The one path of every write, for the JSON and the file routes alike: the caller's role is
//! checked, then the body read, the authority's writer found, the command built (by the
//! handler) and sent with the request's Idempotency-Key scoped to the caller, and the
//! writer's answer turned into the response.
//!
//! The role comes before the body so that a stranger learns nothing from a 422. Keys are
//! 1-[`IDEMPOTENCY_KEY_MAX`] visible ASCII characters; a file upload sends each of its rows
//! under `KEY#row-N`, so its key leaves room for that suffix.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use ochered_core::domain::Channel;
use ochered_core::Command;
use ochered_writer::privacy::NewKey;
use ochered_writer::{CommittedEvent, Outcome, Reply, RequestMeta, Writer, WriterError};
use serde::Serialize;

use crate::http::access;
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::state::AppState;

/// The longest Idempotency-Key of a single command.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
/// The longest Idempotency-Key of a file upload: room is left for the `#row-N` suffix of
/// each row's command (N up to the rows an upload may have).
pub const UPLOAD_IDEMPOTENCY_KEY_MAX: usize = 240;
/// Commands of one upload in the writer's queue at once.
const SUBMIT_CONCURRENCY: usize = 64;

/// A write's context: the server's state, the authenticated caller (401 without a valid
/// token) and the two headers a write reads (Idempotency-Key, X-Correlation-Id), kept
/// rather than a copy of every header.
pub struct Write {
    pub state: AppState,
    pub caller: Caller,
    idempotency_key: Option<HeaderValue>,
    correlation_id: Option<HeaderValue>,
}

impl FromRequestParts<AppState> for Write {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Write {
            state: state.clone(),
            caller,
            idempotency_key: parts.headers.get("idempotency-key").cloned(),
            correlation_id: parts.headers.get("x-correlation-id").cloned(),
        })
    }
}

impl Write {
    /// Refuses unless the caller has one of the roles (admin always may).
    pub fn allow(&self, roles: &[Role]) -> Result<(), ApiError> {
        self.caller.require(roles)
    }

    /// The role check, then the body.
    pub fn body<T>(&self, roles: &[Role], body: Result<Body<T>, ApiError>) -> Result<T, ApiError> {
        self.allow(roles)?;
        body.map(|Body(value)| value)
    }

    /// The authority's writer ([`access::writer`]).
    pub fn writer(&self, authority: &str) -> Result<Writer, ApiError> {
        access::writer(&self.state, authority)
    }

    /// Sends one command and waits for its committed answer.
    pub async fn send(&self, w: &Writer, command: Command) -> Result<Reply, ApiError> {
        self.send_with_key(w, command, None).await
    }

    /// [`Write::send`] a command with the new data key its sealed personal data needs
    /// ([`crate::http::personal::with_sealed`]), stored with its events if it is accepted.
    pub async fn send_with_key(
        &self,
        w: &Writer,
        command: Command,
        new_key: Option<NewKey>,
    ) -> Result<Reply, ApiError> {
        let key = self.idempotency_key(
            IDEMPOTENCY_KEY_MAX,
            "must be 1-255 visible ASCII characters",
        )?;
        submit(w, command, self.meta(key, None)?, new_key)
            .await
            .map_err(ApiError::from_writer)
    }

    /// Sends `command` and answers `status` with the events it recorded, or the problem.
    pub async fn answer(
        &self,
        w: &Writer,
        command: Command,
        status: StatusCode,
    ) -> Result<Response, ApiError> {
        self.answer_with_key(w, command, None, status).await
    }

    /// [`Write::answer`] with the new data key of the command's sealed data
    /// ([`Write::send_with_key`]).
    pub async fn answer_with_key(
        &self,
        w: &Writer,
        command: Command,
        new_key: Option<NewKey>,
        status: StatusCode,
    ) -> Result<Response, ApiError> {
        let reply = self.send_with_key(w, command, new_key).await?;
        Ok(respond(reply, status, |events| EventsResponse { events }))
    }

    /// Sends the commands of a file upload, a bounded number at a time, in order, each under
    /// the request's Idempotency-Key suffixed by its first row (`KEY#row-N`). Answers every
    /// command's reply or the writer's refusal to take it, in the order given.
    pub async fn send_rows(
        &self,
        w: &Writer,
        commands: Vec<(u64, Command)>,
    ) -> Result<Vec<Result<Reply, WriterError>>, ApiError> {
        let key = self.idempotency_key(
            UPLOAD_IDEMPOTENCY_KEY_MAX,
            "must be 1-240 visible ASCII characters for a file upload",
        )?;
        let metas = commands
            .iter()
            .map(|(row, _)| self.meta(key, Some(*row)))
            .collect::<Result<Vec<_>, _>>()?;
        let sends = commands
            .into_iter()
            .zip(metas)
            .map(|((_, command), meta)| submit(w, command, meta, None));
        Ok(futures_util::stream::iter(sends)
            .buffered(SUBMIT_CONCURRENCY)
            .collect()
            .await)
    }

    /// The Idempotency-Key header, checked: 1-`max` visible ASCII characters.
    fn idempotency_key(&self, max: usize, detail: &str) -> Result<Option<&str>, ApiError> {
        let Some(value) = &self.idempotency_key else {
            return Ok(None);
        };
        value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= max && k.chars().all(|c| c.is_ascii_graphic()))
            .map(Some)
            .ok_or_else(|| ApiError::invalid("Idempotency-Key", detail))
    }

    /// What the log records about the request: who, through which channel, its key scoped to
    /// the caller (with the row of a file upload) and its correlation id. An X-Correlation-Id
    /// that is not 1-128 visible ASCII characters is refused (422), not dropped or cut.
    fn meta(&self, key: Option<&str>, row: Option<u64>) -> Result<RequestMeta, ApiError> {
        let actor = format!("{}:{}", self.caller.role.as_str(), self.caller.sub);
        let correlation_id = match &self.correlation_id {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .filter(|v| {
                        !v.is_empty()
                            && v.len() <= CORRELATION_ID_MAX
                            && v.chars().all(|c| c.is_ascii_graphic())
                    })
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "X-Correlation-Id",
                            "must be 1-128 visible ASCII characters",
                        )
                    })?,
            ),
        };
        Ok(RequestMeta {
            idempotency_key: key
                .map(|key| record_key(self.caller.role.as_str(), &self.caller.sub, key, row)),
            actor: Some(actor),
            channel: Some(channel_name(channel_of(&self.caller)).into()),
            correlation_id,
        })
    }
}

/// The longest X-Correlation-Id accepted.
pub const CORRELATION_ID_MAX: usize = 128;

/// The key an idempotency record is stored under: `role:subject:key`, or
/// `role:subject:key#row-N` for row N of a file upload. The subject is escaped (`%` → `%25`,
/// `:` → `%3A`) and so is the key (`%` → `%25`, `#` → `%23`), so that no two callers, and no
/// plain key and upload row, ever share a record; parts without those characters are stored
/// as before.
pub fn record_key(role: &str, subject: &str, key: &str, row: Option<u64>) -> String {
    let subject = subject.replace('%', "%25").replace(':', "%3A");
    let key = key.replace('%', "%25").replace('#', "%23");
    match row {
        Some(row) => format!("{role}:{subject}:{key}#row-{row}"),
        None => format!("{role}:{subject}:{key}"),
    }
}

/// Submits a command to the writer, timing it per command.
async fn submit(
    w: &Writer,
    command: Command,
    meta: RequestMeta,
    new_key: Option<NewKey>,
) -> Result<Reply, WriterError> {
    let name = command.name();
    let started = std::time::Instant::now();
    let reply = w.submit_with_key(command, meta, new_key).await;
    metrics::histogram!("ochered_command_seconds", "command" => name)
        .record(started.elapsed().as_secs_f64());
    reply
}

/// Officers and registrars type requests in at a service centre; everyone else uses the
/// portal.
pub fn channel_of(caller: &Caller) -> Channel {
    match caller.role {
        Role::Officer | Role::Registrar => Channel::ServiceCentre,
        _ => Channel::Portal,
    }
}

/// The channel as the log records it (its serde name).
fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Portal => "portal",
        Channel::ServiceCentre => "service_centre",
        Channel::Api => "api",
    }
}

/// Turns a writer's reply into a response: accepted → `status` with `body(events)`,
/// rejected → problem+json; a replayed answer is marked ([`mark_replayed`]).
pub fn respond<T: Serialize>(
    reply: Reply,
    status: StatusCode,
    body: impl FnOnce(Vec<CommittedEvent>) -> T,
) -> Response {
    let response = match reply.outcome {
        Outcome::Accepted { events } => (status, Json(body(events))).into_response(),
        Outcome::Rejected { rejection } => ApiError::from_rejection(&rejection).into_response(),
    };
    mark_replayed(response, reply.replayed)
}

/// Marks the stored first answer to an earlier request with the same Idempotency-Key:
/// `Idempotent-Replayed: true`.
pub fn mark_replayed(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The events a command recorded.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsResponse {
    pub events: Vec<CommittedEvent>,
}
