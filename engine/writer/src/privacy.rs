//! Personal data sealed per applicant, and its erasure by crypto-shredding.
//!
//! Names, contacts and the document as typed never enter the log in plain text. The shell
//! seals them here before the command reaches the core, which only carries the opaque
//! [`Sealed`] value into the event (where the chain hash covers it):
//!
//! - Every person (authority, [`PersonKey`]) gets one random 256-bit **data key** on first
//!   use, from the operating system's generator. It is stored in the store's `data_keys`
//!   table, outside the hash-chained log, **wrapped** (XChaCha20-Poly1305) under the
//!   server's **master key** (key-encryption key), which comes from configuration and never
//!   reaches the database.
//! - Personal data is encrypted with XChaCha20-Poly1305 under a subkey of the data key. The
//!   associated data binds the ciphertext to its authority and person, so it cannot be moved
//!   to someone else's record.
//! - The 24-byte nonce is synthetic: an HMAC-SHA256 (under another subkey of the data key)
//!   of the associated data and the plaintext, as in SIV constructions. The same data sealed
//!   for the same person twice gives the same bytes, which is what lets a retried submission
//!   (same `Idempotency-Key`) be recognised as the same request; different data always gets
//!   a different nonce. The only thing this reveals is equality of two sealings for one
//!   person, and only to someone holding both ciphertexts.
//! - **Erasure** deletes the person's data key: every sealed value of that person in the log
//!   becomes unreadable for good, while the log, its hashes and the queues stay untouched.
//!
//! **When a new key is stored.**
//!
//! - *SQLite (one process owns the file): with the event that first needs it.* A submission
//!   seals with [`Privacy::seal_for_event`]: a person with no stored key gets a fresh key at
//!   once, kept in memory as *pending* (every sealing for that person in this process uses
//!   it), and the sealing returns a [`NewKey`] that travels with the command to the writer
//!   ([`crate::Writer::submit_with_key`]). The writer hands the new keys of a batch's
//!   accepted commands to the store with that batch's events, and the store's group commit
//!   inserts them (`ON CONFLICT DO NOTHING`) in the same transaction (the append's own
//!   savepoint): one commit, one sync for the event and its key, so a first submission with
//!   contacts waits for one commit, like one without. A failed commit stores neither; a
//!   rejected command's key is not stored (nor its data). Once committed the key is an
//!   ordinary cached key ([`NewKey::stored`]). An erasure withdraws a pending key before it
//!   deletes the stored one, so no later commit brings it back (see [`KeyCache`]).
//! - *PostgreSQL (other nodes may create or destroy a key): first, in groups.* A sealing that
//!   finds no key hands its request to one batcher task (per [`Privacy`], so per store),
//!   which takes every request waiting (up to [`KEY_BATCH_MAX`]), stores a candidate key for
//!   each person without one and reads back every person's stored key in ONE durable
//!   transaction ([`ochered_store::DataKeyStore::data_keys_or_insert`]), then answers each,
//!   before the command goes to the writer. [`Privacy::seal`] stores a new key first on
//!   SQLite too.
//!
//! Unwrapped keys are kept in a bounded in-memory cache ([`KEY_CACHE_MAX`], SQLite only), so
//! later sealings and openings of a known person do not touch the store; see [`KeyCache`]
//! for how an erasure empties it. One [`Privacy`] per store: pending keys live in its
//! memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use ochered_core::command::Sealed;
use ochered_core::domain::PersonKey;
use ochered_store::keys::{KeyCandidate, NewDataKey};
use ochered_store::{EventStore, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Bytes of a master key and of a data key.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// The first byte of a wrapped key: the wrapping format.
const WRAP_FORMAT: u8 = 1;
const WRAPPED_BYTES: usize = 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES;
/// Unwrapped data keys kept in memory at most (about 150 bytes each with their names).
pub const KEY_CACHE_MAX: usize = 65_536;
/// Key requests one batch (one transaction) takes at most.
pub const KEY_BATCH_MAX: usize = ochered_store::keys::KEY_BATCH_MAX;
/// Key requests waiting for the batcher at most; more wait to be queued.
const KEY_QUEUE_MAX: usize = 8 * KEY_BATCH_MAX;

/// The master key-encryption key. Its bytes are never printed.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_BYTES]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        MasterKey(bytes)
    }

    /// Parses 64 hexadecimal digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "the data key must be 64 hexadecimal digits (32 bytes)".to_owned())?;
        let bytes: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| "the data key must be 64 hexadecimal digits (32 bytes)".to_owned())?;
        Ok(MasterKey(bytes))
    }

    /// A key derived from a development secret, for demos only: anyone who knows the
    /// secret can unwrap every data key. The server warns loudly when it uses one.
    pub fn derive_for_development(secret: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"ochered development data key\0");
        hasher.update(secret);
        MasterKey(hasher.finalize().into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    #[error("this store keeps no data keys")]
    NoKeyTable,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored data key does not open with the configured master key: the master key is
    /// not the one the keys were wrapped under, or the key row was altered.
    #[error("a stored data key cannot be unwrapped with the configured master key")]
    Unwrap,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

impl PrivacyError {
    /// Whether trying again later may succeed (the store is away).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PrivacyError::Store(e) if e.is_unavailable())
    }
}

/// Seals, opens and shreds personal data with per-applicant keys kept in the store.
pub struct Privacy {
    shared: Arc<Shared>,
    /// The batcher's queue, started on the first key that must be created.
    batcher: OnceLock<Option<mpsc::Sender<KeyRequest>>>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy").finish_non_exhaustive()
    }
}

/// What the callers and the batcher task share.
struct Shared {
    store: Arc<dyn EventStore>,
    master: MasterKey,
    cache: Mutex<KeyCache>,
    /// A new person's key travels with the event that first needs it and is stored in the
    /// same transaction ([`Privacy::seal_for_event`]): the store does that and only this
    /// process changes its keys (SQLite). Otherwise keys are stored first (PostgreSQL).
    keys_with_events: bool,
}

/// A new person's key on its way to the store with the first event that needs it: the
/// in-memory *pending* key every sealing for that person in this process uses until the key
/// is stored (or the person's data erased).
struct PendingKey {
    key: [u8; KEY_BYTES],
    new: Arc<NewDataKey>,
}

/// A new data key that must be stored with the command whose sealed value needs it
/// ([`Privacy::seal_for_event`]). The writer passes it to the store with the command's
/// events when the command is accepted ([`crate::Writer::submit_with_key`]), and tells it
/// [`NewKey::stored`] once they committed. Every command sealed under a pending key carries
/// it, so whichever commits first stores it; the others' inserts are no-ops (same key).
#[derive(Clone)]
pub struct NewKey {
    new: Arc<NewDataKey>,
    person: PersonKey,
    key: [u8; KEY_BYTES],
    owner: Weak<Shared>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("authority", &self.new.authority)
            .field("person", &self.new.person)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    /// What the store inserts with the events.
    pub fn to_store(&self) -> Arc<NewDataKey> {
        self.new.clone()
    }

    /// The store holds the key now (the commit that carried it succeeded): it leaves the
    /// pending keys for the cache of stored ones, unless the person's data was erased since.
    pub fn stored(&self) {
        if let Some(shared) = self.owner.upgrade() {
            shared
                .cache
                .lock()
                .expect("key cache lock")
                .promote(&self.new, &self.person, self.key);
        }
    }
}

/// What the memory knows of a person's key.
enum Known {
    Stored([u8; KEY_BYTES]),
    Pending([u8; KEY_BYTES], Arc<NewDataKey>),
    /// Neither: the store must be asked. The counters as they were, to tell whether a key
    /// could have been stored and left the memory while the store was read.
    Unknown {
        generation: u64,
        inserted: u64,
        swept: u64,
    },
}

/// A sealing's request for its person's key, answered by the batcher.
struct KeyRequest {
    authority: String,
    person: PersonKey,
    reply: oneshot::Sender<Result<[u8; KEY_BYTES], PrivacyError>>,
}

/// Unwrapped data keys of recently seen people: at most [`KEY_CACHE_MAX`], the oldest
/// inserted leaving first.
///
/// Erasure against a concurrent sealing or opening: [`Privacy::destroy`] removes the
/// person's entry and bumps `generation` BEFORE it deletes the key row, and does both
/// again AFTER the delete. Whoever fills the cache from the store notes the generation
/// before reading the store and inserts only if it has not changed since, under this lock.
/// So a key read before or during a destroy never enters the cache after the destroy began
/// (or, if it slipped in between the two bumps, the second removal takes it out), and once
/// `destroy` returns no cached copy of the destroyed key remains: every later sealing or
/// opening goes to the store, which no longer has it. What cannot be prevented without
/// serialising every sealing with erasures is a sealing that had already obtained the key
/// when the destroy began: it finishes with the old key, so that value is shredded along
/// with the rest (unreadable, never readable). That is the erasure winning the race, the
/// same as before there was a cache.
///
/// Only a store that no other process changes gets a cache
/// ([`ochered_store::DataKeyStore::single_process`], i.e. SQLite): on PostgreSQL another
/// node of a cluster may destroy a key, which this process would not hear of, so there
/// every sealing asks the store (still in groups, through the batcher).
///
/// **Pending keys** (SQLite only, [`Privacy::seal_for_event`]): a person with no stored key
/// gets a fresh key at once, kept here as pending until the first command that carries it
/// commits ([`NewKey::stored`] moves it to the cache). A destroy removes the person's pending
/// key too and *withdraws* it ([`NewDataKey::withdraw`]) before it deletes the row, so no
/// commit stores it afterwards: the commands already sealed under it keep their events, whose
/// sealed values are then unreadable (shredded, as for a sealing that raced a destroy before).
/// Precisely, for a command sealed under pending key K when a destroy of its person runs:
/// - its commit ran before the destroy's `DELETE` (both need the only writer connection):
///   K was stored with the events and the `DELETE` removes it;
/// - its commit runs after the destroy withdrew K: the events are stored, K is not, and the
///   value is unreadable for good; the person's next sealing makes a new key.
///
/// A sealing that starts during the destroy (between its two removals) may make a new pending
/// key that the second removal withdraws: that value is shredded too. After `destroy`
/// returns, a new sealing gets a new key that is stored normally.
/// Pending keys no command carries any more (rejected or failed commands) are swept when
/// there are many ([`PENDING_SWEEP_MIN`]); a sealing that missed the memory and the store
/// while a key could have been stored and left the memory (evicted, or swept after a commit
/// that failed yet reached the disk) asks the store again rather than make a second key.
struct KeyCache {
    enabled: bool,
    /// Each key with the number of its insertion.
    keys: HashMap<(String, PersonKey), ([u8; KEY_BYTES], u64)>,
    /// Insertion order with the insertion's number, for eviction; may hold people already
    /// removed (skipped then).
    order: VecDeque<((String, PersonKey), u64)>,
    generation: u64,
    /// Insertions into `keys` so far, and the number of the newest one evicted.
    inserted: u64,
    evicted_upto: u64,
    pending: HashMap<(String, PersonKey), PendingKey>,
    /// How many pending keys start a sweep, and sweeps that removed any so far.
    sweep_at: usize,
    swept: u64,
}

/// Pending keys kept before the first sweep of those no command carries any more.
const PENDING_SWEEP_MIN: usize = 4096;

impl KeyCache {
    fn new(enabled: bool) -> Self {
        KeyCache {
            enabled,
            keys: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            inserted: 0,
            evicted_upto: 0,
            pending: HashMap::new(),
            sweep_at: PENDING_SWEEP_MIN,
            swept: 0,
        }
    }

    fn get(&self, authority: &str, person: &PersonKey) -> Option<[u8; KEY_BYTES]> {
        self.keys
            .get(&(authority.to_owned(), *person))
            .map(|(key, _)| *key)
    }

    /// The person's key in memory: stored (cached) or pending.
    fn known(&self, authority: &str, person: &PersonKey) -> Known {
        let name = (authority.to_owned(), *person);
        if let Some((key, _)) = self.keys.get(&name) {
            return Known::Stored(*key);
        }
        if let Some(pending) = self.pending.get(&name) {
            return Known::Pending(pending.key, pending.new.clone());
        }
        Known::Unknown {
            generation: self.generation,
            inserted: self.inserted,
            swept: self.swept,
        }
    }

    /// Caches the key unless a destroy ran since `generation` was noted.
    fn insert(
        &mut self,
        generation: u64,
        authority: &str,
        person: &PersonKey,
        key: [u8; KEY_BYTES],
    ) {
        if !self.enabled || generation != self.generation {
            return;
        }
        let name = (authority.to_owned(), *person);
        self.inserted += 1;
        if let Some(entry) = self.keys.get_mut(&name) {
            entry.0 = key;
            return;
        }
        self.keys.insert(name.clone(), (key, self.inserted));
        self.order.push_back((name, self.inserted));
        while self.keys.len() > KEY_CACHE_MAX {
            let Some((oldest, number)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&oldest).is_some_and(|(_, n)| *n == number) {
                self.keys.remove(&oldest);
                self.evicted_upto = number;
            }
        }
        if self.order.len() > 2 * KEY_CACHE_MAX {
            let keys = &self.keys;
            self.order
                .retain(|(name, number)| keys.get(name).is_some_and(|(_, n)| n == number));
        }
    }

    /// Adds a pending key, first sweeping those no command carries any more when there are
    /// many. The caller checked that the person has none.
    fn add_pending(&mut self, name: (String, PersonKey), pending: PendingKey) {
        if self.pending.len() >= self.sweep_at {
            let before = self.pending.len();
            // Held here only: no command carries it, so no commit will store it (a command
            // holds its key until its commit is over). A later sealing makes a new one.
            self.pending
                .retain(|_, p| Arc::strong_count(&p.new) > 1 && !p.new.is_withdrawn());
            if self.pending.len() < before {
                self.swept += 1;
            }
            self.sweep_at = (2 * self.pending.len()).max(PENDING_SWEEP_MIN);
        }
        self.pending.insert(name, pending);
    }

    /// The pending key `new` was stored: it becomes an ordinary cached key, unless the
    /// person's data was erased since (then it was withdrawn and left the pending keys).
    fn promote(&mut self, new: &Arc<NewDataKey>, person: &PersonKey, key: [u8; KEY_BYTES]) {
        let name = (new.authority.clone(), *person);
        let ours = self
            .pending
            .get(&name)
            .is_some_and(|p| Arc::ptr_eq(&p.new, new));
        if !ours || new.is_withdrawn() {
            return;
        }
        self.pending.remove(&name);
        let generation = self.generation;
        self.insert(generation, &new.authority, person, key);
    }

    fn invalidate(&mut self, authority: &str, person: &PersonKey) {
        self.generation += 1;
        let name = (authority.to_owned(), *person);
        self.keys.remove(&name);
        if let Some(pending) = self.pending.remove(&name) {
            pending.new.withdraw();
        }
    }
}

/// The associated data of a person's sealed values and of their wrapped key.
fn context(label: &str, authority: &str, person: &PersonKey) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + authority.len() + 66);
    aad.extend_from_slice(label.as_bytes());
    aad.push(0);
    aad.extend_from_slice(authority.as_bytes());
    aad.push(0);
    aad.extend_from_slice(person.to_hex().as_bytes());
    aad
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn random<const N: usize>() -> Result<[u8; N], PrivacyError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| PrivacyError::Random(e.to_string()))?;
    Ok(bytes)
}

impl Shared {
    fn keys(&self) -> Result<&dyn ochered_store::DataKeyStore, PrivacyError> {
        self.store.data_keys().ok_or(PrivacyError::NoKeyTable)
    }

    fn cached(&self, authority: &str, person: &PersonKey) -> Option<[u8; KEY_BYTES]> {
        self.cache
            .lock()
            .expect("key cache lock")
            .get(authority, person)
    }

    fn known(&self, authority: &str, person: &PersonKey) -> Known {
        self.cache
            .lock()
            .expect("key cache lock")
            .known(authority, person)
    }

    fn generation(&self) -> u64 {
        self.cache.lock().expect("key cache lock").generation
    }

    fn remember(&self, generation: u64, authority: &str, person: &PersonKey, key: [u8; KEY_BYTES]) {
        self.cache
            .lock()
            .expect("key cache lock")
            .insert(generation, authority, person, key);
    }

    fn forget(&self, authority: &str, person: &PersonKey) {
        self.cache
            .lock()
            .expect("key cache lock")
            .invalidate(authority, person);
    }

    fn wrap(
        &self,
        authority: &str,
        person: &PersonKey,
        key: &[u8; KEY_BYTES],
    ) -> Result<Vec<u8>, PrivacyError> {
        let nonce: [u8; NONCE_BYTES] = random()?;
        let aad = context("ochered data key", authority, person);
        let cipher = XChaCha20Poly1305::new((&self.master.0).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any 32 bytes");
        let mut wrapped = Vec::with_capacity(WRAPPED_BYTES);
        wrapped.push(WRAP_FORMAT);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(wrapped)
    }

    fn unwrap(
        &self,
        authority: &str,
        person: &PersonKey,
        wrapped: &[u8],
    ) -> Result<[u8; KEY_BYTES], PrivacyError> {
        if wrapped.len() != WRAPPED_BYTES || wrapped[0] != WRAP_FORMAT {
            return Err(PrivacyError::Unwrap);
        }
        let (nonce, sealed) = wrapped[1..].split_at(NONCE_BYTES);
        let aad = context("ochered data key", authority, person);
        let cipher = XChaCha20Poly1305::new((&self.master.0).into());
        let key = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| PrivacyError::Unwrap)?;
        key.try_into().map_err(|_| PrivacyError::Unwrap)
    }

    /// Creates (or finds) the keys of a group of requests in one transaction and answers
    /// each: an error answers every request of the group.
    async fn create_keys(&self, requests: Vec<KeyRequest>) {
        // Noted before the store is read: a destroy from now on keeps these keys out of
        // the cache (see `KeyCache`).
        let generation = self.generation();
        let mut pending = Vec::with_capacity(requests.len());
        for request in requests {
            // An earlier group may have brought this person's key meanwhile.
            match self.cached(&request.authority, &request.person) {
                Some(key) => {
                    let _ = request.reply.send(Ok(key));
                }
                None => pending.push(request),
            }
        }
        if pending.is_empty() {
            return;
        }
        let people: Vec<(&str, PersonKey)> = pending
            .iter()
            .map(|r| (r.authority.as_str(), r.person))
            .collect();
        match self.store_keys(&people).await {
            Err(error) => {
                for request in pending {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
            Ok(stored) => {
                for (request, wrapped) in pending.into_iter().zip(stored) {
                    let key = self.unwrap(&request.authority, &request.person, &wrapped);
                    if let Ok(key) = key {
                        self.remember(generation, &request.authority, &request.person, key);
                    }
                    let _ = request.reply.send(key);
                }
            }
        }
    }

    /// The wrapped keys stored for the requests' people, a fresh candidate stored first for
    /// each person without one; durable on return.
    async fn store_keys(&self, people: &[(&str, PersonKey)]) -> Result<Vec<Vec<u8>>, PrivacyError> {
        let keys = self.keys()?;
        let hexes: Vec<String> = people.iter().map(|(_, p)| p.to_hex()).collect();
        let wrapped = people
            .iter()
            .map(|(authority, person)| self.wrap(authority, person, &random::<KEY_BYTES>()?))
            .collect::<Result<Vec<_>, _>>()?;
        let candidates: Vec<KeyCandidate<'_>> = people
            .iter()
            .zip(&hexes)
            .zip(&wrapped)
            .map(|((&(authority, _), person), wrapped)| KeyCandidate {
                authority,
                person,
                wrapped,
            })
            .collect();
        Ok(keys.data_keys_or_insert(&candidates).await?)
    }
}

/// The batcher: takes every request waiting (up to [`KEY_BATCH_MAX`]), creates their keys
/// in one transaction, answers them, and goes on until every [`Privacy`] sender is gone.
async fn run_batcher(shared: Arc<Shared>, mut queue: mpsc::Receiver<KeyRequest>) {
    let mut batch = Vec::with_capacity(KEY_BATCH_MAX);
    while queue.recv_many(&mut batch, KEY_BATCH_MAX).await > 0 {
        shared.create_keys(std::mem::take(&mut batch)).await;
    }
}

impl Privacy {
    pub fn new(store: Arc<dyn EventStore>, master: MasterKey) -> Self {
        let enabled = store.data_keys().is_some_and(|k| k.single_process());
        Privacy {
            shared: Arc::new(Shared {
                master,
                cache: Mutex::new(KeyCache::new(enabled)),
                keys_with_events: enabled && store.stores_keys_with_events(),
                store,
            }),
            batcher: OnceLock::new(),
        }
    }

    /// The batcher's queue, started on first use on the current Tokio runtime (none outside
    /// one: keys are then created one at a time).
    fn batcher(&self) -> Option<&mpsc::Sender<KeyRequest>> {
        self.batcher
            .get_or_init(|| {
                let runtime = tokio::runtime::Handle::try_current().ok()?;
                let (sender, queue) = mpsc::channel(KEY_QUEUE_MAX);
                runtime.spawn(run_batcher(self.shared.clone(), queue));
                Some(sender)
            })
            .as_ref()
    }

    /// The person's data key, created (and durably stored) on first use.
    async fn data_key_or_create(
        &self,
        authority: &str,
        person: &PersonKey,
    ) -> Result<[u8; KEY_BYTES], PrivacyError> {
        if let Some(key) = self.shared.cached(authority, person) {
            return Ok(key);
        }
        self.shared.keys()?;
        if let Some(batcher) = self.batcher() {
            let (reply, answer) = oneshot::channel();
            let request = KeyRequest {
                authority: authority.to_owned(),
                person: *person,
                reply,
            };
            if batcher.send(request).await.is_ok() {
                if let Ok(result) = answer.await {
                    return result;
                }
            }
            // The batcher is gone (its runtime shut down): ask the store directly below;
            // storing is idempotent per person, so a group that did commit is found.
        }
        let generation = self.shared.generation();
        let wrapped = self.shared.store_keys(&[(authority, *person)]).await?;
        let key = self.shared.unwrap(authority, person, &wrapped[0])?;
        self.shared.remember(generation, authority, person, key);
        Ok(key)
    }

    /// Encrypts `plaintext` (at most 4 KiB) for the person: the value to put in the command.
    /// The person's key is durable before this returns (a new one is stored first, on its
    /// own). A submission uses [`Privacy::seal_for_event`] instead, which lets a new key be
    /// stored with the submission's event.
    pub async fn seal(
        &self,
        authority: &str,
        person: &PersonKey,
        plaintext: &[u8],
    ) -> Result<Sealed, PrivacyError> {
        if self.shared.keys_with_events {
            let (key, new) = self.key_for_event(authority, person).await?;
            if let Some(new) = new {
                // Skipped if an erasure withdrew it meanwhile: the value is then shredded.
                self.shared
                    .keys()?
                    .insert_new_keys(&[new.to_store()])
                    .await?;
                new.stored();
            }
            return Ok(seal_with(&key, authority, person, plaintext));
        }
        let key = self.data_key_or_create(authority, person).await?;
        Ok(seal_with(&key, authority, person, plaintext))
    }

    /// Encrypts `plaintext` (at most 4 KiB) for the person, for a command that records it:
    /// the sealed value, and when the person has no stored key yet, the [`NewKey`] that must
    /// be stored with the command's events ([`crate::Writer::submit_with_key`]), so that the
    /// submission waits for one commit, not for the key's and then the event's.
    ///
    /// Only where the store keeps keys with events and only this process changes them
    /// (SQLite). Elsewhere (PostgreSQL: another node may create or destroy a key) the key is
    /// stored first, as by [`Privacy::seal`], and no [`NewKey`] is returned.
    ///
    /// A person with no stored key gets a fresh random key at once, kept in memory as
    /// *pending*: every sealing for that person in this process uses it (and carries it)
    /// until one of their commands commits it. A command that is rejected or not committed
    /// stores nothing, neither its key nor its data.
    pub async fn seal_for_event(
        &self,
        authority: &str,
        person: &PersonKey,
        plaintext: &[u8],
    ) -> Result<(Sealed, Option<NewKey>), PrivacyError> {
        if !self.shared.keys_with_events {
            return Ok((self.seal(authority, person, plaintext).await?, None));
        }
        let (key, new) = self.key_for_event(authority, person).await?;
        Ok((seal_with(&key, authority, person, plaintext), new))
    }

    fn new_key(&self, new: Arc<NewDataKey>, person: &PersonKey, key: [u8; KEY_BYTES]) -> NewKey {
        NewKey {
            new,
            person: *person,
            key,
            owner: Arc::downgrade(&self.shared),
        }
    }

    /// The person's key from memory (cached or pending), else from the store, else a new
    /// pending one (with the [`NewKey`] to store).
    async fn key_for_event(
        &self,
        authority: &str,
        person: &PersonKey,
    ) -> Result<([u8; KEY_BYTES], Option<NewKey>), PrivacyError> {
        let keys = self.shared.keys()?;
        let hex = person.to_hex();
        loop {
            let (generation, inserted, swept) = match self.shared.known(authority, person) {
                Known::Stored(key) => return Ok((key, None)),
                Known::Pending(key, new) => return Ok((key, Some(self.new_key(new, person, key)))),
                Known::Unknown {
                    generation,
                    inserted,
                    swept,
                } => (generation, inserted, swept),
            };
            if let Some(wrapped) = keys.data_key(authority, &hex).await? {
                let key = self.shared.unwrap(authority, person, &wrapped)?;
                self.shared.remember(generation, authority, person, key);
                return Ok((key, None));
            }
            let key = random::<KEY_BYTES>()?;
            let wrapped = self.shared.wrap(authority, person, &key)?;
            let made = {
                let mut cache = self.shared.cache.lock().expect("key cache lock");
                match cache.known(authority, person) {
                    // Another sealing got there while the store was read.
                    Known::Stored(key) => Some((key, None)),
                    Known::Pending(key, new) => Some((key, Some(new))),
                    // A key stored meanwhile and already gone from memory again (evicted from
                    // the cache, or a pending key swept after a commit that failed yet may
                    // have reached the disk): ask the store again.
                    Known::Unknown { .. }
                        if cache.evicted_upto > inserted || cache.swept != swept =>
                    {
                        None
                    }
                    Known::Unknown { .. } => {
                        let new =
                            Arc::new(NewDataKey::new(authority.to_owned(), hex.clone(), wrapped));
                        cache.add_pending(
                            (authority.to_owned(), *person),
                            PendingKey {
                                key,
                                new: new.clone(),
                            },
                        );
                        Some((key, Some(new)))
                    }
                }
            };
            if let Some((key, new)) = made {
                return Ok((key, new.map(|new| self.new_key(new, person, key))));
            }
        }
    }

    /// Decrypts a sealed value of the person; `None` once the person's key was destroyed (or
    /// when the value was sealed under an earlier, destroyed key).
    pub async fn open(
        &self,
        authority: &str,
        person: &PersonKey,
        sealed: &Sealed,
    ) -> Result<Option<Vec<u8>>, PrivacyError> {
        // A pending key opens too: the value of a command decided but not committed yet.
        let generation = match self.shared.known(authority, person) {
            Known::Stored(key) | Known::Pending(key, _) => {
                return Ok(open_with(&key, authority, person, sealed))
            }
            Known::Unknown { generation, .. } => generation,
        };
        let Some(wrapped) = self
            .shared
            .keys()?
            .data_key(authority, &person.to_hex())
            .await?
        else {
            return Ok(None);
        };
        let key = self.shared.unwrap(authority, person, &wrapped)?;
        self.shared.remember(generation, authority, person, key);
        Ok(open_with(&key, authority, person, sealed))
    }

    /// Whether the person has a data key now (asks the store).
    pub async fn has_key(&self, authority: &str, person: &PersonKey) -> Result<bool, PrivacyError> {
        Ok(self
            .shared
            .keys()?
            .data_key(authority, &person.to_hex())
            .await?
            .is_some())
    }

    /// Destroys the person's data key (crypto-shredding); `true` if there was one. Durable
    /// on return, and no cached copy is left (see [`KeyCache`] for concurrent sealings).
    /// The caller records the erasure in the log.
    pub async fn destroy(&self, authority: &str, person: &PersonKey) -> Result<bool, PrivacyError> {
        let keys = self.shared.keys()?;
        self.shared.forget(authority, person);
        let destroyed = keys.destroy_data_key(authority, &person.to_hex()).await;
        self.shared.forget(authority, person);
        Ok(destroyed?)
    }
}

/// The subkeys of a data key: one encrypts, one makes nonces.
fn subkeys(key: &[u8; KEY_BYTES]) -> ([u8; 32], [u8; 32]) {
    (hmac(key, &[b"encrypt"]), hmac(key, &[b"nonce"]))
}

fn seal_with(
    key: &[u8; KEY_BYTES],
    authority: &str,
    person: &PersonKey,
    plaintext: &[u8],
) -> Sealed {
    let (encrypt_key, nonce_key) = subkeys(key);
    let aad = context("ochered personal data", authority, person);
    let digest = hmac(
        &nonce_key,
        &[&(aad.len() as u64).to_le_bytes(), &aad, plaintext],
    );
    let nonce = XNonce::from_slice(&digest[..NONCE_BYTES]);
    let ciphertext = XChaCha20Poly1305::new((&encrypt_key).into())
        .encrypt(
            nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message this size");
    Sealed {
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    }
}

fn open_with(
    key: &[u8; KEY_BYTES],
    authority: &str,
    person: &PersonKey,
    sealed: &Sealed,
) -> Option<Vec<u8>> {
    let nonce = hex::decode(&sealed.nonce).ok()?;
    if nonce.len() != NONCE_BYTES {
        return None;
    }
    let ciphertext = hex::decode(&sealed.ciphertext).ok()?;
    let (encrypt_key, _) = subkeys(key);
    let aad = context("ochered personal data", authority, person);
    XChaCha20Poly1305::new((&encrypt_key).into())
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochered_core::domain::DocumentNumber;
    use ochered_store::testing::Harness;

    fn person(n: u32) -> PersonKey {
        PersonKey::derive(
            b"secret",
            &DocumentNumber::parse(&format!("IV-AB {n:06}")).unwrap(),
        )
    }

    const DATA: &[u8] = br#"{"child_name":"Anna Ivanova","phone":"+7 913 000-00-00"}"#;

    #[test]
    fn sealing_round_trips_and_binds_authority_and_person() {
        let key = [3u8; KEY_BYTES];
        let sealed = seal_with(&key, "city", &person(1), DATA);
        assert_eq!(sealed.nonce.len(), ochered_core::command::SEALED_NONCE_HEX);
        assert_eq!(sealed.ciphertext.len(), 2 * (DATA.len() + TAG_BYTES));
        assert_eq!(
            open_with(&key, "city", &person(1), &sealed).as_deref(),
            Some(DATA)
        );
        // Not readable as another person's, another authority's, or under another key.
        assert_eq!(open_with(&key, "city", &person(2), &sealed), None);
        assert_eq!(open_with(&key, "town", &person(1), &sealed), None);
        assert_eq!(
            open_with(&[4u8; KEY_BYTES], "city", &person(1), &sealed),
            None
        );
        // The plaintext does not show through.
        let text = format!("{sealed:?}");
        assert!(!text.contains("Anna") && !text.contains(&hex::encode("Anna")));
    }

    #[test]
    fn nonces_are_synthetic_same_data_same_bytes_other_data_other_nonce() {
        let key = [5u8; KEY_BYTES];
        let a = seal_with(&key, "city", &person(1), DATA);
        assert_eq!(a, seal_with(&key, "city", &person(1), DATA));
        let b = seal_with(&key, "city", &person(1), b"other data");
        assert_ne!(a.nonce, b.nonce);
        let c = seal_with(&[6u8; KEY_BYTES], "city", &person(1), DATA);
        assert_ne!(a.nonce, c.nonce);
    }

    #[test]
    fn tampered_values_do_not_open() {
        let key = [7u8; KEY_BYTES];
        let mut sealed = seal_with(&key, "city", &person(1), DATA);
        let flipped = if sealed.ciphertext.starts_with('0') {
            "1"
        } else {
            "0"
        };
        sealed.ciphertext.replace_range(0..1, flipped);
        assert_eq!(open_with(&key, "city", &person(1), &sealed), None);
        sealed.nonce = "zz".into();
        assert_eq!(open_with(&key, "city", &person(1), &sealed), None);
    }

    #[test]
    fn master_keys_parse_strictly() {
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::from_hex(&format!(" {}\n", "ab".repeat(32))).is_ok());
        assert!(MasterKey::from_hex(&"ab".repeat(31)).is_err());
        assert!(MasterKey::from_hex("not hex at all").is_err());
        assert_eq!(
            format!("{:?}", MasterKey::from_bytes([1; 32])),
            "MasterKey(***)"
        );
    }

    #[tokio::test]
    async fn keys_are_random_per_person_wrapped_and_shredded() {
        let harness = Harness::sqlite().await;
        let privacy = Privacy::new(harness.store.clone(), MasterKey::from_bytes([9; 32]));
        let sealed = privacy.seal("city", &person(1), DATA).await.unwrap();
        // The same data again: the same key, so the same bytes (idempotent retries).
        assert_eq!(
            privacy.seal("city", &person(1), DATA).await.unwrap(),
            sealed
        );
        // Another person: another random key, so other bytes for the same data.
        let other = privacy.seal("city", &person(2), DATA).await.unwrap();
        assert_ne!(other.ciphertext, sealed.ciphertext);
        assert_eq!(
            privacy
                .open("city", &person(1), &sealed)
                .await
                .unwrap()
                .as_deref(),
            Some(DATA)
        );
        // Stored wrapped: the raw key table holds no unwrapped key that opens the data.
        let wrapped = harness
            .store
            .data_keys()
            .unwrap()
            .data_key("city", &person(1).to_hex())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(wrapped.len(), WRAPPED_BYTES);
        for window in wrapped.windows(KEY_BYTES) {
            let key: [u8; KEY_BYTES] = window.try_into().unwrap();
            assert_eq!(open_with(&key, "city", &person(1), &sealed), None);
        }
        // Another master key cannot unwrap it: an error, never a fresh key.
        let wrong = Privacy::new(harness.store.clone(), MasterKey::from_bytes([8; 32]));
        assert_eq!(
            wrong.open("city", &person(1), &sealed).await,
            Err(PrivacyError::Unwrap)
        );
        assert_eq!(
            wrong.seal("city", &person(1), DATA).await,
            Err(PrivacyError::Unwrap)
        );
        // Shredding: gone for good, the other person's data untouched, idempotent.
        assert!(privacy.destroy("city", &person(1)).await.unwrap());
        assert!(!privacy.has_key("city", &person(1)).await.unwrap());
        assert_eq!(
            privacy.open("city", &person(1), &sealed).await.unwrap(),
            None
        );
        assert!(!privacy.destroy("city", &person(1)).await.unwrap());
        assert_eq!(
            privacy
                .open("city", &person(2), &other)
                .await
                .unwrap()
                .as_deref(),
            Some(DATA)
        );
        // A later sealing for the same person uses a new key: the old value stays unreadable.
        let again = privacy.seal("city", &person(1), DATA).await.unwrap();
        assert_ne!(again, sealed);
        assert_eq!(
            privacy.open("city", &person(1), &sealed).await.unwrap(),
            None
        );
    }

    /// Many sealings at once, for distinct people and for one person: every value opens
    /// (from the cache and from the store), one person has one key, and once the key is
    /// destroyed nothing opens that person's values any more.
    async fn concurrent_sealings(store: Arc<dyn EventStore>) {
        let master = MasterKey::from_bytes([9; 32]);
        let privacy = Arc::new(Privacy::new(store.clone(), master.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..600u32 {
            let privacy = privacy.clone();
            // A third of them for person 0, the rest for people of their own.
            let n = if i % 3 == 0 { 0 } else { i };
            tasks.spawn(async move {
                let data = format!("{{\"child_name\":\"Child {i}\"}}").into_bytes();
                let sealed = privacy.seal("city", &person(n), &data).await.unwrap();
                (n, data, sealed)
            });
        }
        let sealed = tasks.join_all().await;
        // A Privacy with an empty cache reads every key from the store.
        let fresh = Privacy::new(store.clone(), master.clone());
        for (n, data, value) in &sealed {
            for p in [
                &privacy,
                &Arc::new(Privacy::new(store.clone(), master.clone())),
            ] {
                assert_eq!(
                    p.open("city", &person(*n), value).await.unwrap().as_deref(),
                    Some(&data[..]),
                    "person {n}"
                );
            }
        }
        // Person 0: one key, so the same data seals to the same bytes from both.
        let again = fresh.seal("city", &person(0), DATA).await.unwrap();
        assert_eq!(privacy.seal("city", &person(0), DATA).await.unwrap(), again);
        let cached = privacy.shared.cached("city", &person(0)).is_some();
        assert_eq!(cached, store.data_keys().unwrap().single_process());

        assert!(privacy.destroy("city", &person(0)).await.unwrap());
        assert_eq!(privacy.shared.cached("city", &person(0)), None);
        for (n, data, value) in &sealed {
            let opened = privacy.open("city", &person(*n), value).await.unwrap();
            if *n == 0 {
                assert_eq!(opened, None, "a destroyed key opens nothing");
            } else {
                assert_eq!(opened.as_deref(), Some(&data[..]));
            }
        }
        assert_eq!(
            privacy.open("city", &person(0), &again).await.unwrap(),
            None
        );
        // A new sealing gets a new key; the old values stay unreadable.
        let new = privacy.seal("city", &person(0), DATA).await.unwrap();
        assert_ne!(new, again);
        assert_eq!(
            privacy.open("city", &person(0), &again).await.unwrap(),
            None
        );
        assert_eq!(
            privacy
                .open("city", &person(0), &new)
                .await
                .unwrap()
                .as_deref(),
            Some(DATA)
        );
        // A wrong master key is an error through the batcher too, never a fresh key.
        let wrong = Privacy::new(store.clone(), MasterKey::from_bytes([8; 32]));
        let mut tasks = tokio::task::JoinSet::new();
        let wrong = Arc::new(wrong);
        for n in [1u32, 2, 4, 5] {
            let wrong = wrong.clone();
            tasks.spawn(async move { wrong.seal("city", &person(n), DATA).await });
        }
        for result in tasks.join_all().await {
            assert_eq!(result, Err(PrivacyError::Unwrap));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sealings_share_keys_and_destroy_empties_the_cache_sqlite() {
        let harness = Harness::sqlite().await;
        concurrent_sealings(harness.store.clone()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sealings_share_keys_and_destroy_empties_the_cache_postgres() {
        let Some(harness) = Harness::postgres().await else {
            return;
        };
        concurrent_sealings(harness.store.clone()).await;
    }
}
