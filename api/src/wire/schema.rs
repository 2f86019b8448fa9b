//! Schemas of the API's own that no handler's type gives: the problem+json body (built by
//! `http::error::ApiError`), every identifier's schema and a binary file. The core's and the
//! writer's types that travel in requests and answers carry their own schemas (their
//! crates' cargo feature `openapi`, which this crate turns on).

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A problem (RFC 9457): what went wrong, in a stable machine-readable `code`, and which
/// `field` when one is at fault. Refusals by the rules add their facts (for example
/// `existing` with the number of the application a duplicate child already has); a 422 of a
/// file upload adds `errors`, one per bad row.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    example = json!({
        "type": "https://ochered.dev/problems/invalid_field",
        "title": "Invalid field",
        "status": 422,
        "detail": "must be 1-64 characters of ASCII letters, digits, '-', '_' or '.'",
        "code": "invalid_field",
        "field": "preferences[1]"
    })
)]
pub struct Problem {
    /// `https://ochered.dev/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    /// The offending field: a JSON path (`preferences[1]`), a header (`Idempotency-Key`), a
    /// path parameter (`authority`) or a file's row and column (`row 3, kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Facts of the refusal, e.g. `existing`, `errors`.
    #[serde(flatten)]
    #[schema(value_type = std::collections::BTreeMap<String, Value>)]
    pub facts: Map<String, Value>,
}

/// The schema `Code` of every identifier an authority chooses (institution, campaign, slot,
/// specialty, doctor, round): the core's identifier types all give it, so a field that holds
/// an identifier as a plain string names this one (`#[schema(value_type = Code)]`).
pub use ochered_core::domain::InstitutionId as Code;

/// A binary file.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryFile(pub Vec<u8>);
