//! Metrics and time limits of every request: the Prometheus recorder, request rate and
//! latency per route and outcome, and the overall request timeout.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State as AxumState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::error::ApiError;
use crate::state::AppState;

/// The process-wide Prometheus recorder (the `metrics` facade allows one).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Seconds: resolves 1 ms to 10 s (a shed answer takes microseconds, an overloaded
            // machine's accepted request seconds).
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program).
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The `outcome` label of `ochered_http_request_seconds`, from the status: one of four fixed
/// values, so the label adds little cardinality.
/// - `accepted`: 1xx–3xx, the request was served;
/// - `shed`: 429, or 503 (overloaded, or the store unavailable): turned away with
///   Retry-After, nothing written, worth a retry;
/// - `refused`: other 4xx, the request itself was wrong or not allowed;
/// - `error`: other 5xx.
pub fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 | 503 => "shed",
        400..=499 => "refused",
        500..=599 => "error",
        _ => "accepted",
    }
}

/// Request rate and latency per route and status (latency per route, method and
/// [`outcome`]), from the moment the request reaches the router to its answer. Paths are route
/// templates: no personal data.
pub async fn observe(AxumState(_): AxumState<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let submission = crate::http::ratelimit::is_submission(req.method(), Some(&route));
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    // The intake an operator watches: submissions (applications, bookings) by outcome.
    if submission {
        metrics::counter!("ochered_submissions_total", "outcome" => outcome(status)).increment(1);
    }
    metrics::counter!("ochered_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status.as_u16().to_string())
        .increment(1);
    metrics::histogram!("ochered_http_request_seconds", "route" => route, "method" => method, "outcome" => outcome(status))
        .record(started.elapsed().as_secs_f64());
    response
}

/// Answers 503 `timeout` when the request takes longer than `timeout_ms`.
pub async fn with_timeout(req: Request, next: Next, timeout_ms: u64) -> Response {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                "the request took too long; if it carried an Idempotency-Key, retry with the same key",
            );
            e.retry_after_s = Some(1);
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    #[test]
    fn outcomes_are_few_and_fixed() {
        assert_eq!(super::outcome(StatusCode::OK), "accepted");
        assert_eq!(super::outcome(StatusCode::CREATED), "accepted");
        assert_eq!(super::outcome(StatusCode::SEE_OTHER), "accepted");
        assert_eq!(super::outcome(StatusCode::SERVICE_UNAVAILABLE), "shed");
        assert_eq!(super::outcome(StatusCode::TOO_MANY_REQUESTS), "shed");
        assert_eq!(super::outcome(StatusCode::NOT_FOUND), "refused");
        assert_eq!(super::outcome(StatusCode::UNPROCESSABLE_ENTITY), "refused");
        assert_eq!(super::outcome(StatusCode::INTERNAL_SERVER_ERROR), "error");
        assert_eq!(super::outcome(StatusCode::GATEWAY_TIMEOUT), "error");
    }
}
