//! Insertion into the order-statistics set: a key goes into its leaf, and a full node
//! splits, on the cold side under sequential loads (see the module documentation of
//! [`super`]).

use std::mem;

use super::{grow_for, single, Hot, Inserted, Internal, Leaf, OrderStatisticSet};

impl<K: Ord + Copy> OrderStatisticSet<K> {
    pub(super) fn insert_rec(&mut self, node: u32, level: u32, key: K) -> Inserted<K> {
        if level == 0 {
            return self.insert_into_leaf(node, key);
        }
        let n = &self.internals[node as usize];
        let i = n.seps.partition_point(|s| *s <= key);
        let child = n.children[i];
        match self.insert_rec(child, level - 1, key) {
            Inserted::Present => Inserted::Present,
            Inserted::Done => {
                self.internals[node as usize].counts[i] += 1;
                Inserted::Done
            }
            Inserted::Split {
                sep,
                right,
                left_count,
                right_count,
                hot,
            } => self.absorb_split(node, i, sep, right, left_count, right_count, hot),
        }
    }

    pub(super) fn insert_into_leaf(&mut self, node: u32, key: K) -> Inserted<K> {
        let cap = Self::LEAF_CAP;
        let leaf = &mut self.leaves[node as usize];
        let pos = match leaf.keys.binary_search(&key) {
            Ok(_) => return Inserted::Present,
            Err(pos) => pos,
        };
        let len = leaf.keys.len();
        if len < cap {
            grow_for(&mut leaf.keys, 1, cap);
            leaf.keys.insert(pos, key);
            return Inserted::Done;
        }
        // Full: split before inserting, so a buffer never exceeds `cap`.
        let (right_keys, hot) = if pos == len {
            // Past the last key (ascending load): keep this leaf full, start a new one.
            (single(key), Hot::Right)
        } else if pos == 0 {
            // Before the first key (descending load): this leaf restarts with the new key and
            // its old keys move, without copying, to the new right leaf.
            (mem::replace(&mut leaf.keys, single(key)), Hot::Left)
        } else {
            let m = len / 2;
            let mut right = Vec::with_capacity(len - m + 1);
            right.extend_from_slice(&leaf.keys[m..]);
            leaf.keys.truncate(m);
            if pos < m {
                leaf.keys.insert(pos, key);
            } else {
                right.insert(pos - m, key);
            }
            (right, Hot::None)
        };
        let next = leaf.next;
        let left_count = leaf.keys.len();
        let sep = right_keys[0];
        let right_count = right_keys.len();
        let right = self.alloc_leaf(Leaf {
            keys: right_keys,
            next,
        });
        self.leaves[node as usize].next = right;
        Inserted::Split {
            sep,
            right,
            left_count,
            right_count,
            hot,
        }
    }

    /// Records in `node` that its child `i` split into itself and `right`; splits `node` in
    /// turn if it overflows.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn absorb_split(
        &mut self,
        node: u32,
        i: usize,
        sep: K,
        right: u32,
        left_count: usize,
        right_count: usize,
        hot: Hot,
    ) -> Inserted<K> {
        let n = &mut self.internals[node as usize];
        n.counts[i] = left_count;
        n.seps.insert(i, sep);
        n.children.insert(i + 1, right);
        n.counts.insert(i + 1, right_count);
        let len = n.children.len();
        if len <= Self::INT_CAP {
            return Inserted::Done;
        }
        let hot_child = match hot {
            Hot::Left => Some(i),
            Hot::Right => Some(i + 1),
            Hot::None => None,
        };
        // Number of children kept on the left. Sequential loads isolate the hot child so the
        // rest stays full.
        let (m, new_hot) = match hot_child {
            Some(h) if h == len - 1 => (len - 1, Hot::Right),
            Some(0) => (1, Hot::Left),
            _ => (len / 2, Hot::None),
        };
        let r_seps = n.seps.split_off(m);
        let up = n.seps.pop().expect("m >= 1");
        let r_children = n.children.split_off(m);
        let r_counts = n.counts.split_off(m);
        let left_count = n.total();
        let right_count = r_counts.iter().sum();
        let right = self.alloc_internal(Internal {
            seps: r_seps,
            children: r_children,
            counts: r_counts,
        });
        Inserted::Split {
            sep: up,
            right,
            left_count,
            right_count,
            hot: new_hot,
        }
    }
}
