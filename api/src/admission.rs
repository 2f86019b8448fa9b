//! Admission control (issue 6): a bound on the API requests in progress, beyond which the
//! server answers at once instead of queueing.
//!
//! Without it, an HTTP load above what the machine can serve piles up inside the server
//! (accepted connections, parsed requests waiting for CPU and for the writer), and every
//! request's latency grows without bound long before the writer's bounded queue fills. With
//! it, at most `max_in_flight` requests are being worked on; by Little's law their waiting
//! time is about `max_in_flight / throughput` (256 at the ~9,000 submissions/s of the HTTP
//! path: tens of milliseconds), and everything beyond is shed in microseconds.
//!
//! - **Which requests:** every request under `/api/v1/` — writes *and* reads. Reads are
//!   cheap one by one but share the same CPU: a refresh storm of parents checking their
//!   position at the opening minute would otherwise grow everyone's latency, submissions'
//!   included, without bound. One pool bounds the total work in progress, which is what the
//!   latency depends on. Not counted: the status stream (`…/applications/{number}/events`,
//!   Server-Sent Events held open for hours, which would hold a permit for their lifetime),
//!   `/health`, `/ready` and `/metrics` (probes must see the server while it sheds), the
//!   OpenAPI document, Swagger UI and the web pages (static).
//! - **Over the bound:** 503 problem+json with `code` `overloaded` (the same answer as the
//!   writer's full queue) and `Retry-After: 1`, sent before the body is read, the token
//!   checked or anything written; a retry with the same Idempotency-Key is safe. Counted in
//!   `ochered_admission_shed_total`; `ochered_http_in_flight` is the number admitted now.
//! - **How much:** `max_in_flight` (flag `--max-in-flight`, `OCHERED_MAX_IN_FLIGHT`, TOML
//!   `max_in_flight`) [default: [`DEFAULT_MAX_IN_FLIGHT`]]; 0 turns admission control off.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Requests under `/api/v1/` in progress at once, by default: about 30 ms of the HTTP path's
/// throughput on a 2-core machine (docs/PERFORMANCE.md, "Overload").
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The status stream's route: long-lived, so not counted.
const STREAM_ROUTE: &str = "/api/v1/authorities/{authority}/applications/{number}/events";

/// The bound shared by every request of one server.
pub struct Admission {
    /// None: admission control is off.
    permits: Option<Arc<Semaphore>>,
    in_flight: metrics::Gauge,
}

impl Admission {
    /// At most `max_in_flight` requests at once; 0: no bound.
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight))),
            in_flight: metrics::gauge!("ochered_http_in_flight"),
        })
    }
}

/// Whether a request counts against the bound (see the module's documentation).
pub fn counts(path: &str, route: Option<&str>) -> bool {
    path.starts_with("/api/v1/") && route != Some(STREAM_ROUTE)
}

/// Decrements the in-flight gauge when the request is done (or dropped by the timeout).
struct InFlight<'a>(&'a metrics::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The middleware: admits a request if a permit is free, else answers 503 at once.
pub async fn admit(admission: Arc<Admission>, req: Request, next: Next) -> Response {
    let Some(permits) = &admission.permits else {
        return next.run(req).await;
    };
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if !counts(req.uri().path(), route) {
        return next.run(req).await;
    }
    let Ok(_permit) = permits.clone().try_acquire_owned() else {
        metrics::counter!("ochered_admission_shed_total").increment(1);
        return ApiError::overloaded(
            "the server has too many requests in progress; your request was not read and nothing was written, retry after Retry-After seconds with the same Idempotency-Key",
        )
        .into_response();
    };
    admission.in_flight.increment(1.0);
    let _in_flight = InFlight(&admission.in_flight);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_requests_count_but_probes_pages_and_the_stream_do_not() {
        let submit = "/api/v1/authorities/{authority}/kindergarten/applications";
        assert!(counts(
            "/api/v1/authorities/demo/kindergarten/applications",
            Some(submit)
        ));
        assert!(counts("/api/v1/authorities", Some("/api/v1/authorities")));
        assert!(counts("/api/v1/nowhere", None));
        assert!(!counts(
            "/api/v1/authorities/demo/applications/7/events",
            Some(STREAM_ROUTE)
        ));
        for path in [
            "/health",
            "/ready",
            "/metrics",
            "/api/openapi.json",
            "/",
            "/docs/",
        ] {
            assert!(!counts(path, None), "{path}");
        }
    }

    /// A router whose API handler says it entered and then waits until released, behind the
    /// middleware with room for one request.
    fn app(entered: Arc<tokio::sync::Notify>, release: Arc<tokio::sync::Notify>) -> axum::Router {
        use axum::routing::{get, post};
        let admission = Admission::new(1);
        axum::Router::new()
            .route(
                "/api/v1/slow",
                post(move || {
                    let (entered, release) = (entered.clone(), release.clone());
                    async move {
                        entered.notify_one();
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route("/health", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(move |req, next| {
                admit(admission.clone(), req, next)
            }))
    }

    #[tokio::test]
    async fn past_the_bound_api_requests_get_503_at_once_and_probes_pass() {
        use axum::body::Body;
        use axum::http::{Method, StatusCode};
        use tower::ServiceExt;
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app(entered.clone(), release.clone());
        let request = || {
            axum::http::Request::builder()
                .method(Method::POST)
                .uri("/api/v1/slow")
                .body(Body::from("{}"))
                .unwrap()
        };
        let first = tokio::spawn(app.clone().oneshot(request()));
        // Once its handler runs, the first request holds the only permit.
        entered.notified().await;
        let shed = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()["retry-after"], "1");
        assert_eq!(shed.headers()["content-type"], "application/problem+json");
        let body = axum::body::to_bytes(shed.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "overloaded");
        assert_eq!(body["status"], 503);
        let health = app
            .clone()
            .oneshot(
                axum::http::Request::builder()
                    .uri("/health")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        release.notify_one();
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        // The permit came back.
        let again = tokio::spawn(app.clone().oneshot(request()));
        release.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
