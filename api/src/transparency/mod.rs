//! The server's side of docs/TRANSPARENCY.md: one RFC 6962 tree per authority over its event
//! hashes, fed by every committed batch; signed tree heads, every few seconds when a tree
//! grew, kept in the log's side table (`tree_heads`); receipts for acknowledged submissions;
//! inclusion and consistency proofs against the signed heads.
//!
//! - **Feeding the tree.** [`Transparency::hook`] is the writers' commit hook
//!   ([`ochered_writer::CommitHook`]): it is told each batch's chain hashes on the commit's
//!   task, before the batch's commands are acknowledged, so a submission's answer can carry a
//!   receipt naming its event's hash, and the tree holds that event. A batch that does not
//!   continue the tree (the first after a start, or after a commit that reported a failure
//!   although it reached the disk) is not pushed: the tree is marked behind and the signer's
//!   task reads the missing events' hashes from the store before it signs. At start every
//!   authority's tree is rebuilt that way, from the log.
//! - **Heads.** Every `interval`, for each authority whose tree grew since its newest head,
//!   the signer checks that the tree still has the newest head's root at the newest head's
//!   size (otherwise the log was changed under a published head: it refuses to sign and says
//!   so in the log), signs `(authority, size, root, time)`, adds the consistency proof from
//!   the previous head, and stores it before anyone can see it. The store keeps one head per
//!   size ([`ochered_store::TreeHeadStore`]), so after a restart or a kill the history goes on
//!   from the newest stored head: no gap, and never a second head of one size.
//! - **Memory.** The tree takes 64 bytes per event; the event hashes of the newest
//!   [`RECENT_HASHES`] events per authority are kept for receipts and proofs, older ones are
//!   read from the store.
//!
//! This module imports no other module of the crate: the services publish what it holds.

mod batch;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ochered_store::{EventStore, Hash, StoreError};
use ochered_transparency::{
    hash_hex, leaf_hash, InclusionProofFile, LogTree, PublishedHead, Receipt, ReceiptFields,
    SigningKey,
};

/// Event hashes kept in memory per authority for receipts and proofs (2 MiB each).
pub const RECENT_HASHES: usize = 1 << 16;

/// Events read from the store per page while a tree catches up.
const CATCH_UP_PAGE: i64 = 10_000;

/// One authority's tree and what goes with it.
struct AuthorityLog {
    inner: Mutex<TreeState>,
    /// The newest head stored for the authority, as published.
    newest: RwLock<Option<PublishedHead>>,
    /// Why no head is signed for this authority any more, if so.
    refused: RwLock<Option<String>>,
}

struct TreeState {
    tree: LogTree,
    /// Event hashes of the events `recent_first .. recent_first + recent.len()`.
    recent: VecDeque<Hash>,
    recent_first: u64,
    /// A batch was dropped (it did not continue the tree): the store must be read.
    behind: bool,
    /// While the tree is behind: the hashes of the batches committed beyond it, events
    /// `ahead_first ..`, so that their receipts name their hashes from memory instead of
    /// reading each event back from the store (at a start, every acknowledgement until the
    /// tree caught up did; on PostgreSQL that was a round trip per submission and made the
    /// first seconds of a wave slow). At most [`RECENT_HASHES`]; they leave as the tree
    /// reaches them.
    ahead: VecDeque<Hash>,
    ahead_first: u64,
}

impl TreeState {
    fn push(&mut self, seq: u64, hash: &Hash) {
        debug_assert_eq!(seq, self.tree.len() + 1);
        self.tree.push(hash);
        if self.recent.is_empty() {
            self.recent_first = seq;
        }
        self.recent.push_back(*hash);
        if self.recent.len() > RECENT_HASHES {
            self.recent.pop_front();
            self.recent_first += 1;
        }
    }

    fn recent_hash(&self, seq: u64) -> Option<Hash> {
        let recent = seq
            .checked_sub(self.recent_first)
            .and_then(|index| self.recent.get(index as usize));
        let ahead = || {
            seq.checked_sub(self.ahead_first)
                .and_then(|index| self.ahead.get(index as usize))
        };
        recent.or_else(ahead).copied()
    }

    /// Keeps the hashes of a batch that does not continue the tree (see `ahead`).
    fn keep_ahead(&mut self, first_seq: u64, hashes: &[Hash]) {
        if self.ahead.is_empty() || first_seq != self.ahead_first + self.ahead.len() as u64 {
            // Not contiguous with what is kept: start again from this batch.
            self.ahead.clear();
            self.ahead_first = first_seq;
        }
        self.ahead.extend(hashes.iter().copied());
        while self.ahead.len() > RECENT_HASHES {
            self.ahead.pop_front();
            self.ahead_first += 1;
        }
        self.trim_ahead();
    }

    /// Drops the kept hashes the tree holds now.
    fn trim_ahead(&mut self) {
        let len = self.tree.len();
        while !self.ahead.is_empty() && self.ahead_first <= len {
            self.ahead.pop_front();
            self.ahead_first += 1;
        }
    }
}

impl AuthorityLog {
    fn new(behind: bool) -> Self {
        AuthorityLog {
            inner: Mutex::new(TreeState {
                tree: LogTree::new(),
                recent: VecDeque::new(),
                recent_first: 1,
                behind,
                ahead: VecDeque::new(),
                ahead_first: 1,
            }),
            newest: RwLock::new(None),
            refused: RwLock::new(None),
        }
    }
}

/// Why an inclusion proof cannot be given now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No signed head covers the event yet: ask again after the next head.
    #[error("no signed tree head covers event {authority_seq} yet (the newest covers {covered} events); the server signs a head every {interval_s} s when the log grew: retry then")]
    NotYetCovered {
        authority_seq: u64,
        covered: u64,
        interval_s: u64,
    },
    /// The event does not exist.
    #[error("the authority's log has no event {0}")]
    NoSuchEvent(u64),
    /// The tree is being rebuilt from the log (after a start).
    #[error("the authority's tree is being rebuilt from the log; retry shortly")]
    Rebuilding,
    #[error("{0}")]
    Store(String),
}

impl From<StoreError> for ProofError {
    fn from(e: StoreError) -> Self {
        ProofError::Store(e.to_string())
    }
}

/// The trees, heads and key of the server.
pub struct Transparency {
    key: SigningKey,
    /// Signs the receipts of the submissions answered at one moment together.
    receipts: batch::BatchSigner,
    store: Arc<dyn EventStore>,
    interval: Duration,
    logs: RwLock<HashMap<String, Arc<AuthorityLog>>>,
    /// Wakes the signer's task to catch a tree up at once.
    wake: tokio::sync::Notify,
}

impl Transparency {
    /// Trees for the authorities of `store`, signed with `key` every `interval` when they grew.
    /// Call [`Transparency::run`] to rebuild the trees from the log and sign heads.
    pub fn new(store: Arc<dyn EventStore>, key: SigningKey, interval: Duration) -> Arc<Self> {
        Arc::new(Transparency {
            receipts: batch::BatchSigner::new(key.clone()),
            key,
            store,
            interval: interval.max(Duration::from_millis(10)),
            logs: RwLock::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The public key, as its file's text (64 hex characters and a newline).
    pub fn public_key_text(&self) -> String {
        ochered_transparency::public_key_text(&self.key.verifying_key())
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The writers' commit hook ([`ochered_writer::CommitHook`]) that feeds the trees.
    pub fn hook(self: &Arc<Self>) -> ochered_writer::CommitHook {
        let this = Arc::downgrade(self);
        Arc::new(move |authority: &str, first_seq: i64, hashes: &[Hash]| {
            if let Some(this) = this.upgrade() {
                this.committed(authority, first_seq as u64, hashes);
            }
        })
    }

    fn log(&self, authority: &str) -> Option<Arc<AuthorityLog>> {
        self.logs.read().unwrap().get(authority).cloned()
    }

    /// The authority's log, created behind (to be read from the store) unless `fresh`.
    fn log_or_insert(&self, authority: &str, fresh: bool) -> Arc<AuthorityLog> {
        if let Some(log) = self.log(authority) {
            return log;
        }
        self.logs
            .write()
            .unwrap()
            .entry(authority.to_owned())
            .or_insert_with(|| Arc::new(AuthorityLog::new(!fresh)))
            .clone()
    }

    /// A committed batch: its events continue the tree, or the tree is behind.
    fn committed(&self, authority: &str, first_seq: u64, hashes: &[Hash]) {
        let log = self.log_or_insert(authority, first_seq == 1);
        let mut state = log.inner.lock().unwrap();
        let len = state.tree.len();
        if first_seq > len + 1 {
            state.behind = true;
            state.keep_ahead(first_seq, hashes);
            drop(state);
            self.wake.notify_one();
            return;
        }
        // Events the tree has already (read from the store meanwhile) are skipped.
        for (i, hash) in hashes.iter().enumerate() {
            let seq = first_seq + i as u64;
            if seq == state.tree.len() + 1 {
                state.push(seq, hash);
            }
        }
    }

    /// The number of events in the authority's tree now.
    pub fn tree_size(&self, authority: &str) -> u64 {
        self.log(authority)
            .map_or(0, |log| log.inner.lock().unwrap().tree.len())
    }

    /// Reads from the store every event the authority's tree lacks. Returns the tree's size.
    pub async fn catch_up(&self, authority: &str) -> Result<u64, StoreError> {
        let log = self.log_or_insert(authority, false);
        log.inner.lock().unwrap().behind = false;
        loop {
            let from = log.inner.lock().unwrap().tree.len();
            let page = self
                .store
                .read(authority, from as i64, CATCH_UP_PAGE)
                .await
                .inspect_err(|_| log.inner.lock().unwrap().behind = true)?;
            let mut state = log.inner.lock().unwrap();
            for event in &page {
                let seq = event.authority_seq as u64;
                if seq == state.tree.len() + 1 {
                    state.push(seq, &event.hash);
                }
            }
            state.trim_ahead();
            if (page.len() as i64) < CATCH_UP_PAGE {
                return Ok(state.tree.len());
            }
        }
    }

    /// The hash of the authority's event `seq`: from memory, else from the store.
    async fn event_hash(&self, authority: &str, seq: u64) -> Result<Option<Hash>, StoreError> {
        if let Some(log) = self.log(authority) {
            if let Some(hash) = log.inner.lock().unwrap().recent_hash(seq) {
                return Ok(Some(hash));
            }
        }
        let Some(read_from) = seq.checked_sub(1).filter(|r| *r < i64::MAX as u64) else {
            return Ok(None);
        };
        let page = self.store.read(authority, read_from as i64, 1).await?;
        Ok(page
            .first()
            .filter(|e| e.authority_seq as u64 == seq)
            .map(|e| e.hash))
    }

    /// The signed receipt of the event `seq` of `authority` that registered application (or
    /// booking) `number` of `service` at `registered_at`, shown in `time_zone`. `None` when
    /// the event's hash cannot be had (the store is away), or the signing task stopped.
    pub async fn receipt(
        &self,
        authority: &str,
        service: &str,
        number: u64,
        registered_at: DateTime<Utc>,
        time_zone: chrono_tz::Tz,
        seq: u64,
    ) -> Option<Receipt> {
        let hash = match self.event_hash(authority, seq).await {
            Ok(Some(hash)) => hash,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(authority, seq, error = %e, "no receipt: the event's hash could not be read");
                return None;
            }
        };
        self.receipts
            .sign(ReceiptFields {
                authority: authority.to_owned(),
                service: service.to_owned(),
                number,
                registered_at: registered_at
                    .with_timezone(&time_zone)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
                time_zone: time_zone.name().to_owned(),
                authority_seq: seq,
                event_hash: hash,
            })
            .await
    }

    /// The newest signed head of the authority, with its consistency proof from
    /// `from_size` when given (else from the previous head, as stored).
    pub fn newest_head(
        &self,
        authority: &str,
        from_size: Option<u64>,
    ) -> Result<Option<PublishedHead>, ProofError> {
        let Some(log) = self.log(authority) else {
            return Ok(None);
        };
        let Some(mut head) = log.newest.read().unwrap().clone() else {
            return Ok(None);
        };
        if let Some(from) = from_size {
            let size = head.tree_head.tree_size;
            let state = log.inner.lock().unwrap();
            if state.tree.len() < size {
                return Err(ProofError::Rebuilding);
            }
            let path = state
                .tree
                .consistency_path(from, size)
                .ok_or(ProofError::NoSuchEvent(from))?;
            head.consistency = Some(ochered_transparency::ConsistencyJson {
                from_size: from,
                path: path.iter().map(hash_hex).collect(),
            });
        }
        Ok(Some(head))
    }

    /// The stored heads of the authority after `after_size`, smallest first, as published.
    pub async fn heads(
        &self,
        authority: &str,
        after_size: u64,
        limit: u64,
    ) -> Result<Vec<PublishedHead>, StoreError> {
        let Some(table) = self.store.tree_heads() else {
            return Ok(Vec::new());
        };
        table
            .tree_heads(authority, after_size as i64, limit as i64)
            .await?
            .into_iter()
            .map(|h| {
                serde_json::from_str(&h.head)
                    .map_err(|e| StoreError::Corrupt(format!("stored tree head: {e}")))
            })
            .collect()
    }

    /// The inclusion proof of the authority's event `seq` against its newest signed head.
    pub async fn proof(&self, authority: &str, seq: u64) -> Result<InclusionProofFile, ProofError> {
        // Positions are signed 64-bit integers in the log.
        if seq == 0 || seq > i64::MAX as u64 {
            return Err(ProofError::NoSuchEvent(seq));
        }
        let newest = self.newest_head(authority, None)?.map(|h| h.tree_head);
        let covered = newest.as_ref().map_or(0, |h| h.tree_size);
        let Some(head) = newest.filter(|h| h.tree_size >= seq) else {
            let exists = seq <= self.tree_size(authority)
                || !self
                    .store
                    .read(authority, seq as i64 - 1, 1)
                    .await?
                    .is_empty();
            return Err(if exists {
                ProofError::NotYetCovered {
                    authority_seq: seq,
                    covered,
                    interval_s: self.interval.as_secs().max(1),
                }
            } else {
                ProofError::NoSuchEvent(seq)
            });
        };
        let hash = self
            .event_hash(authority, seq)
            .await?
            .ok_or(ProofError::NoSuchEvent(seq))?;
        let log = self.log(authority).ok_or(ProofError::Rebuilding)?;
        let state = log.inner.lock().unwrap();
        if state.tree.len() < head.tree_size {
            return Err(ProofError::Rebuilding);
        }
        if state.tree.leaf(seq - 1) != Some(leaf_hash(&hash)) {
            return Err(ProofError::Store(format!(
                "event {seq} in the store does not match the tree: the log changed since it was read"
            )));
        }
        InclusionProofFile::build(&state.tree, &head, seq, &hash).ok_or(ProofError::Rebuilding)
    }

    /// Why heads are no longer signed for the authority, if so.
    pub fn refused(&self, authority: &str) -> Option<String> {
        self.log(authority)
            .and_then(|log| log.refused.read().unwrap().clone())
    }

    /// Rebuilds every authority's tree from the log, then signs heads every `interval` for
    /// the trees that grew. Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        match self.store.authorities().await {
            Ok(authorities) => {
                for authority in authorities {
                    self.log_or_insert(&authority, false);
                }
            }
            Err(e) => tracing::warn!(error = %e, "transparency: could not list the authorities"),
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.catch_up_all().await;
            tokio::select! {
                _ = tick.tick() => {
                    // Every tree reads what the log holds beyond it (one indexed read each):
                    // events no hook told of (another node's, in a cluster) are not missed.
                    let all: Vec<String> = self.logs.read().unwrap().keys().cloned().collect();
                    for authority in all {
                        if let Err(e) = self.catch_up(&authority).await {
                            tracing::warn!(%authority, error = %e, "transparency: reading the log failed");
                        }
                    }
                    self.sign_all(Utc::now()).await;
                }
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn catch_up_all(&self) {
        let behind: Vec<String> = self
            .logs
            .read()
            .unwrap()
            .iter()
            .filter(|(_, log)| log.inner.lock().unwrap().behind)
            .map(|(a, _)| a.clone())
            .collect();
        for authority in behind {
            match self.catch_up(&authority).await {
                Ok(size) => tracing::debug!(%authority, size, "transparency: tree caught up"),
                Err(e) => {
                    tracing::warn!(%authority, error = %e, "transparency: reading the log failed")
                }
            }
        }
    }

    /// Signs and stores a head for every authority whose tree grew since its newest head.
    pub async fn sign_all(&self, now: DateTime<Utc>) {
        let authorities: Vec<String> = self.logs.read().unwrap().keys().cloned().collect();
        for authority in authorities {
            if let Err(e) = self.sign(&authority, now).await {
                tracing::warn!(%authority, error = %e, "transparency: no head signed");
            }
        }
    }

    /// Signs and stores the authority's next head if its tree grew. Returns the newest head.
    pub async fn sign(
        &self,
        authority: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PublishedHead>, StoreError> {
        let Some(log) = self.log(authority) else {
            return Ok(None);
        };
        let Some(table) = self.store.tree_heads() else {
            return Ok(None);
        };
        // The newest head as stored (another node of a cluster may have signed one since).
        if let Some(stored) = table.newest_tree_head(authority).await? {
            let known = log
                .newest
                .read()
                .unwrap()
                .as_ref()
                .map(|h| h.tree_head.tree_size);
            if known != Some(stored.tree_size as u64) {
                let head: PublishedHead = serde_json::from_str(&stored.head)
                    .map_err(|e| StoreError::Corrupt(format!("stored tree head: {e}")))?;
                *log.newest.write().unwrap() = Some(head);
            }
        }
        if log.refused.read().unwrap().is_some() {
            return Ok(log.newest.read().unwrap().clone());
        }
        let previous = log.newest.read().unwrap().clone();
        let candidate = {
            let state = log.inner.lock().unwrap();
            if state.behind {
                return Ok(previous);
            }
            let size = state.tree.len();
            let previous_size = previous.as_ref().map_or(0, |h| h.tree_head.tree_size);
            if size < previous_size {
                // The tree has read everything the log holds (the signer's task catches it up
                // before it signs), so the log lost events under a published head.
                let why = format!(
                    "the log holds {size} events, fewer than the {previous_size} that the newest published head signs: events were removed; no further head is signed until an operator restores the log"
                );
                tracing::error!(authority, %why, "transparency: refusing to sign");
                *log.refused.write().unwrap() = Some(why);
                return Ok(previous);
            }
            if let Some(previous) = &previous {
                let at = previous.tree_head.tree_size;
                let root = state.tree.root_at(at).map(|r| hash_hex(&r));
                if root.as_deref() != Some(previous.tree_head.root_hash.as_str()) {
                    let why = format!(
                        "the log's first {at} events no longer have the root {} that the published head of that size signs: the log was changed under a published head; no further head is signed until an operator restores the log",
                        previous.tree_head.root_hash
                    );
                    tracing::error!(authority, %why, "transparency: refusing to sign");
                    *log.refused.write().unwrap() = Some(why);
                    return Ok(Some(previous.clone()));
                }
            }
            if size == previous_size {
                return Ok(previous);
            }
            PublishedHead::of_tree(
                &self.key,
                authority,
                &state.tree,
                size,
                previous.as_ref().map(|h| h.tree_head.tree_size),
                now,
            )
            .expect("sizes within the tree")
        };
        let root = candidate.tree_head.root().expect("own root is hex");
        let text = serde_json::to_string(&candidate).expect("a head serializes");
        let stored = table
            .insert_tree_head(
                authority,
                candidate.tree_head.tree_size as i64,
                &root,
                &text,
            )
            .await?;
        let head: PublishedHead = serde_json::from_str(&stored.head)
            .map_err(|e| StoreError::Corrupt(format!("stored tree head: {e}")))?;
        if stored.root_hash != root {
            let why = format!(
                "a head of size {} with another root ({}) is stored already: the log was changed under it",
                stored.tree_size,
                hex::encode(stored.root_hash)
            );
            tracing::error!(authority, %why, "transparency: refusing to sign");
            *log.refused.write().unwrap() = Some(why);
        }
        *log.newest.write().unwrap() = Some(head.clone());
        Ok(Some(head))
    }
}

/// What a receipt states about a submission, found in its events or in the state.
struct Registered {
    service: &'static str,
    number: u64,
    at: DateTime<Utc>,
    seq: u64,
}

impl Transparency {
    /// The receipt of an accepted submission of any service (a kindergarten or first-grade
    /// application, a clinic booking): `None` for other commands, rejections, and when the
    /// event's hash cannot be had.
    pub async fn receipt_for(
        &self,
        w: &ochered_writer::Writer,
        reply: &ochered_writer::Reply,
    ) -> Option<Receipt> {
        use ochered_core::Event;
        let ochered_writer::Outcome::Accepted { events } = &reply.outcome else {
            return None;
        };
        let registered = events.iter().find_map(|e| {
            let seq = e.authority_seq as u64;
            match &e.event {
                Event::KindergartenApplicationSubmitted {
                    number,
                    registered_at,
                    ..
                } => Some(Registered {
                    service: "kindergarten",
                    number: number.0 as u64,
                    at: *registered_at,
                    seq,
                }),
                Event::SchoolApplicationSubmitted {
                    number,
                    registered_at,
                    ..
                } => Some(Registered {
                    service: "school",
                    number: number.0 as u64,
                    at: *registered_at,
                    seq,
                }),
                Event::SlotBooked { booking, at, .. } => Some(Registered {
                    service: "clinic",
                    number: booking.0 as u64,
                    at: *at,
                    seq,
                }),
                _ => None,
            }
        })?;
        self.signed_receipt(w, registered).await
    }

    /// The receipt of application `number` (kindergarten or first grade): the statement the
    /// submission's receipt made (its fields come from the log), signed in the batch of this
    /// moment. `None` if there is no such application.
    pub async fn application_receipt(
        &self,
        w: &ochered_writer::Writer,
        number: u32,
    ) -> Option<Receipt> {
        use ochered_core::domain::ApplicationNumber;
        use ochered_core::state::ServiceKind;
        let registered = w.read(|s| {
            let app = s.application(ApplicationNumber(number))?;
            let seq = s.histories().submitted_seq(ApplicationNumber(number))?;
            Some(Registered {
                service: match app.service {
                    ServiceKind::Kindergarten => "kindergarten",
                    ServiceKind::School => "school",
                },
                number: number as u64,
                at: app.registered_at,
                seq,
            })
        })?;
        self.signed_receipt(w, registered).await
    }

    /// The chain position of application `number`'s submission.
    pub fn application_seq(&self, w: &ochered_writer::Writer, number: u32) -> Option<u64> {
        use ochered_core::domain::ApplicationNumber;
        w.read(|s| {
            s.application(ApplicationNumber(number))?;
            s.histories().submitted_seq(ApplicationNumber(number))
        })
        .filter(|seq| *seq > 0)
    }

    async fn signed_receipt(&self, w: &ochered_writer::Writer, r: Registered) -> Option<Receipt> {
        let time_zone = w.read(|s| s.config().map(|c| c.time_zone))?;
        self.receipt(w.authority(), r.service, r.number, r.at, time_zone, r.seq)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash {
        [n; 32]
    }

    /// Behind (a start: the tree is read from the store), the hashes of batches committed
    /// beyond the tree still answer receipts from memory, until the tree holds them.
    #[test]
    fn hashes_committed_beyond_a_tree_that_is_behind_are_kept_for_receipts() {
        let log = AuthorityLog::new(true);
        let mut state = log.inner.lock().unwrap();
        state.keep_ahead(5, &[h(5), h(6)]);
        state.keep_ahead(7, &[h(7)]);
        assert_eq!(state.recent_hash(4), None);
        assert_eq!(state.recent_hash(5), Some(h(5)));
        assert_eq!(state.recent_hash(7), Some(h(7)));
        assert_eq!(state.recent_hash(8), None);
        // The tree catches up to 5 (from the store): what it holds leaves `ahead`.
        for seq in 1..=5u8 {
            state.push(u64::from(seq), &h(seq));
        }
        state.trim_ahead();
        assert_eq!(state.ahead_first, 6);
        assert_eq!(state.ahead.len(), 2);
        assert_eq!(state.recent_hash(5), Some(h(5)));
        assert_eq!(state.recent_hash(6), Some(h(6)));
        // A batch that does not follow what is kept starts the kept range again.
        state.keep_ahead(10, &[h(10)]);
        assert_eq!(state.recent_hash(6), None);
        assert_eq!(state.recent_hash(10), Some(h(10)));
    }
}
