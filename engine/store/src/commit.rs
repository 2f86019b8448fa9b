//! One committer per database: concurrent appends of every authority go into one
//! transaction with one sync.
//!
//! Each [`crate::EventStore::append`] encodes its records on the caller's task, then hands
//! them to the store's committer task and waits. The committer takes every append waiting
//! at that moment and commits them together; while it commits, new appends queue up and
//! form the next group. So eleven authorities writing at once cost one disk sync per round,
//! not eleven. Within a group, each append runs inside a savepoint of its own: a conflict
//! or a fence of one authority undoes only that authority's rows and fails only its append,
//! while a failure of the transaction itself (disk full, I/O, connection lost) fails every
//! append of the group, none of which is then acknowledged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::keys::NewDataKey;
use crate::{Encoded, StoreError, StoredEvent};

/// One authority's append waiting for the committer.
pub(crate) struct Append {
    pub authority: String,
    /// The head the writer expects ([`crate::EventStore::append_after`]).
    pub after: Option<i64>,
    pub events: Vec<Encoded>,
    /// New data keys to store in the same transaction (savepoint) as the events
    /// ([`crate::EventStore::append_with_keys`]); only backends that store keys with events
    /// receive any.
    pub keys: Vec<Arc<NewDataKey>>,
    pub reply: oneshot::Sender<Appended>,
}

/// The result of one append.
pub(crate) type Appended = Result<Vec<StoredEvent>, StoreError>;

/// The results of a group, one per append, in order, when they are ready.
pub(crate) type GroupResult<'a> = Pin<Box<dyn Future<Output = Vec<Appended>> + Send + 'a>>;

/// What a backend does with a group: one transaction, one result per append, in order.
pub(crate) trait GroupCommit: Send + Sync + 'static {
    fn commit<'a>(&'a self, group: &'a mut [Append]) -> GroupResult<'a>;
}

/// Most appends one transaction takes (a guard: each writer has at most one in flight).
const GROUP_APPENDS_MAX: usize = 256;

/// The handle appends are sent through; the task ends when every handle is dropped.
pub(crate) struct Committer {
    tx: mpsc::UnboundedSender<Append>,
}

impl Committer {
    pub fn spawn(backend: Arc<dyn GroupCommit>) -> Committer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Append>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP_APPENDS_MAX {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let results = backend.commit(&mut group).await;
                debug_assert_eq!(results.len(), group.len());
                for (append, result) in group.into_iter().zip(results) {
                    let _ = append.reply.send(result);
                }
            }
        });
        Committer { tx }
    }

    /// Sends one append and waits for its result.
    pub async fn append(
        &self,
        authority: &str,
        after: Option<i64>,
        events: Vec<Encoded>,
        keys: Vec<Arc<NewDataKey>>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Append {
                authority: authority.to_owned(),
                after,
                events,
                keys,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the store's committer has stopped".into()))?;
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the store's committer stopped before answering".into(),
            ))
        })
    }
}
