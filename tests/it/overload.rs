//! Overload: the real server with a writer queue of 4 commands gets hundreds of submissions
//! at once (open loop, each from its own parent account with its own key). Every answer is
//! a 2xx or a shed 503/429 with Retry-After and a problem+json body; shed children retried
//! with their keys are all acknowledged in the end; nothing acknowledged is missing from the
//! log. No timing is asserted: `ochered simulate --rate` measures the figures.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ochered_store::testing::Harness;

use crate::helpers::{config_for, spawn_configured};
use crate::outage::{check_log, finish_all, submit, Ledger};

const BURST: u32 = 400;

async fn overload(harness: Harness, backend: &'static str) {
    let mut config = config_for(harness.url.clone());
    config.queue_max = 4;
    config.batch_max = 4;
    let app = Arc::new(spawn_configured(Arc::new(harness), backend, config).await);
    app.set_up_authority().await;
    let ledger = Arc::new(Ledger::default());
    let next = Arc::new(AtomicU32::new(0));
    // Bursts until the server has shed some (the first one nearly always suffices).
    for _ in 0..10 {
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            let (app, ledger, n) = (
                app.clone(),
                ledger.clone(),
                next.fetch_add(1, Ordering::Relaxed),
            );
            burst.spawn(async move {
                let a = submit(&app, n).await;
                ledger.record(app.backend, n, &a);
            });
        }
        while let Some(done) = burst.join_next().await {
            done.unwrap();
        }
        let statuses = ledger.statuses.lock().unwrap().clone();
        if statuses.get(&503).or(statuses.get(&429)).is_some() {
            break;
        }
    }
    let statuses = ledger.statuses.lock().unwrap().clone();
    eprintln!("{backend} overload: answers by status {statuses:?}");
    let shed = statuses.get(&503).copied().unwrap_or(0) + statuses.get(&429).copied().unwrap_or(0);
    assert!(shed > 0, "{backend}: nothing was shed: {statuses:?}");
    assert!(
        !ledger.acknowledged.lock().unwrap().is_empty(),
        "{backend}: nothing was accepted: {statuses:?}"
    );
    // The shed children, retried with their keys once the burst is over.
    let shed_children: Vec<u32> = (0..next.load(Ordering::Relaxed))
        .filter(|n| !ledger.acknowledged.lock().unwrap().contains_key(n))
        .collect();
    finish_all(&app, &ledger, shed_children).await;
    check_log(&app, &ledger).await;
    let app = Arc::try_unwrap(app).ok().expect("the bursts are over");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_with_retry_after_and_loses_nothing() {
    overload(Harness::sqlite().await, "sqlite").await;
    if let Some(pg) = Harness::postgres().await {
        overload(pg, "postgres").await;
    }
}
