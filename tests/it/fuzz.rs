//! Fuzzing request decoding end to end (docs/RULES.md#bad-input): proptest drives every operation
//! of the OpenAPI document that takes a JSON body with generated bodies — raw bytes, arbitrary
//! JSON, and objects built from the operation's own property names with hostile values
//! (extreme dates and numbers, SQL-like and control-character strings, deep nesting). The
//! server must never answer 5xx or drop the connection; every 4xx must be problem+json (checked
//! by `TestApp::send`), a 400/422 must name the field, and a 4xx must write nothing.
//!
//! A coverage-guided fuzzer (cargo-fuzz) needs a nightly compiler, which this machine cannot
//! fetch; proptest stands in for it. `PROPTEST_CASES` sets the number of
//! cases (default 300 here; CI uses the default).

use std::collections::BTreeMap;

use ochered_api::http::auth::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use ochered_store::testing::Harness;

use crate::helpers::{config_for, spawn_configured, token, TestApp, AUTHORITY};

/// One operation with a JSON request body, and the role that may call it.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    /// Property names of the body schema (top level and one level of nested objects).
    fields: Vec<String>,
    token: String,
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Json(Value),
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("'; DROP TABLE events; --".to_owned()),
        Just("\" OR 1=1 --".to_owned()),
        Just("K1".to_owned()),
        Just("S1".to_owned()),
        Just("2024-03-10".to_owned()),
        Just("0000-01-01".to_owned()),
        Just("+262142-12-31".to_owned()),
        Just("-262143-01-01".to_owned()),
        Just("2024-02-30".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("1970-01-01T00:00:00Z".to_owned()),
        Just("II-AB 123456".to_owned()),
        Just("\u{0}\u{1}\u{7f}\u{202e}".to_owned()),
        Just("Европа/Москва".to_owned()),
        Just("x".repeat(5_000)),
        "\\PC{0,40}",
        "[a-zA-Z0-9 _-]{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u32::MAX as u64 + 1)),
        hostile_string().prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object using the operation's own field names, so decoding gets past the top level.
fn shaped(fields: Vec<String>) -> impl Strategy<Value = Value> {
    let n = fields.len().max(1);
    prop::collection::vec((0..n, any_json(), any::<bool>()), 0..(n + 3)).prop_map(move |picks| {
        let mut object = Map::new();
        for (i, value, as_list) in picks {
            let Some(name) = fields.get(i) else { continue };
            let value = if as_list {
                Value::Array(vec![value])
            } else {
                value
            };
            object.insert(name.clone(), value);
        }
        Value::Object(object)
    })
}

fn body_for(fields: Vec<String>) -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
        1 => any_json().prop_map(Body::Json),
        1 => Just(Body::Bytes("[".repeat(20_000).into_bytes())),
        4 => shaped(fields).prop_map(Body::Json),
    ]
}

fn resolve(schema: &Value, doc: &Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            doc["components"]["schemas"][name].clone()
        }
        None => schema.clone(),
    }
}

fn property_names(schema: &Value, doc: &Value, depth: u8, out: &mut Vec<String>) {
    let schema = resolve(schema, doc);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            out.push(name.clone());
            if depth > 0 {
                property_names(sub, doc, depth - 1, out);
            }
        }
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        for sub in schema[combinator].as_array().into_iter().flatten() {
            property_names(sub, doc, depth, out);
        }
    }
}

/// Every operation of the document with a JSON body, with a role the server lets through to
/// body decoding (role checks come first, so a forbidden role would test nothing).
async fn operations(app: &TestApp) -> Vec<Operation> {
    let doc = app.openapi().await;
    let roles = [
        token(Role::Parent, "fuzz-parent"),
        token(Role::Officer, "fuzz-officer"),
        token(Role::Registrar, "fuzz-registrar"),
        token(Role::Admin, "fuzz-admin"),
    ];
    let mut found = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(schema) = operation
                .pointer("/requestBody/content/application~1json/schema")
                .cloned()
            else {
                continue;
            };
            let mut fields = Vec::new();
            property_names(&schema, &doc, 1, &mut fields);
            fields.sort();
            fields.dedup();
            let path = template
                .replace("{authority}", AUTHORITY)
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "1"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            // The first role that is not refused before decoding (401/403).
            let mut chosen = None;
            for role_token in &roles {
                let answer = app
                    .send(
                        app.client
                            .request(
                                method.to_uppercase().parse().unwrap(),
                                format!("{}{path}", app.base),
                            )
                            .bearer_auth(role_token)
                            .header("content-type", "application/json")
                            .body("null"),
                    )
                    .await;
                if answer.status != 401 && answer.status != 403 {
                    chosen = Some(role_token.clone());
                    break;
                }
            }
            let token = chosen.unwrap_or_else(|| panic!("no role may call {method} {path}"));
            found.push(Operation {
                method: method.to_uppercase(),
                path,
                fields,
                token,
            });
        }
    }
    found
}

#[test]
fn request_decoding_never_fails_the_server_and_bad_bodies_write_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(async {
        // Rate limiting is off here so that every generated body reaches the decoder; the
        // limiter has its own tests (tests/it/security.rs).
        let harness = std::sync::Arc::new(Harness::sqlite().await);
        let mut config = config_for(harness.url.clone());
        config.rate_limit = ochered_api::config::RateLimitConfig::off();
        let app = spawn_configured(harness, "sqlite", config).await;
        app.set_up_authority().await;
        app
    });
    let operations = runtime.block_on(operations(&app));
    assert!(
        operations.len() >= 20,
        "the document lists only {} operations with bodies",
        operations.len()
    );
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..operations.len()).prop_flat_map(|i| {
        let fields = operations[i].fields.clone();
        (Just(i), body_for(fields))
    });
    let tally = std::cell::RefCell::new(BTreeMap::<u16, u32>::new());
    runner
        .run(&strategy, |(i, body)| {
            let operation = &operations[i];
            let status = runtime.block_on(async {
                let before = app.head_seq().await;
                let request = app
                    .client
                    .request(
                        operation.method.parse().unwrap(),
                        format!("{}{}", app.base, operation.path),
                    )
                    .bearer_auth(&operation.token)
                    .header("content-type", "application/json")
                    .header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
                let request = match &body {
                    Body::Bytes(bytes) => request.body(bytes.clone()),
                    Body::Json(value) => request.body(serde_json::to_vec(value).unwrap()),
                };
                let answer = app.send(request).await;
                let after = app.head_seq().await;
                (
                    answer.status,
                    answer.field().map(str::to_owned),
                    before,
                    after,
                )
            });
            let (status, field, before, after) = status;
            tally
                .borrow_mut()
                .entry(status)
                .and_modify(|n| *n += 1)
                .or_insert(1);
            if status >= 500 {
                return Err(TestCaseError::fail(format!(
                    "{} {} answered {status}",
                    operation.method, operation.path
                )));
            }
            if (status == 400 || status == 422) && field.is_none() {
                return Err(TestCaseError::fail(format!(
                    "{} {} answered {status} without naming a field",
                    operation.method, operation.path
                )));
            }
            if status >= 400 && after != before {
                return Err(TestCaseError::fail(format!(
                    "{} {} answered {status} but the chain moved from {before} to {after}",
                    operation.method, operation.path
                )));
            }
            Ok(())
        })
        .unwrap();
    let statuses = tally.into_inner();
    eprintln!(
        "fuzzed {cases} bodies over {} operations: {statuses:?}",
        operations.len()
    );
    // The generator must reach decoding errors, not only role or routing refusals.
    assert!(
        statuses.get(&422).copied().unwrap_or(0) + statuses.get(&400).copied().unwrap_or(0) > 0,
        "no body reached the decoder: {statuses:?}"
    );
    runtime.block_on(app.stop());
}
