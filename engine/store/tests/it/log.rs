//! Scenarios every backend must pass; `main.rs` runs each on SQLite and PostgreSQL.

use ochered_store::{
    event_hash, truncate_to_micros, ChainHead, NewEvent, StoreError, VerifyOutcome, GENESIS_HASH,
};

use crate::harness::{event, events, idempotency, Harness};

const A: &str = "msk";
const B: &str = "spb";

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn broken_at(outcome: &VerifyOutcome) -> (i64, &str) {
    match outcome {
        VerifyOutcome::Broken {
            authority_seq,
            reason,
            ..
        } => (*authority_seq, reason.as_str()),
        VerifyOutcome::Ok { .. } => panic!("expected a broken chain, got {outcome:?}"),
    }
}

/// Five events of `A`, then checks the chain verifies.
async fn five_events(h: &Harness) -> Vec<ochered_store::StoredEvent> {
    let stored = h
        .store
        .append(A, events("app", 1, 5), vec![])
        .await
        .unwrap();
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 5, .. }
    ));
    stored
}

pub async fn round_trip_keeps_bytes_and_time(h: &Harness) {
    let batch = vec![event("app-1", 1), event("app-1", 2), event("app-2", 1)];
    let stored = h.store.append(A, batch.clone(), vec![]).await.unwrap();
    let read = h.store.read(A, 0, 100).await.unwrap();
    assert_eq!(read, stored);
    assert_eq!(read.len(), 3);
    for (i, (e, original)) in read.iter().zip(&batch).enumerate() {
        assert_eq!(e.authority, A);
        assert_eq!(e.authority_seq, i as i64 + 1);
        assert_eq!(e.payload.as_bytes(), original.payload.as_bytes());
        assert_eq!(e.recorded_at, truncate_to_micros(original.recorded_at));
        assert_eq!(e.recorded_at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(e.metadata, original.metadata);
        assert_eq!(e.stream_id, original.stream_id);
        assert_eq!(e.stream_version, original.stream_version);
        assert_eq!(e.event_type, original.event_type);
        assert_eq!(e.schema_version, original.schema_version);
    }
    assert!(read.windows(2).all(|w| w[0].global_seq < w[1].global_seq));
    // Read again, after a second append, still exactly the same rows.
    h.store
        .append(A, vec![event("app-3", 1)], vec![])
        .await
        .unwrap();
    assert_eq!(h.store.read(A, 0, 3).await.unwrap(), stored);
}

pub async fn events_link_into_a_chain(h: &Harness) {
    let first = h
        .store
        .append(A, events("app", 1, 3), vec![])
        .await
        .unwrap();
    let second = h
        .store
        .append(A, events("app", 4, 2), vec![])
        .await
        .unwrap();
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
        assert_eq!(w[1].authority_seq, w[0].authority_seq + 1);
    }
    for e in &all {
        assert_eq!(
            e.hash,
            event_hash(&e.prev_hash, A, e.authority_seq, &e.to_new_event())
        );
        assert_eq!(e.hash, e.expected_hash());
        assert_eq!(e.hash.len(), 64);
    }
    let last = all.last().unwrap();
    assert_eq!(
        h.store.head(A).await.unwrap(),
        ChainHead {
            authority_seq: 5,
            hash: last.hash.clone()
        }
    );
    assert_eq!(h.store.head("nobody").await.unwrap(), ChainHead::genesis());
}

pub async fn duplicate_stream_version_writes_nothing(h: &Harness) {
    h.store
        .append(A, vec![event("app-1", 1)], vec![idempotency("k0", Some(1))])
        .await
        .unwrap();
    let head = h.store.head(A).await.unwrap();

    // A duplicate inside the batch.
    let batch = vec![event("app-2", 1), event("app-3", 1), event("app-2", 1)];
    let keys = vec![idempotency("k1", Some(2)), idempotency("k2", Some(3))];
    assert_conflict(h.store.append(A, batch, keys).await);
    // A duplicate of a stored event.
    let batch = vec![event("app-4", 1), event("app-1", 1)];
    assert_conflict(
        h.store
            .append(A, batch, vec![idempotency("k3", None)])
            .await,
    );

    assert_eq!(h.store.head(A).await.unwrap(), head);
    assert_eq!(h.count("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(h.count("SELECT COUNT(*) FROM idempotency").await, 1);
    for key in ["k1", "k2", "k3"] {
        assert_eq!(h.store.idempotency(A, key).await.unwrap(), None);
    }
    // The store still works after the refused batches.
    let next = h
        .store
        .append(A, vec![event("app-2", 1)], vec![])
        .await
        .unwrap();
    assert_eq!(next[0].authority_seq, 2);
    assert_eq!(next[0].prev_hash, head.hash);
}

pub async fn duplicate_idempotency_key_writes_nothing(h: &Harness) {
    h.store
        .append(A, vec![event("app-1", 1)], vec![idempotency("k1", Some(1))])
        .await
        .unwrap();
    let head = h.store.head(A).await.unwrap();
    // The same key again, in another batch.
    let result = h
        .store
        .append(
            A,
            vec![event("app-2", 1)],
            vec![idempotency("k2", Some(2)), idempotency("k1", Some(2))],
        )
        .await;
    assert_conflict(result);
    // The same key twice in one batch.
    let result = h
        .store
        .append(
            A,
            vec![event("app-3", 1)],
            vec![idempotency("k9", Some(2)), idempotency("k9", Some(2))],
        )
        .await;
    assert_conflict(result);
    assert_eq!(h.store.head(A).await.unwrap(), head);
    assert_eq!(h.count("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(h.count("SELECT COUNT(*) FROM idempotency").await, 1);
    assert_eq!(h.store.idempotency(A, "k2").await.unwrap(), None);
    assert_eq!(h.store.idempotency(A, "k9").await.unwrap(), None);
    // Keys are per authority.
    h.store
        .append(B, vec![], vec![idempotency("k1", None)])
        .await
        .unwrap();
}

pub async fn idempotency_records_round_trip(h: &Harness) {
    let record = idempotency("Идемпотентность-1", Some(1));
    h.store
        .append(
            A,
            vec![event("app-1", 1)],
            vec![record.clone(), idempotency("rejected", None)],
        )
        .await
        .unwrap();
    assert_eq!(
        h.store.idempotency(A, &record.key).await.unwrap(),
        Some(record)
    );
    assert_eq!(
        h.store
            .idempotency(A, "rejected")
            .await
            .unwrap()
            .unwrap()
            .authority_seq,
        None
    );
    assert_eq!(h.store.idempotency(A, "absent").await.unwrap(), None);
    assert_eq!(h.store.idempotency(B, "rejected").await.unwrap(), None);
    // A record without events (a refused command's answer) is stored too.
    h.store
        .append(A, vec![], vec![idempotency("only-answer", None)])
        .await
        .unwrap();
    assert!(h
        .store
        .idempotency(A, "only-answer")
        .await
        .unwrap()
        .is_some());
    assert_eq!(h.store.head(A).await.unwrap().authority_seq, 1);
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
    let more = h
        .store
        .append(A, events("more", 1, 3), vec![])
        .await
        .unwrap();
    let head = ChainHead {
        authority_seq: 8,
        hash: more.last().unwrap().hash.clone(),
    };
    assert_eq!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok {
            head: head.clone(),
            events: 8
        }
    );
    assert_eq!(h.store.head(A).await.unwrap(), head);
    assert_eq!(stored[0].prev_hash, GENESIS_HASH);
}

pub async fn changed_payload_is_reported_at_its_seq(h: &Harness) {
    let stored = five_events(h).await;
    let n = h.exec(&format!("UPDATE events SET payload = '{{\"zeta\":2}}' WHERE authority = '{A}' AND authority_seq = 3")).await;
    assert_eq!(n, 1);
    match h.store.verify(A).await.unwrap() {
        VerifyOutcome::Broken {
            authority_seq: 3,
            global_seq,
            reason,
        } => {
            assert_eq!(global_seq, stored[2].global_seq);
            assert!(reason.contains("content changed"), "{reason}");
        }
        other => panic!("expected a break at 3, got {other:?}"),
    }
}

pub async fn rehashed_event_breaks_the_next_link(h: &Harness) {
    // A forger who knows the algorithm rewrites event 3 and its hash: event 4 no longer links.
    let stored = five_events(h).await;
    let mut forged: NewEvent = stored[2].to_new_event();
    forged.payload = r#"{"zeta":2}"#.to_string();
    let forged_hash = event_hash(&stored[2].prev_hash, A, 3, &forged);
    h.exec(&format!(
        "UPDATE events SET payload = '{}', hash = '{forged_hash}' WHERE authority = '{A}' AND authority_seq = 3",
        forged.payload
    ))
    .await;
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 4, "{outcome:?}");
    assert!(reason.contains("prev_hash"), "{outcome:?}");
}

pub async fn removed_event_is_reported(h: &Harness) {
    let stored = five_events(h).await;
    assert_eq!(
        h.exec(&format!(
            "DELETE FROM events WHERE authority = '{A}' AND authority_seq = 3"
        ))
        .await,
        1
    );
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 3, "{outcome:?}");
    assert!(reason.contains("gap"), "{outcome:?}");
    assert!(
        matches!(outcome, VerifyOutcome::Broken { global_seq, .. } if global_seq == stored[3].global_seq)
    );
    // Removing the first event is a gap at 1.
    h.exec(&format!(
        "DELETE FROM events WHERE authority = '{A}' AND authority_seq = 1"
    ))
    .await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 1);
}

pub async fn swapped_payloads_are_reported(h: &Harness) {
    let stored = five_events(h).await;
    for (seq, payload) in [(2, &stored[2].payload), (3, &stored[1].payload)] {
        assert!(!payload.contains('\''));
        h.exec(&format!("UPDATE events SET payload = '{payload}' WHERE authority = '{A}' AND authority_seq = {seq}")).await;
    }
    let read = h.store.read(A, 0, 10).await.unwrap();
    assert_eq!(
        (&read[1].payload, &read[2].payload),
        (&stored[2].payload, &stored[1].payload)
    );
    let outcome = h.store.verify(A).await.unwrap();
    assert_eq!(broken_at(&outcome).0, 2, "{outcome:?}");
}

pub async fn reordered_events_are_reported(h: &Harness) {
    five_events(h).await;
    // Swap the places of events 2 and 3, whole rows with their hashes.
    h.exec(&format!(
        "UPDATE events SET authority_seq = -3 WHERE authority = '{A}' AND authority_seq = 3"
    ))
    .await;
    h.exec(&format!(
        "UPDATE events SET authority_seq = 3 WHERE authority = '{A}' AND authority_seq = 2"
    ))
    .await;
    h.exec(&format!(
        "UPDATE events SET authority_seq = 2 WHERE authority = '{A}' AND authority_seq = -3"
    ))
    .await;
    let outcome = h.store.verify(A).await.unwrap();
    assert_eq!(broken_at(&outcome).0, 2, "{outcome:?}");
}

pub async fn wrong_prev_hash_is_reported(h: &Harness) {
    five_events(h).await;
    h.exec(&format!(
        "UPDATE events SET prev_hash = '{}' WHERE authority = '{A}' AND authority_seq = 4",
        "ab".repeat(32)
    ))
    .await;
    let outcome = h.store.verify(A).await.unwrap();
    let (seq, reason) = broken_at(&outcome);
    assert_eq!(seq, 4, "{outcome:?}");
    assert!(reason.contains("prev_hash"), "{outcome:?}");
}

pub async fn changed_metadata_and_time_are_reported(h: &Harness) {
    let stored = five_events(h).await;
    let other_metadata = stored[1].metadata.clone();
    let mut changed = other_metadata.clone();
    changed.actor = Some("officer:1".to_string());
    let changed = serde_json::to_string(&changed).unwrap();
    h.exec(&format!(
        "UPDATE events SET metadata = '{changed}' WHERE authority = '{A}' AND authority_seq = 2"
    ))
    .await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 2);
    // Restore it: the chain verifies again.
    let original = serde_json::to_string(&other_metadata).unwrap();
    h.exec(&format!(
        "UPDATE events SET metadata = '{original}' WHERE authority = '{A}' AND authority_seq = 2"
    ))
    .await;
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 5, .. }
    ));
    // A different event type.
    h.exec(&format!("UPDATE events SET event_type = 'OfferAccepted' WHERE authority = '{A}' AND authority_seq = 5")).await;
    assert_eq!(broken_at(&h.store.verify(A).await.unwrap()).0, 5);
}

pub async fn authorities_have_independent_chains(h: &Harness) {
    assert_eq!(h.store.authorities().await.unwrap(), Vec::<String>::new());
    let a1 = h
        .store
        .append(
            A,
            events("app", 1, 2),
            vec![idempotency("same-key", Some(2))],
        )
        .await
        .unwrap();
    let b1 = h
        .store
        .append(
            B,
            events("app", 1, 3),
            vec![idempotency("same-key", Some(3))],
        )
        .await
        .unwrap();
    let a2 = h
        .store
        .append(A, events("app", 3, 1), vec![])
        .await
        .unwrap();
    assert_eq!(a1[0].prev_hash, GENESIS_HASH);
    assert_eq!(b1[0].prev_hash, GENESIS_HASH);
    assert_eq!(
        b1.iter().map(|e| e.authority_seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(a2[0].authority_seq, 3);
    assert_eq!(a2[0].prev_hash, a1[1].hash);
    // Same stream ids and versions in another authority are fine; the hashes differ.
    assert_ne!(a1[0].hash, b1[0].hash);
    h.store
        .append("kzn", vec![event("x", 1)], vec![])
        .await
        .unwrap();
    assert_eq!(
        h.store.authorities().await.unwrap(),
        vec!["kzn".to_string(), A.to_string(), B.to_string()]
    );
    assert_eq!(h.store.read(B, 0, 100).await.unwrap(), b1);
    // Breaking one chain leaves the other intact.
    h.exec(&format!(
        "UPDATE events SET payload = '{{}}' WHERE authority = '{B}' AND authority_seq = 2"
    ))
    .await;
    assert_eq!(broken_at(&h.store.verify(B).await.unwrap()).0, 2);
    assert!(matches!(
        h.store.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 3, .. }
    ));
}

pub async fn snapshots_keep_the_latest(h: &Harness) {
    assert_eq!(h.store.load_snapshot(A).await.unwrap(), None);
    h.store
        .append(A, events("app", 1, 5), vec![])
        .await
        .unwrap();
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

pub async fn read_pages_in_order(h: &Harness) {
    for batch in 0..4 {
        h.store
            .append(A, events(&format!("b{batch}"), 1, 250), vec![])
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
                match store
                    .append(A, events(&prefix, 1, 20), vec![idempotency(&prefix, None)])
                    .await
                {
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
    assert_eq!(
        h.count("SELECT COUNT(*) FROM idempotency").await * 20,
        written
    );
}

pub async fn empty_append_does_nothing(h: &Harness) {
    assert!(h.store.append(A, vec![], vec![]).await.unwrap().is_empty());
    assert_eq!(h.store.head(A).await.unwrap(), ChainHead::genesis());
    assert_eq!(h.store.authorities().await.unwrap(), Vec::<String>::new());
}

pub async fn reading_across_a_wide_gap_returns_the_next_events(h: &Harness) {
    h.store
        .append(A, events("app", 1, 30), vec![])
        .await
        .unwrap();
    h.exec(&format!(
        "DELETE FROM events WHERE authority = '{A}' AND authority_seq BETWEEN 5 AND 20"
    ))
    .await;
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
