//! The OpenAPI 3.1 document of the HTTP API and its interactive documentation.
//!
//! The document is the routers' own: each service registers its handlers together with their
//! `#[utoipa::path]` descriptions (`crate::services`), so the document cannot drift from the
//! routes. This module adds what the whole API shares: the title and introduction, the tags,
//! and [`Conventions`]: the bearer scheme, the path parameters, the `Idempotency-Key` header of
//! every POST and the problem+json answers (RFC 9457) each kind of operation can give.
//!
//! `GET /api/openapi.json` serves the document and `GET /docs` the Swagger UI. The UI's files
//! are compiled into the binary from the `utoipa-swagger-ui-vendored` crate (the `vendored`
//! feature of `utoipa-swagger-ui`): nothing is downloaded at build or run time, and the UI
//! is configured not to call the public spec validator.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::state::AppState;
use crate::wire::schema::{Code, Problem};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ochered",
        description = "The HTTP API of ochered, an event-sourced engine for the electronic queues of public services: kindergarten queues, first-grade enrollment and clinic appointments.\n\n\
**Authentication.** Every call that reads personal data or changes anything needs `Authorization: Bearer <JWT>` (HS256) whose claims carry a `role` (`parent`, `officer`, `registrar`, `auditor`, `admin`) and a `sub`. For development, `ochered token --role officer --sub NAME` mints one. An admin may do everything; each operation's description names the other roles allowed.\n\n\
**Writes.** Every POST takes an optional `Idempotency-Key` header: a retry with the same key gets the first answer with `Idempotent-Replayed: true`, the same key with a different body gets 422 and a key still in flight 409. Past its capacity (too many API requests in progress, or the writer's queue full) the server answers 503 `overloaded` with `Retry-After` at once, without reading the body; nothing was written, so a retry with the same key is safe.\n\n\
**Errors** are `application/problem+json` (RFC 9457) with a stable `code` and, where one field is at fault, its `field`.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(Problem, Code)),
    tags(
        (name = "authorities", description = "Authorities (municipalities) and their institutions"),
        (name = "applications", description = "Kindergarten and first-grade applications, their positions and why they moved"),
        (name = "kindergarten", description = "Kindergarten seats, allocation rounds (комплектование) and offers"),
        (name = "school", description = "First-grade enrollment campaigns, drafts and enrollment decisions"),
        (name = "rounds", description = "Results of allocation rounds and their exported instances"),
        (name = "clinic", description = "Doctors' slots, bookings and waiting lists"),
        (name = "public", description = "Anonymised queues and the audit chain head, readable by anyone"),
        (name = "transparency", description = "Receipts, signed tree heads and inclusion proofs (docs/TRANSPARENCY.md)"),
        (name = "files", description = "Officers' files: CSV imports, CSV and XLSX exports"),
        (name = "reports", description = "Reports for officers and auditors: kindergarten demand against seats by district"),
        (name = "service", description = "Health, readiness, metrics and this document"),
        (name = "officer", description = "The officer's desk: search by document, name or number, and worklists"),
    )
)]
struct ApiDoc;

/// Every documented route: the services', the status stream and this document.
fn documented() -> OpenApiRouter<AppState> {
    crate::services::router()
        .merge(crate::status::sse::router())
        .routes(routes!(openapi_json))
}

/// The document: the routers' own, with what the whole API shares.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(documented().into_openapi());
    Conventions.modify(&mut doc);
    doc
}

/// The documented routes, `GET /api/openapi.json` among them, and the Swagger UI under
/// `/docs` (`/docs` redirects to `/docs/`).
pub fn router() -> Router<AppState> {
    let (routes, _) = documented().split_for_parts();
    let config = Config::new([OPENAPI_PATH])
        // The default would send the document to validator.swagger.io for a badge.
        .validator_url("none")
        .filter(true)
        .display_request_duration(true)
        .try_it_out_enabled(true);
    routes.merge(SwaggerUi::new(DOCS_PATH).config(config))
}

/// This document
///
/// The OpenAPI 3.1 document of the API; browse it at `/docs`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1.", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    let json =
        JSON.get_or_init(|| serde_json::to_vec(&document()).expect("the document serialises"));
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.as_slice(),
    )
}

// ---------------------------------------------------------------------------------------------
// What every operation shares

/// Adds the bearer scheme, the path parameters, the `Idempotency-Key` header of POSTs and the
/// problem answers each operation can give, without overriding what a handler declared.
pub struct Conventions;

fn path_parameter_description(name: &str) -> &'static str {
    match name {
        "authority" => "The authority (municipality) id, e.g. `demo`.",
        "number" => "An application or booking number: a positive integer.",
        "queue" => "A queue id, e.g. `kindergarten.K001.3.2027` or `school.school-2027.S001`.",
        "round" => "A round id, e.g. `2027-main`.",
        _ => "A path parameter.",
    }
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    if description.starts_with("Unavailable") || description.starts_with("Too many") {
        response.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying."))
                .build()
                .into(),
        );
    }
    response.into()
}

impl Conventions {
    fn operation(path: &str, method: &str, op: &mut Operation) {
        let protected = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let is_post = method == "post";
        let has_body = op.request_body.is_some();
        let has_query = op.parameters.as_ref().is_some_and(|ps| {
            ps.iter()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query))
        });

        // Path parameters, from the template; described when a handler left them bare.
        let params = op.parameters.get_or_insert_with(Vec::new);
        for param in params.iter_mut() {
            if let RefOr::T(p) = param {
                if p.parameter_in == ParameterIn::Path && p.description.is_none() {
                    p.description = Some(path_parameter_description(&p.name).to_owned());
                }
            }
        }
        let declared: Vec<String> = params
            .iter()
            .filter_map(|p| match p {
                RefOr::T(p) if p.parameter_in == ParameterIn::Path => Some(p.name.clone()),
                _ => None,
            })
            .collect();
        let mut rest = path;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let name = &rest[start + 1..start + len];
            if !declared.iter().any(|d| d == name) {
                params.push(RefOr::T(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .description(Some(path_parameter_description(name)))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                ));
            }
            rest = &rest[start + len..];
        }
        if is_post {
            params.push(RefOr::T(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes the request safe to retry: a retry with the same key gets the first answer with `Idempotent-Replayed: true`; the same key with a different body gets 422; a key still in flight gets 409. 1-255 visible ASCII characters, scoped to the caller.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255)),
                    ))
                    .build(),
            ));
            params.push(RefOr::T(
                ParameterBuilder::new()
                    .name("X-Correlation-Id")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("Recorded with the events: 1-128 visible ASCII characters; anything else is refused with 422 (field `X-Correlation-Id`), never cut or dropped."))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(128)),
                    ))
                    .build(),
            ));
            for (status, response) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    response.headers.entry("Idempotent-Replayed".into()).or_insert_with(|| {
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"]))))
                            .description(Some("`true` when this is the stored first answer to an earlier request with the same Idempotency-Key."))
                            .build()
                            .into()
                    });
                }
            }
        }
        if params.is_empty() {
            op.parameters = None;
        }

        let mut problems: Vec<(&str, &str)> = Vec::new();
        if path.starts_with("/api/v1/") {
            if is_post && has_body {
                problems.push(("400", "Malformed body (for JSON: not valid JSON)."));
                problems.push(("413", "The body is larger than the server accepts."));
                problems.push(("415", "Wrong Content-Type."));
            }
            if protected {
                problems.push(("401", "No valid bearer token."));
                problems.push((
                    "403",
                    "The caller's role may not do this (checked before the body is read).",
                ));
            }
            if path.contains('{') {
                problems.push(("404", "The authority, or a resource named in the path, does not exist (someone else's application looks missing too)."));
            }
            if is_post {
                problems.push(("409", "Refused by the rules as a conflict (e.g. the same child twice: `existing` names the application), or a request with this Idempotency-Key is still in flight."));
            }
            if is_post || has_query || path.contains("{number}") || path.contains("{round}") {
                problems.push(("422", "A field is invalid (`field` names it), a rule refused the request, or the Idempotency-Key was used for a different request."));
            }
            if is_post && crate::http::ratelimit::SUBMISSION_ROUTES.contains(&path) {
                problems.push(("429", "Too many submissions from this client (the token's subject; without a valid token, the peer address) in a short time: nothing was written. Retry after `Retry-After` seconds."));
            }
            problems.push(("503", "Unavailable: the server has too many requests in progress or the writer's queue is full (`overloaded`, answered at once, before the body is read), the store does not answer (`unavailable`), or the request timed out (`timeout`); nothing was accepted. Retry after `Retry-After` seconds, with the same Idempotency-Key."));
        }
        for (status, description) in problems {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| problem_response(description));
        }
    }
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with the claims `role` (parent, officer, registrar, auditor, admin), `sub` and `exp`. `ochered token --role officer --sub NAME` mints one for development.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                Self::operation(path, method, op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The document with every object's keys sorted, pretty-printed: key order carries no
    /// meaning in JSON, so this is the form the committed snapshot is kept in.
    fn canonical(doc: &utoipa::openapi::OpenApi) -> String {
        fn sort(value: serde_json::Value) -> serde_json::Value {
            match value {
                serde_json::Value::Object(map) => {
                    let sorted: BTreeMap<String, serde_json::Value> =
                        map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                    serde_json::Value::Object(sorted.into_iter().collect())
                }
                serde_json::Value::Array(items) => {
                    serde_json::Value::Array(items.into_iter().map(sort).collect())
                }
                other => other,
            }
        }
        let value = sort(serde_json::to_value(doc).expect("the document serialises"));
        serde_json::to_string_pretty(&value).expect("JSON serialises") + "\n"
    }

    /// The served document equals the committed snapshot: moving handlers or rewriting how
    /// they are registered must not change what clients see. A deliberate change updates the
    /// snapshot with `OCHERED_UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p ochered-api openapi`
    /// and says why in its commit.
    #[test]
    fn document_matches_the_committed_snapshot() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi.json");
        let now = canonical(&document());
        if std::env::var_os("OCHERED_UPDATE_OPENAPI_SNAPSHOT").is_some() {
            std::fs::write(&path, &now).expect("write the snapshot");
        }
        let snapshot = std::fs::read_to_string(&path).expect("read the snapshot");
        if now != snapshot {
            let first = now
                .lines()
                .zip(snapshot.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(now.lines().count().min(snapshot.lines().count()));
            panic!(
                "the OpenAPI document differs from {} from line {}:\n now:      {:?}\n snapshot: {:?}",
                path.display(),
                first + 1,
                now.lines().nth(first),
                snapshot.lines().nth(first),
            );
        }
    }

    /// Every (method, path) the document describes.
    fn operations_listed(doc: &utoipa::openapi::OpenApi) -> BTreeMap<String, Vec<&'static str>> {
        let mut out = BTreeMap::new();
        for (path, item) in &doc.paths.paths {
            let mut methods = Vec::new();
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                if op.is_some() {
                    methods.push(method);
                }
            }
            out.insert(path.clone(), methods);
        }
        out
    }

    #[test]
    fn document_is_openapi_3_1_with_every_operation_described() {
        let doc = document();
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let mut operation_ids = std::collections::HashSet::new();
        for (path, methods) in operations_listed(&doc) {
            for method in methods {
                let op = &json["paths"][&path][method];
                assert!(op["summary"].is_string(), "{method} {path} has no summary");
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(operation_ids.insert(id.clone()), "operationId {id} twice");
                if op["security"].is_array() {
                    let description = op["description"].as_str().unwrap_or("");
                    assert!(
                        description.contains("**Roles:**"),
                        "{method} {path} does not name its roles"
                    );
                }
            }
        }
        // Every API operation may be shed by admission control: a 503 problem with
        // Retry-After (crate::http::admission).
        for (path, methods) in operations_listed(&doc) {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for method in methods {
                let shed = &json["paths"][&path][method]["responses"]["503"];
                assert_eq!(
                    shed["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path}: no 503 problem"
                );
                assert_eq!(
                    shed["headers"]["Retry-After"]["schema"]["type"], "integer",
                    "{method} {path}: 503 without Retry-After"
                );
            }
        }
        // Every referenced schema exists.
        let text = json.to_string();
        let schemas = json["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.contains_key(name), "missing schema {name}");
        }
    }
}
