//! Per-client rate limiting of submissions: a token bucket per client on the
//! requests that create applications and bookings.
//!
//! - **Which requests:** the POSTs of [`SUBMISSION_ROUTES`] (kindergarten and school
//!   applications, school drafts, bookings, the clinic waiting list). Reads, officers'
//!   configuration and everything else are not limited here (the writer's bounded queue sheds
//!   overload for everyone with 503).
//! - **Which client:** the subject of a valid bearer token (`sub:<subject>`); a request
//!   without a valid token is counted against its peer address (`ip:<address>`), so that
//!   unauthenticated hammering is held back too. Behind a reverse proxy every such request
//!   shares the proxy's address; they are answered 401 anyway.
//! - **How much:** `rate_limit_per_minute` tokens refill per minute, up to
//!   `rate_limit_burst` (GCRA from the `governor` crate, which is a token bucket without a
//!   timer). `rate_limit_per_minute = 0` turns limiting off.
//! - **Over the limit:** 429 problem+json with `Retry-After` (whole seconds until the next
//!   token); the request never reaches the writer, so nothing is written.
//! - **Memory:** the keyed store holds one small entry per client seen recently; a
//!   background task drops every entry that has refilled completely (indistinguishable
//!   from a new client) every [`HOUSEKEEPING_EVERY`], so memory follows the clients active
//!   within about one burst's refill time, not all clients ever seen.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::http::auth::{self, Caller};
use crate::http::error::ApiError;
use crate::http::oidc::Tokens;

/// The submission routes (as matched, under `/api/v1`) that are rate limited, all POST.
pub const SUBMISSION_ROUTES: &[&str] = &[
    "/api/v1/authorities/{authority}/kindergarten/applications",
    "/api/v1/authorities/{authority}/school/applications",
    "/api/v1/authorities/{authority}/school/drafts",
    "/api/v1/authorities/{authority}/school/drafts/submit",
    "/api/v1/authorities/{authority}/bookings",
    "/api/v1/authorities/{authority}/waiting-list",
];

/// How often stale clients are dropped from the limiter's memory.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

/// The quota of `config`; none when limiting is off.
fn quota(config: &RateLimitConfig) -> Option<Quota> {
    let per_minute = NonZeroU32::new(config.per_minute)?;
    let burst = NonZeroU32::new(config.burst.max(1)).expect("at least 1");
    Some(Quota::per_minute(per_minute).allow_burst(burst))
}

/// The limiter shared by every request of one server.
pub struct SubmissionLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    tokens: Arc<Tokens>,
}

impl SubmissionLimiter {
    /// A limiter for `config`; with a tokio runtime at hand it also starts the housekeeping
    /// task, which ends when the limiter is dropped.
    pub fn new(config: RateLimitConfig, tokens: Arc<Tokens>) -> Arc<Self> {
        let limiter = quota(&config).map(|quota| Arc::new(RateLimiter::keyed(quota)));
        if let (Some(limiter), Ok(runtime)) = (&limiter, tokio::runtime::Handle::try_current()) {
            runtime.spawn(housekeeping(Arc::downgrade(limiter)));
        }
        Arc::new(Self { limiter, tokens })
    }

    /// Clients currently remembered (for tests and metrics).
    pub fn clients(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    /// Counts one submission of `client`: `Err(seconds)` to wait when over the limit.
    pub fn check(&self, client: &str) -> Result<(), u32> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&client.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            // Whole seconds, rounded up, at least 1.
            (wait.as_millis().div_ceil(1000) as u32).max(1)
        })
    }
}

async fn housekeeping(limiter: Weak<DefaultKeyedRateLimiter<String>>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        limiter.retain_recent();
        limiter.shrink_to_fit();
        metrics::gauge!("ochered_rate_limit_clients").set(limiter.len() as f64);
    }
}

/// Whether a request is a rate-limited submission.
pub fn is_submission(method: &Method, route: Option<&str>) -> bool {
    method == Method::POST && route.is_some_and(|r| SUBMISSION_ROUTES.contains(&r))
}

/// The middleware: counts submissions per client and answers 429 over the limit. A token
/// it verified is handed on to the handler (see [`auth::Verified`]), so it is checked once.
pub async fn limit(limiter: Arc<SubmissionLimiter>, mut req: Request, next: Next) -> Response {
    if limiter.limiter.is_none() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if !is_submission(req.method(), route) {
        return next.run(req).await;
    }
    let caller = match auth::bearer(req.headers()) {
        Ok(token) => limiter.tokens.verify(token).await.ok(),
        Err(_) => None,
    };
    let client = match &caller {
        Some(claims) => format!("sub:{}", claims.sub),
        None => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
            None => "ip:unknown".to_owned(),
        },
    };
    if let Err(seconds) = limiter.check(&client) {
        metrics::counter!("ochered_rate_limited_total").increment(1);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many submissions",
            format!(
                "this client sent too many submissions in a short time; nothing was written, retry in {seconds} s"
            ),
        )
        .with("retry_after_seconds", seconds.into());
        error.retry_after_s = Some(seconds);
        return error.into_response();
    }
    if let Some(claims) = caller {
        req.extensions_mut().insert(auth::Verified(Caller {
            sub: claims.sub,
            role: claims.role,
        }));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limiter = SubmissionLimiter::new(
            RateLimitConfig {
                per_minute: 6,
                burst: 3,
            },
            Arc::new(Tokens::hs256(b"s")),
        );
        for _ in 0..3 {
            assert_eq!(limiter.check("sub:a"), Ok(()));
        }
        let wait = limiter.check("sub:a").unwrap_err();
        assert!((1..=10).contains(&wait), "one token every 10 s: {wait}");
        assert_eq!(limiter.check("sub:b"), Ok(()));
        assert_eq!(limiter.clients(), 2);
    }

    #[test]
    fn zero_per_minute_is_off_and_a_zero_burst_is_refused() {
        let limiter = SubmissionLimiter::new(RateLimitConfig::off(), Arc::new(Tokens::hs256(b"s")));
        for _ in 0..1_000 {
            assert_eq!(limiter.check("sub:a"), Ok(()));
        }
        assert_eq!(limiter.clients(), 0);
        assert!(RateLimitConfig {
            per_minute: 5,
            burst: 0
        }
        .check()
        .is_err());
        assert!(RateLimitConfig::default().check().is_ok());
    }

    #[test]
    fn only_submission_posts_are_limited() {
        let route = Some("/api/v1/authorities/{authority}/kindergarten/applications");
        assert!(is_submission(&Method::POST, route));
        assert!(!is_submission(&Method::GET, route));
        assert!(!is_submission(
            &Method::POST,
            Some("/api/v1/authorities/{authority}/institutions")
        ));
        assert!(!is_submission(&Method::POST, None));
    }
}
