//! The leaves of the HTTP layer: what every service's handlers share, and the middleware
//! around them. Nothing here imports a service (`crate::services`), the status updates
//! (`crate::status`), the pages or the OpenAPI document; the services import these.
//!
//! - `error`: problem+json answers; `json`: the JSON body extractor naming the bad field;
//! - `auth`: bearer tokens and roles; `oidc`: tokens of an OpenID Connect provider, and
//!   the one check of every bearer token; `access`: which authority and application a caller
//!   may reach;
//! - `command`: the one path of every write (role → body → writer → command →
//!   idempotency → answer);
//! - `admission`, `ratelimit`, `observe`: middleware (load shedding, per-client limits of
//!   submissions, metrics and timeouts); `trace`: the log, and the optional OTLP export of
//!   request and commit spans; `cluster`: forwarding writes to the owning node.

pub mod access;
pub mod admission;
pub mod auth;
pub mod cluster;
pub mod command;
pub mod error;
pub mod json;
pub mod observe;
pub mod oidc;
pub mod personal;
pub mod ratelimit;
pub mod trace;
