//! Cluster mode on PostgreSQL: advisory-lock ownership, epochs that fence a stale writer,
//! and the notification of each commit.

use std::time::Duration;

use ochered_store::cluster::ClusterLink;
use ochered_store::{EventStore, PgStore, StoreError, VerifyOutcome};

use crate::harness::{events, Harness};

const A: &str = "msk";
const B: &str = "spb";

fn assert_fenced<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("expected Fenced, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_cannot_commit_after_a_takeover() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let store1 = PgStore::open(&h.url).await.unwrap();
    let store2 = PgStore::open(&h.url).await.unwrap();
    let node1 = ClusterLink::join(&store1, "n1", "http://127.0.0.1:1")
        .await
        .unwrap();
    let node2 = ClusterLink::join(&store2, "n2", "http://127.0.0.1:2")
        .await
        .unwrap();
    assert_eq!(node1.alive_nodes().await.unwrap(), 2);

    // One writer per authority: the lock is exclusive.
    assert_eq!(node1.try_take(A).await.unwrap(), Some(1));
    assert_eq!(node2.try_take(A).await.unwrap(), None);
    assert!(node1.owns(A) && !node2.owns(A));
    let locked = node2.locked(&[A.to_string(), B.to_string()]).await.unwrap();
    assert!(locked.contains(A) && !locked.contains(B), "{locked:?}");

    // Only the holder appends; every commit is notified.
    let mut listener = node2.listen().await.unwrap();
    store1.append(A, events("app", 1, 3)).await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification of the commit")
        .unwrap();
    assert_eq!(note.payload(), A);
    assert_fenced(store2.append(A, events("app", 4, 1)).await);
    assert_fenced(store1.append(B, events("app", 1, 1)).await);
    assert_eq!(h.count("SELECT COUNT(*) FROM log").await, 3);

    // Node 1 is cut off from the database: PostgreSQL ends its lock session and releases
    // the lock, but node 1 does not know yet and still believes it holds epoch 1.
    let pid = node1.lock_backend_pid().await.unwrap();
    h.exec(&format!("SELECT pg_terminate_backend({pid})")).await;
    let mut taken = None;
    for _ in 0..200 {
        taken = node2.try_take(A).await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(taken, Some(2), "node 2 takes the authority over");
    assert_eq!(node1.epoch(A), Some(1));

    // The stale writer's commit fails and writes nothing; the new owner continues the chain.
    assert_fenced(store1.append(A, events("app", 4, 1)).await);
    assert_eq!(h.count("SELECT COUNT(*) FROM log").await, 3);
    let stored = store2.append(A, events("app", 4, 2)).await.unwrap();
    assert_eq!(stored[0].authority_seq, 4);
    assert!(matches!(
        store2.verify(A).await.unwrap(),
        VerifyOutcome::Ok { events: 5, .. }
    ));
    let owner = node1.owner(A).await.unwrap().unwrap();
    assert_eq!(
        (owner.epoch, owner.node_id.as_str(), owner.url.as_str()),
        (2, "n2", "http://127.0.0.1:2")
    );

    // Node 1 notices the lost session, drops its fences and reconnects.
    assert_eq!(node1.check().await.unwrap(), vec![A.to_string()]);
    assert!(!node1.owns(A));
    assert_eq!(node1.try_take(A).await.unwrap(), None);

    // A release hands the authority over at once, with a newer epoch.
    node2.release(A).await;
    assert_fenced(store2.append(A, events("app", 6, 1)).await);
    assert_eq!(node1.try_take(A).await.unwrap(), Some(3));
    store1.append(A, events("app", 6, 1)).await.unwrap();
    assert_eq!(store1.head(A).await.unwrap().authority_seq, 6);
}

#[tokio::test]
async fn node_ids_are_checked() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let store = PgStore::open(&h.url).await.unwrap();
    for bad in ["", "has space", "x".repeat(33).as_str()] {
        assert!(
            ClusterLink::join(&store, bad, "http://127.0.0.1:1")
                .await
                .is_err(),
            "{bad:?}"
        );
    }
}
