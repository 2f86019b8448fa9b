//! The engine: every authority's writer over one store, started at boot and created on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use ochered_store::EventStore;
use tokio::sync::mpsc;

use crate::{Follower, ReplayStats, Writer, WriterConfig, WriterError};

pub struct Engine {
    store: Arc<dyn EventStore>,
    config: WriterConfig,
    writers: RwLock<BTreeMap<String, Writer>>,
    /// Serialises the creation of writers so an authority never gets two.
    starting: tokio::sync::Mutex<()>,
    /// Cluster mode: read-only copies of the authorities other nodes write.
    followers: RwLock<BTreeMap<String, Arc<Follower>>>,
    /// Cluster mode: asked before a writer is started on demand.
    ownership: std::sync::OnceLock<Arc<dyn Ownership>>,
    /// Cluster mode: the authorities whose writer was fenced and handed back to a copy.
    fenced_tx: mpsc::UnboundedSender<String>,
    fenced_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// How this node serves an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This node runs its writer.
    Writes,
    /// This node keeps a read-only copy (cluster mode); another node writes it.
    Follows,
}

/// What `/ready` reports: every authority this node serves, and what is wrong, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Every authority served (written or followed), sorted.
    pub authorities: Vec<String>,
    /// The ones this node writes.
    pub writes: Vec<String>,
    /// Why the node is not ready (empty when it is).
    pub problems: Vec<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Cluster mode: decides whether this node may start a writer for an authority.
pub trait Ownership: Send + Sync {
    /// Takes the authority for this node (true), or tells it is another node's (false).
    fn claim<'a>(
        &'a self,
        authority: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, WriterError>> + Send + 'a>>;
}

impl Engine {
    /// Starts a writer for every authority found in the log.
    pub async fn start(
        store: Arc<dyn EventStore>,
        config: WriterConfig,
    ) -> Result<(Arc<Engine>, Vec<(String, ReplayStats)>), WriterError> {
        let (fenced_tx, fenced_rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine {
            store: store.clone(),
            config,
            writers: RwLock::new(BTreeMap::new()),
            starting: tokio::sync::Mutex::new(()),
            followers: RwLock::new(BTreeMap::new()),
            ownership: std::sync::OnceLock::new(),
            fenced_tx,
            fenced_rx: Mutex::new(Some(fenced_rx)),
        });
        let mut replays = Vec::new();
        for authority in store.authorities().await? {
            let (_, stats) = engine.writer_or_start(&authority).await?;
            replays.push((authority, stats));
        }
        Ok((engine, replays))
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The writer of an authority that has one (in cluster mode, or its read-only copy
    /// when another node writes it).
    pub fn writer(&self, authority: &str) -> Option<Writer> {
        if let Some(w) = self.writers.read().unwrap().get(authority) {
            return Some(w.clone());
        }
        self.followers
            .read()
            .unwrap()
            .get(authority)
            .map(|f| f.writer().clone())
    }

    /// The writer of an authority, starting it (with a replay of its log) if needed.
    pub async fn writer_or_start(
        &self,
        authority: &str,
    ) -> Result<(Writer, ReplayStats), WriterError> {
        let _guard = self.starting.lock().await;
        if let Some(w) = self.writer(authority) {
            let stats = ReplayStats {
                events: 0,
                from_snapshot: None,
                head: w.head(),
                last_recorded_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
                idempotency_keys: Default::default(),
                snapshot_elapsed: std::time::Duration::ZERO,
                elapsed: Default::default(),
            };
            return Ok((w, stats));
        }
        if let Some(ownership) = self.ownership.get() {
            if !ownership.claim(authority).await? {
                return Err(WriterError::Unavailable(format!(
                    "another node writes {authority}; retry shortly"
                )));
            }
        }
        let (writer, stats) =
            Writer::start(self.store.clone(), authority, self.config.clone()).await?;
        self.writers
            .write()
            .unwrap()
            .insert(authority.to_owned(), writer.clone());
        self.followers.write().unwrap().remove(authority);
        Ok((writer, stats))
    }

    /// Cluster mode: an engine with no writer yet; the cluster decides which authorities
    /// this node writes ([`Engine::promote`]) and which it follows ([`Engine::follow`]).
    ///
    /// A writer whose append is fenced (another node took the authority over) stops at once
    /// and becomes the authority's read-only copy ([`Engine::hand_back`]); its authority is
    /// then sent to [`Engine::take_fenced`]'s receiver, so the cluster releases it and routes
    /// writes to the new owner without waiting for its next round.
    pub fn new_cluster(
        store: Arc<dyn EventStore>,
        mut config: WriterConfig,
        ownership: Arc<dyn Ownership>,
    ) -> Arc<Engine> {
        let (fenced_tx, fenced_rx) = mpsc::unbounded_channel();
        Arc::new_cyclic(|weak: &Weak<Engine>| {
            let weak = weak.clone();
            config.on_fenced = Some(Arc::new(move |writer: &Writer| {
                if let Some(engine) = weak.upgrade() {
                    engine.hand_back(writer);
                }
            }));
            let engine = Engine {
                store,
                config,
                writers: RwLock::new(BTreeMap::new()),
                starting: tokio::sync::Mutex::new(()),
                followers: RwLock::new(BTreeMap::new()),
                ownership: std::sync::OnceLock::new(),
                fenced_tx,
                fenced_rx: Mutex::new(Some(fenced_rx)),
            };
            let _ = engine.ownership.set(ownership);
            engine
        })
    }

    /// Cluster mode: a writer stopped because its append was fenced. If it is still this
    /// authority's writer here, it stops counting as one at once (so writes are forwarded
    /// from now on) and, when its state is consistent (rebuilt from the log after the
    /// refusal), goes on as the read-only copy without a replay; otherwise the cluster
    /// starts a copy anew. Either way the authority is reported to [`Engine::take_fenced`].
    /// A writer that was already replaced (demoted, or a newer one started) is ignored.
    pub fn hand_back(&self, writer: &Writer) {
        let authority = writer.authority();
        {
            let mut writers = self.writers.write().unwrap();
            let current = writers
                .get(authority)
                .is_some_and(|w| Arc::ptr_eq(&w.shared, &writer.shared));
            if !current {
                return;
            }
            writers.remove(authority);
            // Under the writers' lock, so a reader never finds neither.
            if writer.is_consistent() {
                let follower = Follower::from_stopped_writer(self.store.clone(), writer.clone());
                self.followers
                    .write()
                    .unwrap()
                    .insert(authority.to_owned(), Arc::new(follower));
            }
        }
        let _ = self.fenced_tx.send(authority.to_owned());
    }

    /// Cluster mode: the receiver of the authorities handed back by [`Engine::hand_back`]
    /// (once; later calls get `None`).
    pub fn take_fenced(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.fenced_rx.lock().unwrap().take()
    }

    /// Cluster mode: starts the writer of an authority this node has just taken (its lock
    /// won and its epoch bumped), replaying the log, and drops the read-only copy.
    pub async fn promote(&self, authority: &str) -> Result<(Writer, ReplayStats), WriterError> {
        let _guard = self.starting.lock().await;
        let (writer, stats) =
            Writer::start(self.store.clone(), authority, self.config.clone()).await?;
        self.writers
            .write()
            .unwrap()
            .insert(authority.to_owned(), writer.clone());
        self.followers.write().unwrap().remove(authority);
        Ok((writer, stats))
    }

    /// Cluster mode: stops writing an authority this node lost (its writer is dropped once
    /// the requests holding it end; the store refuses its appends already).
    pub fn demote(&self, authority: &str) -> Option<Writer> {
        self.writers.write().unwrap().remove(authority)
    }

    /// Cluster mode: starts following an authority another node writes (a replay into a
    /// read-only copy), unless this node follows it already; `None` when this node writes it.
    pub async fn follow(&self, authority: &str) -> Result<Option<Arc<Follower>>, WriterError> {
        let _guard = self.starting.lock().await;
        if self.owns(authority) {
            return Ok(None);
        }
        if let Some(f) = self.followers.read().unwrap().get(authority) {
            return Ok(Some(f.clone()));
        }
        let follower = Arc::new(Follower::start(self.store.clone(), authority).await?);
        self.followers
            .write()
            .unwrap()
            .insert(authority.to_owned(), follower.clone());
        Ok(Some(follower))
    }

    /// The read-only copy of an authority, if this node keeps one.
    pub fn follower(&self, authority: &str) -> Option<Arc<Follower>> {
        self.followers.read().unwrap().get(authority).cloned()
    }

    /// Whether this node writes the authority (not merely follows it).
    pub fn owns(&self, authority: &str) -> bool {
        self.writers.read().unwrap().contains_key(authority)
    }

    /// The read-only copies, by authority.
    pub fn followers(&self) -> Vec<(String, Arc<Follower>)> {
        self.followers
            .read()
            .unwrap()
            .iter()
            .map(|(a, f)| (a.clone(), f.clone()))
            .collect()
    }

    /// The authorities this node writes (followed ones are not listed).
    pub fn authorities(&self) -> Vec<String> {
        self.writers.read().unwrap().keys().cloned().collect()
    }

    /// Every authority this node serves (writes or, in cluster mode, follows), sorted, with
    /// the handle reads go through.
    pub fn served(&self) -> Vec<(Writer, Role)> {
        let mut all: BTreeMap<String, (Writer, Role)> = self
            .followers
            .read()
            .unwrap()
            .iter()
            .map(|(a, f)| (a.clone(), (f.writer().clone(), Role::Follows)))
            .collect();
        for (a, w) in self.writers.read().unwrap().iter() {
            all.insert(a.clone(), (w.clone(), Role::Writes));
        }
        all.into_values().collect()
    }

    /// Whether this node can serve what it holds: every writer runs and every read-only copy
    /// follows the log ([`Follower::is_following`]). A node that writes nothing (a cluster
    /// node that restarted while others wrote everything) is ready: it serves reads from
    /// its copies and forwards writes. Whether the store answers is checked by the caller.
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        for (authority, writer) in self.writers.read().unwrap().iter() {
            readiness.writes.push(authority.clone());
            if !writer.is_running() {
                readiness
                    .problems
                    .push(format!("the writer of {authority} is not running"));
            }
            if let Some(why) = writer.broken() {
                readiness.problems.push(why);
            }
        }
        for (authority, follower) in self.followers.read().unwrap().iter() {
            if !follower.is_following() {
                readiness
                    .problems
                    .push(format!("the copy of {authority} does not follow the log"));
            }
        }
        readiness.authorities = self
            .served()
            .iter()
            .map(|(w, _)| w.authority().to_owned())
            .collect();
        readiness
    }
    pub fn writers(&self) -> Vec<Writer> {
        self.writers.read().unwrap().values().cloned().collect()
    }
}
