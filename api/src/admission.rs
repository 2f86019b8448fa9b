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
//!   writer's full queue) and `Retry-After`, sent before the body is read, the token
//!   checked or anything written; a retry with the same Idempotency-Key is safe. Counted in
//!   `ochered_admission_shed_total`; `ochered_http_in_flight` is the number admitted now.
//! - **How long to wait:** Retry-After grows with the share of counted requests shed in the
//!   last whole second ([`retry_after_secs`]): 1 s while shedding is rare, up to
//!   [`MAX_RETRY_AFTER_S`] when nearly everything is shed, and spread over the upper half of
//!   that range by a rotating counter, so a crowd shed in the same instant does not come back
//!   in the same instant. A storm of retries then thins itself out instead of keeping the
//!   server saturated with answers that are all "not now".
//! - **How much:** `max_in_flight` (flag `--max-in-flight`, `OCHERED_MAX_IN_FLIGHT`, TOML
//!   `max_in_flight`) [default: [`DEFAULT_MAX_IN_FLIGHT`]]; 0 turns admission control off.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Requests under `/api/v1/` in progress at once, by default: about 30 ms of the HTTP path's
/// throughput on a 2-core machine (docs/PERFORMANCE.md, "Overload").
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The longest Retry-After a shed answer asks for, in seconds (when nearly every request of
/// the last second was shed).
pub const MAX_RETRY_AFTER_S: u64 = 8;

/// Below this share of shed requests in the last second, Retry-After stays 1 s.
const CALM_SHED_RATIO: f64 = 0.1;

/// The status stream's route: long-lived, so not counted.
const STREAM_ROUTE: &str = "/api/v1/authorities/{authority}/applications/{number}/events";

/// Retry-After, in whole seconds (as HTTP requires), for a shed answer when `shed_ratio` of
/// the counted requests were shed in the last second; `spread` (any number, e.g. a counter)
/// picks one value of the range, so consecutive answers spread their clients out.
///
/// The ceiling grows linearly from 1 s at a shed ratio of [`CALM_SHED_RATIO`] to
/// [`MAX_RETRY_AFTER_S`] at 0.9 and above; the answer lies in `[⌈ceiling/2⌉, ceiling]`.
pub fn retry_after_secs(shed_ratio: f64, spread: u64) -> u64 {
    let ratio = if shed_ratio.is_finite() {
        shed_ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if ratio < CALM_SHED_RATIO {
        return 1;
    }
    let span = (MAX_RETRY_AFTER_S - 1) as f64;
    let ceiling = (1.0 + ((ratio - CALM_SHED_RATIO) / (0.9 - CALM_SHED_RATIO) * span).round())
        .min(MAX_RETRY_AFTER_S as f64) as u64;
    let floor = ceiling.div_ceil(2);
    floor + spread % (ceiling - floor + 1)
}

/// Admitted and shed requests per whole second since the server started, and the shed
/// ratio of the last complete second. Lock-free; a request counted across a second's turn
/// may land in either second, which does not matter at this resolution.
struct ShedWindow {
    origin: Instant,
    /// The second (since `origin`) being counted.
    second: AtomicU64,
    admitted: AtomicU64,
    shed: AtomicU64,
    /// Shed ratio of the last complete second, in thousandths; 0 if that second saw nothing.
    last_permille: AtomicU32,
    /// Rotates the Retry-After values over their range.
    spread: AtomicU64,
}

impl ShedWindow {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            second: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            last_permille: AtomicU32::new(0),
            spread: AtomicU64::new(0),
        }
    }

    /// Counts one request; on the first request of a new second, closes the previous one.
    fn note(&self, shed: bool) {
        self.note_at(self.origin.elapsed().as_secs(), shed);
    }

    /// [`Self::note`] at `now` seconds since the origin.
    fn note_at(&self, now: u64, shed: bool) {
        let current = self.second.load(Ordering::Relaxed);
        if now != current
            && self
                .second
                .compare_exchange(current, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let admitted = self.admitted.swap(0, Ordering::AcqRel);
            let dropped = self.shed.swap(0, Ordering::AcqRel);
            // A gap of more than a second: the last whole second saw nothing.
            let permille = if now == current + 1 && admitted + dropped > 0 {
                (dropped * 1000 / (admitted + dropped)) as u32
            } else {
                0
            };
            self.last_permille.store(permille, Ordering::Relaxed);
        }
        let counter = if shed { &self.shed } else { &self.admitted };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Retry-After for the next shed answer.
    fn retry_after(&self) -> u64 {
        let ratio = f64::from(self.last_permille.load(Ordering::Relaxed)) / 1000.0;
        retry_after_secs(ratio, self.spread.fetch_add(1, Ordering::Relaxed))
    }
}

/// The bound shared by every request of one server.
pub struct Admission {
    /// None: admission control is off.
    permits: Option<Arc<Semaphore>>,
    in_flight: metrics::Gauge,
    window: ShedWindow,
}

impl Admission {
    /// At most `max_in_flight` requests at once; 0: no bound.
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight))),
            in_flight: metrics::gauge!("ochered_http_in_flight"),
            window: ShedWindow::new(),
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
        admission.window.note(true);
        let mut response = ApiError::overloaded(
            "the server has too many requests in progress; your request was not read and nothing was written, retry after Retry-After seconds with the same Idempotency-Key",
        )
        .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(admission.window.retry_after()),
        );
        return response;
    };
    admission.window.note(false);
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

    #[test]
    fn retry_after_is_one_second_while_shedding_is_rare_and_grows_to_the_cap() {
        for spread in 0..20 {
            assert_eq!(retry_after_secs(0.0, spread), 1);
            assert_eq!(retry_after_secs(0.05, spread), 1);
            assert_eq!(retry_after_secs(f64::NAN, spread), 1);
            assert_eq!(retry_after_secs(-1.0, spread), 1);
        }
        // The ceiling: 1 at 0.1, MAX at 0.9 and above, never more.
        let ceiling = |ratio: f64| (0..64).map(|s| retry_after_secs(ratio, s)).max().unwrap();
        let floor = |ratio: f64| (0..64).map(|s| retry_after_secs(ratio, s)).min().unwrap();
        assert_eq!(ceiling(0.1), 1);
        assert_eq!(ceiling(0.5), 1 + ((0.4f64 / 0.8) * 7.0).round() as u64);
        assert_eq!(ceiling(0.5), 5);
        assert_eq!(floor(0.5), 3);
        assert_eq!(ceiling(0.9), MAX_RETRY_AFTER_S);
        assert_eq!(ceiling(1.0), MAX_RETRY_AFTER_S);
        assert_eq!(ceiling(7.0), MAX_RETRY_AFTER_S);
        assert_eq!(floor(1.0), MAX_RETRY_AFTER_S / 2);
        // Monotone in the ratio, and every value of the range is used in turn.
        let mut last = 0;
        for permille in 0..=1000 {
            let c = ceiling(f64::from(permille) / 1000.0);
            assert!(c >= last, "{permille}");
            last = c;
        }
        let values: Vec<u64> = (0..5).map(|s| retry_after_secs(1.0, s)).collect();
        assert_eq!(values, vec![4, 5, 6, 7, 8]);
    }

    #[test]
    fn the_window_reports_the_last_whole_second() {
        let w = ShedWindow::new();
        // Within the first second: nothing complete yet.
        for _ in 0..9 {
            w.note_at(0, true);
        }
        w.note_at(0, false);
        assert_eq!(w.retry_after(), 1);
        // The first request of second 1 closes second 0: 9 of 10 shed.
        w.note_at(1, false);
        assert_eq!(w.last_permille.load(Ordering::Relaxed), 900);
        for _ in 0..10 {
            let after = w.retry_after();
            assert!((4..=MAX_RETRY_AFTER_S).contains(&after), "{after}");
        }
        // Second 1 had one admitted request and nothing shed.
        w.note_at(2, true);
        assert_eq!(w.last_permille.load(Ordering::Relaxed), 0);
        assert_eq!(w.retry_after(), 1);
        // A quiet gap: the last whole second (4) saw nothing, whatever second 2 held.
        for _ in 0..5 {
            w.note_at(2, true);
        }
        w.note_at(5, false);
        assert_eq!(w.last_permille.load(Ordering::Relaxed), 0);
        assert_eq!(w.retry_after(), 1);
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
