//! Set-up shared by the writer's integration tests.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ochered_writer::{Clock, WriterConfig};

/// A clock that always reads 2026-02-01 09:00 UTC.
pub fn fixed_clock() -> Clock {
    Arc::new(|| Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap())
}

/// The default writer configuration on [`fixed_clock`].
pub fn config() -> WriterConfig {
    WriterConfig {
        clock: fixed_clock(),
        ..WriterConfig::default()
    }
}
