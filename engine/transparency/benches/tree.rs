//! Appending event hashes: our tree against `ct-merkle`'s `MemoryBackedTree`, which
//! recomputes the path to the root on every push; proofs; and signing a receipt. Run with
//! `cargo bench -p ochered-transparency --bench tree`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ochered_transparency::LogTree;

fn hashes(n: u64) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            let mut h = [7u8; 32];
            h[..8].copy_from_slice(&i.to_le_bytes());
            h
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("tree_append");
    group.sample_size(10);
    for n in [100_000u64, 1_000_000] {
        let input = hashes(n);
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("ours/{n}"), |b| {
            b.iter_batched(
                LogTree::new,
                |mut tree| {
                    for h in &input {
                        tree.push(h);
                    }
                    tree
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("ct_merkle_memory_backed/{n}"), |b| {
            b.iter_batched(
                ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, [u8; 32]>::new,
                |mut tree| {
                    for h in &input {
                        tree.push(*h);
                    }
                    tree
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn prove(c: &mut Criterion) {
    let n = 1_000_000u64;
    let mut tree = LogTree::new();
    for h in hashes(n) {
        tree.push(&h);
    }
    let mut group = c.benchmark_group("tree_prove");
    group.bench_function("inclusion_against_an_older_size/1000000", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % (n - 1000);
            tree.inclusion_path(i, n - 1000 + i % 1000)
        })
    });
    group.bench_function("consistency/1000000", |b| {
        let mut i = 1u64;
        b.iter(|| {
            i = 1 + (i + 7919) % (n - 1);
            tree.consistency_path(i, n)
        })
    });
    group.finish();
}

/// What a receipt costs the server per acknowledged submission: one Ed25519 signature over
/// the framed fields (the HTTP path pays it; the engine's durable-submissions benchmark does
/// not include it).
fn receipt(c: &mut Criterion) {
    let key = ochered_transparency::SigningKey::from_bytes(&[5; 32]);
    let mut group = c.benchmark_group("receipt");
    group.bench_function("sign", |b| {
        b.iter(|| {
            ochered_transparency::Receipt::sign(
                &key,
                ochered_transparency::ReceiptFields {
                    authority: "demo".into(),
                    service: "kindergarten".into(),
                    number: 17,
                    registered_at: "2027-01-10T09:00:00.123456+05:00".into(),
                    time_zone: "Asia/Yekaterinburg".into(),
                    authority_seq: 123_456,
                    event_hash: [9; 32],
                },
            )
        })
    });
    group.finish();
}

criterion_group!(benches, append, prove, receipt);
criterion_main!(benches);
