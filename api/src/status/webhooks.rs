//! The status-change webhooks of the portal: an outbox delivered at least once, in log order
//! per authority, with retries and exponential backoff with jitter.
//!
//! # Design
//!
//! The log is the outbox. Every status change (see
//! [`super::changes::status_changes`]) is already a committed event with its place in
//! the authority's chain, so nothing is written when a command commits and the commit path
//! stays as it is. One delivery loop per authority walks the log in `authority_seq` order from
//! its cursor, POSTs one notification per status change and advances the cursor only after
//! a 2xx answer. The cursor is the only delivery state: `(seq, partial)`, meaning every
//! notification of the events up to `seq` and the first `partial` notifications of event
//! `seq + 1` (a round makes one notification per placement) were delivered.
//!
//! Cursors live in a small JSON file (by default next to the SQLite file), replaced
//! atomically (write, fsync, rename, fsync the directory). It is written once a page of
//! events has been delivered and otherwise at most every [`PERSIST_EVERY`] while a backlog
//! drains, and when the server stops. A crash therefore re-delivers at most the
//! notifications of the last [`PERSIST_EVERY`] (at least once, never a storm) and loses none.
//! The file is not the log: the event log is not changed by deliveries, so its hash chain
//! and replay stay about the queues only, and a delivery costs no commit.
//!
//! Where an authority starts: if the cursor file did not exist when the server started
//! (webhooks were just enabled), the authorities already in the log start at their current
//! head, so enabling webhooks on a large existing log does not replay its history to the
//! portal; authorities created later, or already in the file, start from their cursor (0
//! for a new one) and nothing is skipped. Losing the file counts as enabling anew.
//!
//! Each notification carries an id (`authority:authority_seq:index`) that is the same on
//! every attempt, so the portal can drop duplicates. The body is signed with HMAC-SHA256 in
//! `X-Ochered-Signature: sha256=<hex>`. Notifications name the application by its number
//! and carry no personal data.
//!
//! Notifications go out in log order, `concurrency` at a time (default 1: one after the
//! other, so the portal sees each application's changes in order; with more, a receiver
//! should keep the highest `authority_seq` per application). The cursor only moves over
//! the delivered prefix, so a failing portal blocks its authority's notifications behind
//! the failing one and retries after `initial × 2^(attempt-1)`, capped at the maximum, with a seeded
//! jitter in [½, 1] of the delay and at least the `Retry-After` of a 429 or 503 (capped too).
//! With `max_attempts` > 0, a notification still failing after that many attempts is given
//! up: logged and counted in `ochered_webhook_given_up_total`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesOrdered, StreamExt};
use hmac::{Hmac, Mac};
use ochered_core::domain::ApplicationNumber;
use ochered_store::EventStore;
use ochered_writer::{CommittedEvent, Engine, Writer};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::{broadcast, watch};

use super::changes::{status_changes, stopped};
use crate::config::WebhookConfig;
use crate::state::AppState;

/// While a backlog drains, the cursor file is written at most this often.
pub const PERSIST_EVERY: Duration = Duration::from_millis(250);
/// Events per store read.
const PAGE_EVENTS: i64 = 1_000;
/// New authorities are noticed this often.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// A caught-up loop looks at the head this often even without a broadcast (a commit that
/// reached the disk but was never acknowledged is never broadcast).
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Where an authority's delivery stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every notification of the events up to this authority_seq was delivered.
    pub seq: i64,
    /// And the first `partial` notifications of event `seq + 1`.
    #[serde(default)]
    pub partial: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorFileFormat {
    version: u32,
    cursors: BTreeMap<String, Cursor>,
}

/// The durable cursors of every authority, in one file.
pub struct CursorFile {
    path: Option<PathBuf>,
    /// The file did not exist when it was opened.
    pub was_missing: bool,
    inner: Mutex<Cursors>,
}

struct Cursors {
    current: BTreeMap<String, Cursor>,
    written: BTreeMap<String, Cursor>,
    last_write: Instant,
}

impl CursorFile {
    /// Reads the file (a missing file is empty; an unreadable one is an error, so a
    /// misconfiguration does not silently re-deliver or skip everything).
    pub fn open(path: Option<PathBuf>) -> anyhow::Result<CursorFile> {
        let (cursors, was_missing) = match &path {
            None => (BTreeMap::new(), true),
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    let file: CursorFileFormat =
                        serde_json::from_slice(&bytes).with_context(|| {
                            format!("the webhook cursor file {} is not valid", path.display())
                        })?;
                    anyhow::ensure!(
                        file.version == 1,
                        "the webhook cursor file {} has unknown version {}",
                        path.display(),
                        file.version
                    );
                    (file.cursors, false)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), true),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("failed to read the webhook cursor file {}", path.display())
                    })
                }
            },
        };
        Ok(CursorFile {
            path,
            was_missing,
            inner: Mutex::new(Cursors {
                written: cursors.clone(),
                current: cursors,
                last_write: Instant::now(),
            }),
        })
    }

    pub fn get(&self, authority: &str) -> Option<Cursor> {
        self.inner.lock().unwrap().current.get(authority).copied()
    }

    pub fn set(&self, authority: &str, cursor: Cursor) {
        self.inner
            .lock()
            .unwrap()
            .current
            .insert(authority.to_owned(), cursor);
    }

    /// Writes the cursors if they changed and `force` or [`PERSIST_EVERY`] passed. A failed
    /// write is logged and retried next time: deliveries go on, a crash re-delivers more.
    pub fn persist(&self, force: bool) {
        let mut inner = self.inner.lock().unwrap();
        if inner.current == inner.written || !(force || inner.last_write.elapsed() >= PERSIST_EVERY)
        {
            return;
        }
        inner.last_write = Instant::now();
        let Some(path) = &self.path else {
            inner.written = inner.current.clone();
            return;
        };
        let body = serde_json::to_vec_pretty(&CursorFileFormat {
            version: 1,
            cursors: inner.current.clone(),
        })
        .expect("cursors serialise");
        match write_atomically(path, &body) {
            Ok(()) => inner.written = inner.current.clone(),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "failed to write the webhook cursor file; will retry"
            ),
        }
    }
}

/// Replaces `path` with `bytes` so a crash leaves the old or the new file, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One notification, as POSTed (the `id` is the same on every attempt).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: String,
    pub authority: String,
    pub application: ApplicationNumber,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub authority_seq: i64,
    pub at: DateTime<Utc>,
    /// Its place among the notifications of its event.
    #[serde(skip)]
    index: u32,
}

/// The hex HMAC-SHA256 of `body` under `secret`, as sent in `X-Ochered-Signature`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The delay before retry number `attempt` (1 after the first failure): exponential,
/// capped, jittered into [½, 1] of itself by a generator seeded with `seed`, and at least
/// `retry_after` (itself capped).
pub fn backoff(
    config: &WebhookConfig,
    attempt: u32,
    seed: u64,
    retry_after: Option<Duration>,
) -> Duration {
    let max = config.backoff_max_ms.max(1);
    let exp = config
        .backoff_initial_ms
        .max(1)
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
        .min(max);
    let jittered = exp / 2 + splitmix64(seed ^ u64::from(attempt)) % (exp - exp / 2 + 1);
    let floor = retry_after.map_or(0, |d| (d.as_millis() as u64).min(max));
    Duration::from_millis(jittered.max(floor))
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Starts the outbox of a server when a webhook URL is configured; returns at once.
pub(crate) fn spawn(state: &AppState, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let config = state.config.webhooks.clone();
    let Some(url) = config.url.clone() else {
        return Ok(());
    };
    let cursors = Arc::new(CursorFile::open(config.cursor_file.clone())?);
    if config.cursor_file.is_none() {
        tracing::warn!("webhooks: no cursor file (in-memory database); deliveries restart from the head after a restart");
    }
    if config.secret.is_none() {
        tracing::warn!("webhooks: no --webhook-secret; notifications are not signed");
    }
    // Webhooks just enabled: the authorities already in the log start at their head.
    for writer in state.engine.writers() {
        if cursors.get(writer.authority()).is_none() {
            let seq = if cursors.was_missing {
                writer.head().authority_seq
            } else {
                0
            };
            cursors.set(writer.authority(), Cursor { seq, partial: 0 });
        }
    }
    cursors.persist(true);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms.max(1)))
        .build()
        .context("failed to build the webhook client")?;
    let sender = Arc::new(Sender {
        client,
        url,
        config,
    });
    tracing::info!("webhooks: delivering status changes");
    tokio::spawn(discover(state.engine.clone(), sender, cursors, stop));
    Ok(())
}

/// Starts a delivery loop for every authority, including those created later; on stop,
/// waits for them and writes the cursors.
async fn discover(
    engine: Arc<Engine>,
    sender: Arc<Sender>,
    cursors: Arc<CursorFile>,
    stop: watch::Receiver<bool>,
) {
    let mut started = HashSet::new();
    let mut loops = tokio::task::JoinSet::new();
    let mut stop_signal = Some(stop.clone());
    loop {
        for writer in engine.writers() {
            if started.insert(writer.authority().to_owned()) {
                let cursor = cursors.get(writer.authority()).unwrap_or_default();
                let outbox = AuthorityOutbox {
                    store: engine.store().clone(),
                    authority: writer.authority().to_owned(),
                    writer,
                    cursor,
                    sender: sender.clone(),
                    cursors: cursors.clone(),
                };
                loops.spawn(outbox.run(Some(stop.clone())));
            }
        }
        tokio::select! {
            _ = stopped(&mut stop_signal) => break,
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
        }
    }
    while loops.join_next().await.is_some() {}
    cursors.persist(true);
}

struct Sender {
    client: reqwest::Client,
    url: String,
    config: WebhookConfig,
}

enum Delivery {
    Delivered,
    GaveUp,
    Stopped,
}

impl Sender {
    /// POSTs one notification until a 2xx answer (or the attempts run out, or the server stops).
    async fn deliver(
        &self,
        n: &Notification,
        stop: &mut Option<watch::Receiver<bool>>,
    ) -> Delivery {
        let body = serde_json::to_vec(n).expect("notifications serialise");
        let signature = self.config.secret.as_deref().map(|s| signature(s, &body));
        let seed = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            n.id.hash(&mut h);
            h.finish()
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-ochered-delivery", &n.id)
                .header("x-ochered-event", n.kind)
                .header("x-ochered-attempt", attempt.to_string())
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header("x-ochered-signature", format!("sha256={signature}"));
            }
            let answer = tokio::select! {
                answer = request.send() => answer,
                _ = stopped(stop) => return Delivery::Stopped,
            };
            let retry_after = match answer {
                Ok(response) if response.status().is_success() => {
                    metrics::counter!("ochered_webhook_deliveries_total", "result" => "ok")
                        .increment(1);
                    return Delivery::Delivered;
                }
                Ok(response) => {
                    metrics::counter!("ochered_webhook_deliveries_total", "result" => "refused")
                        .increment(1);
                    tracing::warn!(
                        authority = %n.authority,
                        authority_seq = n.authority_seq,
                        attempt,
                        status = response.status().as_u16(),
                        "webhook refused; will retry"
                    );
                    response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                }
                Err(e) => {
                    metrics::counter!("ochered_webhook_deliveries_total", "result" => "error")
                        .increment(1);
                    tracing::warn!(
                        authority = %n.authority,
                        authority_seq = n.authority_seq,
                        attempt,
                        error = %e,
                        "webhook delivery failed; will retry"
                    );
                    None
                }
            };
            if self.config.max_attempts > 0 && attempt >= self.config.max_attempts {
                metrics::counter!("ochered_webhook_given_up_total").increment(1);
                tracing::error!(
                    authority = %n.authority,
                    authority_seq = n.authority_seq,
                    id = %n.id,
                    attempt,
                    "webhook given up after the configured attempts"
                );
                return Delivery::GaveUp;
            }
            let delay = backoff(&self.config, attempt, seed, retry_after);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(stop) => return Delivery::Stopped,
            }
        }
    }
}

/// The delivery loop of one authority.
struct AuthorityOutbox {
    store: Arc<dyn EventStore>,
    authority: String,
    writer: Writer,
    cursor: Cursor,
    sender: Arc<Sender>,
    cursors: Arc<CursorFile>,
}

impl AuthorityOutbox {
    async fn run(mut self, mut stop: Option<watch::Receiver<bool>>) {
        // Notifications not sent yet, and those being delivered (answers come in order).
        let mut queue: VecDeque<Notification> = VecDeque::new();
        let mut in_flight = FuturesOrdered::new();
        let window = self.sender.config.concurrency.max(1);
        // The last event of the page being delivered.
        let mut page_end = self.cursor.seq;
        // Held only while caught up, so a loop busy retrying does not pin broadcast batches.
        let mut batches: Option<broadcast::Receiver<Arc<Vec<CommittedEvent>>>> = None;
        loop {
            while in_flight.len() < window {
                let Some(n) = queue.pop_front() else { break };
                let sender = self.sender.clone();
                let mut stop = stop.clone();
                in_flight.push_back(async move {
                    let delivery = sender.deliver(&n, &mut stop).await;
                    (n, delivery)
                });
            }
            if let Some((n, delivery)) = in_flight.next().await {
                if let Delivery::Stopped = delivery {
                    break;
                }
                // Everything before `n` was delivered too: answers come in order.
                self.cursor = Cursor {
                    seq: n.authority_seq - 1,
                    partial: n.index + 1,
                };
                let page_done = queue.is_empty() && in_flight.is_empty();
                if page_done {
                    self.cursor = Cursor {
                        seq: page_end,
                        partial: 0,
                    };
                }
                self.cursors.set(&self.authority, self.cursor);
                self.cursors.persist(page_done);
                continue;
            }
            if page_end > self.cursor.seq {
                // A page without notifications.
                self.cursor = Cursor {
                    seq: page_end,
                    partial: 0,
                };
                self.cursors.set(&self.authority, self.cursor);
            }
            let rx = batches.get_or_insert_with(|| self.writer.subscribe());
            let head = self.writer.head().authority_seq;
            metrics::gauge!("ochered_webhook_lag_events", "authority" => self.authority.clone())
                .set((head - self.cursor.seq).max(0) as f64);
            if head > self.cursor.seq {
                batches = None;
                match self.read_page().await {
                    Ok((_, end)) if end <= self.cursor.seq => {
                        // The head is ahead of what the store returns (it is being restored
                        // after a failed commit): look again shortly.
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = stopped(&mut stop) => break,
                        }
                    }
                    Ok((notifications, end)) => {
                        queue.extend(notifications);
                        page_end = end;
                    }
                    Err(e) => {
                        tracing::warn!(authority = %self.authority, error = %e, "webhooks: the log could not be read; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stopped(&mut stop) => break,
                        }
                    }
                }
                continue;
            }
            // Caught up: write the cursor if it moved, and wait for the next batch.
            self.cursors.persist(true);
            let received = tokio::select! {
                _ = stopped(&mut stop) => break,
                _ = tokio::time::sleep(IDLE_CHECK_EVERY) => None,
                batch = rx.recv() => Some(batch),
            };
            match received {
                None => {}
                Some(Ok(batch)) => {
                    if let Some((notifications, end)) = self.batch_notifications(&batch) {
                        queue.extend(notifications);
                        page_end = end;
                        batches = None;
                    }
                }
                // Read what was missed from the store.
                Some(Err(broadcast::error::RecvError::Lagged(_))) => batches = None,
                Some(Err(broadcast::error::RecvError::Closed)) => break,
            }
        }
        self.cursors.persist(true);
    }

    /// The notifications of a broadcast batch that follows the cursor directly, or none (a
    /// gap or an old batch: the store is read instead).
    fn batch_notifications(&self, batch: &[CommittedEvent]) -> Option<(Vec<Notification>, i64)> {
        let events: Vec<&CommittedEvent> = batch
            .iter()
            .filter(|e| e.authority_seq > self.cursor.seq)
            .collect();
        let first = events.first()?;
        if first.authority_seq != self.cursor.seq + 1 {
            return None;
        }
        let end = events.last()?.authority_seq;
        let mut out = Vec::new();
        for e in events {
            self.notifications(e.authority_seq, e.recorded_at, &e.event, &mut out);
        }
        Some((out, end))
    }

    /// The notifications of the next page of the log after the cursor.
    async fn read_page(&self) -> Result<(Vec<Notification>, i64), String> {
        let page = ochered_writer::read_status_events(
            self.store.as_ref(),
            &self.authority,
            self.cursor.seq,
            PAGE_EVENTS,
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
        let Some(end) = page.last_seq else {
            return Ok((Vec::new(), self.cursor.seq));
        };
        let mut out = Vec::new();
        for e in &page.events {
            self.notifications(e.authority_seq, e.recorded_at, &e.event, &mut out);
        }
        Ok((out, end))
    }

    fn notifications(
        &self,
        authority_seq: i64,
        at: DateTime<Utc>,
        event: &ochered_core::Event,
        out: &mut Vec<Notification>,
    ) {
        let skip = if authority_seq == self.cursor.seq + 1 {
            self.cursor.partial
        } else {
            0
        };
        for (index, change) in status_changes(event, None).into_iter().enumerate() {
            let index = index as u32;
            if index < skip {
                continue;
            }
            out.push(Notification {
                id: format!("{}:{authority_seq}:{index}", self.authority),
                authority: self.authority.clone(),
                application: change.application,
                kind: change.kind,
                authority_seq,
                at,
                index,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_jittered_and_respects_retry_after() {
        let config = WebhookConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..WebhookConfig::default()
        };
        for seed in 0..50 {
            let d1 = backoff(&config, 1, seed, None).as_millis();
            let d3 = backoff(&config, 3, seed, None).as_millis();
            let d9 = backoff(&config, 9, seed, None).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            assert!((200..=400).contains(&d3), "{d3}");
            assert!((500..=1_000).contains(&d9), "{d9}");
        }
        assert_eq!(backoff(&config, 1, 7, None), backoff(&config, 1, 7, None));
        let after = backoff(&config, 1, 7, Some(Duration::from_secs(30)));
        assert_eq!(after, Duration::from_millis(1_000));
    }

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_cursor_file_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let file = CursorFile::open(Some(path.clone())).unwrap();
        assert!(file.was_missing);
        file.set("city", Cursor { seq: 9, partial: 2 });
        file.persist(true);
        let again = CursorFile::open(Some(path.clone())).unwrap();
        assert!(!again.was_missing);
        assert_eq!(again.get("city"), Some(Cursor { seq: 9, partial: 2 }));
        std::fs::write(&path, "{").unwrap();
        assert!(CursorFile::open(Some(path)).is_err());
    }
}
