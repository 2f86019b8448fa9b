//! Integration tests of the event log, each run on SQLite and on PostgreSQL.

mod auditor;
mod cluster;
mod data_keys;
mod harness;
mod log;
mod sqlite_only;
mod throughput;
mod tree_heads;

/// Generates `sqlite` and `postgres` tests that run the scenario `$name(&Harness)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let harness = crate::harness::Harness::sqlite().await;
                    crate::log::$name(&harness).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(harness) = crate::harness::Harness::postgres().await else { return };
                    crate::log::$name(&harness).await;
                }
            }
        )*
    };
}

on_both_backends!(
    round_trip_keeps_bytes_and_time,
    events_link_into_a_chain,
    an_append_after_another_head_writes_nothing,
    large_batches_round_trip_and_find_every_key,
    idempotency_records_round_trip,
    verify_reports_ok_with_head,
    changed_payload_is_reported_at_its_seq,
    rehashed_event_breaks_the_next_link,
    removed_event_is_reported,
    swapped_payloads_are_reported,
    reordered_events_are_reported,
    wrong_stored_hash_is_reported,
    changed_metadata_and_time_are_reported,
    tampered_idempotency_fields_are_reported,
    authorities_have_independent_chains,
    concurrent_authorities_commit_together_and_fail_alone,
    snapshots_keep_the_latest,
    snapshot_pieces_are_kept_and_pruned_with_their_header,
    read_pages_in_order,
    concurrent_writers_never_fork_a_chain,
    empty_append_does_nothing,
    reading_across_a_wide_gap_returns_the_next_events,
);

#[tokio::test]
async fn open_unreachable_postgres_is_unavailable() {
    let started = std::time::Instant::now();
    let result = ochered_store::open("postgres://postgres@127.0.0.1:1/test").await;
    match result {
        Err(ochered_store::StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, got a store"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
