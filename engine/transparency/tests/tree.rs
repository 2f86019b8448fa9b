//! The tree and its proofs against RFC 6962's recursive definitions, written out here as
//! plainly as the RFC states them, for every size and index of small trees and random large
//! ones.

use ochered_transparency::{leaf_hash, node_hash, Hash, LogTree};
use proptest::prelude::*;

/// RFC 6962 section 2.1: `MTH(D[n])`.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => ochered_transparency::empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n`.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 section 2.1.1: `PATH(m, D[n])`.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 6962 section 2.1.2: `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)`.
fn proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn events(n: usize, seed: u8) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            let mut h = [seed; 32];
            h[..8].copy_from_slice(&(i as u64).to_le_bytes());
            h
        })
        .collect()
}

#[test]
fn every_root_path_and_proof_of_small_trees_equals_the_rfc() {
    let leaves = events(40, 1);
    let mut tree = LogTree::new();
    for e in &leaves {
        tree.push(e);
    }
    for n in 1..=leaves.len() {
        let prefix = &leaves[..n];
        assert_eq!(tree.root_at(n as u64), Some(mth(prefix)), "root of {n}");
        for m in 0..n {
            assert_eq!(
                tree.inclusion_path(m as u64, n as u64),
                Some(path(m, prefix)),
                "PATH({m}, D[{n}])"
            );
        }
        for m in 1..=n {
            assert_eq!(
                tree.consistency_path(m as u64, n as u64),
                Some(proof(m, prefix)),
                "PROOF({m}, D[{n}])"
            );
        }
        assert_eq!(tree.inclusion_path(n as u64, n as u64), None);
        assert_eq!(tree.consistency_path(0, n as u64), None);
    }
    assert_eq!(tree.consistency_path(3, 41), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Proofs against an older size, from a tree that has grown since, equal the RFC's.
    #[test]
    fn proofs_against_older_sizes_of_a_larger_tree(
        total in 2usize..3000,
        fraction in 0.0f64..1.0,
        index_fraction in 0.0f64..1.0,
        old_fraction in 0.0f64..1.0,
        seed in any::<u8>(),
    ) {
        let leaves = events(total, seed);
        let mut tree = LogTree::new();
        for e in &leaves {
            tree.push(e);
        }
        let size = 1 + ((total - 1) as f64 * fraction) as usize;
        let index = ((size - 1) as f64 * index_fraction) as usize;
        let old = 1 + ((size - 1) as f64 * old_fraction) as usize;
        let prefix = &leaves[..size];
        prop_assert_eq!(tree.root_at(size as u64), Some(mth(prefix)));
        prop_assert_eq!(tree.inclusion_path(index as u64, size as u64), Some(path(index, prefix)));
        prop_assert_eq!(tree.consistency_path(old as u64, size as u64), Some(proof(old, prefix)));
    }
}
