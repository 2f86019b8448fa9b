//! Where the log records each idempotency key of an authority: the writer's in-memory key
//! index, in place of an index in the database.
//!
//! The log has no index over keys (an index over random digests took one random page write
//! per submission: see the store's module documentation, "Idempotency keys"). The writer is
//! the only one that appends to its authority, so it knows every key: this map gives, for
//! the first 8 bytes of a key's digest ([`ochered_store::key_digest`]), the `authority_seq`
//! of the event that records the key (the last event of its first answer). A hit is only a
//! candidate: the writer confirms it against the record, which holds the whole digest
//! ([`ochered_store::EventStore::idempotency_at`]). A key whose 8-byte prefix another key
//! took first (about one pair in 10^5 among ten million keys) is kept by its whole digest
//! in a second, small map; a look-up tries the prefix's position first, so the first use of
//! a key always wins, also on a log written by an older writer that recorded a key twice.
//!
//! Rebuilt on replay from the records (every v2 record carries its key's digest) and kept in
//! snapshots. About 17 bytes a key at the table's fill (10,000,000 keys: about 270 MB).
//!
//! The prefix map is split as the state's child index is ([`shards`]), so that growing
//! moves 1/256 of the keys at a time: one map of 458,752 keys took the writer 34 ms to
//! grow, while a surge's submissions waited.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ochered_core::state::{shards, SnapshotSink, SnapshotSource};
use ochered_store::Hash;

/// The keys are already uniform (bytes of SHA-256), so the table needs no hashing of them.
#[derive(Default)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PrefixMap = HashMap<u64, i64, BuildHasherDefault<PrefixHasher>>;

/// The key index of one authority (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    /// The first 8 bytes of a digest → the `authority_seq` that records it, in
    /// [`shards::COUNT`] maps: a prefix is in the one [`shards::of`] names.
    by_prefix: Box<[PrefixMap]>,
    /// Keys whose prefix another key holds in `by_prefix`: the whole digest → position.
    by_digest: HashMap<Hash, i64>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            by_prefix: (0..shards::COUNT).map(|_| PrefixMap::default()).collect(),
            by_digest: HashMap::new(),
        }
    }
}

/// The first 8 bytes of a digest, as the map's key.
pub(crate) fn prefix(digest: &Hash) -> u64 {
    u64::from_le_bytes(digest[..8].try_into().expect("8 of 32 bytes"))
}

impl KeyIndex {
    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.by_prefix.iter().map(HashMap::len).sum::<usize>() + self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The positions that may record `digest`, the one to try first first; at most two.
    pub(crate) fn candidates(&self, digest: &Hash) -> [Option<i64>; 2] {
        let prefix = prefix(digest);
        match self.by_prefix[shards::of(prefix)].get(&prefix) {
            None => [None, None],
            Some(&first) => [Some(first), self.by_digest.get(digest).copied()],
        }
    }

    /// Records that the event at `authority_seq` records `digest`. A key already known keeps
    /// its first position; a prefix already taken (by another key, or by this one recorded
    /// before: the look-up confirms which) sends the digest to the second map.
    pub(crate) fn insert(&mut self, digest: &Hash, authority_seq: i64) {
        let prefix = prefix(digest);
        match self.by_prefix[shards::of(prefix)].entry(prefix) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(authority_seq);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.by_digest.entry(*digest).or_insert(authority_seq);
            }
        }
    }

    /// Snapshot bytes: the count of prefix entries (8 bytes little-endian), each as prefix
    /// and position (8 + 8 bytes little-endian), sorted by prefix; then the count of whole
    /// digests, each as 32 bytes and position, sorted by digest.
    pub(crate) fn encode(&self, out: &mut impl SnapshotSink) {
        let mut short: Vec<(u64, i64)> = self
            .by_prefix
            .iter()
            .flat_map(|map| map.iter().map(|(k, v)| (*k, *v)))
            .collect();
        short.sort_unstable();
        out.put(&(short.len() as u64).to_le_bytes());
        let mut entry = [0u8; 16];
        for (k, v) in short {
            entry[..8].copy_from_slice(&k.to_le_bytes());
            entry[8..].copy_from_slice(&v.to_le_bytes());
            out.put(&entry);
        }
        let mut full: Vec<(Hash, i64)> = self.by_digest.iter().map(|(k, v)| (*k, *v)).collect();
        full.sort_unstable();
        out.put(&(full.len() as u64).to_le_bytes());
        for (k, v) in full {
            out.put(&k);
            out.put(&v.to_le_bytes());
        }
    }

    /// Reads what [`KeyIndex::encode`] wrote, from where `source` stands.
    #[cfg(test)]
    pub(crate) fn decode(source: &mut impl SnapshotSource) -> Result<KeyIndex, String> {
        Ok(KeyIndex::read(source)?.build())
    }

    /// Reads the entries [`KeyIndex::encode`] wrote, from where `source` stands, without
    /// building the maps: [`KeyIndexBytes::build`] does that, on another thread if the
    /// caller has one (a start builds them while it folds the events after the snapshot).
    pub(crate) fn read(source: &mut impl SnapshotSource) -> Result<KeyIndexBytes, String> {
        let count = u64_of(source.take(8)?) as usize;
        let mut prefixes = Vec::with_capacity(count.min(1 << 26) * 16);
        for _ in 0..count {
            prefixes.extend_from_slice(source.take(16)?);
        }
        let count = u64_of(source.take(8)?) as usize;
        let mut digests = Vec::with_capacity(count.min(1 << 20) * 40);
        for _ in 0..count {
            digests.extend_from_slice(source.take(40)?);
        }
        Ok(KeyIndexBytes { prefixes, digests })
    }
}

/// A snapshot's key index as read ([`KeyIndex::read`]): its entries, not yet in maps.
pub(crate) struct KeyIndexBytes {
    /// Prefix and position, 8 + 8 bytes little-endian each.
    prefixes: Vec<u8>,
    /// Whole digest and position, 32 + 8 bytes each.
    digests: Vec<u8>,
}

impl KeyIndexBytes {
    /// The key index these entries make.
    pub(crate) fn build(self) -> KeyIndex {
        let count = self.prefixes.len() / 16;
        let mut index = KeyIndex::default();
        // Room for the keys of the events after the snapshot and of the live log (an eighth
        // more, and a margin: the maps' shares are equal only on average).
        let room = shards::room_each(count);
        for map in index.by_prefix.iter_mut() {
            map.reserve(room);
        }
        for entry in self.prefixes.chunks_exact(16) {
            let prefix = u64_of(&entry[..8]);
            index.by_prefix[shards::of(prefix)].insert(prefix, u64_of(&entry[8..]) as i64);
        }
        index.by_digest.reserve(self.digests.len() / 40);
        for entry in self.digests.chunks_exact(40) {
            let digest: Hash = entry[..32].try_into().expect("32 bytes");
            index.by_digest.insert(digest, u64_of(&entry[32..]) as i64);
        }
        index
    }
}

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(first: u64, rest: u8) -> Hash {
        let mut d = [rest; 32];
        d[..8].copy_from_slice(&first.to_le_bytes());
        d
    }

    #[test]
    fn a_shared_prefix_keeps_both_keys_and_the_first_position_first() {
        let mut index = KeyIndex::default();
        let (a, b) = (digest(7, 1), digest(7, 2));
        index.insert(&a, 10);
        index.insert(&b, 20);
        // The same key recorded again (an older log): its first position is tried first.
        index.insert(&a, 30);
        assert_eq!(index.candidates(&a), [Some(10), Some(30)]);
        assert_eq!(index.candidates(&b), [Some(10), Some(20)]);
        assert_eq!(index.candidates(&digest(8, 1)), [None, None]);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn snapshot_bytes_round_trip_and_leave_the_rest() {
        let mut index = KeyIndex::default();
        for i in 0..1000u64 {
            index.insert(
                &digest(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0),
                i as i64 + 1,
            );
        }
        index.insert(&digest(5u64.wrapping_mul(0x9E37_79B9_7F4A_7C15), 9), 5000);
        let mut bytes = Vec::new();
        index.encode(&mut bytes);
        bytes.extend_from_slice(b"state");
        let mut rest = bytes.as_slice();
        let back = KeyIndex::decode(&mut rest).unwrap();
        assert_eq!(back, index);
        // The keys are spread over the maps.
        assert!(index.by_prefix.iter().filter(|m| !m.is_empty()).count() > shards::COUNT / 2);
        assert_eq!(rest, b"state");
        assert!(KeyIndex::decode(&mut &bytes[..bytes.len() - 50]).is_err());
    }
}
