//! Status updates of applications as Server-Sent Events, one stream per application for its
//! parent (and officers).
//!
//! `GET /api/v1/authorities/{a}/applications/{n}/events` streams:
//! - `event: status` with `id: <authority_seq>`: one status change of the application
//!   (submitted, amended, withdrawn, privilege_claimed, privilege_confirmed, privilege_revoked,
//!   offered, accepted, declined, expired, transferred, enrolled), in log order. A client
//!   reconnecting with `Last-Event-ID` gets the changes it missed, read from the log.
//! - `event: positions` (no id): the application's status and its position in each queue,
//!   sent on connect and then whenever it changed, at most once a second.
//! - `event: resync` with an id: the client was too far behind to replay (more than
//!   [`REPLAY_MAX_EVENTS`] events); it should fetch the application again.
//! - keep-alive comments every 15 seconds.
//!
//! Browsers' `EventSource` cannot send an `Authorization` header, so the token may also come
//! as `?access_token=`. A stream ends when its token expires (the client reconnects with a
//! fresh one and its Last-Event-ID) and when the server stops. Only what the parent can
//! already see through the REST API is sent.
//!
//! Every stream subscribes to its writer's broadcast of acknowledged batches; a stream that
//! lags, or sees a gap in `authority_seq`, reads the missing range from the store, so the
//! broadcast is only ever a shortcut, never the source of truth.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use ochered_core::domain::ApplicationNumber;
use ochered_store::EventStore;
use ochered_writer::Writer;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::changes::{status_changes, stopped, StatusChange, Stopping};
use crate::http::access::{self, parse_number, visible_application};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::state::AppState;

/// How long a stream waits before a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Positions are recomputed at most this often per stream.
const POSITIONS_EVERY: Duration = Duration::from_secs(1);
/// A reconnecting client further behind than this gets `resync` instead of a replay.
pub const REPLAY_MAX_EVENTS: i64 = 100_000;
/// Events per store read when replaying.
const PAGE_EVENTS: i64 = 1_000;
/// Suggested reconnection delay sent to clients.
const RETRY: Duration = Duration::from_secs(3);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(application_events))
}

// ---------------------------------------------------------------------------------------------
// The handler

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    /// For `EventSource`, which cannot send headers.
    access_token: Option<String>,
    /// Same as the `Last-Event-ID` header (which wins).
    last_event_id: Option<String>,
}

/// The caller from `Authorization: Bearer` or, failing that, `?access_token=`, and when its
/// token expires (Unix seconds).
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    query: &StreamQuery,
) -> Result<(Caller, i64), ApiError> {
    let token = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(header) => header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?
            .trim()
            .to_owned(),
        None => query.access_token.clone().ok_or_else(|| {
            ApiError::unauthorized(
                "an Authorization: Bearer token (or ?access_token= for EventSource) is required",
            )
        })?,
    };
    let claims = state.tokens.verify(&token).await?;
    Ok((
        Caller {
            sub: claims.sub,
            role: claims.role,
        },
        claims.exp,
    ))
}

/// One event of the stream as a client parses it (WHATWG HTML, "Server-sent events"): its
/// name, its data (a JSON document, as text), its id (for `Last-Event-ID`) and the
/// reconnection delay in milliseconds. Only describes the stream in the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StreamEvent {
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
}

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
    responses((status = 200, description = "An event stream: `positions` and `status` events whose `data` is JSON.", content_type = "text/event-stream", body = inline(StreamEvent)))
)]
async fn application_events(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    stopping: Option<Extension<Stopping>>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| crate::http::access::query_error(e, "access_token"))?;
    let (caller, expires) = caller(&state, &headers, &query).await?;
    // The stream ends when the token expires; the client reconnects with a fresh one.
    let expires_in =
        Duration::from_secs((expires - Utc::now().timestamp()).clamp(0, 86_400 * 366) as u64);
    let number = parse_number(&number)?;
    let writer = access::writer(&state, &authority)?;
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().unwrap_or("").to_owned()),
        None => query.last_event_id.clone(),
    };
    let last_event_id = match last_event_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid("Last-Event-ID", "must be an authority_seq sent earlier")
        })?),
    };
    // Subscribe before reading the head: every batch acknowledged from here on is either at
    // or below the head read next, or arrives through the subscription (or both).
    let batches = writer.subscribe();
    let head = writer.head().authority_seq;
    writer.read(|s| visible_application(s, &caller, number).map(|_| ()))?;
    let (tx, rx) = mpsc::channel(64);
    let streamer = Streamer {
        store: state.engine.store().clone(),
        writer,
        number: ApplicationNumber(number),
        cursor: head,
        tx,
        last_positions: None,
    };
    let stop = stopping.map(|Extension(Stopping(rx))| rx);
    tokio::spawn(streamer.run(batches, last_event_id, stop, Instant::now() + expires_in));
    metrics::counter!("ochered_sse_streams_total").increment(1);
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// One stream

struct Streamer {
    store: Arc<dyn EventStore>,
    writer: Writer,
    number: ApplicationNumber,
    /// Every event up to here was considered.
    cursor: i64,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
    last_positions: Option<String>,
}

/// Why a stream ended.
enum End {
    /// The client went away or the server is stopping.
    Gone,
    /// The log could not be read; the client reconnects with its Last-Event-ID.
    Store,
}

impl Streamer {
    async fn run(
        mut self,
        mut batches: broadcast::Receiver<Arc<Vec<ochered_writer::CommittedEvent>>>,
        last_event_id: Option<i64>,
        mut stop: Option<watch::Receiver<bool>>,
        expires: Instant,
    ) {
        let head = self.cursor;
        if let Some(last) = last_event_id {
            self.cursor = last.min(head);
            if self.catch_up(head).await.is_err() {
                return;
            }
        }
        if self.send_positions().await.is_err() {
            return;
        }
        let mut positions_due: Option<Instant> = None;
        let mut positions_after = Instant::now() + POSITIONS_EVERY;
        loop {
            let wake = positions_due.unwrap_or_else(|| Instant::now() + KEEP_ALIVE);
            // Ok(true): a batch committed, which may have moved the application.
            let step = tokio::select! {
                _ = self.tx.closed() => Err(End::Gone),
                _ = stopped(&mut stop) => Err(End::Gone),
                _ = tokio::time::sleep_until(expires) => Err(End::Gone),
                batch = batches.recv() => match batch {
                    Ok(batch) => self.live(&batch).await.map(|()| true),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let head = self.writer.head().authority_seq;
                        self.catch_up(head).await.map(|()| true)
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(End::Gone),
                },
                _ = tokio::time::sleep_until(wake), if positions_due.is_some() => {
                    positions_due = None;
                    positions_after = Instant::now() + POSITIONS_EVERY;
                    self.send_positions().await.map(|()| false)
                }
            };
            match step {
                // Look at the positions again, at most once per POSITIONS_EVERY.
                Ok(true) if positions_due.is_none() => {
                    positions_due = Some(positions_after.max(Instant::now()));
                }
                Ok(_) => {}
                Err(End::Gone | End::Store) => return,
            }
        }
    }

    /// Handles a batch from the subscription: fills a gap from the store first.
    async fn live(&mut self, batch: &[ochered_writer::CommittedEvent]) -> Result<(), End> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        if last.authority_seq <= self.cursor {
            return Ok(());
        }
        if first.authority_seq > self.cursor + 1 {
            self.catch_up(first.authority_seq - 1).await?;
        }
        for e in batch {
            if e.authority_seq <= self.cursor {
                continue;
            }
            for change in status_changes(&e.event, Some(self.number)) {
                self.send_change(e.authority_seq, e.recorded_at, change)
                    .await?;
            }
            self.cursor = e.authority_seq;
        }
        Ok(())
    }

    /// Sends the application's changes in (cursor, to], read from the store.
    async fn catch_up(&mut self, to: i64) -> Result<(), End> {
        if to - self.cursor > REPLAY_MAX_EVENTS {
            self.cursor = to;
            let event = SseEvent::default()
                .id(to.to_string())
                .event("resync")
                .data(json!({ "application": self.number, "authority_seq": to }).to_string());
            return self.send(event).await;
        }
        let authority = self.writer.authority().to_owned();
        while self.cursor < to {
            let page = ochered_writer::read_status_events(
                self.store.as_ref(),
                &authority,
                self.cursor,
                PAGE_EVENTS.min(to - self.cursor),
                Some(self.number),
            )
            .await
            .map_err(|e| {
                tracing::warn!(authority, error = %e, "event stream: the log could not be read");
                End::Store
            })?;
            let Some(last) = page.last_seq else {
                // The head moved back (a failed commit); nothing more to read.
                self.cursor = to;
                break;
            };
            for e in page.events {
                for change in status_changes(&e.event, Some(self.number)) {
                    self.send_change(e.authority_seq, e.recorded_at, change)
                        .await?;
                }
            }
            self.cursor = last;
        }
        Ok(())
    }

    async fn send_change(
        &mut self,
        authority_seq: i64,
        at: DateTime<Utc>,
        change: StatusChange,
    ) -> Result<(), End> {
        let mut data = serde_json::to_value(&change).unwrap_or_default();
        data["authority_seq"] = json!(authority_seq);
        data["at"] = json!(at);
        let event = SseEvent::default()
            .id(authority_seq.to_string())
            .event("status")
            .data(data.to_string());
        self.send(event).await
    }

    /// Sends the current status and positions when they changed since the last time.
    async fn send_positions(&mut self) -> Result<(), End> {
        let number = self.number;
        let Some(view) = self.writer.read(|s| {
            s.application(number).map(|app| {
                json!({
                    "application": number,
                    "status": app.status.as_str(),
                    "positions": crate::wire::positions(s, app),
                })
                .to_string()
            })
        }) else {
            return Ok(());
        };
        if self.last_positions.as_deref() == Some(view.as_str()) {
            return Ok(());
        }
        let mut event = SseEvent::default().event("positions").data(&view);
        if self.last_positions.is_none() {
            event = event.retry(RETRY);
        }
        self.last_positions = Some(view);
        self.send(event).await
    }

    async fn send(&self, event: SseEvent) -> Result<(), End> {
        self.tx.send(Ok(event)).await.map_err(|_| End::Gone)
    }
}
