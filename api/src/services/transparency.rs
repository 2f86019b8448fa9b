//! Proof in the parent's hands (docs/TRANSPARENCY.md): the server's public key, the signed
//! tree heads of each authority and their history, inclusion proofs of applications and of any
//! event against the newest signed head, and an application's receipt (as a file and as a QR
//! code) for its parent. The trees, heads and key are `crate::transparency`'s.

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ochered_transparency::{InclusionProofFile, PublishedHead};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::{self, parse_number, query_error, visible_application};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::transparency::ProofError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(public_key))
        .routes(routes!(newest_head))
        .routes(routes!(heads))
        .routes(routes!(event_proof))
        .routes(routes!(application_proof))
        .routes(routes!(application_receipt))
        .routes(routes!(application_receipt_qr))
}

/// The server's public key
///
/// The Ed25519 key that signs receipts and tree heads: 64 lower-case hex characters and a
/// newline, the format of `ochered verify-receipt --public-key`. Keep a copy outside the
/// server and verify with it, never with the `public_key` field of a document.
#[utoipa::path(get, path = "/.well-known/ochered/public-key", tag = "transparency",
    responses((status = 200, description = "The public key, as text.", content_type = "text/plain", body = String)))]
async fn public_key(AxumState(state): AxumState<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.transparency.public_key_text(),
    )
        .into_response()
}

/// Signed tree heads, published (`ochered-tree-head-v1` with the consistency proof from an
/// earlier size; docs/TRANSPARENCY.md).
#[derive(Serialize, ToSchema)]
struct HeadsResponse {
    /// Smallest first; each with the consistency proof from the one before it.
    #[schema(value_type = Vec<Object>)]
    heads: Vec<PublishedHead>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HeadQuery {
    /// A tree size you hold a head of: the answer proves the newest head consistent with it.
    from_size: Option<u64>,
}

fn proof_error(e: ProofError) -> ApiError {
    match e {
        ProofError::NotYetCovered { interval_s, .. } => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "not_yet_covered",
                "Not yet covered by a signed head",
                e.to_string(),
            );
            error.retry_after_s = Some(interval_s as u32);
            error
        }
        ProofError::NoSuchEvent(_) => ApiError::not_found(e.to_string()),
        ProofError::Rebuilding => ApiError::unavailable(e.to_string()),
        ProofError::Store(detail) => {
            tracing::warn!(%detail, "transparency: no proof");
            ApiError::unavailable("the log could not be read; retry shortly")
        }
    }
}

fn authority_exists(state: &AppState, authority: &str) -> Result<(), ApiError> {
    access::writer(state, authority).map(|_| ())
}

/// The newest signed tree head
///
/// Public. The authority's newest signed head (`ochered-tree-head-v1`) with the consistency
/// proof from the previous head, or with `from_size` from the head of that size you kept.
/// Append it to your heads file and check the file with `ochered verify --heads`. 404 before
/// the first head.
#[utoipa::path(get, path = "/api/v1/authorities/{authority}/transparency/head", tag = "transparency",
    params(HeadQuery),
    responses((status = 200, description = "The newest head, published.", body = Object),
              (status = 422, description = "A bad from_size.", content_type = "application/problem+json", body = crate::wire::schema::Problem)))]
async fn newest_head(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    query: Result<Query<HeadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| query_error(e, "from_size"))?;
    authority_exists(&state, &authority)?;
    let newest = state
        .transparency
        .newest_head(&authority, None)
        .map_err(proof_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no tree head of {authority} is signed yet; the server signs one within {} s of the first event",
                state.transparency.interval().as_secs().max(1)
            ))
        })?;
    if let Some(from) = query.from_size {
        if from == 0 || from > newest.tree_head.tree_size {
            return Err(ApiError::invalid(
                "from_size",
                format!(
                    "must be 1 to the newest head's size {}",
                    newest.tree_head.tree_size
                ),
            ));
        }
    }
    let head = match query.from_size {
        Some(_) => state
            .transparency
            .newest_head(&authority, query.from_size)
            .map_err(proof_error)?
            .unwrap_or(newest),
        None => newest,
    };
    Ok(Json(head).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HeadsQuery {
    /// Only heads of larger trees [default: 0, from the first].
    after_size: Option<u64>,
    /// At most this many heads, 1-10000 [default: 1000].
    limit: Option<u64>,
}

/// The history of signed tree heads
///
/// Public. Every head the server signed for the authority, smallest first, each with the
/// consistency proof from the one before it: mirror it and check it with `ochered verify
/// --heads`. Page with `after_size` (the last size you got).
#[utoipa::path(get, path = "/api/v1/authorities/{authority}/transparency/heads", tag = "transparency",
    params(HeadsQuery),
    responses((status = 200, description = "The heads.", body = HeadsResponse),
              (status = 422, description = "A bad limit.", content_type = "application/problem+json", body = crate::wire::schema::Problem)))]
async fn heads(
    AxumState(state): AxumState<AppState>,
    Path(authority): Path<String>,
    query: Result<Query<HeadsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HeadsResponse>, ApiError> {
    let Query(query) = query.map_err(|e| query_error(e, "after_size"))?;
    authority_exists(&state, &authority)?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 10000"));
    }
    let heads = state
        .transparency
        .heads(&authority, query.after_size.unwrap_or(0), limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "transparency: heads not read");
            ApiError::unavailable("the heads could not be read; retry shortly")
        })?;
    Ok(Json(HeadsResponse { heads }))
}

/// The inclusion proof of an event
///
/// Public. The proof (`ochered-inclusion-proof-v1`) that the authority's event
/// `authority_seq` (the position a receipt names; clinic bookings' receipts are checked this
/// way) is in the tree of the newest signed head. 409 `not_yet_covered` with Retry-After
/// until a signed head covers the event; 404 when there is no such event.
#[utoipa::path(get, path = "/api/v1/authorities/{authority}/transparency/events/{authority_seq}/proof", tag = "transparency",
    params(("authority_seq" = u64, Path, description = "The event's position in the authority's chain (1, 2, …).")),
    responses((status = 200, description = "The inclusion proof.", body = Object),
              (status = 409, description = "No signed head covers the event yet.", content_type = "application/problem+json", body = crate::wire::schema::Problem),
              (status = 422, description = "A bad position.", content_type = "application/problem+json", body = crate::wire::schema::Problem)))]
async fn event_proof(
    AxumState(state): AxumState<AppState>,
    Path((authority, seq)): Path<(String, String)>,
) -> Result<Json<InclusionProofFile>, ApiError> {
    authority_exists(&state, &authority)?;
    let seq = seq
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| ApiError::invalid("authority_seq", "must be a positive integer"))?;
    let proof = state
        .transparency
        .proof(&authority, seq)
        .await
        .map_err(proof_error)?;
    Ok(Json(proof))
}

/// The inclusion proof of an application
///
/// Public. The proof (`ochered-inclusion-proof-v1`) that the event that registered the
/// application is in the tree of the newest signed head; with the receipt,
/// `ochered verify-receipt --receipt R --proof P --public-key K` checks both offline. 409
/// `not_yet_covered` with Retry-After until a signed head covers the submission (a head is
/// signed every few seconds); 404 when there is no such application.
#[utoipa::path(get, path = "/api/v1/authorities/{authority}/applications/{number}/proof", tag = "transparency",
    responses((status = 200, description = "The inclusion proof.", body = Object),
              (status = 409, description = "No signed head covers the submission yet.", content_type = "application/problem+json", body = crate::wire::schema::Problem),
              (status = 422, description = "A bad number.", content_type = "application/problem+json", body = crate::wire::schema::Problem)))]
async fn application_proof(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
) -> Result<Json<InclusionProofFile>, ApiError> {
    let number = parse_number(&number)?;
    let w = access::writer(&state, &authority)?;
    let seq = state
        .transparency
        .application_seq(&w, number)
        .ok_or_else(|| ApiError::not_found(format!("application {number} does not exist")))?;
    let proof = state
        .transparency
        .proof(&authority, seq)
        .await
        .map_err(proof_error)?;
    Ok(Json(proof))
}

/// The receipt of an application and its number, for the caller who may see it.
async fn receipt_of(
    state: &AppState,
    caller: &Caller,
    authority: &str,
    number: &str,
) -> Result<(u32, ochered_transparency::Receipt), ApiError> {
    let number = parse_number(number)?;
    let w = access::writer(state, authority)?;
    w.read(|s| visible_application(s, caller, number).map(|_| ()))?;
    let receipt = state
        .transparency
        .application_receipt(&w, number)
        .await
        .ok_or_else(|| ApiError::unavailable("the receipt could not be made now; retry shortly"))?;
    Ok((number, receipt))
}

/// An application's receipt
///
/// **Roles:** parent (their own), officer (and admin). The server's signed receipt of the
/// application (`ochered-receipt-v2`), stating what the submission's answer stated, as a file
/// to keep: `ochered verify-receipt` checks it offline.
#[utoipa::path(get, path = "/api/v1/authorities/{authority}/applications/{number}/receipt", tag = "transparency",
    security(("bearer" = [])),
    responses((status = 200, description = "The receipt (a JSON file).", body = Object),
              (status = 422, description = "A bad number.", content_type = "application/problem+json", body = crate::wire::schema::Problem)))]
async fn application_receipt(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (number, receipt) = receipt_of(&state, &caller, &authority, &number).await?;
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        receipt.to_json() + "\n",
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"receipt-{authority}-{number}.json\""
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// An application's receipt as a QR code
///
/// **Roles:** parent (their own), officer (and admin). The receipt's compact JSON text as a QR
/// code (SVG, drawn on the server) for the printable confirmation: a phone's reader gives the
/// same text as the file, which `ochered verify-receipt` checks.
#[utoipa::path(get, path = "/api/v1/authorities/{authority}/applications/{number}/receipt.svg", tag = "transparency",
    security(("bearer" = [])),
    responses((status = 200, description = "The QR code.", content_type = "image/svg+xml", body = String),
              (status = 422, description = "A bad number.", content_type = "application/problem+json", body = crate::wire::schema::Problem)))]
async fn application_receipt_qr(
    AxumState(state): AxumState<AppState>,
    Path((authority, number)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (_, receipt) = receipt_of(&state, &caller, &authority, &number).await?;
    let svg = qr_svg(&serde_json::to_string(&receipt).expect("a receipt serializes"))
        .ok_or_else(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// `text` as a QR code in SVG (error correction M, the quiet zone included).
fn qr_svg(text: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    /// The largest receipt (long fields, the longest batch path) still fits in a QR code.
    #[test]
    fn a_receipt_fits_in_a_qr_code() {
        let key = ochered_transparency::SigningKey::from_bytes(&[1; 32]);
        let fields = ochered_transparency::ReceiptFields {
            authority: "a-long-authority-name".into(),
            service: "kindergarten".into(),
            number: 4_000_000_000,
            registered_at: "2027-01-01T00:00:00.123456+05:00".into(),
            time_zone: "America/Argentina/ComodRivadavia".into(),
            authority_seq: u64::MAX,
            event_hash: [0xab; 32],
        };
        let batch = vec![fields; ochered_transparency::RECEIPT_BATCH_MAX];
        let receipts = ochered_transparency::Receipt::sign_batch(&key, batch);
        let longest = receipts
            .iter()
            .max_by_key(|r| r.batch.as_ref().unwrap().path.len())
            .unwrap();
        assert_eq!(longest.batch.as_ref().unwrap().path.len(), 5);
        let svg = super::qr_svg(&serde_json::to_string(longest).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    }
}
