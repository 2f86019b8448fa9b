//! Benchmark of the allocation core at city scale: 1,000,000 applicants, 5 choices each,
//! 5,000 institutions with Zipf-like popularity (a few institutions are wanted by a large
//! share of the city), seats for about 80% of applicants, and a priority class for about 10%
//! of applicants at one of their choices. Serial dictatorship on the same problem runs in the
//! same process as a baseline, and `problem_build` measures the one-off validation and
//! rank-order layout that precedes every allocation.
//!
//! The instance comes from a fixed-seed generator, so every run measures the same problem.
//! Run with `cargo bench --bench allocation`; set `OCHERED_BENCH_APPLICANTS` to try another
//! size.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ochered_core::allocation::{
    check_assignment, deferred_acceptance, serial_dictatorship, ProblemBuilder,
};

const SEED: u64 = 0x0C4E_2ED0_A110_CA7E;
const N_APPLICANTS_DEFAULT: usize = 1_000_000;
const N_INSTITUTIONS: usize = 5_000;
const N_CHOICES: usize = 5;
const ZIPF_EXPONENT: f64 = 1.0;
const SEATS_PER_APPLICANT: f64 = 0.8;
const PRIORITY_SHARE: f64 = 0.10;
const PRIORITY_CLASSES: u64 = 4;

/// SplitMix64: small, fast, and good enough to spread a benchmark instance.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (the tiny modulo bias does not matter here).
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The generated applicants, and the most applicants listing one institution per seat.
fn generate_problem(n_applicants: usize) -> (ProblemBuilder, f64) {
    let mut random = SplitMix64(SEED);

    // Popularity rank r has weight 1 / (r + 1)^s; ranks are dealt to institutions at random so
    // that popularity does not follow the index.
    let mut institution_by_popularity: Vec<u32> = (0..N_INSTITUTIONS as u32).collect();
    for i in (1..N_INSTITUTIONS).rev() {
        let j = random.below(i as u64 + 1) as usize;
        institution_by_popularity.swap(i, j);
    }
    let mut cumulative = Vec::with_capacity(N_INSTITUTIONS);
    let mut total = 0.0;
    for popularity in 0..N_INSTITUTIONS {
        total += 1.0 / ((popularity + 1) as f64).powf(ZIPF_EXPONENT);
        cumulative.push(total);
    }

    let mean_capacity = SEATS_PER_APPLICANT * n_applicants as f64 / N_INSTITUTIONS as f64;
    let capacities: Vec<u32> = (0..N_INSTITUTIONS)
        .map(|_| (mean_capacity * (0.5 + random.unit())).round() as u32)
        .collect();

    // Ranks: a random permutation, like a seeded lottery.
    let mut ranks: Vec<u64> = (0..n_applicants as u64).collect();
    for i in (1..n_applicants).rev() {
        let j = random.below(i as u64 + 1) as usize;
        ranks.swap(i, j);
    }

    let mut builder =
        ProblemBuilder::with_capacity(capacities.clone(), n_applicants, n_applicants * N_CHOICES);
    let mut preferences = Vec::with_capacity(N_CHOICES);
    let mut demand = vec![0u64; N_INSTITUTIONS];
    for &rank in &ranks {
        preferences.clear();
        while preferences.len() < N_CHOICES {
            let draw = random.unit() * total;
            let popularity = cumulative.partition_point(|&c| c <= draw);
            let institution = institution_by_popularity[popularity.min(N_INSTITUTIONS - 1)];
            if !preferences.contains(&institution) {
                preferences.push(institution);
            }
        }
        for &institution in &preferences {
            demand[institution as usize] += 1;
        }
        let priority;
        let priorities: &[(u32, u32)] = if random.unit() < PRIORITY_SHARE {
            let institution = preferences[random.below(N_CHOICES as u64) as usize];
            priority = [(institution, random.below(PRIORITY_CLASSES) as u32)];
            &priority
        } else {
            &[]
        };
        builder
            .push_applicant(&preferences, priorities, rank)
            .expect("generated applicants are valid");
    }
    let oversubscription_max = demand
        .iter()
        .zip(&capacities)
        .map(|(&demand, &capacity)| demand as f64 / f64::from(capacity.max(1)))
        .fold(0.0, f64::max);
    (builder, oversubscription_max)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn bench_allocation(c: &mut Criterion) {
    let n_applicants = std::env::var("OCHERED_BENCH_APPLICANTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(N_APPLICANTS_DEFAULT);

    let started = Instant::now();
    let (builder, oversubscription_max) = generate_problem(n_applicants);
    let generated_in = started.elapsed();
    let started = Instant::now();
    let problem = builder.clone().build().expect("generated ranks are unique");
    let built_in = started.elapsed();

    let started = Instant::now();
    let assignment = deferred_acceptance(&problem);
    let first_run_in = started.elapsed();
    check_assignment(&problem, &assignment).expect("deferred acceptance is stable");
    let n_assigned = assignment.iter().filter(|a| a.is_some()).count();
    let seats: u64 = problem.capacities().iter().map(|&c| u64::from(c)).sum();
    let result_bytes = assignment.capacity() * std::mem::size_of::<Option<u32>>();
    eprintln!(
        "allocation bench: {} applicants, {} institutions, {} preferences, {} seats; \
         most oversubscribed institution: {:.0} applicants list it per seat; \
         generated in {:.2?}; built in {:.2?}; first deferred_acceptance run {:.2?}; {} assigned",
        problem.n_applicants(),
        problem.n_institutions(),
        problem.n_preferences(),
        seats,
        oversubscription_max,
        generated_in,
        built_in,
        first_run_in,
        n_assigned,
    );
    eprintln!(
        "allocation bench memory: problem {:.1} MiB, result {:.1} MiB; process peak RSS \
         (VmHWM, includes generation) {} KiB, current RSS {} KiB",
        mib(problem.memory_bytes()),
        mib(result_bytes),
        proc_status_kib("VmHWM:").unwrap_or(0),
        proc_status_kib("VmRSS:").unwrap_or(0),
    );
    drop(assignment);

    let mut group = c.benchmark_group("allocation");
    group.bench_function("deferred_acceptance", |b| {
        b.iter(|| deferred_acceptance(black_box(&problem)))
    });
    group.bench_function("serial_dictatorship_baseline", |b| {
        b.iter(|| serial_dictatorship(black_box(&problem)))
    });
    group.bench_function("problem_build", |b| {
        b.iter_batched(
            || builder.clone(),
            |builder| builder.build().expect("generated ranks are unique"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_allocation
}
criterion_main!(benches);
