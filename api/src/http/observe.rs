//! Metrics and time limits of every request: the Prometheus recorder, request rate and
//! latency per route and outcome, and the overall request timeout.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State as AxumState};
use axum::http::{Method, StatusCode};
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
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let handles = RouteMetrics::of(route, &method, status);
    handles.requests.increment(1);
    if let Some(submissions) = &handles.submissions {
        submissions.increment(1);
    }
    handles.latency.record(started.elapsed().as_secs_f64());
    response
}

/// The metric handles of one route, method and status, registered once and then reused:
/// a request neither builds label sets nor searches the registry. The set is bounded (route
/// templates × standard methods × statuses); requests with any other method are counted
/// without the cache.
struct RouteMetrics {
    requests: metrics::Counter,
    latency: metrics::Histogram,
    /// The intake an operator watches: submissions (applications, bookings) by outcome.
    submissions: Option<metrics::Counter>,
}

type RouteKey = (Method, u16);

impl RouteMetrics {
    fn register(route: &str, method: &Method, status: StatusCode) -> RouteMetrics {
        // Handles taken before the recorder exists would count nowhere, for good.
        metrics_handle();
        let submission = crate::http::ratelimit::is_submission(method, Some(route));
        let (route, method) = (route.to_owned(), method.to_string());
        RouteMetrics {
            requests: metrics::counter!("ochered_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status.as_u16().to_string()),
            latency: metrics::histogram!("ochered_http_request_seconds", "route" => route, "method" => method, "outcome" => outcome(status)),
            submissions: submission.then(
                || metrics::counter!("ochered_submissions_total", "outcome" => outcome(status)),
            ),
        }
    }

    fn of(route: &str, method: &Method, status: StatusCode) -> Arc<RouteMetrics> {
        static CACHE: OnceLock<RwLock<HashMap<String, HashMap<RouteKey, Arc<RouteMetrics>>>>> =
            OnceLock::new();
        let standard = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ]
        .contains(method);
        if !standard {
            return Arc::new(Self::register(route, method, status));
        }
        let cache = CACHE.get_or_init(Default::default);
        let key = (method.clone(), status.as_u16());
        if let Some(found) = cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .and_then(|by| by.get(&key))
        {
            return found.clone();
        }
        let mut cache = cache.write().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(route.to_owned())
            .or_default()
            .entry(key)
            .or_insert_with(|| Arc::new(Self::register(route, method, status)))
            .clone()
    }
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
