//! Start-up: rebuild an authority's state from its newest snapshot and the events after it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ochered_core::state::{
    read_applications, Application, Decoder, Encoder, ItemCodec, SnapshotSink, SnapshotSource,
    SnapshotTail, APPLICATION_BATCH,
};
use ochered_core::{Event, State, SCHEMA_VERSION};
use ochered_store::{ChainHead, EventStore, PayloadFormat, StoredEvent};
use sha2::{Digest, Sha256};

use crate::key_index::KeyIndexBytes;
use crate::{KeyIndex, WriterError};

/// Events read from the store per page during replay.
pub const REPLAY_PAGE_EVENTS: i64 = 20_000;

#[derive(Debug, Clone)]
pub struct ReplayStats {
    /// Events folded (after the snapshot, if one was used).
    pub events: u64,
    /// The `authority_seq` of the snapshot replay started from, if any.
    pub from_snapshot: Option<i64>,
    pub head: ChainHead,
    pub last_recorded_at: DateTime<Utc>,
    /// Where the log records each idempotency key. [`crate::Writer::start`] moves it into
    /// the writer: the stats it returns hold an empty index.
    pub idempotency_keys: KeyIndex,
    /// Of `elapsed`, the time spent reading the snapshot (zero without one).
    pub snapshot_elapsed: Duration,
    pub elapsed: Duration,
}

/// The first bytes of a snapshot header of this layout. Snapshots without them (older
/// layouts: `ochsnap3`, the state as one JSON document in one value, and `ochsnap2`, which
/// kept only a set of key prefixes) are not used: the whole log is replayed instead, and the
/// next snapshot is of this layout.
const SNAPSHOT_MAGIC: &[u8; 8] = b"ochsnap4";

/// Most bytes in one stored piece of a snapshot (SQLite refuses values over 1 GB; pieces
/// also keep each of the store's transactions short).
pub const SNAPSHOT_CHUNK_BYTES: usize = 16 << 20;

/// A snapshot's header: [`SNAPSHOT_MAGIC`], the number of pieces and the stream's length
/// (8 bytes little-endian each), and the stream's SHA-256 (32 bytes).
const HEADER_BYTES: usize = 8 + 8 + 8 + 32;

/// The snapshot's items in the store's deterministic CBOR (RFC 8949 §4.2.1, `cbor.rs`).
pub(crate) struct CborItems;

impl ItemCodec for CborItems {
    fn encode<T: serde::Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) {
        ochered_store::cbor::to_writer(out, value).expect("the state has no floating-point number");
    }
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        ochered_store::cbor::from_slice(bytes).map_err(|e| format!("snapshot: {e}"))
    }
}

/// A snapshot cut into pieces, with its header, ready to be stored.
///
/// The stream ([`State::write_snapshot`]'s state section, then the key index:
/// [`KeyIndex::encode`]) is cut every [`SNAPSHOT_CHUNK_BYTES`]; the header is stored last,
/// so that a snapshot whose pieces are not all stored is never read.
pub struct EncodedSnapshot {
    pub chunks: Vec<Vec<u8>>,
    pub header: Vec<u8>,
    /// The stream's length in bytes.
    pub len: u64,
}

/// Cuts the stream into pieces as it is written, hashing it.
struct ChunkSink {
    chunks: Vec<Vec<u8>>,
    current: Vec<u8>,
    chunk_bytes: usize,
    hasher: Sha256,
    len: u64,
}

impl SnapshotSink for ChunkSink {
    fn put(&mut self, mut bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = self.chunk_bytes - self.current.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.current.extend_from_slice(now);
            if self.current.len() == self.chunk_bytes {
                let full =
                    std::mem::replace(&mut self.current, Vec::with_capacity(self.chunk_bytes));
                self.chunks.push(full);
            }
            bytes = later;
        }
    }
}

/// Encodes a snapshot of the state and the key index in pieces of at most `chunk_bytes`.
pub fn encode_snapshot(state: &State, keys: &KeyIndex, chunk_bytes: usize) -> EncodedSnapshot {
    let mut sink = ChunkSink {
        chunks: Vec::new(),
        current: Vec::new(),
        chunk_bytes: chunk_bytes.max(1),
        hasher: Sha256::new(),
        len: 0,
    };
    state.write_snapshot(&mut Encoder::new(&mut sink, &CborItems));
    keys.encode(&mut sink);
    if !sink.current.is_empty() {
        sink.chunks.push(std::mem::take(&mut sink.current));
    }
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(SNAPSHOT_MAGIC);
    header.extend_from_slice(&(sink.chunks.len() as u64).to_le_bytes());
    header.extend_from_slice(&sink.len.to_le_bytes());
    header.extend_from_slice(&sink.hasher.finalize());
    EncodedSnapshot {
        chunks: sink.chunks,
        header,
        len: sink.len,
    }
}

/// Stores a snapshot: every piece, each in its own short transaction, then its header.
pub async fn store_snapshot(
    store: &dyn EventStore,
    authority: &str,
    authority_seq: i64,
    snapshot: EncodedSnapshot,
) -> Result<(), ochered_store::StoreError> {
    for (i, chunk) in snapshot.chunks.into_iter().enumerate() {
        store
            .save_snapshot_chunk(authority, authority_seq, i as i64, &chunk)
            .await?;
    }
    store
        .save_snapshot(authority, authority_seq, &snapshot.header)
        .await
}

/// What a snapshot's header says.
struct Header {
    chunks: u64,
    len: u64,
    sha256: [u8; 32],
}

fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    let rest = bytes
        .strip_prefix(SNAPSHOT_MAGIC)
        .ok_or("a snapshot of an older layout")?;
    if rest.len() != HEADER_BYTES - 8 {
        return Err("a snapshot header of the wrong length".into());
    }
    let u64_at = |i: usize| u64::from_le_bytes(rest[i..i + 8].try_into().expect("8 bytes"));
    Ok(Header {
        chunks: u64_at(0),
        len: u64_at(8),
        sha256: rest[16..].try_into().expect("32 bytes"),
    })
}

/// Reads a snapshot's stream from the pieces as they arrive (from the task that loads them),
/// hashing it; never holds more than a piece and the item being read. A piece is read in
/// place; only a value that straddles two pieces is copied (into `carry`).
struct ChunkSource {
    pieces: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    pos: usize,
    carry: Vec<u8>,
    hasher: Sha256,
    len: u64,
}

impl ChunkSource {
    fn new(pieces: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>) -> Self {
        ChunkSource {
            pieces,
            buf: Vec::new(),
            pos: 0,
            carry: Vec::new(),
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The next piece, hashed.
    fn next_piece(&mut self) -> Result<Vec<u8>, String> {
        match self.pieces.blocking_recv() {
            Some(Ok(piece)) => {
                self.hasher.update(&piece);
                self.len += piece.len() as u64;
                Ok(piece)
            }
            Some(Err(e)) => Err(e),
            None => Err("snapshot: the stream ends early".into()),
        }
    }
}

impl SnapshotSource for ChunkSource {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() - self.pos >= n {
            let out = &self.buf[self.pos..self.pos + n];
            self.pos += n;
            return Ok(out);
        }
        self.carry.clear();
        self.carry.extend_from_slice(&self.buf[self.pos..]);
        loop {
            let piece = self.next_piece()?;
            let need = n - self.carry.len();
            if piece.len() >= need {
                self.carry.extend_from_slice(&piece[..need]);
                self.buf = piece;
                self.pos = need;
                return Ok(&self.carry);
            }
            self.carry.extend_from_slice(&piece);
        }
    }
}

/// Decodes a snapshot's stream on two threads: this one reads it (the applications in
/// batches, then the histories, the change logs and the key index) while a second one
/// indexes the applications as they come and builds the queues
/// ([`ochered_core::state::SnapshotIndexer`]).
fn decode_snapshot(source: &mut ChunkSource) -> Result<(State, KeyIndexBytes), String> {
    let mut dec = Decoder::new(source, &CborItems);
    let (mut indexer, n) = State::read_snapshot_head(&mut dec)?;
    std::thread::scope(|scope| {
        let (batches, to_index) = std::sync::mpsc::sync_channel::<Vec<Application>>(4);
        let indexing = std::thread::Builder::new()
            .name("snapshot-index".into())
            .spawn_scoped(scope, move || {
                for batch in to_index {
                    indexer.add(batch);
                }
                indexer.build_queues();
                indexer
            })
            .map_err(|e| format!("snapshot: no thread to index it: {e}"))?;
        let started = Instant::now();
        let read = read_after_head(&mut dec, n, batches);
        tracing::debug!(
            applications = n,
            read_ms = started.elapsed().as_millis() as u64,
            "snapshot: applications, histories, change logs and key index read"
        );
        let indexer = indexing
            .join()
            .map_err(|_| "snapshot: indexing failed".to_string())?;
        let (tail, keys) = read?;
        Ok((indexer.finish(tail)?, keys))
    })
}

/// Reads the applications (sending them to the indexer in batches), the tail and the key
/// index; drops `batches` when done or on an error, so that the indexer stops.
fn read_after_head<R: SnapshotSource>(
    dec: &mut Decoder<'_, R, CborItems>,
    n: usize,
    batches: std::sync::mpsc::SyncSender<Vec<Application>>,
) -> Result<(SnapshotTail, KeyIndexBytes), String> {
    let mut left = n;
    while left > 0 {
        let batch = read_applications(dec, left.min(APPLICATION_BATCH))?;
        left -= batch.len();
        if batches.send(batch).is_err() {
            return Err("snapshot: indexing stopped".into());
        }
    }
    drop(batches);
    // The history items are decoded on a thread of their own (serde, with RFC 3339 times:
    // about two seconds for ten million applications) while this one reads the change logs
    // and the key index's entries, which follow them in the stream.
    let (submitted, items) = State::read_snapshot_histories(dec)?;
    let (steps, changes) = std::thread::scope(|scope| {
        let decoding = std::thread::Builder::new()
            .name("snapshot-history".into())
            .spawn_scoped(scope, move || items.decode(&CborItems))
            .map_err(|e| format!("snapshot: no thread to decode the histories: {e}"))?;
        let changes = State::read_snapshot_changes(dec);
        let steps = decoding
            .join()
            .map_err(|_| "snapshot: decoding the histories failed".to_string())?;
        Ok::<_, String>((steps?, changes?))
    })?;
    let keys = KeyIndex::read(dec.source)?;
    Ok((SnapshotTail::new(submitted, steps, changes), keys))
}

/// Reads the snapshot whose header is `header_bytes`: its pieces are loaded by this task
/// while a blocking task decodes them. An older layout, a missing piece, a stream that
/// does not decode to its end or whose length or SHA-256 differs from the header's is an
/// error (the caller replays the whole log instead).
async fn read_snapshot(
    store: &dyn EventStore,
    authority: &str,
    seq: i64,
    header_bytes: &[u8],
) -> Result<(State, KeyIndexBytes), String> {
    let header = parse_header(header_bytes)?;
    let (send, pieces) = tokio::sync::mpsc::channel(2);
    let decode = tokio::task::spawn_blocking(move || {
        let mut source = ChunkSource::new(pieces);
        let (state, keys) = decode_snapshot(&mut source)?;
        if source.pos != source.buf.len() || source.pieces.blocking_recv().is_some() {
            return Err("snapshot: bytes after the end of the stream".to_string());
        }
        if source.len != header.len || source.hasher.finalize().as_slice() != header.sha256 {
            return Err("snapshot: the stream does not match its header's SHA-256".to_string());
        }
        Ok((state, keys))
    });
    for i in 0..header.chunks {
        let piece = match store.load_snapshot_chunk(authority, seq, i as i64).await {
            Ok(Some(piece)) => Ok(piece),
            Ok(None) => Err(format!(
                "snapshot: piece {i} of {} is missing",
                header.chunks
            )),
            Err(e) => Err(format!("snapshot: piece {i}: {e}")),
        };
        let failed = piece.is_err();
        if send.send(piece).await.is_err() || failed {
            // The decoder stopped (its error is reported below) or was told why.
            break;
        }
    }
    drop(send);
    decode
        .await
        .map_err(|e| format!("snapshot: decoding failed: {e}"))?
}

/// Decodes one stored event: a v2 payload (deterministic CBOR) or a v1 one (JSON text), of
/// the current or an older schema version.
pub fn decode_event(stored: &StoredEvent) -> Result<Event, String> {
    let payload = stored.payload();
    match stored.format {
        PayloadFormat::Json => {
            let text = std::str::from_utf8(payload)
                .map_err(|e| format!("{}: payload is not UTF-8: {e}", stored.event_type))?;
            ochered_core::upcast::decode(&stored.event_type, stored.schema_version, text)
        }
        PayloadFormat::Cbor if stored.schema_version == SCHEMA_VERSION => {
            let event: Event = ochered_store::cbor::from_slice(payload)
                .map_err(|e| format!("{}: {e}", stored.event_type))?;
            if event.type_name() != stored.event_type {
                return Err(format!(
                    "payload of type {} stored as {}",
                    event.type_name(),
                    stored.event_type
                ));
            }
            Ok(event)
        }
        PayloadFormat::Cbor => {
            let value: serde_json::Value = ochered_store::cbor::from_slice(payload)
                .map_err(|e| format!("{}: {e}", stored.event_type))?;
            let value =
                ochered_core::upcast::upcast(&stored.event_type, stored.schema_version, value)?;
            Event::from_payload(&stored.event_type, value)
        }
    }
}

/// [`decode_event`] as a writer error naming the event.
pub(crate) fn decode_stored(stored: &StoredEvent) -> Result<Event, WriterError> {
    decode_event(stored).map_err(|e| {
        WriterError::Unavailable(format!(
            "event {} of {} cannot be read: {e}",
            stored.authority_seq, stored.authority
        ))
    })
}

/// A head's hash as bytes (an unparsable one matches nothing).
pub(crate) fn hash_of_head(head: &ChainHead) -> ochered_store::Hash {
    hex::decode(&head.hash)
        .ok()
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0xff; 32])
}

/// The error of a chain that does not verify: the server refuses writes on it.
fn broken(authority: &str, authority_seq: i64, why: &str) -> WriterError {
    WriterError::Broken(format!(
        "the log of {authority} is broken at event {authority_seq} ({why}): run `ochered verify`"
    ))
}

/// Decodes a page of stored events and checks that each hashes to its stored hash (runs
/// on blocking threads, beside the fold).
fn decode_page(page: Vec<StoredEvent>) -> Result<(Vec<StoredEvent>, Vec<Event>), WriterError> {
    let mut events = Vec::with_capacity(page.len());
    for stored in &page {
        if !stored.hash_is_valid() {
            return Err(broken(
                &stored.authority,
                stored.authority_seq,
                "its bytes do not hash to its stored hash",
            ));
        }
        events.push(decode_stored(stored)?);
    }
    Ok((page, events))
}

/// [`decode_page`] split over `parts` blocking tasks (the replay's decoding runs on every
/// core the fold leaves free).
async fn decode_parallel(
    mut page: Vec<StoredEvent>,
    parts: usize,
) -> Result<(Vec<StoredEvent>, Vec<Event>), WriterError> {
    let chunk = page.len().div_ceil(parts.max(1)).max(1);
    let mut tails = Vec::new();
    while page.len() > chunk {
        tails.push(page.split_off(page.len() - chunk));
    }
    tails.push(page);
    tails.reverse();
    let handles: Vec<_> = tails
        .into_iter()
        .map(|part| tokio::task::spawn_blocking(move || decode_page(part)))
        .collect();
    let mut stored = Vec::new();
    let mut events = Vec::new();
    for handle in handles {
        let (part, decoded) = handle
            .await
            .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??;
        stored.extend(part);
        events.extend(decoded);
    }
    Ok((stored, events))
}

/// The key index while a start folds: built already, or being built from a snapshot's
/// entries on a thread of its own (a hash-map insert per key: about a second and a half
/// for ten million keys) while the events after the snapshot are folded, their keys kept
/// in order and inserted once the map is built. Either way each key is inserted after the
/// snapshot's keys and in the log's order, as one fold would.
enum FoldKeys {
    Built(KeyIndex),
    Building(
        std::thread::JoinHandle<KeyIndex>,
        Vec<(ochered_store::Hash, i64)>,
    ),
}

impl FoldKeys {
    /// Builds the snapshot's key index on a thread of its own (here if there is none).
    fn from_snapshot(entries: KeyIndexBytes) -> FoldKeys {
        let (send, built) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("key-index".into())
            .spawn(move || {
                let entries: KeyIndexBytes = match built.recv() {
                    Ok(entries) => entries,
                    Err(_) => return KeyIndex::default(),
                };
                entries.build()
            });
        match spawned {
            Ok(handle) => match send.send(entries) {
                Ok(()) => FoldKeys::Building(handle, Vec::new()),
                Err(std::sync::mpsc::SendError(entries)) => FoldKeys::Built(entries.build()),
            },
            Err(_) => FoldKeys::Built(entries.build()),
        }
    }

    fn insert(&mut self, digest: &ochered_store::Hash, authority_seq: i64) {
        match self {
            FoldKeys::Built(keys) => keys.insert(digest, authority_seq),
            FoldKeys::Building(_, pending) => pending.push((*digest, authority_seq)),
        }
    }

    fn finish(self) -> Result<KeyIndex, WriterError> {
        match self {
            FoldKeys::Built(keys) => Ok(keys),
            FoldKeys::Building(building, pending) => {
                let mut keys = building.join().map_err(|_| {
                    WriterError::Unavailable("building the key index failed".into())
                })?;
                for (digest, authority_seq) in pending {
                    keys.insert(&digest, authority_seq);
                }
                Ok(keys)
            }
        }
    }
}

/// Folds a decoded page into the state, checking that each event links to the one before.
fn fold_page(
    state: &mut State,
    page: &[StoredEvent],
    events: &[Event],
    head: &mut ChainHead,
    head_hash: &mut ochered_store::Hash,
    keys: &mut FoldKeys,
    last_recorded_at: &mut DateTime<Utc>,
) -> Result<(), WriterError> {
    for (stored, event) in page.iter().zip(events) {
        if stored.authority_seq != head.authority_seq + 1 {
            return Err(broken(
                &stored.authority,
                head.authority_seq + 1,
                "an event is missing",
            ));
        }
        if stored.prev_hash != *head_hash {
            return Err(broken(
                &stored.authority,
                stored.authority_seq,
                "it does not link to the event before it",
            ));
        }
        state.apply(event);
        if let Some(idempotency) = &stored.idempotency {
            keys.insert(&idempotency.key_digest, stored.authority_seq);
        }
        head.authority_seq = stored.authority_seq;
        *head_hash = stored.hash;
        *last_recorded_at = (*last_recorded_at).max(stored.recorded_at);
    }
    if let Some(last) = page.last() {
        head.hash = last.hash_hex();
    }
    Ok(())
}

/// Rebuilds the state of an authority: newest snapshot, then every later event in order,
/// checking that each event hashes to its stored hash and links to the one before (so a
/// start verifies the chain from the newest snapshot to the head: a break is
/// [`WriterError::Broken`]).
///
/// Three stages run at once: the store reads page k+2, blocking tasks decode (and hash)
/// page k+1 split over the cores, and a thread of its own folds page k.
pub async fn load_state(
    store: &dyn EventStore,
    authority: &str,
) -> Result<(State, ReplayStats), WriterError> {
    let started = Instant::now();
    let mut head = ChainHead::genesis();
    let mut head_hash = ochered_store::GENESIS;
    let mut state = State::new();
    let mut keys = FoldKeys::Built(KeyIndex::default());
    let mut from_snapshot = None;
    let mut snapshot_elapsed = Duration::ZERO;
    if let Some((seq, bytes)) = store.load_snapshot(authority).await? {
        match read_snapshot(store, authority, seq, &bytes).await {
            Ok((snapshot_state, snapshot_keys)) => {
                // The snapshot's head hash is that of its last event.
                let page = store.read(authority, seq - 1, 1).await?;
                match page.first().filter(|e| e.authority_seq == seq) {
                    Some(last) if !last.hash_is_valid() => {
                        return Err(broken(
                            authority,
                            seq,
                            "its bytes do not hash to its stored hash",
                        ))
                    }
                    Some(last) => {
                        state = snapshot_state;
                        keys = FoldKeys::from_snapshot(snapshot_keys);
                        head = ChainHead::of(last);
                        head_hash = last.hash;
                        from_snapshot = Some(seq);
                        snapshot_elapsed = started.elapsed();
                    }
                    None => {}
                }
            }
            Err(e) => {
                tracing::warn!(authority, error = %e, "snapshot unusable; replaying the whole log")
            }
        }
    }
    let parts = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Decoded pages, in order, to the folding thread; two pages ahead at most.
    let (pages, mut to_fold) = tokio::sync::mpsc::channel::<(Vec<StoredEvent>, Vec<Event>)>(2);
    let fold = tokio::task::spawn_blocking(move || {
        let mut last_recorded_at = DateTime::<Utc>::MIN_UTC;
        let mut events = 0u64;
        while let Some((page, page_events)) = to_fold.blocking_recv() {
            events += page.len() as u64;
            fold_page(
                &mut state,
                &page,
                &page_events,
                &mut head,
                &mut head_hash,
                &mut keys,
                &mut last_recorded_at,
            )?;
        }
        let keys = keys.finish()?;
        Ok::<_, WriterError>((state, head, keys, last_recorded_at, events))
    });
    let feed = async {
        let mut after = from_snapshot.unwrap_or(0);
        let mut decoding: Option<tokio::task::JoinHandle<_>> = None;
        loop {
            let raw = store.read(authority, after, REPLAY_PAGE_EVENTS).await?;
            if let Some(handle) = decoding.take() {
                let decoded = handle
                    .await
                    .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??;
                if pages.send(decoded).await.is_err() {
                    // The fold stopped on an error, reported below.
                    return Ok(());
                }
            }
            let Some(last) = raw.last() else {
                return Ok::<(), WriterError>(());
            };
            after = last.authority_seq;
            let full = raw.len() as i64 == REPLAY_PAGE_EVENTS;
            decoding = Some(tokio::spawn(decode_parallel(raw, parts)));
            if !full {
                let handle = decoding.take().expect("just set");
                let decoded = handle
                    .await
                    .map_err(|e| WriterError::Unavailable(format!("decoding failed: {e}")))??;
                let _ = pages.send(decoded).await;
                return Ok(());
            }
        }
    };
    let fed = feed.await;
    drop(pages);
    let folded = fold
        .await
        .map_err(|e| WriterError::Unavailable(format!("replay failed: {e}")))?;
    // A fold error names the break; a read or decode error otherwise.
    let (state, head, keys, last_recorded_at, events) = folded?;
    fed?;
    Ok((
        state,
        ReplayStats {
            events,
            from_snapshot,
            head,
            last_recorded_at,
            idempotency_keys: keys,
            snapshot_elapsed,
            elapsed: started.elapsed(),
        },
    ))
}
