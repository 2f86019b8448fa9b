//! The RFC 6962 Merkle tree over one authority's event hashes, with proofs against any size.
//!
//! Leaf `i` is the event with `authority_seq = i + 1`; its leaf hash is
//! `SHA-256(0x00 || event_hash)` over the event's 32-byte hash, and an inner node is
//! `SHA-256(0x01 || left || right)`, split as RFC 6962 section 2.1 says (the left subtree is the
//! largest power of two smaller than the range).
//!
//! # Why the node storage is ours
//!
//! `ct-merkle` supplies the proof shapes (which nodes make up a proof) and the verification
//! that auditors run. Its `MemoryBackedTree` is not used to hold the log's tree for two reasons:
//! it recomputes the whole path to the root on every push (about log2(n) hashes per event,
//! 23 at 10 million events, where a tree that stores only complete subtrees needs two on
//! average; `benches/tree.rs` measures both), and it proves only against its current size,
//! while the server must prove against the newest *signed* head while events keep arriving.
//!
//! Here nodes live in the same flat array layout as `ct-merkle`'s (RFC 9420's array-based
//! trees: leaf `i` at index `2i`, a node of level `k` covering leaves `a..a+2^k` at
//! `2a + 2^k - 1`), but only complete subtrees are stored. The value of a node on the right
//! edge of a smaller tree, which is not complete, is recomputed from the complete ones when a
//! proof needs it (at most log2(n) of them, each in at most log2(n) hashes).

use sha2::{Digest, Sha256};

/// A SHA-256 digest: an event hash, a leaf hash, a node or a root.
pub type Hash = [u8; 32];

/// Nodes per storage chunk: 1 MiB each, so growing never moves what is stored already.
const CHUNK_NODES: usize = 1 << 15;

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// `SHA-256(0x00 || event_hash)`.
pub fn leaf_hash(event_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(event_hash);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// An append-only Merkle tree of event hashes. Appending costs two SHA-256 compressions per
/// event on average; memory is 64 bytes per event.
#[derive(Default, Clone)]
pub struct LogTree {
    chunks: Vec<Box<[Hash]>>,
    size: u64,
}

impl std::fmt::Debug for LogTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTree").field("size", &self.size).finish()
    }
}

impl LogTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves (events).
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn node(&self, index: u64) -> &Hash {
        let index = index as usize;
        &self.chunks[index / CHUNK_NODES][index % CHUNK_NODES]
    }

    fn set_node(&mut self, index: u64, value: Hash) {
        let index = index as usize;
        while self.chunks.len() <= index / CHUNK_NODES {
            self.chunks
                .push(vec![[0u8; 32]; CHUNK_NODES].into_boxed_slice());
        }
        self.chunks[index / CHUNK_NODES][index % CHUNK_NODES] = value;
    }

    /// Appends the next event's hash (the event with `authority_seq = len() + 1`).
    pub fn push(&mut self, event_hash: &Hash) {
        let leaf = self.size;
        self.set_node(2 * leaf, leaf_hash(event_hash));
        self.size += 1;
        // Every subtree that this leaf completes gets its node, lowest first.
        let mut width = 2u64;
        while self.size.is_multiple_of(width) {
            let index = 2 * (self.size - width) + width - 1;
            let half = width / 2;
            let value = node_hash(self.node(index - half), self.node(index + half));
            self.set_node(index, value);
            width *= 2;
        }
    }

    /// The leaf hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        (index < self.size).then(|| *self.node(2 * index))
    }

    /// `MTH(D[start..end])` for `start < end <= len()`.
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        debug_assert!(start < end && end <= self.size);
        let width = end - start;
        if width == 1 {
            return *self.node(2 * start);
        }
        if width.is_power_of_two() && start.is_multiple_of(width) {
            return *self.node(2 * start + width - 1);
        }
        let split = largest_power_of_two_below(width);
        node_hash(
            &self.range_hash(start, start + split),
            &self.range_hash(start + split, end),
        )
    }

    /// The value of node `index` (flat layout) in the tree of `size` leaves: the hash of the
    /// leaves it covers, cut at `size`.
    fn node_at(&self, index: u64, size: u64) -> Hash {
        let level = index.trailing_ones();
        let start = (index >> (level + 1)) << level;
        let end = (start + (1u64 << level)).min(size);
        self.range_hash(start, end)
    }

    /// The root of the tree of the first `size` leaves (`size <= len()`).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        match size {
            0 => Some(empty_root()),
            _ if size <= self.size => Some(self.range_hash(0, size)),
            _ => None,
        }
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size).expect("size <= size")
    }

    /// RFC 6962 `PATH(index, D[size])`: the audit path of leaf `index` in the tree of the first
    /// `size` leaves. `None` unless `index < size <= len()`.
    pub fn inclusion_path(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size {
            return None;
        }
        Some(
            ct_merkle::indices_for_inclusion_proof(size, index)
                .into_iter()
                .map(|node| self.node_at(node, size))
                .collect(),
        )
    }

    /// RFC 6962 `PROOF(old_size, D[size])`: proves that the tree of the first `old_size` leaves
    /// is a prefix of the tree of the first `size`. `None` unless `0 < old_size <= size <=
    /// len()`; empty when the sizes are equal.
    pub fn consistency_path(&self, old_size: u64, size: u64) -> Option<Vec<Hash>> {
        if old_size == 0 || old_size > size || size > self.size {
            return None;
        }
        if old_size == size {
            return Some(Vec::new());
        }
        Some(
            ct_merkle::indices_for_consistency_proof(old_size, size - old_size)
                .into_iter()
                .map(|node| self.node_at(node, size))
                .collect(),
        )
    }
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(largest_power_of_two_below(n), k, "n={n}");
        }
    }

    #[test]
    fn roots_of_small_trees_follow_the_rfc_definition() {
        let events: Vec<Hash> = (0..5u8).map(|i| [i; 32]).collect();
        let mut tree = LogTree::new();
        assert_eq!(tree.root(), empty_root());
        for e in &events {
            tree.push(e);
        }
        let l: Vec<Hash> = events.iter().map(leaf_hash).collect();
        assert_eq!(tree.root_at(1), Some(l[0]));
        assert_eq!(tree.root_at(2), Some(node_hash(&l[0], &l[1])));
        let left = node_hash(&l[0], &l[1]);
        assert_eq!(tree.root_at(3), Some(node_hash(&left, &l[2])));
        let four = node_hash(&left, &node_hash(&l[2], &l[3]));
        assert_eq!(tree.root_at(4), Some(four));
        assert_eq!(tree.root_at(5), Some(node_hash(&four, &l[4])));
        assert_eq!(tree.root_at(6), None);
        assert_eq!(tree.leaf(4), Some(l[4]));
        assert_eq!(tree.leaf(5), None);
    }

    #[test]
    fn storage_grows_across_chunks() {
        let mut tree = LogTree::new();
        let n = CHUNK_NODES as u64; // 2n nodes: two chunks
        for i in 0..n {
            tree.push(&[(i % 251) as u8; 32]);
        }
        assert_eq!(tree.chunks.len(), 2);
        assert_eq!(tree.len(), n);
        let path = tree.inclusion_path(n - 1, n).unwrap();
        assert_eq!(path.len(), 15);
    }
}
