//! Scenarios every backend must pass; `main.rs` runs each on SQLite and PostgreSQL.

use ochered_store::{
    truncate_to_micros, ChainHead, IdempotencyHit, StoreError, VerifyOutcome, GENESIS,
};

use crate::harness::{event, events, idempotency, keyed, Harness};

const A: &str = "msk";
const B: &str = "spb";

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

/// Where the value of the record field `name` starts in `record`.
fn field_at(record: &[u8], name: &str) -> usize {
    let mut d = ochered_store::cbor::Decoder::new(record);
    let entries = d.map_len().unwrap();
    for _ in 0..entries {
        let key = d.text().unwrap();
        if key == name {
            return record.len() - d.rest().len();
        }
        d.item().unwrap();
    }
    panic!("no field {name}")
}

fn broken_at(outcome: &VerifyOutcome) -> (i64, &str) {
    match outcome {
        VerifyOutcome::Broken {
            authority_seq,
            reason,
        } => (*authority_seq, reason.as_str()),
        VerifyOutcome::Ok { .. } => panic!("expected a broken chain, got {outcome:?}"),
    }
}

/// Five events of `A`, then checks the chain verifies.
async fn five_events(h: &Harness) -> Vec<ochered_store::StoredEvent> {
    let stored = h.store.append(A, events("app", 1, 5)).await.unwrap();
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 5, .. }
    ));
    stored
}

pub async fn round_trip_keeps_bytes_and_time(h: &Harness) {
    let batch = vec![event("app-1", 1), event("app-1", 2), keyed("app-2", "k", 1)];
    let stored = h.store.append(A, batch.clone()).await.unwrap();
    let read = h.store.read(A, 0, 100).await.unwrap();
    assert_eq!(read, stored);
    assert_eq!(read.len(), 3);
    for (i, (e, original)) in read.iter().zip(&batch).enumerate() {
        assert_eq!(e.authority, A);
        assert_eq!(e.authority_seq, i as i64 + 1);
        assert_eq!(e.payload(), &original.payload[..]);
        assert_eq!(e.recorded_at, truncate_to_micros(original.recorded_at));
        assert_eq!(e.recorded_at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(e.metadata, original.metadata);
        assert_eq!(e.idempotency, original.idempotency);
        assert_eq!(e.stream_id, original.stream_id);
        assert_eq!(e.stream_version, original.stream_version);
        assert_eq!(e.event_type, original.event_type);
        assert_eq!(e.schema_version, original.schema_version);
        assert_eq!(e.format, ochered_store::PayloadFormat::Cbor);
        assert!(e.hash_is_valid());
    }
    // Read again, after a second append, still exactly the same rows.
    h.store.append(A, vec![event("app-3", 1)]).await.unwrap();
    assert_eq!(h.store.read(A, 0, 3).await.unwrap(), stored);
    assert_eq!(h.store.read(A, 1, 2).await.unwrap(), stored[1..]);
}

pub async fn events_link_into_a_chain(h: &Harness) {
    let first = h.store.append(A, events("app", 1, 3)).await.unwrap();
    let second = h.store.append(A, events("app", 4, 2)).await.unwrap();
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all[0].prev_hash, GENESIS);
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
        assert_eq!(w[1].authority_seq, w[0].authority_seq + 1);
    }
    for e in &all {
        assert_eq!(
            e.hash,
            ochered_store::record::hash(&e.prev_hash, A, e.authority_seq, &e.record)
        );
        assert_eq!(e.record, h.stored_record(A, e.authority_seq).await);
    }
    let last = all.last().unwrap();
    assert_eq!(
        h.store.head(A).await.unwrap(),
        ChainHead {
            authority_seq: 5,
            hash: last.hash_hex()
        }
    );
    assert_eq!(h.store.head("nobody").await.unwrap(), ChainHead::genesis());
}

/// A writer names the head it decided on; if the log moved meanwhile (another writer), its
/// append is refused and writes nothing. Keys are the writer's to keep unique: the store
/// has no index over them.
pub async fn an_append_after_another_head_writes_nothing(h: &Harness) {
    h.store
        .append_after(A, Some(0), vec![keyed("app-1", "k1", 1)])
        .await
        .unwrap();
    let head = h.store.head(A).await.unwrap();
    // A writer that still believes the log empty.
    let result = h
        .store
        .append_after(A, Some(0), vec![event("app-2", 1), keyed("app-3", "k2", 1)])
        .await;
    assert_conflict(result);
    // One that believes it longer than it is.
    assert_conflict(
        h.store
            .append_after(A, Some(5), vec![event("app-4", 1)])
            .await,
    );
    assert_eq!(h.store.head(A).await.unwrap(), head);
    assert_eq!(h.count("SELECT COUNT(*) FROM log").await, 1);
    assert_eq!(h.store.idempotency(A, "k2").await.unwrap(), None);
    // Heads are per authority.
    h.store
        .append_after(B, Some(0), vec![keyed("app-1", "k1", 1)])
        .await
        .unwrap();
    // The store still works after the refused batches.
    let next = h
        .store
        .append_after(A, Some(1), vec![event("app-2", 1)])
        .await
        .unwrap();
    assert_eq!(next[0].authority_seq, 2);
    assert_eq!(hex::encode(next[0].prev_hash), head.hash);
}

/// Batches of hundreds of rows: every row comes back in order with its key, each key is
/// found at its position, and a stale head refuses a whole large batch.
pub async fn large_batches_round_trip_and_find_every_key(h: &Harness) {
    let batch = |first: usize, n: usize| -> Vec<ochered_store::NewEvent> {
        (first..first + n)
            .map(|i| {
                if i % 3 == 0 {
                    keyed(&format!("app-{i}"), &format!("key-{i}"), 1)
                } else {
                    event(&format!("app-{i}"), 1)
                }
            })
            .collect()
    };
    for (first, n) in [(0, 64), (64, 200), (264, 1), (265, 129)] {
        let stored = h
            .store
            .append_after(A, Some(first as i64), batch(first, n))
            .await
            .unwrap();
        assert_eq!(stored.len(), n);
        assert_eq!(stored[0].authority_seq, first as i64 + 1);
    }
    let read = h.store.read(A, 0, 1_000).await.unwrap();
    assert_eq!(read.len(), 394);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.authority_seq, i as i64 + 1);
        assert_eq!(e.stream_id, format!("app-{i}"));
        assert_eq!(e.record, h.stored_record(A, e.authority_seq).await);
        let key = format!("key-{i}");
        let at = h
            .store
            .idempotency_at(A, &key, e.authority_seq)
            .await
            .unwrap();
        assert_eq!(
            at.map(|hit| hit.last_seq),
            (i % 3 == 0).then_some(i as i64 + 1)
        );
        if i % 30 == 0 {
            // The scan (audits) finds the same position.
            let hit = h.store.idempotency(A, &key).await.unwrap();
            assert_eq!(hit.map(|hit| hit.last_seq), Some(i as i64 + 1), "{i}");
        }
    }
    // A position that records another key, or none, is not a hit.
    assert_eq!(h.store.idempotency_at(A, "key-3", 1).await.unwrap(), None);
    assert_eq!(h.store.idempotency_at(A, "key-3", 2).await.unwrap(), None);
    assert_eq!(h.store.idempotency_at(A, "key-3", 999).await.unwrap(), None);
    assert_eq!(h.store.idempotency_at(A, "key-3", 0).await.unwrap(), None);
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 394, .. }
    ));
    let head = h.store.head(A).await.unwrap();
    assert_conflict(h.store.append_after(A, Some(393), batch(394, 150)).await);
    assert_eq!(h.store.head(A).await.unwrap(), head);
    assert_eq!(h.count("SELECT COUNT(*) FROM log").await, 394);
    assert_eq!(h.store.idempotency(A, "key-396").await.unwrap(), None);
}

pub async fn idempotency_records_round_trip(h: &Harness) {
    let key = "Идемпотентность-1";
    let mut batch = events("app", 1, 2);
    batch.push(keyed("app-3", key, 3));
    batch.push(keyed("app-4", "another", 1));
    h.store.append(A, batch).await.unwrap();
    assert_eq!(
        h.store.idempotency(A, key).await.unwrap(),
        Some(IdempotencyHit {
            request_hash: idempotency(key, 3).request_hash,
            first_seq: 1,
            last_seq: 3,
        })
    );
    assert_eq!(
        h.store
            .idempotency(A, "another")
            .await
            .unwrap()
            .map(|h| (h.first_seq, h.last_seq)),
        Some((4, 4))
    );
    assert_eq!(h.store.idempotency(A, "absent").await.unwrap(), None);
    assert_eq!(h.store.idempotency(B, key).await.unwrap(), None);
    // By position, as the writer asks.
    assert_eq!(
        h.store
            .idempotency_at(A, key, 3)
            .await
            .unwrap()
            .map(|h| (h.first_seq, h.last_seq)),
        Some((1, 3))
    );
    assert_eq!(h.store.idempotency_at(A, key, 4).await.unwrap(), None);
    assert_eq!(h.store.idempotency_at(B, key, 3).await.unwrap(), None);
}

pub async fn verify_reports_ok_with_head(h: &Harness) {
    assert_eq!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok {
            head: ChainHead::genesis(),
            events: 0
        }
    );
    let stored = five_events(h).await;
    let more = h.store.append(A, events("more", 1, 3)).await.unwrap();
    let head = ChainHead {
        authority_seq: 8,
        hash: more.last().unwrap().hash_hex(),
    };
    assert_eq!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok {
            head: head.clone(),
            events: 8
        }
    );
    assert_eq!(h.store.head(A).await.unwrap(), head);
    assert_eq!(stored[0].prev_hash, GENESIS);
    // From a known head: only what follows is checked.
    assert_eq!(
        h.store
            .verify_from(A, &ChainHead::of(&stored[4]))
            .await
            .unwrap(),
        VerifyOutcome::Ok { head, events: 3 }
    );
}

pub async fn changed_payload_is_reported_at_its_seq(h: &Harness) {
    let stored = five_events(h).await;
    // Change one byte of the payload inside the record ("Иванова" becomes "Ивановб").
    let mut record = h.stored_record(A, 3).await;
    let at = stored[2].payload_range.0 as usize
        + record[stored[2].payload_range.0 as usize..]
            .windows("Иванова".len())
            .position(|w| w == "Иванова".as_bytes())
            .unwrap()
        + "Иванов".len()
        + 1;
    record[at] ^= 0x03;
    h.set_stored_record(A, 3, &record).await;
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 3, "{outcome:?}");
    assert!(reason.contains("content changed"), "{reason}");
}

pub async fn rehashed_event_breaks_the_next_link(h: &Harness) {
    // A forger who knows the algorithm rewrites event 3 and its hash: event 4 no longer
    // hashes to its stored hash, since its hash covered the old hash of event 3.
    let stored = five_events(h).await;
    let mut forged = event("forged", 1);
    forged.payload = ochered_store::cbor::to_vec(&serde_json::json!({"zeta": 2})).unwrap();
    let record = ochered_store::record::encode(&forged).unwrap();
    let hash = ochered_store::record::hash(&stored[1].hash, A, 3, &record);
    h.set_stored_record(A, 3, &record).await;
    h.set_stored_hash(A, 3, &hash).await;
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 4, "{outcome:?}");
    assert!(reason.contains("content changed"), "{outcome:?}");
}

pub async fn removed_event_is_reported(h: &Harness) {
    five_events(h).await;
    assert_eq!(h.delete_events(A, 3, 3).await, 1);
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 3, "{outcome:?}");
    assert!(reason.contains("gap"), "{outcome:?}");
    // Removing the first event is a gap at 1.
    h.delete_events(A, 1, 1).await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 1);
}

pub async fn swapped_payloads_are_reported(h: &Harness) {
    let stored = five_events(h).await;
    // Records swapped, hashes left in place.
    h.set_stored_record(A, 2, &stored[2].record).await;
    h.set_stored_record(A, 3, &stored[1].record).await;
    let read = h.store.read(A, 0, 10).await.unwrap();
    assert_eq!(
        (read[1].payload(), read[2].payload()),
        (stored[2].payload(), stored[1].payload())
    );
    let outcome = h.store.verify(A).await.unwrap();
    assert_eq!(broken_at(&outcome).0, 2, "{outcome:?}");
}

pub async fn reordered_events_are_reported(h: &Harness) {
    five_events(h).await;
    // Swap the places of events 2 and 3, whole rows with their hashes.
    h.swap_events(A, 2, 3).await;
    let outcome = h.store.verify(A).await.unwrap();
    assert_eq!(broken_at(&outcome).0, 2, "{outcome:?}");
}

pub async fn wrong_stored_hash_is_reported(h: &Harness) {
    five_events(h).await;
    h.set_stored_hash(A, 4, &[0xab; 32]).await;
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 4, "{outcome:?}");
    assert!(reason.contains("content changed"), "{outcome:?}");
}

pub async fn changed_metadata_and_time_are_reported(h: &Harness) {
    let stored = five_events(h).await;
    let original = stored[1].record.clone();
    // Another actor of the same length.
    let mut changed = original.clone();
    let at = changed.windows(9).position(|w| w == b"parent:42").unwrap();
    changed[at + 7] = b'7';
    h.set_stored_record(A, 2, &changed).await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 2);
    // Restore it: the chain verifies again.
    h.set_stored_record(A, 2, &original).await;
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 5, .. }
    ));
    // Another time: the last byte of the microseconds of `t`.
    let mut changed = stored[4].record.clone();
    // `t` is a 64-bit integer: a head byte and 8 bytes.
    let at = field_at(&changed, "t");
    changed[at + 8] ^= 1;
    h.set_stored_record(A, 5, &changed).await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 5);
}

/// Every idempotency fact is inside the hashed record: pointing a key at other events,
/// changing its request hash or its key digest, or moving it to another event is caught.
pub async fn tampered_idempotency_fields_are_reported(h: &Harness) {
    let mut batch = events("app", 1, 3);
    batch.push(keyed("app-4", "parent:1:k", 2));
    batch.push(keyed("app-5", "parent:2:k", 1));
    let stored = h.store.append(A, batch).await.unwrap();
    let original = stored[3].record.clone();
    // `k`: a 32-byte string (head 0x58 0x20), the key digest.
    let key_at = field_at(&original, "k") + 2;
    // `n`: the answer's span; 2 becomes 1 (the answer would point at other events).
    let span_at = field_at(&original, "n");
    assert_eq!(original[span_at], 0x02);
    // `q`: the 32-byte request hash.
    let request_at = field_at(&original, "q") + 2;
    for (what, at, new) in [
        ("key digest", key_at, original[key_at] ^ 1),
        ("answer span", span_at, 0x01),
        (
            "request hash",
            request_at + 5,
            original[request_at + 5] ^ 0x80,
        ),
    ] {
        let mut changed = original.clone();
        changed[at] = new;
        h.set_stored_record(A, 4, &changed).await;
        let outcome = h.store.verify(A).await.unwrap();
        assert_eq!(broken_at(&outcome).0, 4, "{what}: {outcome:?}");
        h.set_stored_record(A, 4, &original).await;
    }
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 5, .. }
    ));
    // Another parent's record moved onto this event (their bytes, this event's place).
    h.set_stored_record(A, 4, &stored[4].record).await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 4);
}

pub async fn authorities_have_independent_chains(h: &Harness) {
    assert_eq!(h.store.authorities().await.unwrap(), Vec::<String>::new());
    let mut a_batch = events("app", 1, 1);
    a_batch.push(keyed("app-2", "same-key", 2));
    let a1 = h.store.append(A, a_batch).await.unwrap();
    let mut b_batch = events("app", 1, 2);
    b_batch.push(keyed("app-3", "same-key", 3));
    let b1 = h.store.append(B, b_batch).await.unwrap();
    let a2 = h.store.append(A, events("app", 3, 1)).await.unwrap();
    assert_eq!(a1[0].prev_hash, GENESIS);
    assert_eq!(b1[0].prev_hash, GENESIS);
    assert_eq!(
        b1.iter().map(|e| e.authority_seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(a2[0].authority_seq, 3);
    assert_eq!(a2[0].prev_hash, a1[1].hash);
    // Same stream ids and versions in another authority are fine; the hashes differ.
    assert_ne!(a1[0].hash, b1[0].hash);
    h.store.append("kzn", vec![event("x", 1)]).await.unwrap();
    assert_eq!(
        h.store.authorities().await.unwrap(),
        vec!["kzn".to_string(), A.to_string(), B.to_string()]
    );
    assert_eq!(h.store.read(B, 0, 100).await.unwrap(), b1);
    assert_eq!(
        h.store
            .idempotency(B, "same-key")
            .await
            .unwrap()
            .map(|h| h.last_seq),
        Some(3)
    );
    // Breaking one chain leaves the other intact.
    let mut record = h.stored_record(B, 2).await;
    record[3] ^= 1;
    h.set_stored_record(B, 2, &record).await;
    assert_eq!(broken_at(&h.store.verify(B).await.unwrap()).0, 2);
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 3, .. }
    ));
}

/// Appends of several authorities at once (one transaction): a conflict of one (here a
/// stale head) fails that one alone, and every chain stays whole.
pub async fn concurrent_authorities_commit_together_and_fail_alone(h: &Harness) {
    h.store
        .append(A, vec![keyed("app-0", "taken", 1)])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for round in 0..20 {
        for authority in ["a1", "a2", "a3", A] {
            let store = h.store.clone();
            tasks.push(tokio::spawn(async move {
                let result = if authority == A && round == 7 {
                    // A writer that missed the first event: this append alone must fail.
                    let batch = vec![keyed(&format!("app-{round}"), "late", 1)];
                    store.append_after(authority, Some(0), batch).await
                } else {
                    store
                        .append(authority, events(&format!("r{round}"), 1, 5))
                        .await
                };
                (authority, round, result)
            }));
        }
    }
    for task in tasks {
        let (authority, round, result) = task.await.unwrap();
        if authority == A && round == 7 {
            assert_conflict(result);
        } else {
            assert_eq!(result.unwrap().len(), 5, "{authority} {round}");
        }
    }
    for (authority, expected) in [("a1", 100), ("a2", 100), ("a3", 100), (A, 96)] {
        match h.store.verify(authority).await.unwrap() {
            VerifyOutcome::Ok { events, .. } => assert_eq!(events, expected, "{authority}"),
            broken => panic!("{authority}: {broken:?}"),
        }
    }
}

pub async fn snapshots_keep_the_latest(h: &Harness) {
    assert_eq!(h.store.load_snapshot(A).await.unwrap(), None);
    h.store.append(A, events("app", 1, 5)).await.unwrap();
    h.store.save_snapshot(A, 0, b"").await.unwrap();
    assert_eq!(h.store.load_snapshot(A).await.unwrap(), Some((0, vec![])));
    h.store.save_snapshot(A, 2, &[0, 1, 2, 255]).await.unwrap();
    h.store.save_snapshot(A, 4, b"state at 4").await.unwrap();
    assert_eq!(
        h.store.load_snapshot(A).await.unwrap(),
        Some((4, b"state at 4".to_vec()))
    );
    // An older one saved later does not hide the latest.
    h.store.save_snapshot(A, 3, b"state at 3").await.unwrap();
    assert_eq!(
        h.store.load_snapshot(A).await.unwrap(),
        Some((4, b"state at 4".to_vec()))
    );
    // Saving at the same place replaces it.
    h.store
        .save_snapshot(A, 4, b"state at 4, again")
        .await
        .unwrap();
    assert_eq!(
        h.store.load_snapshot(A).await.unwrap(),
        Some((4, b"state at 4, again".to_vec()))
    );
    assert_eq!(
        h.count(&format!(
            "SELECT COUNT(*) FROM snapshots WHERE authority = '{A}'"
        ))
        .await,
        2
    );
    // Beyond the head is refused; other authorities are separate.
    assert!(h.store.save_snapshot(A, 6, b"future").await.is_err());
    assert_eq!(h.store.load_snapshot(B).await.unwrap(), None);
    let big = vec![7u8; 3 << 20];
    h.store.save_snapshot(A, 5, &big).await.unwrap();
    assert_eq!(h.store.load_snapshot(A).await.unwrap(), Some((5, big)));
}

/// A snapshot in pieces: each piece is read back by its number, stored again it is replaced,
/// and the pieces of a snapshot no longer kept go with its header.
pub async fn snapshot_pieces_are_kept_and_pruned_with_their_header(h: &Harness) {
    h.store.append(A, events("app", 1, 6)).await.unwrap();
    let chunks = |seq: i64| {
        format!("SELECT COUNT(*) FROM snapshot_chunks WHERE authority = '{A}' AND authority_seq = {seq}")
    };
    for seq in [2, 4, 6] {
        for i in 0..3i64 {
            let piece = vec![seq as u8 * 10 + i as u8; (1 << 20) + i as usize];
            h.store
                .save_snapshot_chunk(A, seq, i, &piece)
                .await
                .unwrap();
        }
        // Not yet readable as a snapshot: its header comes last.
        assert_ne!(
            h.store.load_snapshot(A).await.unwrap().map(|(s, _)| s),
            Some(seq)
        );
        assert_eq!(
            h.store.load_snapshot_chunk(A, seq, 2).await.unwrap(),
            Some(vec![seq as u8 * 10 + 2; (1 << 20) + 2])
        );
        h.store.save_snapshot(A, seq, b"header").await.unwrap();
        assert_eq!(
            h.store.load_snapshot(A).await.unwrap().map(|(s, _)| s),
            Some(seq)
        );
    }
    h.store
        .save_snapshot_chunk(A, 6, 1, b"again")
        .await
        .unwrap();
    assert_eq!(
        h.store.load_snapshot_chunk(A, 6, 1).await.unwrap(),
        Some(b"again".to_vec())
    );
    assert_eq!(h.store.load_snapshot_chunk(A, 6, 3).await.unwrap(), None);
    assert_eq!(h.store.load_snapshot_chunk(B, 6, 0).await.unwrap(), None);
    // Two snapshots are kept (4 and 6): the pieces of 2 went with its header.
    assert_eq!(h.count(&chunks(2)).await, 0);
    assert_eq!(h.count(&chunks(4)).await, 3);
    assert_eq!(h.count(&chunks(6)).await, 3);
}

pub async fn read_pages_in_order(h: &Harness) {
    for batch in 0..4 {
        h.store
            .append(A, events(&format!("b{batch}"), 1, 250))
            .await
            .unwrap();
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = h.store.read(A, after, 300).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 300);
        after = page.last().unwrap().authority_seq;
        seen.extend(page);
    }
    assert_eq!(
        seen.iter().map(|e| e.authority_seq).collect::<Vec<_>>(),
        (1..=1000).collect::<Vec<_>>()
    );
    assert_eq!(h.store.read(A, 998, 10).await.unwrap().len(), 2);
    assert!(h.store.read(A, 1000, 10).await.unwrap().is_empty());
    assert!(h.store.read(A, 0, 0).await.unwrap().is_empty());
    assert!(h.store.read(A, 0, -1).await.unwrap().is_empty());
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 1000, .. }
    ));
}

pub async fn concurrent_writers_never_fork_a_chain(h: &Harness) {
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = 0i64;
            for batch in 0..5 {
                let prefix = format!("w{writer}-b{batch}");
                let mut batch = events(&prefix, 1, 19);
                batch.push(keyed(&format!("{prefix}-20"), &prefix, 1));
                // Each appends after the head it saw: whoever loses the race is refused.
                let after = store.head(A).await.unwrap().authority_seq;
                match store.append_after(A, Some(after), batch).await {
                    Ok(stored) => written += stored.len() as i64,
                    Err(StoreError::Conflict(_)) => {}
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            written
        }));
    }
    let mut written = 0;
    for task in tasks {
        written += task.await.unwrap();
    }
    assert!(written > 0);
    match h.store.verify(A).await.unwrap() {
        VerifyOutcome::Ok { head, events } => {
            assert_eq!(events as i64, written);
            assert_eq!(head.authority_seq, written);
        }
        broken => panic!("{broken:?}"),
    }
    let keyed_events = h
        .store
        .read(A, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.idempotency.is_some())
        .count() as i64;
    assert_eq!(keyed_events * 20, written);
}

pub async fn empty_append_does_nothing(h: &Harness) {
    assert!(h.store.append(A, vec![]).await.unwrap().is_empty());
    assert_eq!(h.store.head(A).await.unwrap(), ChainHead::genesis());
    assert_eq!(h.store.authorities().await.unwrap(), Vec::<String>::new());
}

pub async fn reading_across_a_wide_gap_returns_the_next_events(h: &Harness) {
    h.store.append(A, events("app", 1, 30)).await.unwrap();
    h.delete_events(A, 5, 20).await;
    let page = h.store.read(A, 4, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.authority_seq).collect::<Vec<_>>(),
        vec![21, 22, 23, 24, 25]
    );
    let page = h.store.read(A, 2, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.authority_seq).collect::<Vec<_>>(),
        vec![3, 4, 21, 22, 23]
    );
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 5, "{outcome:?}");
    assert!(reason.contains("found 21"), "{reason}");
}
