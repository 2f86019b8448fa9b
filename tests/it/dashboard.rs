//! The Grafana dashboard (`deploy/grafana/ochered.json`) queries only what the server exports:
//! under load — submissions accepted, shed by admission control, held back by the per-client
//! rate limit and refused, webhooks delivered and given up — every metric named in every
//! panel's query is in `/metrics`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ochered_api::config::RateLimitConfig;
use ochered_api::config::WebhookConfig;
use ochered_api::http::auth::Role;
use ochered_store::testing::Harness;
use serde_json::Value;

use crate::helpers::{config_for, kindergarten, spawn_configured, token};

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/ochered.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the dashboard is JSON")
}

/// Every `ochered_*` metric name in the dashboard's queries (panels and variables).
fn queried_metrics(dashboard: &Value) -> BTreeSet<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            exprs.push(query.to_owned());
        }
    }
    let mut names = BTreeSet::new();
    for expr in &exprs {
        let bytes = expr.as_bytes();
        let mut i = 0;
        while let Some(found) = expr[i..].find("ochered_") {
            let start = i + found;
            let preceded =
                start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| start + n);
            if !preceded {
                names.insert(expr[start..end].to_owned());
            }
            i = end;
        }
    }
    names
}

/// The metric names of a Prometheus text exposition's samples.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "ochered-server");
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids repeat"
        );
        assert!(panel["gridPos"]["w"].as_u64().unwrap() > 0);
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: every panel reads the chosen Prometheus"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("ochered_"), "{title}: {expr}");
            assert!(
                expr.matches('(').count() == expr.matches(')').count()
                    && expr.matches('{').count() == expr.matches('}').count(),
                "{title}: unbalanced query {expr}"
            );
        }
    }
    // What an operator watches on enrollment day, each at least once.
    let metrics = queried_metrics(&dashboard);
    for needed in [
        "ochered_submissions_total",
        "ochered_http_request_seconds_bucket",
        "ochered_writer_queue_depth",
        "ochered_writer_batches_total",
        "ochered_writer_commit_microseconds_total",
        "ochered_replay_events",
        "ochered_webhook_lag_events",
    ] {
        assert!(
            metrics.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported_under_load() {
    // The portal's webhook endpoint: fails every other delivery, so that with one attempt
    // allowed some notifications are delivered and some are given up.
    let calls = Arc::new(AtomicU64::new(0));
    let receiver = {
        let calls = calls.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let harness = Arc::new(Harness::sqlite().await);
    let mut config = config_for(harness.url.clone());
    // Small bounds, so that a modest load is shed and rate limited.
    config.max_in_flight = 2;
    config.admission_target_ms = 0;
    config.rate_limit = RateLimitConfig {
        per_minute: 1,
        burst: 2,
    };
    config.webhooks = WebhookConfig {
        url: Some(hook),
        max_attempts: 1,
        backoff_initial_ms: 10,
        backoff_max_ms: 20,
        ..WebhookConfig::default()
    };
    // A first life that writes the authority's set-up, so that the second one replays it.
    let app = spawn_configured(harness.clone(), "sqlite", config.clone()).await;
    app.set_up_authority().await;
    app.stop().await;
    let app = spawn_configured(harness, "sqlite", config).await;
    let url = app.url("/kindergarten/applications");

    // Accepted, one at a time; a refused one; then a burst beyond the admission bound; then
    // one parent past the rate limit.
    for i in 0..6 {
        let parent = token(Role::Parent, &format!("dash-parent-{i}"));
        let a = app
            .post(
                &parent,
                "/kindergarten/applications",
                kindergarten(&format!("II-DB {i:06}"), &["K1"]),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let parent = token(Role::Parent, "dash-refused");
    let refused = app
        .post(
            &parent,
            "/kindergarten/applications",
            kindergarten("II-DB 000099", &["K9"]),
        )
        .await;
    assert!(refused.status >= 400 && refused.status < 500);
    let mut burst = Vec::new();
    for i in 0..60 {
        let client = app.client.clone();
        let url = url.clone();
        burst.push(tokio::spawn(async move {
            let parent = token(Role::Parent, &format!("dash-burst-{i}"));
            client
                .post(url)
                .bearer_auth(parent)
                .json(&kindergarten(&format!("II-DC {i:06}"), &["K1", "K2"]))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap());
    }
    let hammer = token(Role::Parent, "dash-hammer");
    let mut limited = false;
    for i in 0..5 {
        let a = app
            .post(
                &hammer,
                "/kindergarten/applications",
                kindergarten(&format!("II-DD {i:06}"), &["K1"]),
            )
            .await;
        limited |= a.status == 429;
    }
    assert!(limited, "the rate limit never answered 429");

    // Every queried metric, once the webhooks have had their turn.
    let wanted = queried_metrics(&dashboard());
    let mut missing = Vec::new();
    for _ in 0..100 {
        let names = exported(&app.text("/metrics").await);
        missing = wanted.difference(&names).cloned().collect::<Vec<_>>();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export: {missing:?} (burst statuses {statuses:?}, webhook calls {})",
        calls.load(Ordering::Relaxed)
    );
    assert!(
        statuses.contains(&503),
        "the burst was never shed: {statuses:?}"
    );
    app.stop().await;
}
