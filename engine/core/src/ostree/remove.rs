//! Removal from the order-statistics set: an underfull node is merged with a sibling or
//! shares its keys with it (see the module documentation of [`super`]).

use std::mem;

use super::{grow_for, Internal, OrderStatisticSet};

impl<K: Ord + Copy> OrderStatisticSet<K> {
    pub(super) fn remove_rec(&mut self, node: u32, level: u32, key: &K) -> bool {
        if level == 0 {
            let keys = &mut self.leaves[node as usize].keys;
            let Ok(pos) = keys.binary_search(key) else {
                return false;
            };
            keys.remove(pos);
            if keys.capacity() > 8 && keys.len() * 4 < keys.capacity() {
                keys.shrink_to(keys.len() * 2);
            }
            return true;
        }
        let n = &self.internals[node as usize];
        let i = n.seps.partition_point(|s| s <= key);
        let child = n.children[i];
        if !self.remove_rec(child, level - 1, key) {
            return false;
        }
        let n = &mut self.internals[node as usize];
        n.counts[i] -= 1;
        if n.children.len() >= 2 {
            let underfull = if level == 1 {
                self.leaves[child as usize].keys.len() < Self::LEAF_MIN
            } else {
                self.internals[child as usize].children.len() < Self::INT_MIN
            };
            if underfull {
                self.rebalance(node, i, level - 1);
            }
        }
        true
    }

    /// Child `i` of `parent` (on `child_level`) is underfull: merge it with a sibling, or
    /// share keys evenly with that sibling if the two would not fit comfortably in one node.
    pub(super) fn rebalance(&mut self, parent: u32, i: usize, child_level: u32) {
        let p = &self.internals[parent as usize];
        let j = if i + 1 < p.children.len() { i } else { i - 1 };
        let (l, r) = (p.children[j], p.children[j + 1]);
        if child_level == 0 {
            self.rebalance_leaves(parent, j, l, r);
        } else {
            self.rebalance_internals(parent, j, l, r);
        }
    }

    pub(super) fn rebalance_leaves(&mut self, parent: u32, j: usize, l: u32, r: u32) {
        let cap = Self::LEAF_CAP;
        let mut rk = mem::take(&mut self.leaves[r as usize].keys);
        let lk = &mut self.leaves[l as usize].keys;
        let (a, b) = (lk.len(), rk.len());
        let total = a + b;
        if total <= Self::LEAF_MERGE {
            grow_for(lk, b, cap);
            lk.extend_from_slice(&rk);
            drop(rk);
            self.leaves[l as usize].next = self.leaves[r as usize].next;
            self.free_leaf(r);
            let p = &mut self.internals[parent as usize];
            p.seps.remove(j);
            p.children.remove(j + 1);
            p.counts.remove(j + 1);
            p.counts[j] = total;
            return;
        }
        let target = total / 2;
        if a < target {
            let k = target - a;
            grow_for(lk, k, cap);
            lk.extend_from_slice(&rk[..k]);
            rk.drain(..k);
        } else if a > target {
            grow_for(&mut rk, a - target, cap);
            rk.splice(0..0, lk[target..].iter().copied());
            lk.truncate(target);
        }
        let sep = rk[0];
        self.leaves[r as usize].keys = rk;
        let p = &mut self.internals[parent as usize];
        p.seps[j] = sep;
        p.counts[j] = target;
        p.counts[j + 1] = total - target;
    }

    pub(super) fn rebalance_internals(&mut self, parent: u32, j: usize, l: u32, r: u32) {
        let sep = self.internals[parent as usize].seps[j];
        let mut rn = mem::replace(
            &mut self.internals[r as usize],
            Internal {
                seps: Vec::new(),
                children: Vec::new(),
                counts: Vec::new(),
            },
        );
        let ln = &mut self.internals[l as usize];
        ln.seps.push(sep);
        ln.seps.append(&mut rn.seps);
        ln.children.append(&mut rn.children);
        ln.counts.append(&mut rn.counts);
        let total = ln.children.len();
        if total <= Self::INT_MERGE {
            let count = ln.total();
            self.free_internal(r);
            let p = &mut self.internals[parent as usize];
            p.seps.remove(j);
            p.children.remove(j + 1);
            p.counts.remove(j + 1);
            p.counts[j] = count;
            return;
        }
        let m = total / 2;
        let r_seps = ln.seps.split_off(m);
        let up = ln.seps.pop().expect("m >= 1");
        let r_children = ln.children.split_off(m);
        let r_counts = ln.counts.split_off(m);
        let left_count = ln.total();
        let right_count = r_counts.iter().sum();
        self.internals[r as usize] = Internal {
            seps: r_seps,
            children: r_children,
            counts: r_counts,
        };
        let p = &mut self.internals[parent as usize];
        p.seps[j] = up;
        p.counts[j] = left_count;
        p.counts[j + 1] = right_count;
    }
}
