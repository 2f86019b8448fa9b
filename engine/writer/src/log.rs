//! Committed events read back from the store for readers outside the writer (status updates:
//! event streams and webhooks), decoded here: the writer is the only place that joins the
//! core and the store, so readers never decode stored events or parse stream ids themselves.

use ochered_core::domain::ApplicationNumber;
use ochered_core::event::StreamId;
use ochered_store::EventStore;

use crate::replay::decode_stored;
use crate::{CommittedEvent, WriterError};

/// Whether a stored event may change the status of `only` (of any application when none):
/// events of applications and of rounds may; the others are skipped without being decoded.
fn may_change_status(stream: &str, only: Option<ApplicationNumber>) -> bool {
    if stream.starts_with(ROUND_PREFIX) {
        return true;
    }
    match only {
        Some(number) => stream == StreamId::Application(number).to_string(),
        None => stream.starts_with(APPLICATION_PREFIX),
    }
}

/// The stream ids of rounds and applications begin so (`StreamId`'s `Display`).
const ROUND_PREFIX: &str = "round-";
const APPLICATION_PREFIX: &str = "application-";

/// One page of an authority's log.
#[derive(Debug, Default)]
pub struct LogPage {
    /// The events of the page that may change a status, decoded, in log order.
    pub events: Vec<CommittedEvent>,
    /// The last `authority_seq` the page covered, whatever its events; none when the log holds
    /// nothing after the position read from.
    pub last_seq: Option<i64>,
}

/// Reads at most `limit` events of `authority` after `after_seq` and decodes those that may
/// change the status of `only` (of any application when none).
/// A store that does not answer, or an event that cannot be decoded, is
/// [`WriterError::Unavailable`].
pub async fn read_status_events(
    store: &dyn EventStore,
    authority: &str,
    after_seq: i64,
    limit: i64,
    only: Option<ApplicationNumber>,
) -> Result<LogPage, WriterError> {
    let page = store.read(authority, after_seq, limit).await?;
    let mut out = LogPage {
        events: Vec::new(),
        last_seq: page.last().map(|e| e.authority_seq),
    };
    for stored in &page {
        if may_change_status(&stored.stream_id, only) {
            out.events.push(CommittedEvent {
                authority_seq: stored.authority_seq,
                recorded_at: stored.recorded_at,
                event: decode_stored(stored)?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochered_core::domain::RoundId;

    #[test]
    fn applications_and_rounds_may_change_a_status() {
        let seven = Some(ApplicationNumber(7));
        let stream = |id: StreamId| id.to_string();
        assert!(may_change_status(
            &stream(StreamId::Application(ApplicationNumber(7))),
            seven
        ));
        assert!(!may_change_status(
            &stream(StreamId::Application(ApplicationNumber(70))),
            seven
        ));
        assert!(may_change_status(
            &stream(StreamId::Application(ApplicationNumber(70))),
            None
        ));
        let round = stream(StreamId::Round(RoundId::parse("r1").unwrap()));
        assert!(may_change_status(&round, seven));
        assert!(!may_change_status("institution-K1", None));
        assert!(!may_change_status("authority", seven));
    }
}
