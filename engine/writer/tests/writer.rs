//! The writer against real stores: group commit, idempotency, failed commits, crashes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use ochered_core::command::Command;
use ochered_core::domain::ApplicationNumber;
use ochered_core::Event;
use ochered_store::testing::Harness;
use ochered_store::{
    ChainHead, EventStore, IdempotencyHit, NewEvent, StoreError, StoredEvent, VerifyOutcome,
};
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{
    decode_event, encode_snapshot, load_state, store_snapshot, Outcome, RequestMeta, Writer,
    WriterConfig, WriterError,
};

const AUTHORITY: &str = "test-city";

mod common;
use common::config;

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()
}

async fn setup(writer: &Writer) {
    let slots_from: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    for command in demo::setup_commands(AUTHORITY, &DemoShape::default(), slots_from) {
        let reply = writer
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
        assert!(
            matches!(reply.outcome, Outcome::Accepted { .. }),
            "{reply:?}"
        );
    }
}

/// A writer of [`AUTHORITY`] on `store` with `config`, its setup committed.
async fn started_with_setup(store: Arc<dyn EventStore>, config: WriterConfig) -> Writer {
    let (writer, _) = Writer::start(store, AUTHORITY, config).await.unwrap();
    setup(&writer).await;
    writer
}

fn application(n: u64) -> Command {
    let mut rng = SeededRng::new(n);
    demo::kindergarten_application(&mut rng, n, &DemoShape::default(), today())
}

fn keyed(key: &str) -> RequestMeta {
    RequestMeta {
        idempotency_key: Some(key.to_owned()),
        actor: Some("parent".into()),
        ..RequestMeta::default()
    }
}

fn number_of(outcome: &Outcome) -> ApplicationNumber {
    match outcome {
        Outcome::Accepted { events } => match &events[0].event {
            Event::KindergartenApplicationSubmitted { number, .. } => *number,
            other => panic!("unexpected {other:?}"),
        },
        Outcome::Rejected { rejection } => panic!("rejected: {rejection:?}"),
    }
}

async fn each_store(test: impl AsyncFn(Arc<dyn EventStore>)) {
    let sqlite = Harness::sqlite().await;
    test(sqlite.store.clone()).await;
    if let Some(pg) = Harness::postgres().await {
        test(pg.store.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_are_committed_in_groups_and_replay_to_the_same_state() {
    each_store(async |store: Arc<dyn EventStore>| {
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        setup(&writer).await;
        let batches_before = writer.stats().batches.load(Ordering::Relaxed);
        let mut tasks = Vec::new();
        for n in 0..400u64 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                writer.submit(application(n), keyed(&format!("k{n}"))).await
            }));
        }
        let mut numbers = Vec::new();
        for t in tasks {
            numbers.push(number_of(&t.await.unwrap().unwrap().outcome).0);
        }
        numbers.sort();
        assert_eq!(
            numbers,
            (1..=400).collect::<Vec<_>>(),
            "every submission acknowledged once"
        );
        let batches = writer.stats().batches.load(Ordering::Relaxed) - batches_before;
        assert!(
            batches < 400,
            "group commit: {batches} batches for 400 commands"
        );
        // The wait in front of the writer was measured for every batch taken, and with the
        // queue drained nothing is expected to wait.
        let (taken, _) = writer.stats().head_waits();
        assert!(
            taken >= batches,
            "{taken} batches taken, {batches} committed"
        );
        let pressure = writer.pressure();
        assert_eq!(pressure.queued, 0);
        assert_eq!(pressure.expected_wait(), std::time::Duration::ZERO);

        let live_hash = writer.read(|s| s.state_hash());
        let (replayed, stats) = load_state(store.as_ref(), AUTHORITY).await.unwrap();
        assert_eq!(replayed.state_hash(), live_hash);
        assert_eq!(stats.head, writer.head());
        assert!(matches!(
            store.verify(AUTHORITY).await.unwrap(),
            VerifyOutcome::Ok { .. }
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_first_answer_even_after_a_restart() {
    each_store(async |store: Arc<dyn EventStore>| {
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, config()).await.unwrap();
        setup(&writer).await;
        let first = writer.submit(application(1), keyed("retry-1")).await.unwrap();
        assert!(!first.replayed);
        let again = writer.submit(application(1), keyed("retry-1")).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.outcome, first.outcome);
        assert_eq!(
            writer.submit(application(2), keyed("retry-1")).await,
            Err(WriterError::KeyReused)
        );
        // Without a key, the same child is a duplicate, answered with the existing number.
        let duplicate = writer.submit(application(1), RequestMeta::default()).await.unwrap();
        assert!(matches!(
            duplicate.outcome,
            Outcome::Rejected { rejection: ochered_core::Rejection::DuplicateApplication { existing } } if existing == number_of(&first.outcome)
        ));

        drop(writer);
        let (restarted, _) = Writer::start(store.clone(), AUTHORITY, config()).await.unwrap();
        let after_restart = restarted.submit(application(1), keyed("retry-1")).await.unwrap();
        assert!(after_restart.replayed);
        assert_eq!(after_restart.outcome, first.outcome);
        assert_eq!(
            restarted.submit(application(3), keyed("retry-1")).await,
            Err(WriterError::KeyReused)
        );
    })
    .await;
}

/// Delegates to a real store but can be told to fail every append.
struct FailingStore {
    inner: Arc<dyn EventStore>,
    fail_appends: AtomicBool,
}

#[async_trait]
impl EventStore for FailingStore {
    async fn head(&self, authority: &str) -> Result<ChainHead, StoreError> {
        self.inner.head(authority).await
    }
    async fn append_after(
        &self,
        authority: &str,
        after: Option<i64>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("disk full (simulated)".into()));
        }
        self.inner.append_after(authority, after, events).await
    }
    async fn legacy_idempotency(
        &self,
        a: &str,
        k: &str,
    ) -> Result<Option<IdempotencyHit>, StoreError> {
        self.inner.legacy_idempotency(a, k).await
    }
    async fn read(&self, a: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read(a, after, limit).await
    }
    async fn authorities(&self) -> Result<Vec<String>, StoreError> {
        self.inner.authorities().await
    }
    async fn verify(&self, a: &str) -> Result<VerifyOutcome, StoreError> {
        self.inner.verify(a).await
    }
    async fn save_snapshot(&self, a: &str, seq: i64, s: &[u8]) -> Result<(), StoreError> {
        self.inner.save_snapshot(a, seq, s).await
    }
    async fn load_snapshot(&self, a: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        self.inner.load_snapshot(a).await
    }
    async fn save_snapshot_chunk(
        &self,
        a: &str,
        seq: i64,
        chunk: i64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.save_snapshot_chunk(a, seq, chunk, bytes).await
    }
    async fn load_snapshot_chunk(
        &self,
        a: &str,
        seq: i64,
        chunk: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.load_snapshot_chunk(a, seq, chunk).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_fails_acknowledges_nothing() {
    each_store(async |inner: Arc<dyn EventStore>| {
        let store = Arc::new(FailingStore {
            inner: inner.clone(),
            fail_appends: AtomicBool::new(false),
        });
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        setup(&writer).await;
        writer.submit(application(0), keyed("ok-0")).await.unwrap();
        let hash_before = writer.read(|s| s.state_hash());
        let head_before = inner.head(AUTHORITY).await.unwrap();

        store.fail_appends.store(true, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for n in 1..=50u64 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                writer
                    .submit(application(n), keyed(&format!("fail-{n}")))
                    .await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(WriterError::Unavailable(_))));
        }
        assert_eq!(
            writer.read(|s| s.state_hash()),
            hash_before,
            "state as before the batch"
        );
        assert_eq!(
            inner.head(AUTHORITY).await.unwrap(),
            head_before,
            "nothing written"
        );

        // The store comes back: the same requests go through, numbered as if nothing happened.
        store.fail_appends.store(false, Ordering::SeqCst);
        let reply = writer
            .submit(application(1), keyed("fail-1"))
            .await
            .unwrap();
        assert!(!reply.replayed);
        assert_eq!(number_of(&reply.outcome), ApplicationNumber(2));
        let (replayed, _) = load_state(inner.as_ref(), AUTHORITY).await.unwrap();
        assert_eq!(replayed.state_hash(), writer.read(|s| s.state_hash()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_acknowledgement_loses_nothing() {
    each_store(async |store: Arc<dyn EventStore>| {
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        setup(&writer).await;
        drop(writer);
        let crashing = WriterConfig {
            crash_after_commit: true,
            ..config()
        };
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, crashing)
            .await
            .unwrap();
        let answer = writer.submit(application(7), keyed("crash-7")).await;
        assert_eq!(
            answer,
            Err(WriterError::Stopped),
            "no acknowledgement was sent"
        );

        // The client retries after the restart and gets the committed answer.
        let (restarted, stats) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        assert!(stats.events > 0);
        let n = restarted.read(|s| {
            s.active_application_of(
                ochered_core::state::ServiceKind::Kindergarten,
                &demo::demo_child(7),
            )
        });
        assert_eq!(n, Some(ApplicationNumber(1)));
        let retry = restarted
            .submit(application(7), keyed("crash-7"))
            .await
            .unwrap();
        assert!(retry.replayed);
        assert_eq!(number_of(&retry.outcome), ApplicationNumber(1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_queue_the_writer_refuses_at_once() {
    let h = Harness::sqlite().await;
    let small = WriterConfig {
        queue_commands_max: 4,
        batch_commands_max: 4,
        ..config()
    };
    let writer = started_with_setup(h.store.clone(), small).await;
    let mut tasks = Vec::new();
    for n in 0..200u64 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            writer.submit(application(n), RequestMeta::default()).await
        }));
    }
    let mut overloaded = 0;
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(WriterError::Overloaded) => overloaded += 1,
            Ok(_) => accepted += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(overloaded > 0, "some were shed");
    assert!(accepted > 0, "some went through");
    assert_eq!(writer.stats().shed.load(Ordering::Relaxed), overloaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_shorten_replay_and_give_the_same_state() {
    let h = Harness::sqlite().await;
    let snapshotting = WriterConfig {
        snapshot_every_events: Some(50),
        ..config()
    };
    let writer = started_with_setup(h.store.clone(), snapshotting).await;
    for n in 0..120u64 {
        writer
            .submit(application(n), keyed(&format!("s{n}")))
            .await
            .unwrap();
    }
    let live = writer.read(|s| s.state_hash());
    // The writer stores its snapshots in a task of its own: wait for the newest.
    let (state, stats) = loop {
        let (state, stats) = load_state(h.store.as_ref(), AUTHORITY).await.unwrap();
        if stats.from_snapshot >= Some(100) {
            break (state, stats);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(stats.events < 120);
    assert_eq!(state.state_hash(), live);
    // A retry of a key committed before the snapshot is still recognised.
    drop(writer);
    let (restarted, _) = Writer::start(h.store.clone(), AUTHORITY, config())
        .await
        .unwrap();
    let retry = restarted.submit(application(3), keyed("s3")).await.unwrap();
    assert!(retry.replayed);
    let _ = Duration::zero();
}

/// A due snapshot waits while commands keep coming (encoding one holds them back), then is
/// taken in the lull without another command; one due twice over is taken regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_snapshot_waits_for_a_lull_and_is_taken_in_it() {
    let h = Harness::sqlite().await;
    let waiting = WriterConfig {
        snapshot_every_events: Some(60),
        // Any command in the last second or two is "busy".
        snapshot_lull_per_second: Some(1),
        ..config()
    };
    let writer = started_with_setup(h.store.clone(), waiting).await;
    let after_setup = writer.head().authority_seq;
    assert!(after_setup < 60, "the setup alone is not due a snapshot");
    // One command after another: the writer is idle between them (where a snapshot is
    // taken without the lull), but busy at every one of them.
    for n in 0..80u64 {
        writer
            .submit(application(n), keyed(&format!("b{n}")))
            .await
            .unwrap();
    }
    let head = writer.head().authority_seq;
    assert!(
        (60..120).contains(&head),
        "due once, not twice over: {head}"
    );
    assert_eq!(
        h.store.load_snapshot(AUTHORITY).await.unwrap().map(|s| s.0),
        None,
        "no snapshot while the commands came"
    );
    // The lull: no command comes, and the writer takes it by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let taken = loop {
        if let Some((seq, _)) = h.store.load_snapshot(AUTHORITY).await.unwrap() {
            break seq;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot in the lull"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(taken, head, "taken in the lull, of the whole log");
    let (state, stats) = load_state(h.store.as_ref(), AUTHORITY).await.unwrap();
    assert_eq!(stats.from_snapshot, Some(head));
    assert_eq!(state.state_hash(), writer.read(|s| s.state_hash()));

    // Busy past twice the interval: taken at an idle moment regardless of the lull.
    for n in 80..210u64 {
        writer
            .submit(application(n), keyed(&format!("b{n}")))
            .await
            .unwrap();
        let newest = h.store.load_snapshot(AUTHORITY).await.unwrap().unwrap().0;
        if newest > head {
            assert!(
                newest - head >= 120,
                "not before twice the interval: {newest} after {head}"
            );
            return;
        }
    }
    panic!("no snapshot after twice the interval while busy");
}

/// Two writers of one authority (what fencing prevents in a cluster): the one whose log moved
/// under it cannot commit — its append names the head it decided on — so a key it does not
/// know cannot be used twice, and after rebuilding from the log it answers the retry with the
/// first answer. The log has no index over keys; this is what keeps them unique.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_of_an_authority_cannot_use_a_key_twice() {
    each_store(async |store: Arc<dyn EventStore>| {
        let (first, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        setup(&first).await;
        // Started now, so its key index and head do not know what `first` writes next.
        let (stale, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        let answer = first.submit(application(1), keyed("twice")).await.unwrap();
        let head = store.head(AUTHORITY).await.unwrap();

        let refused = stale.submit(application(1), keyed("twice")).await;
        assert!(
            matches!(refused, Err(WriterError::Unavailable(_))),
            "{refused:?}"
        );
        assert_eq!(
            store.head(AUTHORITY).await.unwrap(),
            head,
            "nothing written"
        );
        // Rebuilt from the log after the refusal, it knows the key and where it is recorded.
        let retry = stale.submit(application(1), keyed("twice")).await.unwrap();
        assert!(retry.replayed);
        assert_eq!(retry.outcome, answer.outcome);
        assert_eq!(
            stale.submit(application(2), keyed("twice")).await,
            Err(WriterError::KeyReused)
        );
        assert!(matches!(
            store.verify(AUTHORITY).await.unwrap(),
            VerifyOutcome::Ok { .. }
        ));
    })
    .await;
}

/// Submits `n` keyed applications (application `*next`, `*next + 1`, …, keys `k{number}`)
/// and withdraws about one in five of them, so that queues lose members as well as gain them.
/// Returns how many were accepted.
async fn submit_some(writer: &Writer, rng: &mut SeededRng, next: &mut u64, n: u64) -> u64 {
    let mut accepted = 0;
    for _ in 0..n {
        *next += 1;
        let reply = writer
            .submit(application(*next), keyed(&format!("k{next}")))
            .await
            .unwrap();
        let Outcome::Accepted { .. } = &reply.outcome else {
            continue;
        };
        accepted += 1;
        if rng.next_u64().is_multiple_of(5) {
            let withdraw = Command::WithdrawApplication {
                application: number_of(&reply.outcome),
                reason: "moved".into(),
            };
            writer
                .submit(withdraw, RequestMeta::default())
                .await
                .unwrap();
        }
    }
    accepted
}

/// The state that folding every event of the log gives, without `load_state` or snapshots.
async fn full_fold(store: &dyn EventStore) -> ochered_core::State {
    let mut state = ochered_core::State::new();
    let mut after = 0;
    loop {
        let page = store.read(AUTHORITY, after, 1000).await.unwrap();
        let Some(last) = page.last() else {
            return state;
        };
        after = last.authority_seq;
        for stored in &page {
            state.apply(&decode_event(stored).unwrap());
        }
    }
}

/// A snapshot taken at a random point, stored in pieces of a few kilobytes, and a restart
/// from it with more events after it: the same state (hash, histories, every queue's members
/// and change log) and key index as folding the whole log, on a few seeds and both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_a_snapshot_in_pieces_equals_a_full_replay() {
    each_store(async |store: Arc<dyn EventStore>| {
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        setup(&writer).await;
        let (mut rng, mut next, mut keys) = (SeededRng::new(7), 1000, 0);
        for round in 0..3 {
            let n = 20 + rng.next_u64() % 60;
            keys += submit_some(&writer, &mut rng, &mut next, n).await;
            let (state, stats) = load_state(store.as_ref(), AUTHORITY).await.unwrap();
            let snapshot = encode_snapshot(&state, &stats.idempotency_keys, 2048 + round * 1000);
            assert!(
                snapshot.chunks.len() > 2,
                "{} pieces",
                snapshot.chunks.len()
            );
            assert!(snapshot
                .chunks
                .iter()
                .all(|c| c.len() <= 2048 + round * 1000));
            store_snapshot(
                store.as_ref(),
                AUTHORITY,
                stats.head.authority_seq,
                snapshot,
            )
            .await
            .unwrap();
            let m = rng.next_u64() % 40;
            keys += submit_some(&writer, &mut rng, &mut next, m).await;

            let (resumed, resumed_stats) = load_state(store.as_ref(), AUTHORITY).await.unwrap();
            assert_eq!(resumed_stats.from_snapshot, Some(stats.head.authority_seq));
            let full = full_fold(store.as_ref()).await;
            assert_eq!(resumed.state_hash(), full.state_hash());
            assert_eq!(resumed.state_hash(), writer.read(|s| s.state_hash()));
            assert_eq!(resumed.histories(), full.histories());
            let queues = |s: &ochered_core::State| {
                s.queues
                    .iter()
                    .map(|(k, q)| (*k, q.members.iter().collect::<Vec<_>>(), q.changes.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(queues(&resumed), queues(&full));
            // The indexes rebuilt from the snapshot (beside its reading, on a second thread):
            // each child's current and enrolled application, and sound queue trees.
            assert_eq!(
                resumed.n_active_applications(),
                full.n_active_applications()
            );
            for app in full.applications() {
                assert_eq!(
                    resumed.active_application_of(app.service, &app.child),
                    full.active_application_of(app.service, &app.child)
                );
                assert_eq!(
                    resumed.enrolled_application_of(&app.child),
                    full.enrolled_application_of(&app.child)
                );
            }
            for (_, q) in resumed.queues.iter() {
                q.members.check_invariants();
            }
            assert_eq!(resumed_stats.idempotency_keys.len() as u64, keys);
        }
        // A key committed before the snapshots is still recognised by a restarted writer.
        drop(writer);
        let (restarted, stats) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        assert!(stats.from_snapshot.is_some());
        let reply = restarted
            .submit(application(1003), keyed("k1003"))
            .await
            .unwrap();
        assert!(reply.replayed);
        // Every key, from before the snapshot and after it (those wait while the snapshot's
        // index is built on its own thread, then join it): a request sent again is answered
        // from the log, never decided a second time.
        for i in 1001..=next {
            let reply = restarted
                .submit(application(i), keyed(&format!("k{i}")))
                .await
                .unwrap();
            if let Outcome::Accepted { .. } = &reply.outcome {
                assert!(
                    reply.replayed,
                    "key k{i} was not recognised after the restart"
                );
            }
        }
    })
    .await;
}

/// `load_state` did not use a snapshot, and gave the state and key index of a full replay.
async fn assert_replayed_in_full(store: &dyn EventStore, hash: &str, keys: usize, why: &str) {
    let (state, stats) = load_state(store, AUTHORITY).await.unwrap();
    assert_eq!(stats.from_snapshot, None, "{why}: the snapshot is not used");
    assert_eq!(state.state_hash(), hash, "{why}");
    assert_eq!(stats.idempotency_keys.len(), keys, "{why}");
}

/// A snapshot that cannot be used — of the older layout (`ochsnap3`: the state as one JSON
/// document), or with a piece changed, cut short or missing — is not used: the whole log is
/// replayed instead (a warning names why), to the same state, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_snapshot_is_ignored_and_the_whole_log_replayed() {
    each_store(async |store: Arc<dyn EventStore>| {
        let (writer, _) = Writer::start(store.clone(), AUTHORITY, config())
            .await
            .unwrap();
        setup(&writer).await;
        submit_some(&writer, &mut SeededRng::new(3), &mut 0, 60).await;
        let (state, stats) = load_state(store.as_ref(), AUTHORITY).await.unwrap();
        let (head, hash, keys) = (
            stats.head.authority_seq,
            state.state_hash(),
            stats.idempotency_keys.len(),
        );
        let store = store.as_ref();

        let mut older = b"ochsnap3".to_vec();
        older.extend_from_slice(&[0; 16]);
        store.save_snapshot(AUTHORITY, head, &older).await.unwrap();
        assert_replayed_in_full(store, &hash, keys, "a snapshot of the older layout").await;

        let snapshot = encode_snapshot(&state, &stats.idempotency_keys, 1024);
        let (pieces, header) = (snapshot.chunks.len() as u64, snapshot.header.clone());
        store_snapshot(store, AUTHORITY, head, snapshot)
            .await
            .unwrap();
        let (_, used) = load_state(store, AUTHORITY).await.unwrap();
        assert_eq!(
            used.from_snapshot,
            Some(head),
            "the intact snapshot is used"
        );

        let good = store
            .load_snapshot_chunk(AUTHORITY, head, 1)
            .await
            .unwrap()
            .unwrap();
        let mut changed = good.clone();
        changed[good.len() / 2] ^= 1;
        store
            .save_snapshot_chunk(AUTHORITY, head, 1, &changed)
            .await
            .unwrap();
        assert_replayed_in_full(store, &hash, keys, "a piece with one bit changed").await;
        store
            .save_snapshot_chunk(AUTHORITY, head, 1, &good[..good.len() - 1])
            .await
            .unwrap();
        assert_replayed_in_full(store, &hash, keys, "a piece cut short").await;
        store
            .save_snapshot_chunk(AUTHORITY, head, 1, &good)
            .await
            .unwrap();
        let mut more = header.clone();
        more[8..16].copy_from_slice(&(pieces + 1).to_le_bytes());
        store.save_snapshot(AUTHORITY, head, &more).await.unwrap();
        assert_replayed_in_full(store, &hash, keys, "a missing piece").await;
        store.save_snapshot(AUTHORITY, head, &header).await.unwrap();
        let (_, used) = load_state(store, AUTHORITY).await.unwrap();
        assert_eq!(used.from_snapshot, Some(head), "repaired, it is used again");
    })
    .await;
}
