//! The engine: every authority's writer over one store, started at boot and created on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use ochered_store::EventStore;

use crate::{ReplayStats, Writer, WriterConfig, WriterError};

pub struct Engine {
    store: Arc<dyn EventStore>,
    config: WriterConfig,
    writers: RwLock<BTreeMap<String, Writer>>,
    /// Serialises the creation of writers so an authority never gets two.
    starting: tokio::sync::Mutex<()>,
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

    /// The writer of an authority that has one.
    pub fn writer(&self, authority: &str) -> Option<Writer> {
        self.writers.read().unwrap().get(authority).cloned()
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
        let (writer, stats) =
            Writer::start(self.store.clone(), authority, self.config.clone()).await?;
        self.writers
            .write()
            .unwrap()
            .insert(authority.to_owned(), writer.clone());
        Ok((writer, stats))
    }

    pub fn authorities(&self) -> Vec<String> {
        self.writers.read().unwrap().keys().cloned().collect()
    }

    pub fn writers(&self) -> Vec<Writer> {
        self.writers.read().unwrap().values().cloned().collect()
    }
}
