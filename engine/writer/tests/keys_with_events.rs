//! A new applicant's data key stored with the event that first needs it (SQLite), through
//! the writer: one commit for both, nothing of a failed or rejected command, one key for
//! concurrent first submissions, and no pending key stored after an erasure. On PostgreSQL
//! the key is stored first, as before.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ochered_core::command::{Command, Sealed};
use ochered_core::domain::{InstitutionId, PersonKey};
use ochered_store::testing::Harness;
use ochered_store::EventStore;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::privacy::{MasterKey, NewKey, Privacy};
use ochered_writer::{Outcome, Reply, RequestMeta, Writer, WriterConfig, WriterError};

const CITY: &str = "test-city";

mod common;
use common::config;

fn master() -> MasterKey {
    MasterKey::from_bytes([9; 32])
}

async fn start(store: Arc<dyn EventStore>) -> Writer {
    let (writer, _) = Writer::start(store, CITY, config()).await.unwrap();
    let slots_from: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    for command in demo::setup_commands(CITY, &DemoShape::default(), slots_from) {
        let reply = writer
            .submit(command, RequestMeta::default())
            .await
            .unwrap();
        assert!(accepted(&reply), "{reply:?}");
    }
    writer
}

fn accepted(reply: &Reply) -> bool {
    matches!(&reply.outcome, Outcome::Accepted { events } if !events.is_empty())
}

/// Child `n`'s kindergarten application with `sealed`.
fn kindergarten(n: u64, sealed: Sealed) -> Command {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
    let mut command =
        demo::kindergarten_application(&mut SeededRng::new(n), n, &DemoShape::default(), today);
    if let Command::SubmitKindergartenApplication { form } = &mut command {
        form.sealed = Some(sealed);
    }
    command
}

/// Child `n`'s first-grade draft with `sealed`.
fn school_draft(n: u64, sealed: Sealed) -> Command {
    let mut form = demo::school_form(&mut SeededRng::new(n), n, &DemoShape::default(), true);
    form.sealed = Some(sealed);
    Command::SaveSchoolDraft { form }
}

fn child(n: u64) -> PersonKey {
    demo::demo_child(n)
}

fn same_key(a: &Option<NewKey>, b: &Option<NewKey>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(&a.to_store(), &b.to_store()),
        _ => false,
    }
}

async fn opens(privacy: &Privacy, n: u64, sealed: &Sealed) -> Option<Vec<u8>> {
    privacy.open(CITY, &child(n), sealed).await.unwrap()
}

async fn key_rows(h: &Harness, n: u64) -> i64 {
    h.count(&format!(
        "SELECT COUNT(*) FROM data_keys WHERE person = '{}'",
        child(n).to_hex()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_stored_with_the_first_event_that_needs_it_sqlite() {
    let h = Harness::sqlite().await;
    let writer = start(h.store.clone()).await;
    let privacy = Privacy::new(h.store.clone(), master());

    let (sealed, new_key) = privacy
        .seal_for_event(CITY, &child(1), b"contact 1")
        .await
        .unwrap();
    assert!(new_key.is_some(), "a first sealing makes a new key");
    // Not stored yet: it waits for the command.
    assert!(!privacy.has_key(CITY, &child(1)).await.unwrap());
    // A second sealing meanwhile uses (and carries) the same pending key.
    let (again, new_again) = privacy
        .seal_for_event(CITY, &child(1), b"contact 1")
        .await
        .unwrap();
    assert_eq!(again, sealed);
    assert!(same_key(&new_key, &new_again));

    let reply = writer
        .submit_with_key(
            kindergarten(1, sealed.clone()),
            RequestMeta::default(),
            new_key,
        )
        .await
        .unwrap();
    assert!(accepted(&reply), "{reply:?}");
    assert!(privacy.has_key(CITY, &child(1)).await.unwrap());
    assert_eq!(key_rows(&h, 1).await, 1);
    // Opens here, and in a process that knows only the store.
    assert_eq!(
        opens(&privacy, 1, &sealed).await.as_deref(),
        Some(&b"contact 1"[..])
    );
    let fresh = Privacy::new(h.store.clone(), master());
    assert_eq!(
        opens(&fresh, 1, &sealed).await.as_deref(),
        Some(&b"contact 1"[..])
    );
    // Stored now: no new key any more, the same key.
    let (later, none) = privacy
        .seal_for_event(CITY, &child(1), b"contact 1")
        .await
        .unwrap();
    assert!(none.is_none());
    assert_eq!(later, sealed);
    // The duplicate carrying the stale candidate (same key) changes nothing.
    let reply = writer
        .submit_with_key(kindergarten(1, again), RequestMeta::default(), new_again)
        .await
        .unwrap();
    assert!(!accepted(&reply), "a duplicate: {reply:?}");
    assert_eq!(key_rows(&h, 1).await, 1);

    // A rejected command: neither its data nor its key is stored.
    let (sealed, new_key) = privacy
        .seal_for_event(CITY, &child(2), b"contact 2")
        .await
        .unwrap();
    let mut command = kindergarten(2, sealed);
    if let Command::SubmitKindergartenApplication { form } = &mut command {
        form.preferences = vec![InstitutionId::parse("NOPE99").unwrap()];
    }
    let reply = writer
        .submit_with_key(command, RequestMeta::default(), new_key)
        .await
        .unwrap();
    assert!(
        matches!(reply.outcome, Outcome::Rejected { .. }),
        "{reply:?}"
    );
    assert_eq!(key_rows(&h, 2).await, 0);
}

/// The kill between sealing and commit, at the store: a commit that fails stores neither
/// the key nor the event (nothing is acknowledged); the retry, sealed under the same pending
/// key, stores both. A crash after the commit and before the acknowledgement keeps both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_stores_neither_key_nor_event_sqlite() {
    let h = Harness::sqlite().await;
    let writer = start(h.store.clone()).await;
    let privacy = Privacy::new(h.store.clone(), master());
    let head = writer.head().authority_seq;

    let (sealed, new_key) = privacy
        .seal_for_event(CITY, &child(3), b"contact 3")
        .await
        .unwrap();
    // The key's insert fails after the event's row went in, inside the same transaction.
    h.exec(
        "CREATE TRIGGER fail_keys BEFORE INSERT ON data_keys \
         BEGIN SELECT RAISE(ABORT, 'simulated failure'); END",
    )
    .await;
    let failed = writer
        .submit_with_key(
            kindergarten(3, sealed.clone()),
            RequestMeta::default(),
            new_key,
        )
        .await;
    assert!(
        matches!(failed, Err(WriterError::Unavailable(_))),
        "{failed:?}"
    );
    assert_eq!(h.store.head(CITY).await.unwrap().authority_seq, head);
    assert_eq!(key_rows(&h, 3).await, 0);
    h.exec("DROP TRIGGER fail_keys").await;

    // The client retries: the same pending key, so the same bytes; one commit stores both.
    let (retry, new_key) = privacy
        .seal_for_event(CITY, &child(3), b"contact 3")
        .await
        .unwrap();
    assert_eq!(retry, sealed);
    assert!(new_key.is_some());
    let reply = writer
        .submit_with_key(kindergarten(3, retry), RequestMeta::default(), new_key)
        .await
        .unwrap();
    assert!(accepted(&reply), "{reply:?}");
    assert_eq!(key_rows(&h, 3).await, 1);
    assert_eq!(h.store.head(CITY).await.unwrap().authority_seq, head + 1);

    // Committed but never acknowledged (the writer stops right after the commit): the key
    // is there with the event, so a restarted process opens what the log holds.
    drop(writer);
    let (crashing, _) = Writer::start(
        h.store.clone(),
        CITY,
        WriterConfig {
            crash_after_commit: true,
            ..config()
        },
    )
    .await
    .unwrap();
    let (sealed, new_key) = privacy
        .seal_for_event(CITY, &child(4), b"contact 4")
        .await
        .unwrap();
    let lost = crashing
        .submit_with_key(
            kindergarten(4, sealed.clone()),
            RequestMeta::default(),
            new_key,
        )
        .await;
    assert!(lost.is_err(), "{lost:?}");
    assert_eq!(h.store.head(CITY).await.unwrap().authority_seq, head + 2);
    let restarted = Privacy::new(h.store.clone(), master());
    assert_eq!(
        opens(&restarted, 4, &sealed).await.as_deref(),
        Some(&b"contact 4"[..])
    );

    // Every event with a sealed value in the log has its key.
    let (writer, _) = Writer::start(h.store.clone(), CITY, config())
        .await
        .unwrap();
    for n in [3, 4] {
        let has = writer.read(|s| {
            s.applications()
                .iter()
                .any(|a| a.child == child(n) && a.sealed.is_some())
        });
        assert!(has, "child {n}");
        assert!(
            restarted.has_key(CITY, &child(n)).await.unwrap(),
            "child {n}"
        );
    }
}

/// Two first submissions of one person at once (a kindergarten application and a school
/// draft), sealed before either commits: one key, both stored commands open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_submissions_share_one_key_sqlite() {
    let h = Harness::sqlite().await;
    let writer = start(h.store.clone()).await;
    let privacy = Arc::new(Privacy::new(h.store.clone(), master()));

    // Many sealings at once for the same new person: one pending key.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40u32 {
        let privacy = privacy.clone();
        tasks.spawn(async move {
            let data = format!("contact {i}").into_bytes();
            let (sealed, new_key) = privacy
                .seal_for_event(CITY, &child(5), &data)
                .await
                .unwrap();
            (data, sealed, new_key)
        });
    }
    let sealings = tasks.join_all().await;
    for (_, _, new_key) in &sealings {
        assert!(same_key(new_key, &sealings[0].2));
    }

    let (a, b) = (&sealings[0], &sealings[1]);
    let (first, second) = tokio::join!(
        writer.submit_with_key(
            kindergarten(5, a.1.clone()),
            RequestMeta::default(),
            a.2.clone()
        ),
        writer.submit_with_key(
            school_draft(5, b.1.clone()),
            RequestMeta::default(),
            b.2.clone()
        ),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(accepted(&first), "{first:?}");
    assert!(accepted(&second), "{second:?}");
    assert_eq!(key_rows(&h, 5).await, 1);
    let fresh = Privacy::new(h.store.clone(), master());
    for (data, sealed, _) in &sealings {
        assert_eq!(opens(&fresh, 5, sealed).await.as_deref(), Some(&data[..]));
        assert_eq!(opens(&privacy, 5, sealed).await.as_deref(), Some(&data[..]));
    }
}

/// Erasure and keys on their way: a destroy after the commit removes the stored key; a
/// destroy while the key is still pending withdraws it, so the command that carries it
/// commits its events but never the key (its sealed value stays unreadable), and the next
/// sealing for the person makes a new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_is_not_undone_by_a_pending_key_sqlite() {
    let h = Harness::sqlite().await;
    let writer = start(h.store.clone()).await;
    let privacy = Privacy::new(h.store.clone(), master());

    // After the commit.
    let (sealed, new_key) = privacy
        .seal_for_event(CITY, &child(6), b"contact 6")
        .await
        .unwrap();
    let reply = writer
        .submit_with_key(
            kindergarten(6, sealed.clone()),
            RequestMeta::default(),
            new_key,
        )
        .await
        .unwrap();
    assert!(accepted(&reply));
    assert!(privacy.destroy(CITY, &child(6)).await.unwrap());
    assert!(!privacy.has_key(CITY, &child(6)).await.unwrap());
    assert_eq!(opens(&privacy, 6, &sealed).await, None);

    // While pending: sealed, then erased, then the command arrives.
    let (late, late_key) = privacy
        .seal_for_event(CITY, &child(7), b"contact 7")
        .await
        .unwrap();
    assert!(late_key.is_some());
    assert!(
        !privacy.destroy(CITY, &child(7)).await.unwrap(),
        "nothing stored yet"
    );
    let reply = writer
        .submit_with_key(
            kindergarten(7, late.clone()),
            RequestMeta::default(),
            late_key.clone(),
        )
        .await
        .unwrap();
    assert!(
        accepted(&reply),
        "the command itself is not refused: {reply:?}"
    );
    assert_eq!(
        key_rows(&h, 7).await,
        0,
        "the withdrawn key is not resurrected"
    );
    assert_eq!(opens(&privacy, 7, &late).await, None);
    assert_eq!(
        opens(&Privacy::new(h.store.clone(), master()), 7, &late).await,
        None
    );
    // A store-first sealing with the stale key does not store it either.
    h.store
        .data_keys()
        .unwrap()
        .insert_new_keys(&[late_key.as_ref().unwrap().to_store()])
        .await
        .unwrap();
    assert_eq!(key_rows(&h, 7).await, 0);

    // The next sealing gets a new key, stored with its command; the erased value stays
    // unreadable.
    let (next, next_key) = privacy
        .seal_for_event(CITY, &child(7), b"contact 7 again")
        .await
        .unwrap();
    assert!(next_key.is_some() && !same_key(&next_key, &late_key));
    let reply = writer
        .submit_with_key(
            school_draft(7, next.clone()),
            RequestMeta::default(),
            next_key,
        )
        .await
        .unwrap();
    assert!(accepted(&reply), "{reply:?}");
    assert_eq!(key_rows(&h, 7).await, 1);
    assert_eq!(
        opens(&privacy, 7, &next).await.as_deref(),
        Some(&b"contact 7 again"[..])
    );
    assert_eq!(opens(&privacy, 7, &late).await, None);
}

/// PostgreSQL: no key travels with an event; it is stored before the sealing returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_first_postgres() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let writer = start(h.store.clone()).await;
    let privacy = Privacy::new(h.store.clone(), master());
    let (sealed, new_key) = privacy
        .seal_for_event(CITY, &child(8), b"contact 8")
        .await
        .unwrap();
    assert!(new_key.is_none());
    assert!(privacy.has_key(CITY, &child(8)).await.unwrap());
    let reply = writer
        .submit_with_key(
            kindergarten(8, sealed.clone()),
            RequestMeta::default(),
            new_key,
        )
        .await
        .unwrap();
    assert!(accepted(&reply), "{reply:?}");
    assert_eq!(
        opens(&privacy, 8, &sealed).await.as_deref(),
        Some(&b"contact 8"[..])
    );
}
