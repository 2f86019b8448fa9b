//! The operator's endpoints: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use axum::extract::State as AxumState;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::wire::schema::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics_text))
}

/// Liveness
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process answers.", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// A process that answers.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok`.
    status: &'static str,
}

/// A node ready to serve: the authorities it serves and those it writes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "authorities": ["demo"], "writes": ["demo"]}))]
pub struct Readiness {
    /// `ready`.
    status: &'static str,
    /// Every authority served: written here or, in cluster mode, followed.
    authorities: Vec<String>,
    /// The authorities this node writes (in cluster mode, its share; others are forwarded).
    writes: Vec<String>,
}

/// Readiness
///
/// Ready when the store answers, every writer runs and (cluster mode) every read-only copy
/// follows the log; a cluster node that writes nothing yet is ready. Otherwise 503.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "Ready, with the authorities served and those written here.", body = Readiness),
        (status = 503, description = "Not ready.", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(AxumState(state): AxumState<AppState>) -> Response {
    let store_ok = tokio::time::timeout(Duration::from_secs(2), state.engine.store().authorities())
        .await
        .is_ok_and(|r| r.is_ok());
    let readiness = state.engine.readiness();
    if store_ok && readiness.is_ready() {
        Json(Readiness {
            status: "ready",
            authorities: readiness.authorities,
            writes: readiness.writes,
        })
        .into_response()
    } else if store_ok {
        ApiError::unavailable(readiness.problems.join("; ")).into_response()
    } else {
        ApiError::unavailable("the store does not answer").into_response()
    }
}

/// Metrics
///
/// Prometheus text format: request rate and latency per route, writer batch size, commit
/// latency, queue depth, shed requests.
#[utoipa::path(get, path = "/metrics", tag = "service", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", content_type = "text/plain", body = String)))]
async fn metrics_text(AxumState(state): AxumState<AppState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    for w in state.engine.writers() {
        let authority = w.authority().to_owned();
        let stats = w.stats();
        let label = || ("authority", authority.clone());
        metrics::gauge!("ochered_writer_queue_depth", &[label()]).set(w.queue_depth() as f64);
        // Totals since the start: counters, so that rate() over them is meaningful.
        for (name, total) in [
            ("ochered_writer_batches_total", &stats.batches),
            ("ochered_writer_commands_total", &stats.commands),
            ("ochered_writer_events_total", &stats.events),
            (
                "ochered_writer_commit_failures_total",
                &stats.commit_failures,
            ),
            ("ochered_writer_shed_total", &stats.shed),
        ] {
            metrics::counter!(name, &[label()]).absolute(total.load(Relaxed));
        }
        // Time spent in commits (one transaction and one sync each), in microseconds (a
        // counter is an integer): its rate over the batches' rate is the mean commit time.
        metrics::counter!("ochered_writer_commit_microseconds_total", &[label()])
            .absolute(stats.commit_micros_total.load(Relaxed));
        metrics::gauge!("ochered_writer_last_batch_size", &[label()])
            .set(stats.last_batch_size.load(Relaxed) as f64);
        metrics::gauge!("ochered_writer_last_commit_seconds", &[label()])
            .set(stats.last_commit_micros.load(Relaxed) as f64 / 1e6);
        // The wait in front of the writer, as admission control sees it.
        let pressure = w.pressure();
        metrics::gauge!("ochered_writer_expected_wait_seconds", &[label()])
            .set(pressure.expected_wait().as_secs_f64());
        metrics::gauge!("ochered_writer_standing_wait_seconds", &[label()])
            .set(pressure.standing_wait.as_secs_f64());
        metrics::gauge!("ochered_writer_drain_per_second", &[label()])
            .set(pressure.drain_per_s.unwrap_or(0.0));
        // Head waits summed over the batches taken: their rates' ratio is the mean wait.
        let (taken, wait_sum_us) = stats.head_waits();
        metrics::counter!("ochered_writer_batches_taken_total", &[label()]).absolute(taken);
        metrics::counter!("ochered_writer_head_wait_microseconds_total", &[label()])
            .absolute(wait_sum_us);
        metrics::gauge!("ochered_authority_head_seq", &[label()])
            .set(w.head().authority_seq as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
