//! SQLite specifics: reopening the file, in-memory and bare-path URLs, a full disk.

use ochered_store::{open, SqliteStore, StoreError, VerifyOutcome};

use crate::harness::{event, events, keyed, Harness};

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let harness = Harness::sqlite().await;
    let path = harness.sqlite_path.clone().unwrap();
    let stored = harness
        .store
        .append("msk", {
            let mut batch = events("app", 1, 9);
            batch.push(keyed("app-10", "k1", 10));
            batch
        })
        .await
        .unwrap();
    harness
        .store
        .append("spb", events("app", 1, 2))
        .await
        .unwrap();
    harness
        .store
        .save_snapshot("msk", 10, b"state")
        .await
        .unwrap();
    let head = harness.store.head("msk").await.unwrap();
    harness.store.close().await;

    for url in [
        format!("sqlite://{}", path.display()),
        path.display().to_string(),
    ] {
        let reopened = open(&url).await.unwrap();
        assert_eq!(reopened.read("msk", 0, 100).await.unwrap(), stored);
        assert_eq!(reopened.head("msk").await.unwrap(), head);
        assert_eq!(
            reopened.verify("msk").await.unwrap(),
            VerifyOutcome::Ok {
                head: head.clone(),
                events: 10
            }
        );
        assert_eq!(
            reopened
                .idempotency("msk", "k1")
                .await
                .unwrap()
                .map(|hit| (hit.first_seq, hit.last_seq)),
            Some((1, 10))
        );
        assert_eq!(
            reopened.load_snapshot("msk").await.unwrap(),
            Some((10, b"state".to_vec()))
        );
        assert_eq!(
            reopened.authorities().await.unwrap(),
            vec!["msk".to_string(), "spb".to_string()]
        );
        reopened.close().await;
    }
    // Appending after a reopen continues the chain.
    let reopened = open(&path.display().to_string()).await.unwrap();
    let next = reopened
        .append("msk", vec![event("app-11", 1)])
        .await
        .unwrap();
    assert_eq!(next[0].authority_seq, 11);
    assert_eq!(hex::encode(next[0].prev_hash), head.hash);
}

#[tokio::test]
async fn in_memory_urls_work() {
    for url in ["sqlite::memory:", ":memory:"] {
        let store = open(url).await.unwrap();
        store
            .append("msk", {
                let mut batch = events("app", 1, 299);
                batch.push(keyed("app-300", "k", 1));
                batch
            })
            .await
            .unwrap();
        store.append("msk", events("more", 1, 3)).await.unwrap();
        assert_eq!(store.read("msk", 0, 1000).await.unwrap().len(), 303);
        assert!(matches!(
            store.verify("msk").await.unwrap(),
            VerifyOutcome::Ok { events: 303, .. }
        ));
        assert!(store.idempotency("msk", "k").await.unwrap().is_some());
    }
    // Two in-memory stores are separate databases.
    let one = open("sqlite::memory:").await.unwrap();
    let two = open("sqlite::memory:").await.unwrap();
    one.append("msk", vec![event("a", 1)]).await.unwrap();
    assert_eq!(two.head("msk").await.unwrap().authority_seq, 0);
}

#[tokio::test]
async fn a_full_disk_is_unavailable_writes_nothing_and_recovers() {
    let harness = Harness::sqlite().await;
    let store: &SqliteStore = match &harness.raw {
        crate::harness::Raw::Sqlite(store) => store,
        crate::harness::Raw::Pg(_) => unreachable!(),
    };
    harness
        .store
        .append("msk", events("app", 1, 5))
        .await
        .unwrap();
    let head = harness.store.head("msk").await.unwrap();
    // The writer has one connection; capping its file size fakes a full disk.
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query(&format!("PRAGMA max_page_count = {}", pages + 1))
        .execute(store.pool())
        .await
        .unwrap();
    let big: Vec<_> = (0..2000)
        .map(|i| keyed(&format!("big-{i}"), &format!("key-{i}"), 1))
        .collect();
    match harness.store.append("msk", big.clone()).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("full"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(harness.store.head("msk").await.unwrap(), head);
    assert_eq!(harness.count("SELECT COUNT(*) FROM log").await, 5);
    // Space comes back: the same writer appends again and the chain is intact.
    sqlx::query("PRAGMA max_page_count = 1073741823")
        .execute(store.pool())
        .await
        .unwrap();
    let stored = harness.store.append("msk", big).await.unwrap();
    assert_eq!(stored[0].authority_seq, 6);
    assert_eq!(hex::encode(stored[0].prev_hash), head.hash);
    assert!(matches!(
        harness.store.verify("msk").await.unwrap(),
        VerifyOutcome::Ok { events: 2005, .. }
    ));
}

#[tokio::test]
async fn sqlite_file_uses_wal_and_full_sync() {
    let harness = Harness::sqlite().await;
    let store: &SqliteStore = match &harness.raw {
        crate::harness::Raw::Sqlite(store) => store,
        crate::harness::Raw::Pg(_) => unreachable!(),
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(synchronous, 2, "FULL");
}

/// The writer's page cache stays small: a commit after a page split in the middle of a tree
/// walks all of it (`WRITER_CACHE_KIB` in `sqlite/mod.rs`); the readers keep a large one.
#[tokio::test]
async fn the_writer_keeps_a_small_page_cache() {
    if std::env::var_os("OCHERED_SQLITE_WRITER_CACHE_KIB").is_some() {
        eprintln!("SKIPPED: OCHERED_SQLITE_WRITER_CACHE_KIB is set");
        return;
    }
    let harness = Harness::sqlite().await;
    let store: &SqliteStore = match &harness.raw {
        crate::harness::Raw::Sqlite(store) => store,
        crate::harness::Raw::Pg(_) => unreachable!(),
    };
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(cache, -2048, "2 MiB on the writer connection");
}

#[tokio::test]
async fn undecodable_columns_are_reported_not_panicked_on() {
    let harness = Harness::sqlite().await;
    harness
        .store
        .append("msk", events("app", 1, 4))
        .await
        .unwrap();
    harness
        .set_stored_record("msk", 3, &[0xff, 0xfe, 0x00])
        .await;
    match harness.store.verify("msk").await.unwrap() {
        VerifyOutcome::Broken {
            authority_seq: 3,
            reason,
        } => assert!(reason.contains("undecodable"), "{reason}"),
        other => panic!("expected a break at 3, got {other:?}"),
    }
    assert!(matches!(
        harness.store.read("msk", 0, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(harness.store.read("msk", 0, 2).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_checkpoint_copies_the_wal_into_the_file() {
    let harness = Harness::sqlite().await;
    let path = harness.sqlite_path.clone().unwrap();
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    for batch in 0..5 {
        harness
            .store
            .append("msk", events(&format!("b{batch}"), 1, 1000))
            .await
            .unwrap();
    }
    // Far below the writer's own checkpoint threshold: only the background task copies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() < before + 1_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {} bytes",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Closing a store leaves no connection to its file open, however soon after opening it
/// comes: `ochered backup` opens its copy, signs it, closes it and at once turns it into one
/// file, which SQLite refuses ("database is locked") while another connection has it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_leaves_no_connection_to_its_file() {
    use ochered_store::EventStore;
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let url = path.display().to_string();
    let store = SqliteStore::open(&url).await.unwrap();
    store.append("msk", events("app", 1, 3)).await.unwrap();
    store.close().await;
    for round in 0..100 {
        let store = SqliteStore::open(&url).await.unwrap();
        assert_eq!(store.head("msk").await.unwrap().authority_seq, 3);
        store.close().await;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        // Leaving WAL mode needs the file to itself; it does not wait for other connections.
        let mode: Result<String, _> = sqlx::query_scalar("PRAGMA journal_mode=DELETE")
            .fetch_one(&mut conn)
            .await;
        conn.close().await.unwrap();
        assert_eq!(mode.unwrap(), "delete", "round {round}");
    }
}
