//! Admission control: which API requests the server takes on, decided on the resource that
//! limits it (the wait in front of an authority's writer), at once and before anything costly.
//!
//! The control law (docs/PERFORMANCE.md, "Admission control", shows it with figures):
//!
//! - **Writes** (POST/PUT/PATCH/DELETE under `/api/v1/authorities/{authority}/`) are shed
//!   when the queue in front of the authority's writer *stands* past the *wait target*: the
//!   smallest wait the writer measured over its last 100 ms and the batch before them, once
//!   it has been busy that long without finding its queue empty (CoDel's standing-queue
//!   signal, RFC 8289; a pause of the writer is not a standing queue: see
//!   `ochered_writer::pressure`), while commands are queued;
//!   or when the queue is a flood that the writer could not take within [`FLOOD_CEILING`]
//!   even at its measured drain rate ([`sheds`]). With group commit the writer takes every
//!   queued command at once, so a burst it takes in one or two batches is absorbed, however
//!   large; a shed costs the client at least the one-second Retry-After, so it is kept for a
//!   backlog that stands. The signal does not depend on how many requests are in flight, so
//!   it cannot spiral down the way a latency limit on in-flight requests does with group
//!   commit (fewer in flight → smaller batches → slower commits → lower limit). Target:
//!   `admission_target_ms` (flag `--admission-target-ms`, `OCHERED_ADMISSION_TARGET_MS`)
//!   [default: [`DEFAULT_TARGET_MS`]]; 0 turns the wait check off (the writer's bounded
//!   queue still sheds).
//! - **Reads and writes each have their own bound** on requests in progress
//!   (`max_in_flight` each, flag `--max-in-flight`, `OCHERED_MAX_IN_FLIGHT`) [default:
//!   [`DEFAULT_MAX_IN_FLIGHT`]], a memory bound rather than a control loop; 0 turns both off.
//!   A storm of writes never takes a read's place: a parent checking her position is
//!   answered from memory while submissions are shed.
//! - **Bodies first, places after.** A request's body is read here, before it takes a
//!   place, each read bounded by [`BODY_READ_IDLE`] and the whole body by a minimum rate
//!   ([`BODY_MIN_BYTES_PER_S`]). A client that trickles its body holds no place and is cut
//!   off with 408 (`body_timeout`); a body that ends before its Content-Length (the client
//!   closed) is a 400 (`body_incomplete`); a declared or actual body larger than any route
//!   accepts ([`BODY_BUFFER_MAX`]) is a 413. Routes keep their own, smaller limits.
//! - **Not counted:** the status stream (`…/applications/{number}/events`, Server-Sent Events
//!   held open for hours), `/health`, `/ready`, `/metrics` (probes must see the server while
//!   it sheds), the OpenAPI document, Swagger UI and the web pages.
//! - **The answer when shed:** 503 problem+json, `code` `overloaded`, with `Retry-After`,
//!   sent before the body is read, the token checked or anything written; a retry with the
//!   same Idempotency-Key is safe. Retry-After is at least the expected wait, and grows with
//!   the share of requests shed in the last whole second ([`retry_after_secs`]), spread over
//!   a range by a rotating counter so that a crowd shed in one instant does not return in
//!   one instant.
//!
//! Metrics (for dashboards):
//! - `ochered_admission_shed_total{reason}`: requests shed here; `reason` is
//!   `writer_wait` (a write would wait past the target) or `in_flight` (its class was full).
//! - `ochered_http_in_flight{class}`: requests in progress now, `class` `read` or `write`.
//! - `ochered_admission_limit{class}`: the bound on requests in progress per class.
//! - `ochered_admission_wait_target_seconds`: the wait target in force.
//! - `ochered_body_refused_total{reason}`: bodies refused while being read: `timeout`
//!   (408), `incomplete` (400), `too_large` (413).
//! - The writer's side, per authority, from `/metrics`: `ochered_writer_expected_wait_seconds`,
//!   `ochered_writer_standing_wait_seconds`, `ochered_writer_drain_per_second`,
//!   `ochered_writer_head_wait_microseconds_total` with `ochered_writer_batches_taken_total`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use ochered_writer::Pressure;

use crate::http::error::ApiError;

/// Requests of each class (reads, writes) in progress at once, by default: a memory bound,
/// far above what the machine serves in the wait target, so it does not shed before the
/// writer's wait does.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// The wait in front of a writer that admission accepts, by default, in milliseconds: half
/// of the 100 ms objective of a whole submission, leaving the rest for the commit and HTTP.
pub const DEFAULT_TARGET_MS: u64 = 50;

/// The queue, in seconds of the writer's measured drain, past which a write is shed even
/// without a standing wait: a flood the writer could not take within a second. A shed
/// costs its client at least a second (Retry-After is given in whole seconds), so shedding a
/// write expected to wait less than that can only delay it.
pub const FLOOD_CEILING: Duration = Duration::from_secs(1);

/// The law on writes: shed when the writer's queue *stands* past the target (the smallest
/// head wait of its last busy interval, CoDel's signal) while commands are queued, or when
/// the queue over the measured drain rate is past [`FLOOD_CEILING`] (or the target, if that
/// is larger). A burst that a group-committing writer takes in one or two batches raises
/// neither, and is absorbed.
pub fn sheds(pressure: &Pressure, target: Duration) -> bool {
    let standing = pressure.queued > 0 && pressure.standing_wait > target;
    standing || pressure.queue_wait() > FLOOD_CEILING.max(target)
}

/// The longest pause between two reads of a request body.
pub const BODY_READ_IDLE: Duration = Duration::from_secs(2);

/// The slowest a body may arrive on the whole (after [`BODY_READ_IDLE`] of grace): a
/// submission's kilobyte takes a quarter of a second at this rate.
pub const BODY_MIN_BYTES_PER_S: u64 = 4096;

/// The largest body read here: the largest any route accepts (officers' file uploads).
pub const BODY_BUFFER_MAX: usize = crate::http::json::UPLOAD_LIMIT_BYTES;

/// The longest Retry-After a shed answer asks for, in seconds (when nearly every request of
/// the last second was shed).
pub const MAX_RETRY_AFTER_S: u64 = 8;

/// Below this share of shed requests in the last second, Retry-After stays 1 s.
const CALM_SHED_RATIO: f64 = 0.1;

/// The status stream's route: long-lived, so not counted.
const STREAM_ROUTE: &str = "/api/v1/authorities/{authority}/applications/{number}/events";

/// The wait in front of an authority's writer, if this server writes it.
pub type WaitSource = Arc<dyn Fn(&str) -> Option<Pressure> + Send + Sync>;

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

    /// Retry-After for the next shed answer: at least `wait` (rounded up to whole seconds).
    fn retry_after(&self, wait: Duration) -> u64 {
        let ratio = f64::from(self.last_permille.load(Ordering::Relaxed)) / 1000.0;
        let spread = retry_after_secs(ratio, self.spread.fetch_add(1, Ordering::Relaxed));
        let wait_s = wait.as_micros().div_ceil(1_000_000) as u64;
        spread.max(wait_s.min(MAX_RETRY_AFTER_S))
    }
}

/// A bound on requests of one class in progress: a lock-free counter against a ceiling.
struct Places {
    ceiling: usize,
    in_flight: AtomicUsize,
    gauge: metrics::Gauge,
}

impl Places {
    fn new(ceiling: usize, class: &'static str) -> Self {
        metrics::gauge!("ochered_admission_limit", "class" => class).set(ceiling as f64);
        Self {
            ceiling,
            in_flight: AtomicUsize::new(0),
            gauge: metrics::gauge!("ochered_http_in_flight", "class" => class),
        }
    }

    fn try_acquire(&self) -> Option<Place<'_>> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.ceiling {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.gauge.increment(1.0);
        Some(Place { places: self })
    }
}

/// A taken place, given back when the request is done (or dropped by the timeout).
struct Place<'a> {
    places: &'a Places,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.places.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.places.gauge.decrement(1.0);
    }
}

/// The admission state shared by every request of one server.
pub struct Admission {
    /// None: no bound on requests in progress.
    reads: Option<Places>,
    writes: Option<Places>,
    /// None: writes are not shed on the writer's wait.
    wait_target: Option<Duration>,
    waits: Option<WaitSource>,
    window: ShedWindow,
}

impl Admission {
    /// At most `max_in_flight` reads and as many writes in progress (0: no bound), and
    /// writes shed when they would wait more than `target_ms` in front of their writer, as
    /// told by `waits` (0 or None: no wait check).
    pub fn new(max_in_flight: usize, target_ms: u64, waits: Option<WaitSource>) -> Arc<Self> {
        metrics::gauge!("ochered_admission_wait_target_seconds").set(target_ms as f64 / 1000.0);
        Arc::new(Self {
            reads: (max_in_flight > 0).then(|| Places::new(max_in_flight, "read")),
            writes: (max_in_flight > 0).then(|| Places::new(max_in_flight, "write")),
            wait_target: (target_ms > 0).then(|| Duration::from_millis(target_ms)),
            waits,
            window: ShedWindow::new(),
        })
    }

    /// The bound on requests in progress per class; None: no bound.
    pub fn limit(&self) -> Option<usize> {
        self.writes.as_ref().map(|p| p.ceiling)
    }

    /// The expected wait in front of the writer of `authority`, when a write must be shed
    /// on it: see [`sheds`].
    fn wait_past_target(&self, authority: Option<&str>) -> Option<Duration> {
        let target = self.wait_target?;
        let pressure = (self.waits.as_ref()?)(authority?)?;
        sheds(&pressure, target).then(|| pressure.expected_wait())
    }

    fn shed(&self, reason: &'static str, wait: Duration) -> Response {
        metrics::counter!("ochered_admission_shed_total", "reason" => reason).increment(1);
        self.window.note(true);
        let detail = match reason {
            "writer_wait" => format!(
                "submissions to this authority would wait about {} ms before being written, past the server's objective; your request was not read and nothing was written, retry after Retry-After seconds with the same Idempotency-Key",
                wait.as_millis()
            ),
            _ => "the server has too many requests in progress; your request was not read and nothing was written, retry after Retry-After seconds with the same Idempotency-Key".to_owned(),
        };
        let mut response = ApiError::overloaded(detail).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.window.retry_after(wait)),
        );
        response
    }
}

/// Whether a request counts against the bound (see the module's documentation).
pub fn counts(path: &str, route: Option<&str>) -> bool {
    path.starts_with("/api/v1/") && route != Some(STREAM_ROUTE)
}

/// Whether a request writes (anything but GET, HEAD and OPTIONS).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The authority a path under `/api/v1/authorities/{authority}/…` addresses.
pub fn authority_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/authorities/")?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then_some(authority)
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// A read waited longer than [`BODY_READ_IDLE`], or the body came slower than
    /// [`BODY_MIN_BYTES_PER_S`].
    Timeout,
    /// The body ended before its Content-Length (or the connection failed mid-body).
    Incomplete,
    /// Larger than [`BODY_BUFFER_MAX`].
    TooLarge,
}

impl BodyRefusal {
    fn reason(self) -> &'static str {
        match self {
            BodyRefusal::Timeout => "timeout",
            BodyRefusal::Incomplete => "incomplete",
            BodyRefusal::TooLarge => "too_large",
        }
    }

    /// The 4xx for the client: the fault is on its side of the connection.
    pub fn into_response(self) -> Response {
        metrics::counter!("ochered_body_refused_total", "reason" => self.reason()).increment(1);
        let error = match self {
            BodyRefusal::Timeout => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "Request body too slow",
                format!(
                    "the request body did not arrive in time (a pause over {} s, or slower than {} bytes a second); nothing was written",
                    BODY_READ_IDLE.as_secs(),
                    BODY_MIN_BYTES_PER_S
                ),
            ),
            BodyRefusal::Incomplete => ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_incomplete",
                "Request body incomplete",
                "the request body ended before its Content-Length; nothing was written",
            ),
            BodyRefusal::TooLarge => {
                ApiError::body_too_large("the request body is larger than the server accepts")
            }
        }
        .with_field("body");
        let mut response = error.into_response();
        // The rest of the body, if any comes, is not worth reading.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Reads a whole body, each read bounded by `idle` and the whole by `deadline`, at most
/// `max` bytes.
pub async fn read_body(
    body: Body,
    idle: Duration,
    deadline: tokio::time::Instant,
    max: usize,
) -> Result<axum::body::Bytes, BodyRefusal> {
    let mut stream = body.into_data_stream();
    // A body that comes in one piece (nearly every one) is kept as it came, without a copy.
    let mut single: Option<axum::body::Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut length = 0usize;
    loop {
        let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Err(BodyRefusal::Timeout),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyRefusal::Incomplete),
            Ok(Some(Ok(chunk))) => {
                length += chunk.len();
                if length > max {
                    return Err(BodyRefusal::TooLarge);
                }
                if single.is_none() && joined.is_empty() {
                    single = Some(chunk);
                } else {
                    if let Some(first) = single.take() {
                        joined.extend_from_slice(&first);
                    }
                    joined.extend_from_slice(&chunk);
                }
            }
        }
    }
    Ok(single.unwrap_or_else(|| joined.into()))
}

/// The deadline of a whole body of `length` bytes (unknown: the largest accepted).
fn body_deadline(started: tokio::time::Instant, length: Option<u64>) -> tokio::time::Instant {
    let length = length.unwrap_or(BODY_BUFFER_MAX as u64);
    started + BODY_READ_IDLE + Duration::from_secs_f64(length as f64 / BODY_MIN_BYTES_PER_S as f64)
}

/// The middleware: sheds writes that would wait past the target and requests whose class
/// is full, reads the body of the rest, then gives them a place.
pub async fn admit(admission: Arc<Admission>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if !counts(req.uri().path(), route) {
        return next.run(req).await;
    }
    let write = is_write(req.method());
    if write {
        if let Some(wait) = admission.wait_past_target(authority_of(req.uri().path())) {
            return admission.shed("writer_wait", wait);
        }
    }
    let places = if write {
        &admission.writes
    } else {
        &admission.reads
    };
    // A full class sheds before the body is read; a place is taken only once it has been.
    if places
        .as_ref()
        .is_some_and(|p| p.in_flight.load(Ordering::Relaxed) >= p.ceiling)
    {
        return admission.shed("in_flight", Duration::ZERO);
    }
    let req = match with_whole_body(req).await {
        Ok(req) => req,
        Err(refusal) => return refusal.into_response(),
    };
    let _place = match places.as_ref().map(Places::try_acquire) {
        Some(None) => return admission.shed("in_flight", Duration::ZERO),
        Some(Some(place)) => Some(place),
        None => None,
    };
    admission.window.note(false);
    next.run(req).await
}

/// The request with its body read whole (see [`read_body`]); requests that declare no body
/// pass as they are.
async fn with_whole_body(req: Request) -> Result<Request, BodyRefusal> {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if length.is_none_or(|l| l == 0) && !chunked {
        return Ok(req);
    }
    if length.is_some_and(|l| l > BODY_BUFFER_MAX as u64) {
        return Err(BodyRefusal::TooLarge);
    }
    let (parts, body) = req.into_parts();
    let deadline = body_deadline(tokio::time::Instant::now(), length);
    let bytes = read_body(body, BODY_READ_IDLE, deadline, BODY_BUFFER_MAX).await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_absorbed_and_a_standing_queue_or_a_flood_is_shed() {
        let ms = Duration::from_millis;
        let target = ms(50);
        let at = |queued: usize, drain: f64, standing: u64| Pressure {
            queued,
            drain_per_s: Some(drain),
            standing_wait: ms(standing),
            last_wait: Duration::ZERO,
        };
        // A writer offered 330 commands a second in cycles of 5 ms: a burst of 30 is 91 ms
        // by Little's law, but one batch for a group commit. Nothing stands: absorbed.
        assert!(!sheds(&at(30, 330.0, 0), target));
        assert!(!sheds(&at(300, 330.0, 4), target));
        // A queue that stood past the target over the last busy interval: shed.
        assert!(sheds(&at(20, 2000.0, 80), target));
        assert!(
            !sheds(&at(20, 2000.0, 50), target),
            "at the target is still within it"
        );
        // ... but not once the queue is empty: nothing is ahead of the next command.
        assert!(!sheds(&at(0, 2000.0, 80), target));
        // A flood the writer could not take within a second at its measured rate: shed
        // even before a standing wait has been measured.
        assert!(sheds(&at(2500, 1000.0, 0), target));
        assert!(!sheds(&at(1000, 1000.0, 0), target));
        // No drain measured yet: only a standing wait sheds.
        let unknown = Pressure {
            drain_per_s: None,
            ..at(100_000, 1.0, 0)
        };
        assert!(!sheds(&unknown, target));
        // A target above the flood ceiling raises the ceiling with it.
        assert!(!sheds(&at(1500, 1000.0, 0), ms(2000)));
        assert!(sheds(&at(2500, 1000.0, 0), ms(2000)));
    }

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
        assert_eq!(
            authority_of("/api/v1/authorities/demo/kindergarten/applications"),
            Some("demo")
        );
        assert_eq!(authority_of("/api/v1/authorities/demo"), Some("demo"));
        assert_eq!(authority_of("/api/v1/authorities"), None);
        assert_eq!(authority_of("/api/v1/authorities/"), None);
        assert!(is_write(&Method::POST) && is_write(&Method::DELETE));
        assert!(!is_write(&Method::GET) && !is_write(&Method::HEAD));
    }

    /// A router whose API handler says it entered and then waits until released, behind the
    /// middleware, and a read that answers at once.
    fn app_with(
        admission: Arc<Admission>,
        entered: Arc<tokio::sync::Notify>,
        release: Arc<tokio::sync::Notify>,
    ) -> axum::Router {
        use axum::routing::{get, post};
        axum::Router::new()
            .route(
                "/api/v1/authorities/{authority}/slow",
                post(move |body: axum::body::Bytes| {
                    let (entered, release) = (entered.clone(), release.clone());
                    async move {
                        entered.notify_one();
                        release.notified().await;
                        format!("done {}", body.len())
                    }
                }),
            )
            .route("/api/v1/authorities/{authority}", get(|| async { "read" }))
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
    fn the_window_reports_the_last_whole_second_and_retry_after_covers_the_wait() {
        let w = ShedWindow::new();
        for _ in 0..9 {
            w.note_at(0, true);
        }
        w.note_at(0, false);
        assert_eq!(w.retry_after(Duration::ZERO), 1);
        // A shed on a writer's wait: never sooner than the wait, never past the cap.
        assert_eq!(w.retry_after(Duration::from_millis(2300)), 3);
        assert_eq!(w.retry_after(Duration::from_secs(60)), MAX_RETRY_AFTER_S);
        // The first request of second 1 closes second 0: 9 of 10 shed.
        w.note_at(1, false);
        assert_eq!(w.last_permille.load(Ordering::Relaxed), 900);
        for _ in 0..10 {
            let after = w.retry_after(Duration::ZERO);
            assert!((4..=MAX_RETRY_AFTER_S).contains(&after), "{after}");
        }
        // Second 1 had one admitted request and nothing shed.
        w.note_at(2, true);
        assert_eq!(w.last_permille.load(Ordering::Relaxed), 0);
        // A quiet gap: the last whole second (4) saw nothing, whatever second 2 held.
        for _ in 0..5 {
            w.note_at(2, true);
        }
        w.note_at(5, false);
        assert_eq!(w.last_permille.load(Ordering::Relaxed), 0);
        assert_eq!(w.retry_after(Duration::ZERO), 1);
    }

    fn request(method: Method, uri: &str, body: &'static str) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap()
    }

    const SLOW: &str = "/api/v1/authorities/demo/slow";

    fn writes_in_flight(admission: &Admission) -> usize {
        let writes = admission.writes.as_ref().expect("bounded");
        writes.in_flight.load(Ordering::Relaxed)
    }

    /// One request through the app.
    async fn send(app: &axum::Router, method: Method, uri: &str) -> Response {
        use tower::ServiceExt;
        app.clone()
            .oneshot(request(method, uri, "{}"))
            .await
            .unwrap()
    }

    /// A write through the app that is admitted: its handler enters, is released, answers.
    async fn admitted(
        app: &axum::Router,
        uri: &str,
        entered: &tokio::sync::Notify,
        release: &tokio::sync::Notify,
    ) -> Response {
        use tower::ServiceExt;
        let answer = tokio::spawn(app.clone().oneshot(request(Method::POST, uri, "{}")));
        entered.notified().await;
        release.notify_one();
        answer.await.unwrap().unwrap()
    }

    /// A wait source saying every writer has `queued` commands and drains 1,000 a second.
    fn queued(queued: Arc<AtomicUsize>) -> WaitSource {
        Arc::new(move |authority| {
            (authority == "demo").then(|| Pressure {
                queued: queued.load(Ordering::Relaxed),
                drain_per_s: Some(1000.0),
                standing_wait: Duration::ZERO,
                last_wait: Duration::ZERO,
            })
        })
    }

    #[tokio::test]
    async fn writes_are_shed_when_they_would_wait_past_the_target_and_reads_are_not() {
        let depth = Arc::new(AtomicUsize::new(0));
        let admission = Admission::new(16, 50, Some(queued(depth.clone())));
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app_with(admission, entered.clone(), release.clone());
        // 40 queued at 1,000/s: 40 ms, within the 50 ms target: admitted, body read whole.
        depth.store(40, Ordering::Relaxed);
        let first = admitted(&app, SLOW, &entered, &release).await;
        assert_eq!(first.status(), StatusCode::OK);
        let body = axum::body::to_bytes(first.into_body(), 64).await.unwrap();
        assert_eq!(&body[..], b"done 2");
        // 2,500 queued: 2.5 s. Shed at once, with a Retry-After covering the wait.
        depth.store(2500, Ordering::Relaxed);
        let shed = send(&app, Method::POST, SLOW).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()["retry-after"], "3");
        assert_eq!(shed.headers()["content-type"], "application/problem+json");
        let body = axum::body::to_bytes(shed.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "overloaded");
        assert_eq!(body["status"], 503);
        // Reads of the same authority, and writes elsewhere, are not held back.
        let read = send(&app, Method::GET, "/api/v1/authorities/demo").await;
        assert_eq!(read.status(), StatusCode::OK);
        let other = admitted(
            &app,
            "/api/v1/authorities/elsewhere/slow",
            &entered,
            &release,
        );
        assert_eq!(other.await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn past_the_bound_of_a_class_it_is_shed_and_the_other_class_and_probes_pass() {
        use tower::ServiceExt;
        let admission = Admission::new(1, 0, None);
        assert_eq!(admission.limit(), Some(1));
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app_with(admission.clone(), entered.clone(), release.clone());
        let first = tokio::spawn(app.clone().oneshot(request(Method::POST, SLOW, "{}")));
        // Once its handler runs, the first write holds the only write place.
        entered.notified().await;
        let shed = send(&app, Method::POST, SLOW).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()["retry-after"], "1");
        let read = send(&app, Method::GET, "/api/v1/authorities/demo").await;
        assert_eq!(read.status(), StatusCode::OK, "a read has its own places");
        let health = send(&app, Method::GET, "/health").await;
        assert_eq!(health.status(), StatusCode::OK);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        // The place came back.
        let again = admitted(&app, SLOW, &entered, &release).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(writes_in_flight(&admission), 0);
        // Off: no bound at all.
        assert_eq!(Admission::new(0, 50, None).limit(), None);
    }

    /// A body that trickles: `chunks` pieces of one byte, `pause` apart, then (if
    /// `complete`) the end, else an error as when the client goes away.
    fn trickle(chunks: usize, pause: Duration, complete: bool) -> Body {
        let stream = futures_util::stream::unfold(0usize, move |sent| async move {
            if sent == chunks {
                return if complete {
                    None
                } else {
                    Some((Err(std::io::Error::other("closed")), sent + 1))
                };
            }
            if sent > chunks {
                return None;
            }
            tokio::time::sleep(pause).await;
            Some((Ok(axum::body::Bytes::from_static(b"x")), sent + 1))
        });
        Body::from_stream(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_are_bounded_by_a_pause_and_a_rate_and_a_short_body_is_a_client_error() {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        // Steady: every read within the pause bound.
        let bytes = read_body(
            trickle(5, Duration::from_secs(1), true),
            BODY_READ_IDLE,
            far,
            64,
        )
        .await
        .unwrap();
        assert_eq!(&bytes[..], b"xxxxx");
        // One pause too long.
        let slow = read_body(
            trickle(2, Duration::from_secs(3), true),
            BODY_READ_IDLE,
            far,
            64,
        );
        assert_eq!(slow.await.unwrap_err(), BodyRefusal::Timeout);
        // Every pause short, but the whole too slow for its deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        let drip = read_body(
            trickle(10, Duration::from_secs(1), true),
            BODY_READ_IDLE,
            deadline,
            64,
        );
        assert_eq!(drip.await.unwrap_err(), BodyRefusal::Timeout);
        // The client went away mid-body; a body over the bound.
        let cut = read_body(trickle(2, Duration::ZERO, false), BODY_READ_IDLE, far, 64);
        assert_eq!(cut.await.unwrap_err(), BodyRefusal::Incomplete);
        let big = read_body(trickle(9, Duration::ZERO, true), BODY_READ_IDLE, far, 8);
        assert_eq!(big.await.unwrap_err(), BodyRefusal::TooLarge);
        // The answers are 4xx problem+json, and close the connection.
        for (refusal, status, code) in [
            (BodyRefusal::Timeout, 408, "body_timeout"),
            (BodyRefusal::Incomplete, 400, "body_incomplete"),
            (BodyRefusal::TooLarge, 413, "body_too_large"),
        ] {
            let response = refusal.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["connection"], "close");
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (body["code"].as_str(), body["field"].as_str()),
                (Some(code), Some("body"))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_body_holds_no_place() {
        use tower::ServiceExt;
        let admission = Admission::new(1, 0, None);
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let app = app_with(admission.clone(), entered.clone(), release.clone());
        // A write whose body trickles in for a while: it holds no place meanwhile.
        let slow = axum::http::Request::builder()
            .method(Method::POST)
            .uri(SLOW)
            .header(header::CONTENT_LENGTH, 3)
            .body(trickle(3, Duration::from_millis(500), true))
            .unwrap();
        let slow = tokio::spawn(app.clone().oneshot(slow));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(writes_in_flight(&admission), 0);
        let quick = admitted(&app, SLOW, &entered, &release).await;
        assert_eq!(quick.status(), StatusCode::OK);
        entered.notified().await;
        release.notify_one();
        let slow = slow.await.unwrap().unwrap();
        assert_eq!(slow.status(), StatusCode::OK);
        let body = axum::body::to_bytes(slow.into_body(), 64).await.unwrap();
        assert_eq!(&body[..], b"done 3");
    }
}
