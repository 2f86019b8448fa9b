//! The table of per-applicant data keys beside the log: insert-once, read, destroy, on both
//! backends; on SQLite a destroyed key's bytes leave the database file and its WAL.

use ochered_store::testing::Harness;

fn keys(harness: &Harness) -> &dyn ochered_store::DataKeyStore {
    harness
        .store
        .data_keys()
        .expect("both real backends keep data keys")
}

async fn scenario(harness: &Harness) {
    let keys = keys(harness);
    let person = "ab".repeat(32);
    assert_eq!(keys.data_key("city", &person).await.unwrap(), None);
    let first = vec![7u8; 72];
    let stored = keys
        .data_key_or_insert("city", &person, &first)
        .await
        .unwrap();
    assert_eq!(stored, first);
    // Created once: a second candidate loses to the stored key.
    let stored = keys
        .data_key_or_insert("city", &person, &[9u8; 72])
        .await
        .unwrap();
    assert_eq!(stored, first);
    // Keys are per authority.
    keys.data_key_or_insert("town", &person, &[5u8; 72])
        .await
        .unwrap();
    assert_eq!(
        keys.data_key("town", &person).await.unwrap(),
        Some(vec![5u8; 72])
    );
    assert!(keys.destroy_data_key("city", &person).await.unwrap());
    assert_eq!(keys.data_key("city", &person).await.unwrap(), None);
    assert!(!keys.destroy_data_key("city", &person).await.unwrap());
    assert_eq!(
        keys.data_key("town", &person).await.unwrap(),
        Some(vec![5u8; 72]),
        "destroying one authority's key leaves another's"
    );
    // The key table is outside the chain: no events were written.
    assert_eq!(harness.count("SELECT COUNT(*) FROM log").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_once_and_destroyed_sqlite() {
    scenario(&Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_once_and_destroyed_postgres() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    scenario(&harness).await;
}

async fn batch_scenario(harness: &Harness) {
    use ochered_store::keys::{KeyCandidate, KEY_BATCH_MAX};
    let keys = keys(harness);
    let (old, new, twice) = ("01".repeat(32), "02".repeat(32), "03".repeat(32));
    keys.data_key_or_insert("city", &old, &[1u8; 72])
        .await
        .unwrap();
    let candidate = |authority, person, byte| KeyCandidate {
        authority,
        person,
        wrapped: match byte {
            2 => &[2u8; 72],
            3 => &[3u8; 72],
            4 => &[4u8; 72],
            _ => &[9u8; 72],
        },
    };
    let stored = keys
        .data_keys_or_insert(&[
            candidate("city", &old, 9),
            candidate("city", &new, 2),
            candidate("city", &twice, 3),
            candidate("city", &twice, 9),
            candidate("town", &old, 4),
        ])
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![
            vec![1u8; 72], // an existing key wins over the candidate
            vec![2u8; 72],
            vec![3u8; 72], // the first candidate of a person wins
            vec![3u8; 72],
            vec![4u8; 72], // keys are per authority
        ]
    );
    // Stored, not just answered.
    for (authority, person, byte) in [("city", &new, 2u8), ("city", &twice, 3), ("town", &old, 4)] {
        assert_eq!(
            keys.data_key(authority, person).await.unwrap(),
            Some(vec![byte; 72])
        );
    }
    assert_eq!(
        keys.data_keys_or_insert(&[]).await.unwrap(),
        Vec::<Vec<u8>>::new()
    );

    // More than one transaction's worth, and two batches racing over the same people:
    // every person ends with one key, and both batches answer it.
    let people: Vec<String> = (0..KEY_BATCH_MAX + 300)
        .map(|i| format!("{:064x}", i + 1000))
        .collect();
    let a: Vec<Vec<u8>> = (0..people.len())
        .map(|i| vec![(i % 200) as u8; 72])
        .collect();
    let b: Vec<Vec<u8>> = (0..people.len())
        .map(|i| vec![201 + (i % 50) as u8; 72])
        .collect();
    let batch = |wrapped: &[Vec<u8>]| -> Vec<(String, Vec<u8>)> {
        people
            .iter()
            .cloned()
            .zip(wrapped.iter().cloned())
            .collect()
    };
    let (batch_a, batch_b) = (batch(&a), batch(&b));
    fn candidates(batch: &[(String, Vec<u8>)]) -> Vec<KeyCandidate<'_>> {
        batch
            .iter()
            .map(|(person, wrapped)| KeyCandidate {
                authority: "city",
                person,
                wrapped,
            })
            .collect()
    }
    let (candidates_a, candidates_b) = (candidates(&batch_a), candidates(&batch_b));
    let (first, second) = tokio::join!(
        keys.data_keys_or_insert(&candidates_a),
        keys.data_keys_or_insert(&candidates_b)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first, second, "racing batches agree on every key");
    for (i, person) in people.iter().enumerate() {
        assert!(first[i] == a[i] || first[i] == b[i]);
        assert_eq!(
            keys.data_key("city", person).await.unwrap().as_ref(),
            Some(&first[i])
        );
    }
    assert_eq!(harness.count("SELECT COUNT(*) FROM log").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_in_batches_sqlite() {
    batch_scenario(&Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_in_batches_postgres() {
    let Some(harness) = Harness::postgres().await else {
        return;
    };
    batch_scenario(&harness).await;
}

/// Whether `needle` occurs in the SQLite file or its WAL.
fn on_disk(path: &std::path::Path, needle: &[u8]) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), std::path::PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_key_bytes_leave_the_sqlite_file() {
    let harness = Harness::sqlite().await;
    let path = harness.sqlite_path.clone().unwrap();
    let keys = keys(&harness);
    // Distinctive bytes, and other rows around them in the same page.
    let secret: Vec<u8> = (0..72u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    for i in 0..20u8 {
        keys.data_key_or_insert("city", &format!("{i:064x}"), &[i; 72])
            .await
            .unwrap();
    }
    let person = "cd".repeat(32);
    keys.data_key_or_insert("city", &person, &secret)
        .await
        .unwrap();
    assert!(on_disk(&path, &secret), "the key should be on disk first");
    assert!(keys.destroy_data_key("city", &person).await.unwrap());
    assert!(
        !on_disk(&path, &secret),
        "a destroyed key's bytes must not stay in the database file or its WAL"
    );
    assert_eq!(
        keys.data_key("city", &format!("{:064x}", 3)).await.unwrap(),
        Some(vec![3u8; 72])
    );
}

/// A new key travelling with the events that first need it (`append_with_keys`).
mod with_events {
    use std::sync::Arc;

    use ochered_store::keys::NewDataKey;
    use ochered_store::StoreError;

    use super::keys;
    use crate::harness::{events, Harness};

    fn new_key(person: &str, byte: u8) -> Arc<NewDataKey> {
        Arc::new(NewDataKey::new(
            "city".into(),
            person.into(),
            vec![byte; 73],
        ))
    }

    /// SQLite: the key is stored in the events' own transaction. A commit that fails stores
    /// neither the key nor the events; one that succeeds stores both; the same key carried
    /// twice, or a person who has a key already, is a no-op; a withdrawn key is not stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_key_commits_with_its_events_or_not_at_all_sqlite() {
        let h = Harness::sqlite().await;
        assert!(h.store.stores_keys_with_events());
        let (p1, p2, p3) = ("01".repeat(32), "02".repeat(32), "03".repeat(32));

        // A failure inside the transaction, after the events' rows were inserted (the keys
        // go in after them): neither is left.
        h.exec(
            "CREATE TRIGGER fail_keys BEFORE INSERT ON data_keys \
             BEGIN SELECT RAISE(ABORT, 'simulated failure'); END",
        )
        .await;
        let failed = h
            .store
            .append_with_keys("city", Some(0), events("app", 1, 2), vec![new_key(&p1, 1)])
            .await;
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(h.count("SELECT COUNT(*) FROM log").await, 0);
        assert_eq!(h.count("SELECT COUNT(*) FROM data_keys").await, 0);
        h.exec("DROP TRIGGER fail_keys").await;

        // A conflict (another head) fails the append: its key is not stored either.
        let conflict = h
            .store
            .append_with_keys("city", Some(5), events("app", 1, 1), vec![new_key(&p1, 1)])
            .await;
        assert!(
            matches!(conflict, Err(StoreError::Conflict(_))),
            "{conflict:?}"
        );
        assert_eq!(keys(&h).data_key("city", &p1).await.unwrap(), None);

        // Success: both, in one commit. The same key carried by two commands of the batch
        // is inserted once; a second person's key too.
        let k1 = new_key(&p1, 1);
        let stored = h
            .store
            .append_with_keys(
                "city",
                Some(0),
                events("app", 1, 3),
                vec![k1.clone(), k1.clone(), new_key(&p2, 2)],
            )
            .await
            .unwrap();
        assert_eq!(stored.len(), 3);
        assert_eq!(
            keys(&h).data_key("city", &p1).await.unwrap(),
            Some(vec![1; 73])
        );
        assert_eq!(
            keys(&h).data_key("city", &p2).await.unwrap(),
            Some(vec![2; 73])
        );

        // A later command carrying the same (or another) candidate for a person who has a
        // key: the stored key stays.
        h.store
            .append_with_keys("city", Some(3), events("app", 4, 1), vec![new_key(&p1, 9)])
            .await
            .unwrap();
        assert_eq!(
            keys(&h).data_key("city", &p1).await.unwrap(),
            Some(vec![1; 73])
        );

        // Withdrawn (an erasure came first): the events are stored, the key is not.
        let k3 = new_key(&p3, 3);
        k3.withdraw();
        h.store
            .append_with_keys("city", Some(4), events("app", 5, 1), vec![k3.clone()])
            .await
            .unwrap();
        assert_eq!(keys(&h).data_key("city", &p3).await.unwrap(), None);
        keys(&h).insert_new_keys(&[k3]).await.unwrap();
        assert_eq!(keys(&h).data_key("city", &p3).await.unwrap(), None);

        // No events: nothing at all.
        h.store
            .append_with_keys("city", Some(5), Vec::new(), vec![new_key(&p3, 3)])
            .await
            .unwrap();
        assert_eq!(keys(&h).data_key("city", &p3).await.unwrap(), None);
        assert_eq!(h.count("SELECT COUNT(*) FROM log").await, 5);
    }

    /// Appends of several authorities in one group: a conflict undoes only its own
    /// authority's events and keys (its savepoint); the others' keys are stored with their
    /// events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_conflict_in_a_group_drops_only_its_own_keys_sqlite() {
        let h = Harness::sqlite().await;
        let store = h.store.clone();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16u8 {
            let store = store.clone();
            tasks.spawn(async move {
                let person = format!("{i:02}").repeat(32);
                let key = Arc::new(NewDataKey::new(format!("a{i}"), person, vec![i; 73]));
                // Every odd authority appends after a head that is not there.
                let after = if i % 2 == 1 { Some(7) } else { Some(0) };
                let result = store
                    .append_with_keys(&format!("a{i}"), after, events("app", 1, 2), vec![key])
                    .await;
                (i, result.is_ok())
            });
        }
        for (i, ok) in tasks.join_all().await {
            assert_eq!(ok, i % 2 == 0, "authority a{i}");
            let stored = keys(&h)
                .data_key(&format!("a{i}"), &format!("{i:02}").repeat(32))
                .await
                .unwrap();
            assert_eq!(stored.is_some(), ok, "authority a{i}");
            assert_eq!(
                h.store.head(&format!("a{i}")).await.unwrap().authority_seq,
                if ok { 2 } else { 0 }
            );
        }
    }

    /// PostgreSQL keeps storing keys first (another node may create or destroy a key): the
    /// key is durable before the events' commit, so a failed commit leaves a key without
    /// events (harmless: nothing is sealed under it in the log).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_stored_first_postgres() {
        let Some(h) = Harness::postgres().await else {
            return;
        };
        assert!(!h.store.stores_keys_with_events());
        let (p1, p2) = ("01".repeat(32), "02".repeat(32));
        h.store
            .append_with_keys("city", Some(0), events("app", 1, 1), vec![new_key(&p1, 1)])
            .await
            .unwrap();
        assert_eq!(
            keys(&h).data_key("city", &p1).await.unwrap(),
            Some(vec![1; 73])
        );
        let conflict = h
            .store
            .append_with_keys("city", Some(9), events("app", 2, 1), vec![new_key(&p2, 2)])
            .await;
        assert!(
            matches!(conflict, Err(StoreError::Conflict(_))),
            "{conflict:?}"
        );
        assert_eq!(
            keys(&h).data_key("city", &p2).await.unwrap(),
            Some(vec![2; 73])
        );
        assert_eq!(h.store.head("city").await.unwrap().authority_seq, 1);
    }
}

/// SQLite keeps in memory who may have a key, so that a new applicant's look-up skips the
/// file (`sqlite/key_filter.rs`). Reopened on a file with keys, both kinds of stored key
/// (stored alone, stored with events) are still found once the filter is ready, and a
/// person without one is answered `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_filter_knows_every_key_of_a_reopened_file() {
    use ochered_store::keys::NewDataKey;
    use ochered_store::SqliteStore;
    use std::sync::Arc;

    let h = Harness::sqlite().await;
    let (alone, with_events, absent) = ("0a".repeat(32), "0b".repeat(32), "0c".repeat(32));
    keys(&h)
        .data_key_or_insert("city", &alone, &[1u8; 72])
        .await
        .unwrap();
    let new = Arc::new(NewDataKey::new(
        "city".into(),
        with_events.clone(),
        vec![2u8; 73],
    ));
    h.store
        .append_with_keys(
            "city",
            Some(0),
            crate::harness::events("app", 1, 1),
            vec![new],
        )
        .await
        .unwrap();
    // Stored in this process: found through the filter's additions.
    assert_eq!(
        keys(&h).data_key("city", &with_events).await.unwrap(),
        Some(vec![2u8; 73])
    );
    h.store.close().await;

    let reopened = SqliteStore::open(&h.url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !reopened.key_filter_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the key filter never got ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let keys = ochered_store::EventStore::data_keys(&reopened).unwrap();
    assert_eq!(
        keys.data_key("city", &alone).await.unwrap(),
        Some(vec![1u8; 72])
    );
    assert_eq!(
        keys.data_key("city", &with_events).await.unwrap(),
        Some(vec![2u8; 73])
    );
    assert_eq!(keys.data_key("town", &alone).await.unwrap(), None);
    assert_eq!(keys.data_key("city", &absent).await.unwrap(), None);
    // A key stored after the filter got ready is found too.
    keys.data_key_or_insert("city", &absent, &[3u8; 72])
        .await
        .unwrap();
    assert_eq!(
        keys.data_key("city", &absent).await.unwrap(),
        Some(vec![3u8; 72])
    );
}
