//! A read-only copy of an authority another node writes (cluster mode).
//!
//! A follower is a [`Writer`] handle whose queue is closed: reads (`read`, `head`,
//! `subscribe`, `is_consistent`) work exactly as on the owner, and `submit` answers
//! [`WriterError::Stopped`] (the HTTP layer forwards writes to the owner before they get
//! here). Its state follows the log by `authority_seq`, which is gapless per authority and
//! committed in order by the one writer, so a follower never skips an event the way a
//! reader of the database-wide `global_seq` could (sequence values are taken before
//! commit, so a later value can commit first).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ochered_store::EventStore;
use tokio::sync::mpsc;

use crate::{load_state, CommittedEvent, Shared, Writer, WriterError, WriterStats};

/// Events read per catch-up query.
const FOLLOW_PAGE_EVENTS: i64 = 5_000;

/// Keeps a read-only [`Writer`] handle up to date with the log.
pub struct Follower {
    store: Arc<dyn EventStore>,
    writer: Writer,
    /// One catch-up at a time (a notification and the periodic poll may race).
    busy: tokio::sync::Mutex<()>,
    /// The log did not continue the copy's chain (a gap or a foreign hash): it stops.
    broken: AtomicBool,
    /// The last catch-up failed (the store did not answer); cleared by the next success.
    failing: AtomicBool,
}

impl Follower {
    /// Replays the authority's log (from its newest snapshot) into a read-only handle.
    pub async fn start(
        store: Arc<dyn EventStore>,
        authority: &str,
    ) -> Result<Follower, WriterError> {
        let (state, stats) = load_state(store.as_ref(), authority).await?;
        // A queue nobody receives from: submit answers Stopped, is_running is false.
        let (tx, _) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            authority: authority.to_owned(),
            state: RwLock::new(state),
            in_flight: Mutex::new(Default::default()),
            stats: WriterStats::default(),
            head: RwLock::new(stats.head),
            consistent: AtomicBool::new(true),
            broken: RwLock::new(None),
            committed: tokio::sync::broadcast::channel(crate::COMMITTED_BROADCAST_BATCHES).0,
            clock: crate::system_clock(),
        });
        Ok(Follower {
            store,
            writer: Writer { tx, shared },
            busy: tokio::sync::Mutex::new(()),
            broken: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        })
    }

    /// Goes on from a writer that stopped because another node took its authority over
    /// (its queue is closed and its state equals a prefix of the log): no replay needed.
    pub(crate) fn from_stopped_writer(store: Arc<dyn EventStore>, writer: Writer) -> Follower {
        debug_assert!(!writer.is_running());
        Follower {
            store,
            writer,
            busy: tokio::sync::Mutex::new(()),
            broken: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
    }

    /// Whether the copy follows the log: its chain is intact and its last catch-up worked.
    /// (Whether it is fully caught up is only known to the database; a copy that follows is
    /// at most one notification or one balancing round behind.)
    pub fn is_following(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.failing.load(Ordering::Relaxed)
    }

    /// The read-only handle.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Folds every event committed after the handle's head; returns how many. Events are
    /// applied in `authority_seq` order and each must link to the one before (hash chain),
    /// so a follower's state is always a prefix of the log.
    pub async fn catch_up(&self) -> Result<u64, WriterError> {
        let _busy = self.busy.lock().await;
        let result = self.fold_new_events().await;
        self.failing.store(result.is_err(), Ordering::Relaxed);
        result
    }

    async fn fold_new_events(&self) -> Result<u64, WriterError> {
        let shared = &self.writer.shared;
        let mut folded = 0u64;
        loop {
            let head = shared.head.read().unwrap().clone();
            let page = self
                .store
                .read(&shared.authority, head.authority_seq, FOLLOW_PAGE_EVENTS)
                .await?;
            if page.is_empty() {
                return Ok(folded);
            }
            let mut decoded = Vec::with_capacity(page.len());
            let mut expected = head.clone();
            let mut expected_hash = crate::replay::hash_of_head(&head);
            for stored in &page {
                if stored.authority_seq != expected.authority_seq + 1
                    || stored.hash_is_valid().then_some(()).is_none()
                    || stored.prev_hash != expected_hash
                {
                    self.broken.store(true, Ordering::Relaxed);
                    return Err(WriterError::Unavailable(format!(
                        "the log of {} is broken at event {}: run `ochered verify`",
                        stored.authority, stored.authority_seq
                    )));
                }
                let event = crate::replay::decode_stored(stored)?;
                expected = ochered_store::ChainHead::of(stored);
                expected_hash = stored.hash;
                decoded.push(CommittedEvent {
                    authority_seq: stored.authority_seq,
                    recorded_at: stored.recorded_at,
                    event,
                });
            }
            {
                let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
                for committed in &decoded {
                    state.apply(&committed.event);
                }
                *shared.head.write().unwrap() = expected;
            }
            folded += decoded.len() as u64;
            shared
                .stats
                .events
                .fetch_add(decoded.len() as u64, Ordering::Relaxed);
            if shared.committed.receiver_count() > 0 {
                let _ = shared.committed.send(Arc::new(decoded));
            }
            if (page.len() as i64) < FOLLOW_PAGE_EVENTS {
                return Ok(folded);
            }
        }
    }
}
