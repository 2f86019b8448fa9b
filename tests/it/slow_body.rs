//! Slow clients cannot starve others: 300 connections from 15 parent accounts send their
//! headers and then trickle their bodies, while a normal client submits; the normal client's
//! submissions keep succeeding, because a request takes a place only once its body has
//! arrived, and the trickling ones are cut off with a 4xx. A body shorter than its
//! Content-Length is a 4xx too, not a 5xx after the request timeout.

use std::time::{Duration, Instant};

use ochered_api::http::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{config_for, kindergarten, spawn_configured, token, AUTHORITY};
use ochered_store::testing::Harness;

const SLOW_CONNECTIONS: usize = 300;
const SLOW_SUBJECTS: usize = 15;
/// Places for requests in progress per class: far fewer than the slow connections.
const PLACES: usize = 16;

/// Opens a connection and sends a submission's headers and the first `sent` bytes of a
/// body of `declared` bytes, as parent `subject`.
async fn start_body(addr: &str, subject: &str, declared: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/authorities/{AUTHORITY}/kindergarten/applications HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n",
        token(Role::Parent, subject)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; sent]).await.unwrap();
    stream
}

/// Reads a response's status line (None if the server closed without answering).
async fn status_of(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = vec![0u8; 4096];
    let mut read = 0;
    loop {
        let n = stream.read(&mut buf[read..]).await.ok()?;
        if n == 0 {
            break;
        }
        read += n;
        if buf[..read].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..read]);
    line.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_place_and_a_normal_client_keeps_submitting() {
    let harness = Harness::sqlite().await;
    let mut config = config_for(harness.url.clone());
    config.max_in_flight = PLACES;
    // Out of the way: this is about places, not the per-client rate.
    config.rate_limit = ochered_api::config::RateLimitConfig::off();
    let app = spawn_configured(std::sync::Arc::new(harness), "sqlite", config).await;
    app.set_up_authority().await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // The slow ones: headers, a few bytes of a 400-byte body, then a byte now and then.
    let mut slow = Vec::new();
    for i in 0..SLOW_CONNECTIONS {
        let subject = format!("slow-parent-{}", i % SLOW_SUBJECTS);
        slow.push(start_body(&addr, &subject, 400, 10).await);
    }
    let trickler = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for s in slow.iter_mut() {
                let _ = s.write_all(b" ").await;
            }
        }
        for mut s in slow {
            statuses.push(status_of(&mut s).await);
        }
        statuses
    });

    // Meanwhile a normal parent submits, one child after another.
    let started = Instant::now();
    let mut submitted = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let who = token(Role::Parent, &format!("normal-parent-{submitted}"));
        let a = app
            .post(
                &who,
                "/kindergarten/applications",
                kindergarten(&format!("II-SB {:06}", 200_000 + submitted), &["K1"]),
            )
            .await;
        assert_eq!(a.status, 201, "submission {submitted}: {}", a.body);
        submitted += 1;
    }
    assert!(submitted >= 5, "only {submitted} submissions in 3 s");

    // The trickling ones were cut off with 408, none with a 5xx.
    let statuses = trickler.await.unwrap();
    let timed_out = statuses.iter().filter(|s| **s == Some(408)).count();
    assert!(
        statuses.iter().all(|s| s.is_none_or(|s| s < 500)),
        "a slow body got a 5xx: {statuses:?}"
    );
    assert!(timed_out > SLOW_CONNECTIONS / 2, "{timed_out} answered 408");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_is_a_client_error_within_seconds() {
    let harness = Harness::sqlite().await;
    let config = config_for(harness.url.clone());
    let app = spawn_configured(std::sync::Arc::new(harness), "sqlite", config).await;
    app.set_up_authority().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // The client sends 100 of 400 bytes and waits for an answer.
    let started = Instant::now();
    let mut stream = start_body(&addr, "short-parent", 400, 100).await;
    let status = status_of(&mut stream).await;
    assert_eq!(status, Some(408), "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The client sends 100 of 400 bytes and closes its side: 400, at once.
    let mut stream = start_body(&addr, "short-parent", 400, 100).await;
    stream.shutdown().await.unwrap();
    let status = status_of(&mut stream).await;
    assert!(
        status.is_none_or(|s| s == 400),
        "a truncated body got {status:?}"
    );
    // Nothing was written for either.
    let who = token(Role::Parent, "short-parent");
    let mine = app.get(Some(&who), "/applications").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["applications"].as_array().map(Vec::len), Some(0));
    app.stop().await;
}
