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
    assert_eq!(harness.count("SELECT COUNT(*) FROM events").await, 0);
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
