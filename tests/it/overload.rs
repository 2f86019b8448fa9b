//! Overload: the real server gets hundreds of submissions at once (open loop, each from its
//! own parent account with its own key), once with a writer queue of 4 commands (the writer
//! sheds) and once with room for 8 API requests in progress (admission control sheds). Every
//! answer is a 2xx or a shed 503/429 with Retry-After and a problem+json body; shed children
//! retried with their keys are all acknowledged in the end; nothing acknowledged is missing
//! from the log. No timing is asserted: `ochered simulate --rate` measures the figures.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ochered_store::testing::Harness;

use crate::helpers::{config_for, spawn_configured, TestApp};
use crate::outage::{check_log, finish_all, submit, Ledger};

const BURST: u32 = 400;

async fn overload(harness: Harness, backend: &'static str) {
    let mut config = config_for(harness.url.clone());
    config.queue_max = 4;
    config.batch_max = 4;
    // Admission control off: the writer's queue is what sheds here.
    config.max_in_flight = 0;
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

/// Room for this many API writes (and as many reads) in progress.
const ADMITTED: usize = 8;

/// The value of a counter in the server's /metrics, summed over its labels (0 when not yet
/// reported).
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app.text("/metrics").await;
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

/// A probe during the burst: /health and /ready answer 200, never shed.
async fn probe(app: &TestApp) {
    for path in ["/health", "/ready"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{}: {path} during the burst",
            app.backend
        );
    }
}

async fn admission(harness: Harness, backend: &'static str) {
    let mut config = config_for(harness.url.clone());
    config.max_in_flight = ADMITTED;
    // A writer queue far larger than the admitted requests: only admission control sheds.
    config.queue_max = 4096;
    let app = Arc::new(spawn_configured(Arc::new(harness), backend, config).await);
    app.set_up_authority().await;
    let shed_before = counter(&app, "ochered_admission_shed_total").await;
    let ledger = Arc::new(Ledger::default());
    let next = Arc::new(AtomicU32::new(0));
    let mut probes = 0;
    for _ in 0..10 {
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let (client, ledger, n) = (
                app.clone(),
                ledger.clone(),
                next.fetch_add(1, Ordering::Relaxed),
            );
            burst.spawn(async move {
                let app = client;
                let a = submit(&app, n).await;
                ledger.record(app.backend, n, &a);
                if a.status == 503 {
                    assert_eq!(a.code, "overloaded", "{}: {a:?}", app.backend);
                }
                assert_ne!(a.status, 429, "{}: no client is over its rate", app.backend);
            });
            // Probes among the submissions, while the admitted ones hold every permit.
            if i % 50 == 25 {
                let app = app.clone();
                burst.spawn(async move { probe(&app).await });
                probes += 1;
            }
        }
        while let Some(done) = burst.join_next().await {
            done.unwrap();
        }
        if ledger.statuses.lock().unwrap().contains_key(&503) {
            break;
        }
    }
    let statuses = ledger.statuses.lock().unwrap().clone();
    eprintln!("{backend} admission: answers by status {statuses:?}, {probes} probes");
    let shed = statuses.get(&503).copied().unwrap_or(0);
    assert!(shed > 0, "{backend}: nothing was shed: {statuses:?}");
    assert!(
        !ledger.acknowledged.lock().unwrap().is_empty(),
        "{backend}: nothing was accepted: {statuses:?}"
    );
    // Every 503 was admission control's (the writer's queue never filled), and it counted.
    let shed_counted = counter(&app, "ochered_admission_shed_total").await - shed_before;
    assert!(
        shed_counted >= shed as f64,
        "{backend}: {shed} shed answers, {shed_counted} counted"
    );
    // Nothing was written for the shed requests: the log holds exactly the acknowledged.
    check_log(&app, &ledger).await;
    // Retried with their keys, the shed children are all acknowledged, each once.
    let shed_children: Vec<u32> = (0..next.load(Ordering::Relaxed))
        .filter(|n| !ledger.acknowledged.lock().unwrap().contains_key(n))
        .collect();
    assert_eq!(
        shed_children.len() as u64,
        shed,
        "{backend}: one answer each"
    );
    finish_all(&app, &ledger, shed_children).await;
    check_log(&app, &ledger).await;
    let app = Arc::try_unwrap(app).ok().expect("the bursts are over");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_control_sheds_at_once_and_keeps_probes_answering() {
    admission(Harness::sqlite().await, "sqlite").await;
    if let Some(pg) = Harness::postgres().await {
        admission(pg, "postgres").await;
    }
}
