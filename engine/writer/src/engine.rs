//! The engine: every authority's writer over one store, started at boot and created on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use ochered_store::EventStore;

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
        let engine = Arc::new(Engine {
            store: store.clone(),
            config,
            writers: RwLock::new(BTreeMap::new()),
            starting: tokio::sync::Mutex::new(()),
            followers: RwLock::new(BTreeMap::new()),
            ownership: std::sync::OnceLock::new(),
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
    pub fn new_cluster(
        store: Arc<dyn EventStore>,
        config: WriterConfig,
        ownership: Arc<dyn Ownership>,
    ) -> Arc<Engine> {
        let engine = Engine {
            store,
            config,
            writers: RwLock::new(BTreeMap::new()),
            starting: tokio::sync::Mutex::new(()),
            followers: RwLock::new(BTreeMap::new()),
            ownership: std::sync::OnceLock::new(),
        };
        let _ = engine.ownership.set(ownership);
        Arc::new(engine)
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
    /// read-only copy), unless this node writes or follows it already.
    pub async fn follow(&self, authority: &str) -> Result<Arc<Follower>, WriterError> {
        let _guard = self.starting.lock().await;
        if let Some(f) = self.followers.read().unwrap().get(authority) {
            return Ok(f.clone());
        }
        let follower = Arc::new(Follower::start(self.store.clone(), authority).await?);
        self.followers
            .write()
            .unwrap()
            .insert(authority.to_owned(), follower.clone());
        Ok(follower)
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

    pub fn writers(&self) -> Vec<Writer> {
        self.writers.read().unwrap().values().cloned().collect()
    }
}
