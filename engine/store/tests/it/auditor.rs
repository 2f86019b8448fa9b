//! An auditor's check, written only from the documentation of `record`: read the rows with
//! plain SQL, decode each record with another CBOR library (ciborium), recompute the hash
//! with SHA-256 over the documented bytes.

use ciborium::value::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::harness::{events, keyed, Harness, Raw};

#[tokio::test]
async fn stored_records_follow_the_documented_layout() {
    let harness = Harness::sqlite().await;
    let mut batch = events("app", 1, 3);
    batch[1].metadata.correlation_id = Some("line\nbreak \"quoted\" ё/".to_string());
    batch.push(keyed("app-4", "parent:7:key", 2));
    harness.store.append("msk", batch.clone()).await.unwrap();
    let Raw::Sqlite(store) = &harness.raw else {
        unreachable!()
    };
    let authority_id: i64 = sqlx::query_scalar("SELECT id FROM authority_ids WHERE name = 'msk'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let rows = sqlx::query("SELECT id, record, hash FROM log ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    let mut prev = [0u8; 32];
    for (i, row) in rows.iter().enumerate() {
        let id: i64 = row.get(0);
        assert_eq!(id >> 40, authority_id);
        let seq = id & ((1 << 40) - 1);
        assert_eq!(seq, i as i64 + 1);
        let record: Vec<u8> = row.get(1);
        // The hash: SHA-256(prev ‖ le64(len) ‖ authority ‖ le64(seq) ‖ record).
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(3u64.to_le_bytes());
        hasher.update(b"msk");
        hasher.update((seq as u64).to_le_bytes());
        hasher.update(&record);
        let hash: [u8; 32] = hasher.finalize().into();
        assert_eq!(row.get::<Vec<u8>, _>(2), hash.to_vec());
        prev = hash;

        // The record, decoded by another library: a map with one-letter keys, sorted.
        let value: Value = ciborium::from_reader(&record[..]).unwrap();
        let Value::Map(entries) = value else {
            panic!("a record is a map")
        };
        let keys: Vec<String> = entries
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let get = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v.clone())
        };
        let original = &batch[i];
        assert_eq!(
            get("s").unwrap().as_text(),
            Some(original.stream_id.as_str())
        );
        assert_eq!(get("y").unwrap().as_text(), Some("ApplicationSubmitted"));
        let micros = i128::from(get("t").unwrap().as_integer().unwrap());
        assert_eq!(micros, i128::from(original.recorded_at.timestamp_micros()));
        // The payload is an ordinary CBOR map: readable as JSON.
        let event: serde_json::Value = get("e").unwrap().deserialized().unwrap();
        assert_eq!(event["alpha"], "Иванова Мария");
        assert_eq!(event["arr"], serde_json::json!([3, 1, 2]));
        // Deterministic: re-encoding the payload's JSON gives the same bytes.
        let mut payload = Vec::new();
        ciborium::into_writer(&get("e").unwrap(), &mut payload).unwrap();
        assert_eq!(payload, original.payload);
        if let Some(digest) = get("k") {
            let digest = digest.as_bytes().unwrap().clone();
            assert_eq!(digest, Sha256::digest(b"parent:7:key").to_vec());
            assert_eq!(get("n").unwrap().as_integer().map(i128::from), Some(2));
            assert_eq!(get("q").unwrap().as_bytes().unwrap().len(), 32);
        } else {
            assert!(i < 3, "the keyed event records its key");
        }
    }
    assert_eq!(
        harness.store.head("msk").await.unwrap().hash,
        hex::encode(prev)
    );
}
