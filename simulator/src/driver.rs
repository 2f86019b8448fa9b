//! The load: an open model, where the schedule drives the sends whatever the server does,
//! and each parent's client retries with the same key until it gets an answer or gives up.
//!
//! Latency is measured from the intended send time, so a stalled server cannot hide its
//! stall by slowing the senders down (coordinated omission).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use ochered_writer::demo::SeededRng;
use ochered_writer::{Reply, RequestMeta, Writer, WriterError};
use tokio::task::JoinHandle;

use crate::recorder::{Final, Recorder};
use crate::report::ScheduleStats;
use crate::target::{Answer, Http, InProcess};
use crate::workload::{Send, Workload};

/// Where sends go.
#[derive(Clone)]
pub enum Target {
    InProcess(Arc<InProcess>),
    Http(Arc<Http>),
}

impl Target {
    async fn send(
        &self,
        workload: &Workload,
        child: &crate::workload::ChildSpec,
        device: u8,
    ) -> Answer {
        match self {
            Target::InProcess(t) => t.send(workload, child, device).await,
            Target::Http(t) => t.send(workload, child, device).await,
        }
    }

    pub async fn queue_depth(&self) -> Option<u64> {
        match self {
            Target::InProcess(t) => Some(t.queue_depth()),
            Target::Http(t) => t.queue_depth().await,
        }
    }
}

/// Polls a future once here, so that whatever it does before its first await (a writer's
/// `submit` enqueues its command there) happens in the caller's order, then spawns it.
pub fn start_now<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + std::marker::Send + 'static,
    F::Output: std::marker::Send + 'static,
{
    let mut future: Pin<Box<F>> = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => tokio::spawn(async move { output }),
        Poll::Pending => tokio::spawn(future),
    }
}

/// Submits commands to a writer in this order, a chunk at a time, and returns the replies
/// in the same order. Used for setup, where a few hundred thousand drafts must go in
/// group commits but in a reproducible order.
pub async fn submit_ordered(
    writer: &Writer,
    commands: Vec<(ochered_core::Command, RequestMeta)>,
) -> Vec<Result<Reply, WriterError>> {
    let mut replies = Vec::with_capacity(commands.len());
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let handles: Vec<_> = commands
            .by_ref()
            .take(4096)
            .map(|(command, meta)| {
                let writer = writer.clone();
                start_now(async move { writer.submit(command, meta).await })
            })
            .collect();
        for handle in handles {
            replies.push(handle.await.unwrap_or(Err(WriterError::Stopped)));
        }
    }
    replies
}

/// One parent's client: attempts until an answer that is not worth retrying, or patience
/// runs out. Backoff doubles from the scenario's base with jitter, never below Retry-After
/// (itself stretched by up to a quarter, at random).
async fn client(
    target: Target,
    workload: Arc<Workload>,
    send: Send,
    intended: Instant,
    recorder: Arc<Mutex<Recorder>>,
) -> bool {
    let child = workload.child(send.child);
    let retry = &workload.scenario.retry;
    let mut rng =
        SeededRng::new(workload.seed ^ (u64::from(send.child) << 1 | u64::from(send.device)));
    let mut attempt = 1u32;
    let last = loop {
        // The first attempt runs from its intended time (a late start counts), a retry from
        // the end of its backoff.
        let attempt_started = if attempt == 1 {
            intended
        } else {
            Instant::now()
        };
        let answer = target.send(&workload, &child, send.device).await;
        recorder
            .lock()
            .unwrap()
            .attempt(&answer, attempt_started.elapsed());
        match answer {
            Answer::Retry { reason, after } => {
                recorder.lock().unwrap().retry(&reason);
                if attempt >= child.patience {
                    break Final::GaveUp(reason);
                }
                let exponential = retry
                    .backoff_ms
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(retry.backoff_max_ms);
                let jittered = Duration::from_micros(
                    (exponential as f64 * 1000.0 * (0.5 + rng.unit())) as u64,
                );
                // Never before Retry-After, and up to a quarter of it later: clients shed in
                // the same instant do not all come back in the same instant.
                let after = after.map_or(Duration::ZERO, |a| a.mul_f64(1.0 + 0.25 * rng.unit()));
                tokio::time::sleep(jittered.max(after)).await;
                attempt += 1;
            }
            answer => break Final::Answer(answer),
        }
    };
    let done = Instant::now();
    recorder
        .lock()
        .unwrap()
        .finish(&send, &child, intended, done, last)
}

/// Runs the schedule against the wall clock: send `i` is due `at_s / compression` seconds
/// after `start`. At most `clients_max` clients run at once: past it a send waits for one to
/// finish (memory stays bounded), which the returned figures report as a schedule not kept.
pub async fn run_wall(
    target: Target,
    workload: Arc<Workload>,
    compression: f64,
    clients_max: usize,
    recorder: Arc<Mutex<Recorder>>,
    progress: ProgressBar,
) -> ScheduleStats {
    let start = recorder.lock().unwrap().started;
    let mut tasks = tokio::task::JoinSet::new();
    let mut errors = 0u64;
    let mut stats = ScheduleStats::default();
    let late = Duration::from_secs_f64(crate::report::LATE_SEND_MS / 1000.0);
    for (index, send) in workload.schedule().enumerate() {
        stats.sends += 1;
        stats.planned_last_send_s = send.at_s / compression;
        if send.device == 1 {
            // Second devices are known only as the schedule reaches them.
            progress.inc_length(1);
        }
        let intended = start + Duration::from_secs_f64(send.at_s / compression);
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        // Reap finished clients as we go, for the progress bar and to keep the set small.
        while let Some(done) = tasks.try_join_next() {
            errors += u64::from(done.unwrap_or(true));
            progress.inc(1);
        }
        if tasks.len() >= clients_max {
            stats.held_by_client_limit += 1;
            while tasks.len() >= clients_max {
                let Some(done) = tasks.join_next().await else {
                    break;
                };
                errors += u64::from(done.unwrap_or(true));
                progress.inc(1);
            }
        }
        let lag = Instant::now().saturating_duration_since(intended);
        if lag > late {
            stats.late_sends += 1;
        }
        stats.max_lag_s = stats.max_lag_s.max(lag.as_secs_f64());
        tasks.spawn(client(
            target.clone(),
            workload.clone(),
            send,
            intended,
            recorder.clone(),
        ));
        stats.peak_clients = stats.peak_clients.max(tasks.len());
        if index % 256 == 0 {
            progress.set_message(format!("errors {errors}"));
        }
    }
    stats.last_send_s = Instant::now()
        .saturating_duration_since(start)
        .as_secs_f64();
    while let Some(done) = tasks.join_next().await {
        errors += u64::from(done.unwrap_or(true));
        progress.inc(1);
        progress.set_message(format!("errors {errors}"));
    }
    stats
}

/// Runs the schedule in virtual time, in process: the writers' clock reads `clock`, which
/// steps through the scenario's own time (from `origin`) one tick at a time. Every send of
/// a tick is enqueued in schedule order and answered before the clock moves on, so the log
/// and its state hash depend on the seed alone. Runs as fast as the engine allows. Returns
/// the number of sends.
pub async fn run_virtual(
    target: Arc<InProcess>,
    workload: Arc<Workload>,
    clock: Arc<AtomicI64>,
    origin: DateTime<Utc>,
    tick: Duration,
    recorder: Arc<Mutex<Recorder>>,
    progress: ProgressBar,
) -> u64 {
    let tick_s = tick.as_secs_f64().max(1e-6);
    let mut schedule = workload.schedule().peekable();
    let mut sends = 0u64;
    while let Some(first) = schedule.peek().copied() {
        let tick_index = (first.at_s / tick_s).floor();
        let now = origin + chrono::Duration::microseconds((tick_index * tick_s * 1e6) as i64);
        clock.store(now.timestamp_micros(), Ordering::SeqCst);
        let mut pending: Vec<(Send, u32, Instant)> = Vec::new();
        while let Some(send) = schedule.next_if(|s| (s.at_s / tick_s).floor() == tick_index) {
            if send.device == 1 {
                progress.inc_length(1);
            }
            pending.push((send, 1, Instant::now()));
        }
        sends += pending.len() as u64;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            for chunk in pending.chunks(4096) {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|&(send, _, _)| {
                        let target = target.clone();
                        let workload = workload.clone();
                        start_now(async move {
                            let child = workload.child(send.child);
                            let answer = target.send(&workload, &child, send.device).await;
                            (child, answer)
                        })
                    })
                    .collect();
                for (handle, &(send, attempt, intended)) in handles.into_iter().zip(chunk) {
                    let Ok((child, answer)) = handle.await else {
                        continue;
                    };
                    let mut r = recorder.lock().unwrap();
                    match answer {
                        Answer::Retry { reason, .. } if attempt < child.patience => {
                            r.retry(&reason);
                            retry.push((send, attempt + 1, intended));
                        }
                        Answer::Retry { reason, .. } => {
                            r.retry(&reason);
                            r.finish(
                                &send,
                                &child,
                                intended,
                                Instant::now(),
                                Final::GaveUp(reason),
                            );
                            progress.inc(1);
                        }
                        answer => {
                            r.finish(
                                &send,
                                &child,
                                intended,
                                Instant::now(),
                                Final::Answer(answer),
                            );
                            progress.inc(1);
                        }
                    }
                }
            }
            pending = retry;
        }
    }
    sends
}

/// Samples the writers' queue depth until `stop`.
pub async fn sample_queue_depth(
    target: Target,
    recorder: Arc<Mutex<Recorder>>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(depth) = target.queue_depth().await {
            recorder.lock().unwrap().depth(depth);
        }
        tokio::time::sleep(every).await;
    }
}

/// Reads a process's resident set and its peak (VmRSS, VmHWM) in KiB from /proc (Linux).
pub fn process_memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| {
            l[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples the spawned server's memory until `stop` (the pid is 0 while it is down).
pub async fn sample_memory(
    pid: Arc<std::sync::atomic::AtomicU32>,
    recorder: Arc<Mutex<Recorder>>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let current = pid.load(Ordering::Relaxed);
        if current != 0 {
            if let Some((rss, hwm)) = process_memory_kib(current) {
                recorder.lock().unwrap().memory(rss, hwm);
            }
        }
        tokio::time::sleep(every).await;
    }
}
