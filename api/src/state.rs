//! What every handler can reach: the engine, the personal-data sealer, the settings and the
//! metrics recorder. Below every other module but `config`.

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use ochered_writer::Engine;

use crate::config::ServerConfig;
use crate::http::oidc::Tokens;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Seals and opens personal data with per-applicant keys; erasure destroys a key.
    pub privacy: Arc<ochered_writer::privacy::Privacy>,
    pub config: Arc<ServerConfig>,
    /// Checks bearer tokens: HS256, and the identity provider's when one is configured.
    pub tokens: Arc<Tokens>,
    pub metrics: PrometheusHandle,
    pub started_at: Instant,
    /// The trees over the logs, the signed heads and the key that signs them and receipts.
    pub transparency: Arc<crate::transparency::Transparency>,
}
