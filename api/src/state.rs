//! What every handler can reach: the engine, the personal-data sealer, the settings and the
//! metrics recorder. Below every other module but `config`.

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use ochered_writer::Engine;

use crate::config::ServerConfig;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Seals and opens personal data with per-applicant keys; erasure destroys a key.
    pub privacy: Arc<ochered_writer::privacy::Privacy>,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
    pub started_at: Instant,
}
