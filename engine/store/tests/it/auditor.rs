//! An auditor's check, written only from the layout documented on `event_hash`: read the
//! rows with plain SQL, rebuild the canonical bytes by hand, hash them with SHA-256.

use ochered_store::GENESIS_HASH;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::harness::{events, Harness, Raw};

fn field(bytes: &mut Vec<u8>, text: &str) {
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
}

#[tokio::test]
async fn stored_hashes_follow_the_documented_layout() {
    let harness = Harness::sqlite().await;
    let mut batch = events("app", 1, 3);
    batch[1].metadata.correlation_id = Some("line\nbreak \"quoted\" ё/".to_string());
    harness.store.append("msk", batch, vec![]).await.unwrap();
    let Raw::Sqlite(store) = &harness.raw else {
        unreachable!()
    };
    let rows = sqlx::query(
        "SELECT authority, authority_seq, stream_id, stream_version, event_type, schema_version, \
         recorded_at, payload, metadata, prev_hash, hash FROM events ORDER BY authority_seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut prev = GENESIS_HASH.to_string();
    for row in rows {
        let mut bytes = Vec::new();
        field(&mut bytes, &prev);
        field(&mut bytes, row.get::<&str, _>(0));
        field(&mut bytes, &row.get::<i64, _>(1).to_string());
        field(&mut bytes, row.get::<&str, _>(2));
        field(&mut bytes, &row.get::<i64, _>(3).to_string());
        field(&mut bytes, row.get::<&str, _>(4));
        field(&mut bytes, &row.get::<i64, _>(5).to_string());
        let recorded_at: &str = row.get(6);
        assert_eq!(
            recorded_at.len(),
            "2025-03-01T08:00:00.123456Z".len(),
            "{recorded_at}"
        );
        assert!(recorded_at.ends_with('Z'));
        field(&mut bytes, recorded_at);
        field(&mut bytes, row.get::<&str, _>(7));
        let metadata: &str = row.get(8);
        assert!(metadata.starts_with(r#"{"idempotency_key":"#), "{metadata}");
        field(&mut bytes, metadata);
        assert_eq!(row.get::<&str, _>(9), prev);
        let hash = hex::encode(Sha256::digest(&bytes));
        assert_eq!(row.get::<&str, _>(10), hash);
        prev = hash;
    }
    assert_eq!(harness.store.head("msk").await.unwrap().hash, prev);
}
