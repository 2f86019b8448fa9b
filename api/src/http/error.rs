//! API errors as RFC 9457 problem+json: a type, a title, the status, a detail and the field.
//! A 500 body is opaque; the log keeps the cause.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ochered_core::{Rejection, RejectionKind};
use ochered_writer::WriterError;
use serde_json::{Map, Value};

use crate::wire::schema::Problem;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, also the last segment of `type`.
    pub code: String,
    pub title: String,
    pub detail: String,
    pub field: Option<String>,
    pub extra: Map<String, Value>,
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            title: title.to_owned(),
            detail: detail.into(),
            field: None,
            extra: Map::new(),
            retry_after_s: None,
        }
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "Invalid field",
            detail,
        )
        .with_field(field)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Bad request",
            detail,
        )
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        e.retry_after_s = Some(1);
        e
    }
    /// 413 `body_too_large`: the request body is larger than the server accepts (`detail`
    /// says which limit).
    pub fn body_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "Body too large",
            detail,
        )
    }
    /// 503 `overloaded` with `Retry-After: 1`: the server turned the request away at once,
    /// before doing anything with it (the writer's queue is full, or too many requests are in
    /// progress). Admission control replaces the Retry-After with one that grows with the share
    /// of requests shed (`admission::retry_after_secs`).
    pub fn overloaded(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests right now",
            detail,
        );
        e.retry_after_s = Some(1);
        e
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "something went wrong on our side; it has been logged",
        )
    }

    /// A rule said no: the status follows the kind of rejection, the body carries its facts.
    pub fn from_rejection(rejection: &Rejection) -> Self {
        let status = match rejection.kind() {
            RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
            RejectionKind::Conflict => StatusCode::CONFLICT,
            RejectionKind::Forbidden => StatusCode::FORBIDDEN,
        };
        let mut error = Self::new(
            status,
            &rejection.code(),
            "Request refused by the rules",
            rejection.to_string(),
        );
        if let Some(field) = rejection.field() {
            error.field = Some(field.to_owned());
        }
        if let Ok(Value::Object(facts)) = serde_json::to_value(rejection) {
            for (k, v) in facts {
                if k != "rejection" && k != "field" {
                    error.extra.insert(k, v);
                }
            }
        }
        error
    }

    pub fn from_writer(error: WriterError) -> Self {
        match error {
            WriterError::Overloaded => Self::overloaded(
                "the queue of requests is full; your request was not accepted, retry shortly with the same Idempotency-Key",
            ),
            WriterError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                Self::unavailable("the store is unavailable; nothing was accepted, retry shortly with the same Idempotency-Key")
            }
            WriterError::Stopped => Self::unavailable("the writer is restarting; retry shortly"),
            WriterError::Broken(cause) => {
                tracing::error!(%cause, "write refused: the log does not verify");
                Self::unavailable("this authority's log needs an operator's attention; nothing was accepted, retry later")
            }
            WriterError::KeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used for a different request",
            )
            .with_field("Idempotency-Key"),
            WriterError::KeyInFlight => Self::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed",
            )
            .with_field("Idempotency-Key"),
        }
    }

    /// The problem+json body: the fields of RFC 9457 and the code, then the facts (a fact
    /// never replaces one of those fields).
    pub fn body(&self) -> Problem {
        const FIELDS: [&str; 6] = ["type", "title", "status", "detail", "code", "field"];
        let facts = self
            .extra
            .iter()
            .filter(|(k, _)| {
                let taken = FIELDS.contains(&k.as_str());
                !taken || (k.as_str() == "field" && self.field.is_none())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Problem {
            kind: format!("https://ochered.dev/problems/{}", self.code),
            title: self.title.clone(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
            field: self.field.clone(),
            facts,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("ochered_http_errors_total", "status" => self.status.as_u16().to_string()).increment(1);
        let body = serde_json::to_vec(&self.body()).expect("problem serialises");
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Middleware: an error answer made outside the handlers (a method the route does not
/// allow, a path parameter that does not decode, any framework refusal) gets a problem+json
/// body like every other error, keeping its status and headers (e.g. `Allow`). Answers that
/// already are problem+json pass unchanged.
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A short plain-text reason from the framework becomes the detail.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let detail = if text.is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                "this method is not allowed on this resource".to_owned()
            }
            _ => reason.to_owned(),
        }
    } else {
        text
    };
    let problem = ApiError::new(status, &code, reason, detail);
    let body = serde_json::to_vec(&problem.body()).expect("problem serialises");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
