//! Tests of `ochered_core::ostree::OrderStatisticSet` against `BTreeSet` as a model.
//!
//! Most property tests use a deliberately fat key ([`Fat`], 128 bytes) so that leaves and
//! internal nodes get their minimum capacities (8 keys, 8 children) and a few hundred keys
//! already make a tree of height 3–4 with plenty of splits, merges and redistributions.
//! Others use `u32` keys with the production capacities (256 keys per leaf, 64 children).
//!
//! `measure_1m` (ignored) prints the figures asked for at one million keys; run it with
//! `cargo test -p ochered-core --release --test it ostree::measure_1m -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::fmt;

use ochered_core::ostree::OrderStatisticSet;
use proptest::prelude::*;

/// A 128-byte key ordered by its number, which forces the smallest node capacities.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Fat(u32, [u8; 124]);

impl Fat {
    fn new(k: u32) -> Self {
        Fat(k, [0; 124])
    }
}

impl fmt::Debug for Fat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u32),
    Remove(u32),
    Contains(u32),
    Rank(u32),
    CountLess(u32),
    Nth(usize),
    RangeFrom(usize, usize),
    Iter,
    InsertAscending(u32, u32),
    InsertDescending(u32, u32),
    RemoveFront(usize),
    RemoveBack(usize),
    RemoveEvery(u32),
}

fn op_strategy(key_max: u32, bulk_max: u32) -> impl Strategy<Value = Op> {
    let idx_max = key_max as usize + 10;
    prop_oneof![
        6 => (0..key_max).prop_map(Op::Insert),
        4 => (0..key_max).prop_map(Op::Remove),
        1 => (0..key_max).prop_map(Op::Contains),
        2 => (0..key_max).prop_map(Op::Rank),
        2 => (0..=key_max).prop_map(Op::CountLess),
        2 => (0..idx_max).prop_map(Op::Nth),
        2 => (0..idx_max, 0..50usize).prop_map(|(i, n)| Op::RangeFrom(i, n)),
        1 => Just(Op::Iter),
        2 => (0..key_max, 1..=bulk_max).prop_map(|(s, n)| Op::InsertAscending(s, n)),
        1 => (0..key_max, 1..=bulk_max).prop_map(|(s, n)| Op::InsertDescending(s, n)),
        2 => (1..=bulk_max as usize).prop_map(Op::RemoveFront),
        1 => (1..=bulk_max as usize).prop_map(Op::RemoveBack),
        1 => (2..7u32).prop_map(Op::RemoveEvery),
    ]
}

/// Applies `op` to both the set and the model and compares every answer.
fn apply<K: Ord + Copy + fmt::Debug>(
    set: &mut OrderStatisticSet<K>,
    model: &mut BTreeSet<K>,
    op: &Op,
    key: impl Fn(u32) -> K,
) {
    match *op {
        Op::Insert(k) => assert_eq!(set.insert(key(k)), model.insert(key(k)), "{op:?}"),
        Op::Remove(k) => assert_eq!(set.remove(&key(k)), model.remove(&key(k)), "{op:?}"),
        Op::Contains(k) => assert_eq!(set.contains(&key(k)), model.contains(&key(k))),
        Op::Rank(k) => {
            let want = model
                .contains(&key(k))
                .then(|| model.range(..key(k)).count() + 1);
            assert_eq!(set.rank(&key(k)), want, "{op:?}");
        }
        Op::CountLess(k) => {
            assert_eq!(
                set.count_less(&key(k)),
                model.range(..key(k)).count(),
                "{op:?}"
            )
        }
        Op::Nth(i) => assert_eq!(set.nth(i), model.iter().nth(i).copied(), "{op:?}"),
        Op::RangeFrom(i, n) => {
            let got: Vec<K> = set.range_from(i).take(n).collect();
            let want: Vec<K> = model.iter().skip(i).take(n).copied().collect();
            assert_eq!(got, want, "{op:?}");
            assert_eq!(set.range_from(i).len(), model.len().saturating_sub(i));
        }
        Op::Iter => {
            assert!(set.iter().eq(model.iter().copied()));
        }
        Op::InsertAscending(s, n) => {
            for k in s..s.saturating_add(n) {
                assert_eq!(set.insert(key(k)), model.insert(key(k)));
            }
        }
        Op::InsertDescending(s, n) => {
            for k in (s..s.saturating_add(n)).rev() {
                assert_eq!(set.insert(key(k)), model.insert(key(k)));
            }
        }
        Op::RemoveFront(n) => {
            for _ in 0..n {
                let first = set.nth(0);
                assert_eq!(first, model.pop_first());
                match first {
                    Some(k) => assert!(set.remove(&k)),
                    None => break,
                }
            }
        }
        Op::RemoveBack(n) => {
            for _ in 0..n {
                let last = set.len().checked_sub(1).and_then(|i| set.nth(i));
                assert_eq!(last, model.pop_last());
                match last {
                    Some(k) => assert!(set.remove(&k)),
                    None => break,
                }
            }
        }
        Op::RemoveEvery(step) => {
            let victims: Vec<K> = model.iter().step_by(step as usize).copied().collect();
            for k in victims {
                assert!(set.remove(&k));
                assert!(model.remove(&k));
            }
        }
    }
    assert_eq!(set.len(), model.len());
    assert_eq!(set.is_empty(), model.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Small capacities, deep trees: every rebalancing path is exercised.
    #[test]
    fn fat_keys_match_btreeset(ops in prop::collection::vec(op_strategy(600, 300), 1..120)) {
        let mut set = OrderStatisticSet::new();
        let mut model = BTreeSet::new();
        for op in &ops {
            apply(&mut set, &mut model, op, Fat::new);
            set.check_invariants();
        }
        // Full cross-check at the end: rank/nth/count_less of every key and of the gaps.
        for (i, k) in model.iter().enumerate() {
            prop_assert_eq!(set.rank(k), Some(i + 1));
            prop_assert_eq!(set.nth(i), Some(*k));
            prop_assert_eq!(set.count_less(k), i);
            prop_assert_eq!(set.count_less(&Fat::new(k.0 + 1)), model.range(..Fat::new(k.0 + 1)).count());
        }
        let clone = set.clone();
        clone.check_invariants();
        prop_assert!(clone == set);
    }

    /// Production capacities with `u32` keys and large bulk operations.
    #[test]
    fn u32_keys_match_btreeset(ops in prop::collection::vec(op_strategy(40_000, 12_000), 1..40)) {
        let mut set = OrderStatisticSet::new();
        let mut model = BTreeSet::new();
        for op in &ops {
            apply(&mut set, &mut model, op, |k| k);
        }
        set.check_invariants();
        prop_assert!(set.iter().eq(model.iter().copied()));
    }

    /// A set built in bulk from sorted keys equals one built by inserts (every key's rank,
    /// `nth`, `count_less`), keeps the invariants, and then behaves like the model under
    /// any further operations (small capacities: deep trees, every rebalancing path).
    #[test]
    fn fat_from_sorted_matches_inserts(
        keys in prop::collection::btree_set(0u32..5_000, 0..1_500),
        ops in prop::collection::vec(op_strategy(5_000, 300), 0..60),
    ) {
        let sorted: Vec<Fat> = keys.iter().map(|&k| Fat::new(k)).collect();
        let mut set = OrderStatisticSet::from_sorted(sorted.clone()).expect("ascending");
        set.check_invariants();
        let inserted: OrderStatisticSet<Fat> = sorted.iter().copied().collect();
        prop_assert!(set == inserted);
        prop_assert_eq!(set.len(), inserted.len());
        for (i, k) in sorted.iter().enumerate() {
            prop_assert_eq!(set.rank(k), Some(i + 1));
            prop_assert_eq!(set.nth(i), Some(*k));
            prop_assert_eq!(set.count_less(&Fat::new(k.0 + 1)), inserted.count_less(&Fat::new(k.0 + 1)));
        }
        let mut model: BTreeSet<Fat> = sorted.into_iter().collect();
        for op in &ops {
            apply(&mut set, &mut model, op, Fat::new);
            set.check_invariants();
        }
        prop_assert!(set.iter().eq(model.iter().copied()));
    }

    /// The same with production capacities (`u32` keys) and larger sets.
    #[test]
    fn u32_from_sorted_matches_inserts(
        keys in prop::collection::btree_set(0u32..200_000, 0..40_000),
        ops in prop::collection::vec(op_strategy(200_000, 12_000), 0..20),
    ) {
        let sorted: Vec<u32> = keys.iter().copied().collect();
        let mut set = OrderStatisticSet::from_sorted(sorted.clone()).expect("ascending");
        set.check_invariants();
        let inserted: OrderStatisticSet<u32> = sorted.iter().copied().collect();
        prop_assert!(set == inserted);
        for (i, k) in sorted.iter().enumerate().step_by(7) {
            prop_assert_eq!(set.rank(k), Some(i + 1));
            prop_assert_eq!(set.nth(i), Some(*k));
        }
        let mut model: BTreeSet<u32> = sorted.into_iter().collect();
        for op in &ops {
            apply(&mut set, &mut model, op, |k| k);
        }
        set.check_invariants();
        prop_assert!(set.iter().eq(model.iter().copied()));
    }

    /// A queue: registrations arrive in ascending order while rounds take the head.
    #[test]
    fn queue_pattern(rounds in prop::collection::vec((0u32..200, 0usize..200), 1..60)) {
        let mut set = OrderStatisticSet::new();
        let mut model = BTreeSet::new();
        let mut next = 0u32;
        for &(arrivals, served) in &rounds {
            apply(&mut set, &mut model, &Op::InsertAscending(next, arrivals), Fat::new);
            next += arrivals;
            apply(&mut set, &mut model, &Op::RemoveFront(served), Fat::new);
            set.check_invariants();
            if let Some(k) = model.iter().nth(model.len() / 2) {
                prop_assert_eq!(set.rank(k), Some(model.len() / 2 + 1));
            }
        }
    }
}

#[test]
fn from_sorted_refuses_keys_out_of_order_and_sizes_its_nodes() {
    assert!(OrderStatisticSet::from_sorted(vec![1u32, 3, 2]).is_none());
    assert!(OrderStatisticSet::from_sorted(vec![1u32, 1]).is_none());
    let empty = OrderStatisticSet::<u32>::from_sorted(Vec::new()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.heap_bytes(), 0);
    empty.check_invariants();
    // Sizes around every capacity boundary, up to three internal levels of fat keys.
    let (leaf, inner) = (
        OrderStatisticSet::<Fat>::leaf_capacity(),
        OrderStatisticSet::<Fat>::internal_capacity(),
    );
    for n in [
        1,
        2,
        leaf - 1,
        leaf,
        leaf + 1,
        leaf * inner,
        leaf * inner + 1,
        leaf * inner * inner + 3,
    ] {
        let set = OrderStatisticSet::from_sorted((0..n as u32).map(Fat::new).collect()).unwrap();
        set.check_invariants();
        assert_eq!(set.len(), n);
        assert_eq!(set.nth(n - 1), Some(Fat::new(n as u32 - 1)));
        assert_eq!(set.rank(&Fat::new(n as u32 / 2)), Some(n / 2 + 1));
        // Full as after an ascending load: no more nodes than the keys need.
        assert_eq!(set.height(), {
            let (mut nodes, mut h) = (n.div_ceil(leaf), 0);
            while nodes > 1 {
                nodes = nodes.div_ceil(inner);
                h += 1;
            }
            h
        });
    }
}

#[test]
fn empty_set() {
    let mut set: OrderStatisticSet<u64> = OrderStatisticSet::new();
    assert_eq!(set.len(), 0);
    assert!(set.is_empty());
    assert!(!set.contains(&5));
    assert_eq!(set.rank(&5), None);
    assert_eq!(set.count_less(&5), 0);
    assert_eq!(set.count_less(&u64::MAX), 0);
    assert_eq!(set.nth(0), None);
    assert_eq!(set.first(), None);
    assert_eq!(set.last(), None);
    assert_eq!(set.iter().next(), None);
    assert_eq!(set.range_from(0).next(), None);
    assert_eq!(set.range_from(usize::MAX).next(), None);
    assert!(!set.remove(&5));
    assert_eq!(set.heap_bytes(), 0);
    assert_eq!(format!("{set:?}"), "{}");
    assert!(set == OrderStatisticSet::default());
    set.check_invariants();
}

#[test]
fn single_element_and_duplicates() {
    let mut set = OrderStatisticSet::new();
    assert!(set.insert(10u64));
    assert!(!set.insert(10));
    assert_eq!(set.len(), 1);
    assert_eq!(set.rank(&10), Some(1));
    assert_eq!(set.rank(&9), None);
    assert_eq!(set.count_less(&10), 0);
    assert_eq!(set.count_less(&11), 1);
    assert_eq!(set.count_less(&0), 0);
    assert_eq!(set.nth(0), Some(10));
    assert_eq!(set.nth(1), None);
    assert_eq!(set.range_from(1).next(), None);
    assert_eq!(set.first(), Some(10));
    assert_eq!(set.last(), Some(10));
    assert!(!set.remove(&11));
    assert!(set.remove(&10));
    assert!(!set.remove(&10));
    assert!(set.is_empty());
    assert_eq!(set.heap_bytes(), 0, "an emptied set frees its memory");
    set.check_invariants();
    assert!(set.insert(3));
    assert_eq!(set.iter().collect::<Vec<_>>(), vec![3]);
}

#[test]
fn extreme_keys_and_debug() {
    let mut set: OrderStatisticSet<i64> = [i64::MAX, i64::MIN, 0, -1].into_iter().collect();
    assert_eq!(
        format!("{set:?}"),
        format!("{{{}, -1, 0, {}}}", i64::MIN, i64::MAX)
    );
    assert_eq!(set.rank(&i64::MIN), Some(1));
    assert_eq!(set.rank(&i64::MAX), Some(4));
    assert_eq!(set.count_less(&i64::MAX), 3);
    assert_eq!(set.count_less(&i64::MIN), 0);
    assert_eq!(set.range_from(2).collect::<Vec<_>>(), vec![0, i64::MAX]);
    assert_eq!(set.range_from(4).count(), 0);
    set.extend([5, 5, 6]);
    assert_eq!(set.len(), 6);
    set.check_invariants();
}

#[test]
fn zero_sized_key() {
    let mut set = OrderStatisticSet::new();
    assert!(set.insert(()));
    assert!(!set.insert(()));
    assert_eq!(set.rank(&()), Some(1));
    assert_eq!(set.nth(0), Some(()));
    set.check_invariants();
    assert!(set.remove(&()));
    assert!(set.is_empty());
}

#[test]
fn clone_is_independent_and_equality_ignores_shape() {
    let ascending: OrderStatisticSet<u32> = (0..5_000).collect();
    let descending: OrderStatisticSet<u32> = (0..5_000).rev().collect();
    let mut interleaved = OrderStatisticSet::new();
    for k in (0..5_000u32).map(|i| i * 7_919 % 5_000) {
        interleaved.insert(k);
    }
    assert_eq!(interleaved.len(), 5_000);
    assert!(ascending == descending && descending == interleaved);
    let mut c = ascending.clone();
    c.remove(&0);
    assert!(c != ascending);
    assert_eq!(ascending.rank(&0), Some(1));
    assert_eq!(c.rank(&1), Some(1));
    c.check_invariants();
    ascending.check_invariants();
    descending.check_invariants();
}

#[test]
fn ascending_and_descending_loads_fill_leaves() {
    type S = OrderStatisticSet<u64>;
    let n = 200_000u64;
    let asc: S = (0..n).collect();
    let desc: S = (0..n).rev().collect();
    asc.check_invariants();
    desc.check_invariants();
    for s in [&asc, &desc] {
        let per_key = s.heap_bytes() as f64 / n as f64;
        assert!(per_key < 10.0, "{per_key} bytes per u64 key");
        assert_eq!(s.rank(&(n / 3)), Some(n as usize / 3 + 1));
    }
    // Random order costs more but stays well inside the budget.
    let mut rnd = S::new();
    let mut x = 1u64;
    while rnd.len() < n as usize {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        rnd.insert(x >> 20);
    }
    rnd.check_invariants();
    let per_key = rnd.heap_bytes() as f64 / n as f64;
    assert!(per_key < 16.0, "{per_key} bytes per random u64 key");
}

#[test]
fn draining_from_the_front_keeps_memory_proportional() {
    let mut set: OrderStatisticSet<(i64, u64)> = OrderStatisticSet::new();
    let mut next = 0u64;
    let mut head = 0u64;
    // Steady state: 50 arrivals then 50 services, 2 000 times, around 20 000 queued.
    for _ in 0..20_000 {
        set.insert((next as i64 * 60, next));
        next += 1;
    }
    for _ in 0..2_000 {
        for _ in 0..50 {
            set.insert((next as i64 * 60, next));
            next += 1;
        }
        for _ in 0..50 {
            assert_eq!(set.nth(0), Some((head as i64 * 60, head)));
            assert!(set.remove(&(head as i64 * 60, head)));
            head += 1;
        }
    }
    set.check_invariants();
    assert_eq!(set.len(), 20_000);
    assert_eq!(set.rank(&(head as i64 * 60, head)), Some(1));
    let per_key = set.heap_bytes() as f64 / set.len() as f64;
    assert!(per_key < 40.0, "{per_key} bytes per (i64, u64) key");
    // Drain everything from the front.
    while let Some(k) = set.nth(0) {
        assert!(set.remove(&k));
    }
    assert_eq!(set.heap_bytes(), 0);
}

#[test]
fn random_ops_against_model_u64() {
    // The model here is a sorted `Vec`, whose rank is a binary search, so that 300 000
    // operations stay fast in a debug build.
    let mut set = OrderStatisticSet::new();
    let mut model: Vec<u64> = Vec::new();
    let mut x = 42u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for step in 0..300_000u32 {
        let r = rand();
        let k = r % 50_000;
        let at = model.binary_search(&k);
        match (r >> 32) % 10 {
            0..=4 => {
                assert_eq!(set.insert(k), at.is_err());
                if let Err(i) = at {
                    model.insert(i, k);
                }
            }
            5..=7 => {
                assert_eq!(set.remove(&k), at.is_ok());
                if let Ok(i) = at {
                    model.remove(i);
                }
            }
            8 => assert_eq!(set.rank(&k), at.ok().map(|i| i + 1)),
            _ => {
                assert_eq!(set.count_less(&k), at.unwrap_or_else(|i| i));
                let i = (r as usize >> 3) % (model.len() + 1);
                assert_eq!(set.nth(i), model.get(i).copied());
            }
        }
        assert_eq!(set.len(), model.len());
        if step % 50_000 == 0 {
            set.check_invariants();
        }
    }
    set.check_invariants();
    assert!(set.iter().eq(model.iter().copied()));
}

/// Throwaway measurement at one million keys; prints figures, asserts only correctness.
#[test]
#[ignore]
fn measure_1m() {
    use std::time::Instant;
    const N: u64 = 1_000_000;

    fn report<K: Ord + Copy>(name: &str, keys: &[K]) {
        let t = Instant::now();
        let mut set = OrderStatisticSet::new();
        for &k in keys {
            set.insert(k);
        }
        let insert = t.elapsed();
        assert_eq!(set.len(), keys.len());

        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let probes: Vec<usize> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % keys.len() as u64) as usize
            })
            .collect();
        let mut lat = Vec::with_capacity(probes.len());
        let t_all = Instant::now();
        for &i in &probes {
            let t = Instant::now();
            let r = set.rank(&keys[i]);
            lat.push(t.elapsed().as_nanos() as u64);
            assert_eq!(r, Some(i + 1));
        }
        let all = t_all.elapsed();
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        let t = Instant::now();
        let mut acc = 0usize;
        for &i in &probes {
            acc = acc.wrapping_add(set.rank(&keys[i]).unwrap());
        }
        let batch = t.elapsed();
        assert!(acc > 0);
        let bytes = set.heap_bytes();
        println!(
            "{name}: {} ascending inserts {:.1} ms ({:.0} ns/insert); height {}; \
             rank over 100k random present keys: mean {:.0} ns (batch, no timer), \
             per-call timed mean {:.0} ns, p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns; \
             heap {} bytes = {:.2} bytes/key (key is {} bytes)",
            keys.len(),
            insert.as_secs_f64() * 1e3,
            insert.as_nanos() as f64 / keys.len() as f64,
            set.height(),
            batch.as_nanos() as f64 / probes.len() as f64,
            all.as_nanos() as f64 / probes.len() as f64,
            p(0.5),
            p(0.99),
            p(0.999),
            lat[lat.len() - 1],
            bytes,
            bytes as f64 / keys.len() as f64,
            std::mem::size_of::<K>(),
        );
    }

    let u64_keys: Vec<u64> = (0..N).map(|i| 1_700_000_000_000 + i * 37).collect();
    report("u64", &u64_keys);
    let pair_keys: Vec<(i64, u64)> = (0..N).map(|i| (1_700_000_000 + i as i64, i)).collect();
    report("(i64, u64)", &pair_keys);

    // Random insertion order for comparison (memory is what differs).
    let mut shuffled = pair_keys.clone();
    let mut x = 7u64;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let t = Instant::now();
    let mut set: OrderStatisticSet<(i64, u64)> = shuffled.iter().copied().collect();
    println!(
        "(i64, u64) random order: {} inserts {:.1} ms; heap {:.2} bytes/key",
        set.len(),
        t.elapsed().as_secs_f64() * 1e3,
        set.heap_bytes() as f64 / set.len() as f64
    );
    // Serve half of the queue from the front, as allocation rounds do.
    let t = Instant::now();
    for k in &pair_keys[..N as usize / 2] {
        assert!(set.remove(k));
    }
    println!(
        "(i64, u64): {} removals from the front {:.1} ms; afterwards {:.2} bytes/key",
        N / 2,
        t.elapsed().as_secs_f64() * 1e3,
        set.heap_bytes() as f64 / set.len() as f64
    );
    set.check_invariants();
}
