//! The web pages: a landing page, the parent's pages (an application and its history, the
//! kindergarten application form, the printable confirmation), the patient's clinic page, the
//! officer's dashboard, the registrar's desk (`/registrar`), the officer's school-campaign page
//! with its printable enrollment orders (`/school`) and the public page, in Russian and English. They are static HTML, CSS and plain ES modules compiled into
//! the binary (nothing is fetched from elsewhere at build or run time); the scripts draw
//! everything from the REST API under `/api/v1`.
//!
//! `GET /demo/token` mints a short-lived token for trying the pages on the demo authority. It
//! answers only while the server runs with the development token secret (anyone can mint such
//! tokens with `ochered token` anyway); with a configured secret it is a 404.

use std::sync::OnceLock;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http::auth::{self, Role};
use crate::http::error::ApiError;
use crate::state::AppState;

/// One embedded file: its URL name, media type and content.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $media_type:expr) => {
        Asset {
            name: $name,
            media_type: $media_type,
            body: include_bytes!(concat!("../pages/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("parent.html", HTML),
    asset!("apply.html", HTML),
    asset!("confirmation.html", HTML),
    asset!("officer.html", HTML),
    asset!("public.html", HTML),
    asset!("patient.html", HTML),
    asset!("style.css", CSS),
    asset!("icon.svg", SVG),
    asset!("common.js", JS),
    asset!("i18n.js", JS),
    asset!("chart.js", JS),
    asset!("home.js", JS),
    asset!("parent.js", JS),
    asset!("apply.js", JS),
    asset!("confirmation.js", JS),
    asset!("officer.js", JS),
    asset!("public.js", JS),
    asset!("patient.js", JS),
    asset!("registrar.html", HTML),
    asset!("registrar.js", JS),
    asset!("school.html", HTML),
    asset!("school.js", JS),
    asset!("officer-desk.js", JS),
    asset!("parent-age.js", JS),
    asset!("demand.js", JS),
];

/// The pages allow only their own scripts, styles and API: no inline script, no other origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { page("index.html", &headers) }),
        )
        .route(
            "/parent",
            get(|headers: HeaderMap| async move { page("parent.html", &headers) }),
        )
        .route(
            "/parent/apply",
            get(|headers: HeaderMap| async move { page("apply.html", &headers) }),
        )
        .route(
            "/parent/confirmation",
            get(|headers: HeaderMap| async move { page("confirmation.html", &headers) }),
        )
        .route(
            "/officer",
            get(|headers: HeaderMap| async move { page("officer.html", &headers) }),
        )
        .route(
            "/patient",
            get(|headers: HeaderMap| async move { page("patient.html", &headers) }),
        )
        .route(
            "/public",
            get(|headers: HeaderMap| async move { page("public.html", &headers) }),
        )
        .route(
            "/registrar",
            get(|headers: HeaderMap| async move { page("registrar.html", &headers) }),
        )
        .route(
            "/school",
            get(|headers: HeaderMap| async move { page("school.html", &headers) }),
        )
        .route("/assets/{name}", get(asset))
        .route("/demo/token", get(demo_token))
}

/// Strong validators of the embedded files, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..20]))
            .collect()
    })
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.media_type),
    );
    // Revalidate every time: a new binary may carry new pages under the same names.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.media_type == HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

fn page(name: &str, headers: &HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(index) => serve(index, headers),
        None => ApiError::not_found("no such page").into_response(),
    }
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    // Only the scripts, styles and images are assets; pages have their own paths.
    match ASSETS
        .iter()
        .position(|a| a.name == name && a.media_type != HTML)
    {
        Some(index) => serve(index, &headers),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoTokenQuery {
    role: Option<String>,
    sub: Option<String>,
}

/// How long a demo token lives.
const DEMO_TOKEN_TTL_HOURS: i64 = 1;

/// Demo only: mints a short-lived token while the development secret is in use.
async fn demo_token(
    AxumState(state): AxumState<AppState>,
    query: Result<Query<DemoTokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    if !state.config.jwt_secret_is_default {
        return Err(ApiError::not_found("no such resource"));
    }
    let Query(query) = query.map_err(|e| crate::http::access::query_error(e, "role"))?;
    let role_name = query.role.as_deref().unwrap_or("parent");
    let role = match Role::parse(role_name) {
        Some(role @ (Role::Parent | Role::Officer | Role::Registrar | Role::Auditor)) => role,
        _ => {
            return Err(ApiError::invalid(
                "role",
                "must be parent, officer, registrar or auditor",
            ))
        }
    };
    let sub = query.sub.unwrap_or_else(|| format!("{}-1", role.as_str()));
    let sub_ok = (1..=64).contains(&sub.len())
        && sub
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !sub_ok {
        return Err(ApiError::invalid(
            "sub",
            "must be 1-64 characters of ASCII letters, digits, '-', '_' or '.'",
        ));
    }
    let token = auth::mint(&state.config.jwt_secret, role, &sub, DEMO_TOKEN_TTL_HOURS);
    let mut response = Json(json!({
        "token": token,
        "role": role.as_str(),
        "sub": sub,
        "expires_in": DEMO_TOKEN_TTL_HOURS * 3600,
        "demo_only": true,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every placement status the officer's round results can show has a text in English and
    /// in Russian (a transferred child's `released` used to show as the raw key).
    #[test]
    fn every_placement_status_is_translated_in_both_languages() {
        use ochered_core::state::PlacementStatus as P;
        let all = [
            P::Offered,
            P::Accepted,
            P::Declined,
            P::Expired,
            P::Withdrawn,
            P::Released,
        ];
        // A new status must be added above (and translated).
        for status in all {
            match status {
                P::Offered
                | P::Accepted
                | P::Declined
                | P::Expired
                | P::Withdrawn
                | P::Released => {}
            }
        }
        let i18n = ASSETS.iter().find(|a| a.name == "i18n.js").unwrap();
        let text = std::str::from_utf8(i18n.body).unwrap();
        let (en, ru) = text
            .split_once("\n  ru: {")
            .expect("an English and a Russian table");
        for status in all {
            let name = serde_json::to_value(status).unwrap();
            let key = format!("\"placement.{}\":", name.as_str().unwrap());
            assert!(en.contains(&key), "{key} has no English text");
            assert!(ru.contains(&key), "{key} has no Russian text");
        }
    }

    #[test]
    fn every_asset_is_embedded_once_and_pages_link_only_known_assets() {
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        for page in ASSETS.iter().filter(|a| a.media_type == HTML) {
            let text = std::str::from_utf8(page.body).expect("pages are UTF-8");
            for link in text.split("/assets/").skip(1) {
                let name: String = link
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect();
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} links /assets/{name}, which is not embedded",
                    page.name
                );
            }
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} links outside",
                page.name
            );
        }
        for script in ASSETS.iter().filter(|a| a.media_type == JS) {
            let text = std::str::from_utf8(script.body).expect("scripts are UTF-8");
            assert!(
                !text.contains("innerHTML"),
                "{} must not use innerHTML",
                script.name
            );
            assert!(
                !text.contains("https://"),
                "{} reaches outside",
                script.name
            );
        }
    }
}
