//! Admission control: a bound on the API requests in progress, beyond which the
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
//!   `max_in_flight`) [default: [`DEFAULT_MAX_IN_FLIGHT`]] is the ceiling; 0 turns admission
//!   control off.
//! - **Adaptive limit:** the bound in force is below the ceiling when the machine is slower
//!   than the ceiling assumes. Little's law again: with a throughput of 1,000/s, 256 requests
//!   in progress mean a quarter of a second of waiting inside the server. So the limit adapts
//!   to the latency of completed admitted requests against a target (`admission_target_ms`,
//!   flag `--admission-target-ms`, `OCHERED_ADMISSION_TARGET_MS`) [default:
//!   [`DEFAULT_TARGET_MS`]], AIMD style, over windows of [`WINDOW_MS`] ms ([`adapt`]): when
//!   more than a tenth of a window's completions took longer than the target (its p90 above
//!   the target), the limit is multiplied by 0.8, never below [`FLOOR`]; when the window was
//!   within the target and the limit was reached, a few permits are added, never above the
//!   ceiling. 0 as the target keeps the bound static at the ceiling. The check is lock-free:
//!   an in-flight counter against an atomic limit. `ochered_admission_limit` is the limit
//!   in force.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// Requests under `/api/v1/` in progress at once, by default: about 30 ms of the HTTP path's
/// throughput on a 2-core machine (docs/PERFORMANCE.md, "Overload").
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The latency target of admitted requests, by default, in milliseconds.
pub const DEFAULT_TARGET_MS: u64 = 50;

/// The adaptive limit never goes below this many requests in progress (nor above the
/// ceiling, if the ceiling is lower).
pub const FLOOR: usize = 8;

/// The length of one adaptation window, in milliseconds.
pub const WINDOW_MS: u64 = 100;

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

/// What one adaptation window saw of the admitted requests that completed in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Admitted requests that completed in the window.
    pub completed: u64,
    /// Of those, how many took longer than the target.
    pub over_target: u64,
    /// Whether the limit was reached (a request was shed, or admitted as the last one the
    /// limit allowed) during the window.
    pub saturated: bool,
}

/// The limit for the next window, from the current `limit` and what the window saw: times
/// 0.8 when its p90 exceeded the target (more than a tenth of its completions over it),
/// never below [`FLOOR`] (or `ceiling`, if lower); plus max(2, limit/16) permits when it was
/// within the target and the limit was reached, never above `ceiling`; otherwise unchanged
/// (an idle or unsaturated window says nothing about a larger limit).
pub fn adapt(limit: usize, ceiling: usize, window: WindowStats) -> usize {
    let floor = FLOOR.min(ceiling);
    let limit = limit.clamp(floor, ceiling);
    if window.completed == 0 {
        return limit;
    }
    if window.over_target * 10 > window.completed {
        (limit * 4 / 5).max(floor)
    } else if window.saturated {
        limit.saturating_add((limit / 16).max(2)).min(ceiling)
    } else {
        limit
    }
}

/// The adaptive limit: a lock-free counter of requests in progress against an atomic limit,
/// adjusted at the end of each window by [`adapt`].
struct Limiter {
    ceiling: usize,
    /// None: the limit stays at the ceiling.
    target_us: Option<u64>,
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    origin: Instant,
    /// The window (in [`WINDOW_MS`] units since `origin`) being counted.
    window: AtomicU64,
    completed: AtomicU64,
    over_target: AtomicU64,
    saturated: AtomicBool,
    gauge: metrics::Gauge,
}

impl Limiter {
    fn new(ceiling: usize, target_ms: u64) -> Self {
        let gauge = metrics::gauge!("ochered_admission_limit");
        gauge.set(ceiling as f64);
        Self {
            ceiling,
            target_us: (target_ms > 0).then(|| target_ms.saturating_mul(1000)),
            limit: AtomicUsize::new(ceiling),
            in_flight: AtomicUsize::new(0),
            origin: Instant::now(),
            window: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            over_target: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
            gauge,
        }
    }

    /// Takes a place if fewer than the current limit are in progress.
    fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.saturated.store(true, Ordering::Relaxed);
            return false;
        }
        if before + 1 >= limit {
            self.saturated.store(true, Ordering::Relaxed);
        }
        true
    }

    /// Gives the place back and counts the request's latency.
    fn release(&self, started: Instant) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let Some(target_us) = self.target_us else {
            return;
        };
        let now = Instant::now();
        let took_us = now.saturating_duration_since(started).as_micros() as u64;
        let window = now.saturating_duration_since(self.origin).as_millis() as u64 / WINDOW_MS;
        self.complete_at(window, took_us > target_us);
    }

    /// Counts one completion in window `now`; the first completion of a new window closes
    /// the previous one and adapts the limit.
    fn complete_at(&self, now: u64, over_target: bool) {
        let current = self.window.load(Ordering::Relaxed);
        if now != current
            && self
                .window
                .compare_exchange(current, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let stats = WindowStats {
                completed: self.completed.swap(0, Ordering::AcqRel),
                over_target: self.over_target.swap(0, Ordering::AcqRel),
                saturated: self.saturated.swap(false, Ordering::AcqRel),
            };
            let limit = adapt(self.limit.load(Ordering::Relaxed), self.ceiling, stats);
            self.limit.store(limit, Ordering::Relaxed);
            self.gauge.set(limit as f64);
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        if over_target {
            self.over_target.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The bound shared by every request of one server.
pub struct Admission {
    /// None: admission control is off.
    limiter: Option<Limiter>,
    in_flight: metrics::Gauge,
    window: ShedWindow,
}

impl Admission {
    /// At most `max_in_flight` requests at once, the limit adapting below it to a latency
    /// target of [`DEFAULT_TARGET_MS`]; 0: no bound.
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Self::adaptive(max_in_flight, DEFAULT_TARGET_MS)
    }

    /// At most `max_in_flight` (the ceiling) requests at once, the limit adapting to keep
    /// admitted requests within `target_ms`; `max_in_flight` 0: no bound; `target_ms` 0: the
    /// limit stays at the ceiling.
    pub fn adaptive(max_in_flight: usize, target_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            limiter: (max_in_flight > 0).then(|| Limiter::new(max_in_flight, target_ms)),
            in_flight: metrics::gauge!("ochered_http_in_flight"),
            window: ShedWindow::new(),
        })
    }

    /// The limit in force now; None: no bound.
    pub fn limit(&self) -> Option<usize> {
        self.limiter
            .as_ref()
            .map(|l| l.limit.load(Ordering::Relaxed))
    }
}

/// Whether a request counts against the bound (see the module's documentation).
pub fn counts(path: &str, route: Option<&str>) -> bool {
    path.starts_with("/api/v1/") && route != Some(STREAM_ROUTE)
}

/// Gives the place back, counts the latency and decrements the in-flight gauge when the
/// request is done (or dropped by the timeout).
struct InFlight<'a> {
    admission: &'a Admission,
    limiter: &'a Limiter,
    started: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.limiter.release(self.started);
        self.admission.in_flight.decrement(1.0);
    }
}

/// The middleware: admits a request if fewer than the limit are in progress, else answers
/// 503 at once.
pub async fn admit(admission: Arc<Admission>, req: Request, next: Next) -> Response {
    let Some(limiter) = &admission.limiter else {
        return next.run(req).await;
    };
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if !counts(req.uri().path(), route) {
        return next.run(req).await;
    }
    if !limiter.try_acquire() {
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
    }
    let _in_flight = InFlight {
        admission: &admission,
        limiter,
        started: Instant::now(),
    };
    admission.window.note(false);
    admission.in_flight.increment(1.0);
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
        app_with(Admission::new(1), entered, release)
    }

    /// [`app`] behind the given admission control.
    fn app_with(
        admission: Arc<Admission>,
        entered: Arc<tokio::sync::Notify>,
        release: Arc<tokio::sync::Notify>,
    ) -> axum::Router {
        use axum::routing::{get, post};
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

    /// A request to the test router's slow API route.
    fn slow_request() -> axum::http::Request<axum::body::Body> {
        axum::http::Request::builder()
            .method(axum::http::Method::POST)
            .uri("/api/v1/slow")
            .body(axum::body::Body::from("{}"))
            .unwrap()
    }

    #[tokio::test]
    async fn past_the_bound_api_requests_get_503_at_once_and_probes_pass() {
        use axum::body::Body;
        use axum::http::StatusCode;
        use tower::ServiceExt;
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app(entered.clone(), release.clone());
        let first = tokio::spawn(app.clone().oneshot(slow_request()));
        // Once its handler runs, the first request holds the only permit.
        entered.notified().await;
        let shed = app.clone().oneshot(slow_request()).await.unwrap();
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
        let again = tokio::spawn(app.clone().oneshot(slow_request()));
        release.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    fn window(completed: u64, over_target: u64, saturated: bool) -> WindowStats {
        WindowStats {
            completed,
            over_target,
            saturated,
        }
    }

    #[test]
    fn the_limit_shrinks_over_the_target_and_grows_back_when_saturated_within_it() {
        let ceiling = 256;
        // p90 over the target (more than 10 % of completions over it): times 0.8.
        assert_eq!(adapt(256, ceiling, window(100, 11, true)), 204);
        assert_eq!(adapt(256, ceiling, window(100, 50, false)), 204);
        // Exactly 10 % over: the p90 is within the target.
        assert_eq!(adapt(200, ceiling, window(100, 10, true)), 212);
        // Repeated slow windows walk it down to the floor and no further.
        let mut limit = ceiling;
        let mut steps = 0;
        while limit > FLOOR {
            let next = adapt(limit, ceiling, window(50, 50, true));
            assert!(next < limit, "{limit} -> {next}");
            limit = next;
            steps += 1;
        }
        assert_eq!(limit, FLOOR);
        assert!(steps < 20, "{steps}");
        assert_eq!(adapt(FLOOR, ceiling, window(50, 50, true)), FLOOR);
        assert_eq!(adapt(9, ceiling, window(50, 50, true)), FLOOR);
        // Within the target and saturated: a few permits more, up to the ceiling.
        assert_eq!(adapt(FLOOR, ceiling, window(50, 0, true)), FLOOR + 2);
        assert_eq!(adapt(160, ceiling, window(50, 0, true)), 170);
        assert_eq!(adapt(250, ceiling, window(50, 0, true)), ceiling);
        assert_eq!(adapt(ceiling, ceiling, window(50, 0, true)), ceiling);
        let mut limit = FLOOR;
        while limit < ceiling {
            let next = adapt(limit, ceiling, window(50, 1, true));
            assert!(next > limit, "{limit} -> {next}");
            limit = next;
        }
        assert_eq!(limit, ceiling);
        // Within the target but not saturated, or nothing completed: unchanged.
        assert_eq!(adapt(100, ceiling, window(50, 0, false)), 100);
        assert_eq!(adapt(100, ceiling, window(0, 0, true)), 100);
        // A ceiling below the floor is the floor; out-of-range limits come back in range.
        assert_eq!(adapt(4, 4, window(10, 10, true)), 4);
        assert_eq!(adapt(4, 4, window(10, 0, true)), 4);
        assert_eq!(adapt(1000, ceiling, window(0, 0, false)), ceiling);
        assert_eq!(adapt(0, ceiling, window(0, 0, false)), FLOOR);
    }

    #[test]
    fn windows_close_on_the_first_completion_after_them_and_set_the_limit() {
        let limiter = Limiter::new(100, 50);
        assert_eq!(limiter.limit.load(Ordering::Relaxed), 100);
        // Window 0: 10 completions, all over the target; the limit was reached.
        for _ in 0..10 {
            limiter.complete_at(0, true);
        }
        limiter.saturated.store(true, Ordering::Relaxed);
        assert_eq!(limiter.limit.load(Ordering::Relaxed), 100);
        // The first completion of window 1 closes window 0.
        limiter.complete_at(1, false);
        assert_eq!(limiter.limit.load(Ordering::Relaxed), 80);
        // Window 1: within the target, but never saturated: unchanged.
        limiter.complete_at(2, false);
        assert_eq!(limiter.limit.load(Ordering::Relaxed), 80);
        // Window 2: within the target and a request shed: grows.
        for _ in 0..3 {
            assert!(limiter.try_acquire());
        }
        limiter.limit.store(3, Ordering::Relaxed);
        assert!(!limiter.try_acquire());
        assert_eq!(limiter.in_flight.load(Ordering::Relaxed), 3);
        limiter.limit.store(80, Ordering::Relaxed);
        limiter.complete_at(3, false);
        assert_eq!(limiter.limit.load(Ordering::Relaxed), 85);
    }

    #[tokio::test]
    async fn past_the_current_limit_below_the_ceiling_api_requests_are_shed() {
        use axum::http::StatusCode;
        use tower::ServiceExt;
        let admission = Admission::adaptive(64, 50);
        assert_eq!(admission.limit(), Some(64));
        // As if slow windows had brought the limit down to one request.
        admission
            .limiter
            .as_ref()
            .unwrap()
            .limit
            .store(1, Ordering::Relaxed);
        assert_eq!(admission.limit(), Some(1));
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app_with(admission.clone(), entered.clone(), release.clone());
        let first = tokio::spawn(app.clone().oneshot(slow_request()));
        entered.notified().await;
        // One in progress, far below the ceiling of 64, but at the current limit.
        let shed = app.clone().oneshot(slow_request()).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(shed.headers().contains_key("retry-after"));
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let limiter = admission.limiter.as_ref().unwrap();
        assert_eq!(limiter.in_flight.load(Ordering::Relaxed), 0);
        // Off: no bound at all.
        assert_eq!(Admission::adaptive(0, 50).limit(), None);
    }
}
