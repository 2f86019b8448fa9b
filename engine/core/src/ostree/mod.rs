//! Order-statistics set: ordered keys with O(log n) insert, remove, rank and select.
//!
//! [`OrderStatisticSet`] answers "what is the position of application X in its queue"
//! ([`OrderStatisticSet::rank`]), "who is at position i" ([`OrderStatisticSet::nth`]) and
//! "show page p of the queue" ([`OrderStatisticSet::range_from`]) in O(log n), and is built to
//! stay fast and small at millions of keys.
//!
//! # Layout
//!
//! A counted B+tree kept in two arenas (`Vec`s of nodes addressed by `u32`, with free lists):
//!
//! * **Leaves** hold the keys themselves in a sorted `Vec<K>` of at most
//!   [`leaf_capacity`](OrderStatisticSet::leaf_capacity) keys (about 1 KiB of keys, between 8
//!   and 256 of them) and a link to the next leaf, so iteration walks leaves without a stack.
//!   A leaf's buffer grows by doubling up to the capacity, so a queue with three applications
//!   costs a few dozen bytes, not a whole leaf.
//! * **Internal nodes** hold, per child, the child's index and the number of keys under it,
//!   plus the separators between children. Separators satisfy
//!   `keys(child i) < seps[i] <= keys(child i + 1)`; removals never need to update them.
//!
//! Rank is the sum of the counts left of the path to the key plus its offset in the leaf.
//!
//! # Worst cases handled on purpose
//!
//! * **Ascending inserts** (registration time increases): a full leaf receiving a key past its
//!   last key is not split in the middle; the new key starts a fresh leaf and the old leaf stays
//!   full. The same holds for descending inserts and for internal nodes, so sequential loads
//!   fill nodes ~100% instead of ~50%. This also covers keys that are ascending within each of
//!   several ranges (e.g. `(priority_class, time)`).
//! * **Removals from the front** (allocation rounds take the head of the queue): an underfull
//!   node is merged with a sibling when the two together fit in three quarters of a node, and
//!   otherwise the two share their keys evenly, so the next rebalancing is many removals away
//!   and a full node is never split right after a merge.
//!
//! Everything is deterministic: no hashing, no randomness; the shape of the tree is a function
//! of the sequence of operations.

use std::fmt;
use std::iter::FusedIterator;
use std::mem;

mod insert;
mod remove;

/// Arena index meaning "no node".
const NIL: u32 = u32::MAX;

/// Target size in bytes of a full leaf's key buffer and of a full internal node.
const NODE_BYTES: usize = 1024;

/// A leaf: sorted keys and the next leaf in key order.
#[derive(Clone)]
struct Leaf<K> {
    keys: Vec<K>,
    next: u32,
}

/// An internal node with `children.len()` children and `children.len() - 1` separators.
#[derive(Clone)]
struct Internal<K> {
    /// `seps[i]` is greater than every key under `children[i]` and at most every key under
    /// `children[i + 1]`.
    seps: Vec<K>,
    /// Arena indices: into `leaves` if this node is on level 1, into `internals` otherwise.
    children: Vec<u32>,
    /// `counts[i]` is the number of keys under `children[i]`.
    counts: Vec<usize>,
}

impl<K> Internal<K> {
    fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// Which half of a split will keep receiving keys under a sequential load.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hot {
    Left,
    Right,
    None,
}

enum Inserted<K> {
    Present,
    Done,
    Split {
        sep: K,
        right: u32,
        left_count: usize,
        right_count: usize,
        hot: Hot,
    },
}

/// A set of distinct keys in ascending order that also knows every key's position.
///
/// See the [module documentation](self) for the layout. Memory is roughly
/// `size_of::<K>()` per key divided by the leaf fill (≈100% for sequential inserts, ≈70% for
/// random ones, never below ⅓ outside the root), plus about 1% for internal nodes.
#[derive(Clone)]
pub struct OrderStatisticSet<K: Ord + Copy> {
    leaves: Vec<Leaf<K>>,
    internals: Vec<Internal<K>>,
    free_leaves: Vec<u32>,
    free_internals: Vec<u32>,
    /// Index of the root: a leaf if `height == 0`, an internal node otherwise. `NIL` while no
    /// node exists.
    root: u32,
    /// Number of internal levels above the leaves.
    height: u32,
    len: usize,
}

impl<K: Ord + Copy> Default for OrderStatisticSet<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy + fmt::Debug> fmt::Debug for OrderStatisticSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K: Ord + Copy> PartialEq for OrderStatisticSet<K> {
    /// Two sets are equal when they hold the same keys, whatever their tree shapes.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Copy> Eq for OrderStatisticSet<K> {}

impl<K: Ord + Copy> OrderStatisticSet<K> {
    /// Most keys a leaf holds: about [`NODE_BYTES`] of keys, clamped to 8..=256.
    const LEAF_CAP: usize = clamp(NODE_BYTES / size_of_at_least_1::<K>(), 8, 256);
    /// A non-root leaf with fewer keys than this is rebalanced with a sibling.
    const LEAF_MIN: usize = Self::LEAF_CAP / 3;
    /// Two sibling leaves are merged if together they hold at most this many keys.
    const LEAF_MERGE: usize = Self::LEAF_CAP * 3 / 4;
    /// Most children an internal node has: about [`NODE_BYTES`] per node, clamped to 8..=64.
    const INT_CAP: usize = clamp(NODE_BYTES / (size_of_at_least_1::<K>() + 12), 8, 64);
    /// A non-root internal node with fewer children than this is rebalanced with a sibling.
    const INT_MIN: usize = Self::INT_CAP / 3;
    /// Two sibling internal nodes are merged if together they have at most this many children.
    const INT_MERGE: usize = Self::INT_CAP * 3 / 4;

    /// An empty set. Does not allocate.
    pub const fn new() -> Self {
        Self {
            leaves: Vec::new(),
            internals: Vec::new(),
            free_leaves: Vec::new(),
            free_internals: Vec::new(),
            root: NIL,
            height: 0,
            len: 0,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every key and frees all memory.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Most keys one leaf holds for this key type (exposed for tests and diagnostics).
    #[doc(hidden)]
    pub fn leaf_capacity() -> usize {
        Self::LEAF_CAP
    }

    /// Most children one internal node has for this key type (exposed for tests and
    /// diagnostics).
    #[doc(hidden)]
    pub fn internal_capacity() -> usize {
        Self::INT_CAP
    }

    /// Number of internal levels above the leaves (0 while the root is a leaf).
    #[doc(hidden)]
    pub fn height(&self) -> usize {
        self.height as usize
    }

    /// Approximate bytes allocated on the heap by this set: the capacities of the arenas, the
    /// key buffers and the free lists. Allocator bookkeeping is not counted.
    #[doc(hidden)]
    pub fn heap_bytes(&self) -> usize {
        let leaves = self.leaves.capacity() * mem::size_of::<Leaf<K>>()
            + self
                .leaves
                .iter()
                .map(|l| l.keys.capacity() * mem::size_of::<K>())
                .sum::<usize>();
        let internals = self.internals.capacity() * mem::size_of::<Internal<K>>()
            + self
                .internals
                .iter()
                .map(|n| {
                    n.seps.capacity() * mem::size_of::<K>()
                        + n.children.capacity() * mem::size_of::<u32>()
                        + n.counts.capacity() * mem::size_of::<usize>()
                })
                .sum::<usize>();
        let free =
            (self.free_leaves.capacity() + self.free_internals.capacity()) * mem::size_of::<u32>();
        leaves + internals + free
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: &K) -> bool {
        if self.len == 0 {
            return false;
        }
        let (_, leaf) = self.locate(key);
        self.leaves[leaf as usize].keys.binary_search(key).is_ok()
    }

    /// 1-based position of `key` in ascending order, or `None` if it is not in the set.
    pub fn rank(&self, key: &K) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let (before, leaf) = self.locate(key);
        self.leaves[leaf as usize]
            .keys
            .binary_search(key)
            .ok()
            .map(|pos| before + pos + 1)
    }

    /// Number of keys in the set strictly less than `key` (`key` need not be present).
    pub fn count_less(&self, key: &K) -> usize {
        if self.len == 0 {
            return 0;
        }
        let (before, leaf) = self.locate(key);
        before + self.leaves[leaf as usize].keys.partition_point(|k| k < key)
    }

    /// The key at 0-based position `index` in ascending order, or `None` if `index >= len()`.
    pub fn nth(&self, index: usize) -> Option<K> {
        if index >= self.len {
            return None;
        }
        let (leaf, offset) = self.select(index);
        Some(self.leaves[leaf as usize].keys[offset])
    }

    /// The smallest key.
    pub fn first(&self) -> Option<K> {
        self.nth(0)
    }

    /// The largest key.
    pub fn last(&self) -> Option<K> {
        self.len.checked_sub(1).and_then(|i| self.nth(i))
    }

    /// All keys in ascending order.
    pub fn iter(&self) -> Iter<'_, K> {
        self.range_from(0)
    }

    /// Keys in ascending order starting at 0-based position `index` (empty if
    /// `index >= len()`). Costs O(log n) to start and O(1) amortized per key, so
    /// `range_from(page * size).take(size)` is a cheap page of a queue.
    pub fn range_from(&self, index: usize) -> Iter<'_, K> {
        if index >= self.len {
            return Iter {
                set: self,
                leaf: NIL,
                pos: 0,
                remaining: 0,
            };
        }
        let (leaf, pos) = self.select(index);
        Iter {
            set: self,
            leaf,
            pos,
            remaining: self.len - index,
        }
    }

    /// A set holding `keys`, which must be strictly ascending (checked; `None` if not), built
    /// level by level in O(n) instead of by one insert per key.
    ///
    /// Leaves and internal nodes are filled evenly: the nodes of a level hold their share
    /// of the keys (or children) within one of each other, at most a node's capacity, so
    /// every node but a lone root is full or nearly so, as after an ascending load. The
    /// set is equal (same keys, same ranks) to one built by inserting the keys; only the
    /// tree's shape may differ.
    pub fn from_sorted(keys: Vec<K>) -> Option<Self> {
        if !keys.windows(2).all(|w| w[0] < w[1]) {
            return None;
        }
        let mut set = Self::new();
        let len = keys.len();
        if len == 0 {
            return Some(set);
        }
        // Leaves: `ceil(len / cap)` of them, each with `len / leaves` keys or one more.
        let n_leaves = len.div_ceil(Self::LEAF_CAP);
        assert!(
            n_leaves < NIL as usize,
            "OrderStatisticSet: too many leaves"
        );
        set.leaves.reserve_exact(n_leaves);
        // (index, key count, smallest key) of each node of the level being built.
        let mut level: Vec<(u32, usize, K)> = Vec::with_capacity(n_leaves);
        let mut start = 0;
        for (i, size) in even_shares(len, n_leaves).enumerate() {
            let mut chunk = Vec::with_capacity(size);
            chunk.extend_from_slice(&keys[start..start + size]);
            let next = if i + 1 < n_leaves { i as u32 + 1 } else { NIL };
            level.push((i as u32, size, chunk[0]));
            set.leaves.push(Leaf { keys: chunk, next });
            start += size;
        }
        drop(keys);
        let mut height = 0;
        while level.len() > 1 {
            let n_nodes = level.len().div_ceil(Self::INT_CAP);
            let mut upper = Vec::with_capacity(n_nodes);
            let mut start = 0;
            for size in even_shares(level.len(), n_nodes) {
                let group = &level[start..start + size];
                let node = Internal {
                    seps: group[1..].iter().map(|&(_, _, first)| first).collect(),
                    children: group.iter().map(|&(index, _, _)| index).collect(),
                    counts: group.iter().map(|&(_, count, _)| count).collect(),
                };
                let total = node.total();
                let first = group[0].2;
                upper.push((set.internals.len() as u32, total, first));
                set.internals.push(node);
                start += size;
            }
            level = upper;
            height += 1;
        }
        set.root = level[0].0;
        set.height = height;
        set.len = len;
        Some(set)
    }

    /// Inserts `key`; returns `false` (and changes nothing) if it was already present.
    pub fn insert(&mut self, key: K) -> bool {
        if self.root == NIL {
            let mut keys = Vec::new();
            grow_for(&mut keys, 1, Self::LEAF_CAP);
            keys.push(key);
            self.root = self.alloc_leaf(Leaf { keys, next: NIL });
            self.height = 0;
            self.len = 1;
            return true;
        }
        match self.insert_rec(self.root, self.height, key) {
            Inserted::Present => false,
            Inserted::Done => {
                self.len += 1;
                true
            }
            Inserted::Split {
                sep,
                right,
                left_count,
                right_count,
                hot: _,
            } => {
                let mut seps = Vec::with_capacity(4);
                seps.push(sep);
                let mut children = Vec::with_capacity(4);
                children.extend_from_slice(&[self.root, right]);
                let mut counts = Vec::with_capacity(4);
                counts.extend_from_slice(&[left_count, right_count]);
                self.root = self.alloc_internal(Internal {
                    seps,
                    children,
                    counts,
                });
                self.height += 1;
                self.len += 1;
                true
            }
        }
    }

    /// Removes `key`; returns `false` (and changes nothing) if it was absent.
    pub fn remove(&mut self, key: &K) -> bool {
        if self.len == 0 || !self.remove_rec(self.root, self.height, key) {
            return false;
        }
        self.len -= 1;
        if self.len == 0 {
            self.clear();
            return true;
        }
        while self.height > 0 && self.internals[self.root as usize].children.len() == 1 {
            let old = self.root;
            self.root = self.internals[old as usize].children[0];
            self.free_internal(old);
            self.height -= 1;
        }
        true
    }

    /// Checks every structural invariant and panics with a description if one is broken.
    /// O(n); meant for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        if self.root == NIL {
            assert_eq!(self.len, 0, "no root but len {}", self.len);
            assert!(self.leaves.is_empty() && self.internals.is_empty());
            return;
        }
        let mut seen_leaves = vec![false; self.leaves.len()];
        let mut seen_internals = vec![false; self.internals.len()];
        let mut leaf_order = Vec::new();
        let count = self.check_node(
            self.root,
            self.height,
            None,
            None,
            &mut seen_leaves,
            &mut seen_internals,
            &mut leaf_order,
        );
        assert_eq!(count, self.len, "len {} but tree holds {}", self.len, count);
        if self.height > 0 {
            assert!(
                self.internals[self.root as usize].children.len() >= 2,
                "internal root with one child"
            );
        }
        for (i, w) in leaf_order.windows(2).enumerate() {
            assert_eq!(
                self.leaves[w[0] as usize].next, w[1],
                "leaf chain broken after leaf #{i}"
            );
        }
        assert_eq!(self.leaves[*leaf_order.last().unwrap() as usize].next, NIL);
        for &f in &self.free_leaves {
            assert!(!seen_leaves[f as usize], "free leaf {f} is reachable");
            seen_leaves[f as usize] = true;
        }
        for &f in &self.free_internals {
            assert!(
                !seen_internals[f as usize],
                "free internal {f} is reachable"
            );
            seen_internals[f as usize] = true;
        }
        assert!(seen_leaves.iter().all(|&s| s), "leaked leaf");
        assert!(seen_internals.iter().all(|&s| s), "leaked internal node");
        let keys: Vec<K> = self.iter().collect();
        assert_eq!(keys.len(), self.len, "iterator length");
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "iterator not ascending"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Lookup
    // -----------------------------------------------------------------------------------------

    /// The leaf where `key` is or would be, and the number of keys in leaves before it.
    /// Requires a root.
    fn locate(&self, key: &K) -> (usize, u32) {
        let mut node = self.root;
        let mut before = 0;
        for _ in 0..self.height {
            let n = &self.internals[node as usize];
            let i = n.seps.partition_point(|s| s <= key);
            before += n.counts[..i].iter().sum::<usize>();
            node = n.children[i];
        }
        (before, node)
    }

    /// Leaf and offset of the key at position `index`. Requires `index < len`.
    fn select(&self, mut index: usize) -> (u32, usize) {
        let mut node = self.root;
        for _ in 0..self.height {
            let n = &self.internals[node as usize];
            let mut i = 0;
            while index >= n.counts[i] {
                index -= n.counts[i];
                i += 1;
            }
            node = n.children[i];
        }
        (node, index)
    }

    // -----------------------------------------------------------------------------------------
    // Arenas
    // -----------------------------------------------------------------------------------------

    fn alloc_leaf(&mut self, leaf: Leaf<K>) -> u32 {
        if let Some(i) = self.free_leaves.pop() {
            self.leaves[i as usize] = leaf;
            return i;
        }
        let i = u32::try_from(self.leaves.len())
            .ok()
            .filter(|&i| i != NIL)
            .expect("OrderStatisticSet: too many leaves");
        if self.leaves.is_empty() {
            // Most sets are small queues: do not reserve room for four leaves up front.
            self.leaves.reserve_exact(1);
        }
        self.leaves.push(leaf);
        i
    }

    fn free_leaf(&mut self, i: u32) {
        self.leaves[i as usize] = Leaf {
            keys: Vec::new(),
            next: NIL,
        };
        self.free_leaves.push(i);
    }

    fn alloc_internal(&mut self, node: Internal<K>) -> u32 {
        if let Some(i) = self.free_internals.pop() {
            self.internals[i as usize] = node;
            return i;
        }
        let i = u32::try_from(self.internals.len())
            .ok()
            .filter(|&i| i != NIL)
            .expect("OrderStatisticSet: too many internal nodes");
        if self.internals.is_empty() {
            self.internals.reserve_exact(1);
        }
        self.internals.push(node);
        i
    }

    fn free_internal(&mut self, i: u32) {
        self.internals[i as usize] = Internal {
            seps: Vec::new(),
            children: Vec::new(),
            counts: Vec::new(),
        };
        self.free_internals.push(i);
    }

    // -----------------------------------------------------------------------------------------
    // Invariant checking
    // -----------------------------------------------------------------------------------------

    /// Checks the subtree at `node` (on `level`) whose keys must lie in `[lo, hi)`; returns its
    /// key count and appends its leaves, in order, to `leaf_order`.
    #[allow(clippy::too_many_arguments)]
    fn check_node(
        &self,
        node: u32,
        level: u32,
        lo: Option<K>,
        hi: Option<K>,
        seen_leaves: &mut [bool],
        seen_internals: &mut [bool],
        leaf_order: &mut Vec<u32>,
    ) -> usize {
        let in_bounds = |k: &K| lo.is_none_or(|lo| lo <= *k) && hi.is_none_or(|hi| *k < hi);
        if level == 0 {
            assert!(!seen_leaves[node as usize], "leaf {node} reached twice");
            seen_leaves[node as usize] = true;
            leaf_order.push(node);
            let keys = &self.leaves[node as usize].keys;
            assert!(keys.len() <= Self::LEAF_CAP, "leaf {node} overfull");
            assert!(
                mem::size_of::<K>() == 0 || keys.capacity() <= Self::LEAF_CAP,
                "leaf {node} buffer too big"
            );
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "leaf {node} not ascending"
            );
            assert!(keys.iter().all(in_bounds), "leaf {node} key out of bounds");
            return keys.len();
        }
        assert!(
            !seen_internals[node as usize],
            "internal {node} reached twice"
        );
        seen_internals[node as usize] = true;
        let n = &self.internals[node as usize];
        assert!(!n.children.is_empty(), "internal {node} without children");
        assert!(
            n.children.len() <= Self::INT_CAP,
            "internal {node} overfull"
        );
        assert_eq!(n.seps.len() + 1, n.children.len(), "internal {node} seps");
        assert_eq!(n.counts.len(), n.children.len(), "internal {node} counts");
        assert!(
            n.seps.windows(2).all(|w| w[0] < w[1]),
            "internal {node} separators not ascending"
        );
        assert!(
            n.seps
                .iter()
                .all(|s| lo.is_none_or(|lo| lo < *s) && hi.is_none_or(|hi| *s < hi)),
            "internal {node} separator out of bounds"
        );
        let mut total = 0;
        for (i, &child) in n.children.iter().enumerate() {
            let clo = if i == 0 { lo } else { Some(n.seps[i - 1]) };
            let chi = if i + 1 == n.children.len() {
                hi
            } else {
                Some(n.seps[i])
            };
            let c = self.check_node(
                child,
                level - 1,
                clo,
                chi,
                seen_leaves,
                seen_internals,
                leaf_order,
            );
            assert_eq!(c, n.counts[i], "internal {node} count of child {i}");
            total += c;
        }
        total
    }
}

/// Iterator over the keys of an [`OrderStatisticSet`] in ascending order, from
/// [`OrderStatisticSet::iter`] or [`OrderStatisticSet::range_from`].
#[derive(Clone)]
pub struct Iter<'a, K: Ord + Copy> {
    set: &'a OrderStatisticSet<K>,
    leaf: u32,
    pos: usize,
    remaining: usize,
}

impl<K: Ord + Copy> Iterator for Iter<'_, K> {
    type Item = K;

    fn next(&mut self) -> Option<K> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let leaf = &self.set.leaves[self.leaf as usize];
            if let Some(&k) = leaf.keys.get(self.pos) {
                self.pos += 1;
                self.remaining -= 1;
                return Some(k);
            }
            self.leaf = leaf.next;
            self.pos = 0;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K: Ord + Copy> ExactSizeIterator for Iter<'_, K> {}

impl<K: Ord + Copy> FusedIterator for Iter<'_, K> {}

impl<'a, K: Ord + Copy> IntoIterator for &'a OrderStatisticSet<K> {
    type Item = K;
    type IntoIter = Iter<'a, K>;

    fn into_iter(self) -> Iter<'a, K> {
        self.iter()
    }
}

impl<K: Ord + Copy> Extend<K> for OrderStatisticSet<K> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        for k in iter {
            self.insert(k);
        }
    }
}

impl<K: Ord + Copy> FromIterator<K> for OrderStatisticSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let mut set = Self::new();
        set.extend(iter);
        set
    }
}

/// `n` items shared out over `parts` (at least 1) groups as evenly as possible, in order:
/// the first `n % parts` groups get one more.
fn even_shares(n: usize, parts: usize) -> impl Iterator<Item = usize> {
    let (base, extra) = (n / parts, n % parts);
    (0..parts).map(move |i| base + usize::from(i < extra))
}

/// Ensures `v` has room for `extra` more elements, growing by doubling but never past `cap`.
/// Callers guarantee `v.len() + extra <= cap`.
fn grow_for<K>(v: &mut Vec<K>, extra: usize, cap: usize) {
    let need = v.len() + extra;
    if need > v.capacity() {
        let new_cap = (v.capacity() * 2).max(4).min(cap).max(need);
        v.reserve_exact(new_cap - v.len());
    }
}

/// A fresh leaf buffer holding only `key`.
fn single<K>(key: K) -> Vec<K> {
    let mut v = Vec::with_capacity(4);
    v.push(key);
    v
}

const fn size_of_at_least_1<K>() -> usize {
    let s = mem::size_of::<K>();
    if s == 0 {
        1
    } else {
        s
    }
}

const fn clamp(x: usize, lo: usize, hi: usize) -> usize {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}
