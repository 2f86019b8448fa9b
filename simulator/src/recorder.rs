//! What the clients saw: final answers, latencies (HDR histograms, measured from the intended
//! send time), retries, and the timeline the HTML report draws.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::audit::Ack;
use crate::target::Answer;
use crate::workload::{ChildSpec, Send};

/// How a send ended, from the client's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Final {
    Answer(Answer),
    /// The parent stopped retrying; the last reason.
    GaveUp(String),
}

/// One slice of the run's wall time.
pub struct Bucket {
    /// Sends intended in this slice.
    pub arrivals: u64,
    /// 2xx received in this slice.
    pub acknowledged: u64,
    pub errors: u64,
    /// Latency (µs) of the sends intended in this slice.
    pub latency: Histogram<u64>,
}

pub struct Recorder {
    pub started: Instant,
    pub bucket: Duration,
    /// Microseconds from the intended send time to the final answer.
    pub latency: Histogram<u64>,
    pub buckets: Vec<Bucket>,
    pub acks: Vec<Ack>,
    /// Refusals the scenario expects (second device, draft already used, child too young).
    pub expected_refusals: BTreeMap<String, u64>,
    /// Everything else that did not end in a 2xx, by status (or `timeout`, `connection`).
    pub errors_by_status: BTreeMap<String, u64>,
    pub error_examples: Vec<String>,
    pub retries_by_reason: BTreeMap<String, u64>,
    pub attempts: u64,
    pub gave_up: u64,
    pub completed: u64,
    /// (seconds since start, commands waiting for the writers)
    pub queue_depth: Vec<(f64, u64)>,
    /// Seconds since start at which the server was killed.
    pub kills: Vec<f64>,
    /// Sends whose two devices were both acknowledged (a duplicate seen by clients).
    pub both_devices_acknowledged: u64,
    /// Children with a second device one of whose devices was acknowledged (the others
    /// cannot be acknowledged twice, so they are not remembered).
    device_acked: std::collections::HashSet<u32>,
    /// Seconds since start of the latest acknowledgement.
    pub last_ack_s: Option<f64>,
    /// Acknowledgements since the latest kill (or the start).
    acks_since_kill: u64,
    /// Acknowledgements between each kill and the next (one entry per gap).
    pub acks_between_kills: Vec<u64>,
    /// Microseconds of each attempt answered 2xx, from the attempt's start (the intended
    /// send time for a first attempt, the end of the backoff for a retry).
    pub attempt_accepted: Histogram<u64>,
    /// The same for attempts the server shed (503 or 429).
    pub attempt_shed: Histogram<u64>,
    /// Shed answers (503 or 429) without a `Retry-After` header.
    pub shed_without_retry_after: u64,
    /// (seconds since start, the spawned server's resident set in KiB)
    pub server_rss: Vec<(f64, u64)>,
    /// The largest peak resident set (VmHWM, KiB) seen of any of the spawned server's lives.
    pub server_rss_peak_kib: Option<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Recorder {
    pub fn new(started: Instant, expected_wall: Duration) -> Recorder {
        // About 120 slices over the expected run, at least 100 ms each.
        let bucket = (expected_wall / 120).max(Duration::from_millis(100));
        Recorder {
            started,
            bucket,
            latency: histogram(),
            buckets: Vec::new(),
            acks: Vec::new(),
            expected_refusals: BTreeMap::new(),
            errors_by_status: BTreeMap::new(),
            error_examples: Vec::new(),
            retries_by_reason: BTreeMap::new(),
            attempts: 0,
            gave_up: 0,
            completed: 0,
            queue_depth: Vec::new(),
            kills: Vec::new(),
            both_devices_acknowledged: 0,
            device_acked: Default::default(),
            last_ack_s: None,
            acks_since_kill: 0,
            acks_between_kills: Vec::new(),
            attempt_accepted: histogram(),
            attempt_shed: histogram(),
            shed_without_retry_after: 0,
            server_rss: Vec::new(),
            server_rss_peak_kib: None,
        }
    }

    fn bucket_mut(&mut self, at: Instant) -> &mut Bucket {
        let index = (at.saturating_duration_since(self.started).as_nanos()
            / self.bucket.as_nanos().max(1)) as usize;
        while self.buckets.len() <= index {
            self.buckets.push(Bucket {
                arrivals: 0,
                acknowledged: 0,
                errors: 0,
                latency: histogram(),
            });
        }
        &mut self.buckets[index]
    }

    pub fn retry(&mut self, reason: &str) {
        self.attempts += 1;
        *self.retries_by_reason.entry(reason.to_owned()).or_default() += 1;
    }

    /// Records one attempt's answer and how long it took.
    pub fn attempt(&mut self, answer: &Answer, took: Duration) {
        let us = took.as_micros().max(1) as u64;
        match answer {
            Answer::Acknowledged { .. } => self.attempt_accepted.saturating_record(us),
            Answer::Retry { reason, after } if reason == "503" || reason == "429" => {
                self.attempt_shed.saturating_record(us);
                if after.is_none() {
                    self.shed_without_retry_after += 1;
                }
            }
            _ => {}
        }
    }

    /// Records a sample of the spawned server's memory: (VmRSS, VmHWM) in KiB.
    pub fn memory(&mut self, rss_kib: u64, hwm_kib: u64) {
        let t = self.started.elapsed().as_secs_f64();
        self.server_rss.push((t, rss_kib));
        let peak = self.server_rss_peak_kib.get_or_insert(0);
        *peak = (*peak).max(hwm_kib).max(rss_kib);
    }

    /// Records a kill of the server at `t` seconds since the start.
    pub fn kill(&mut self, t: f64) {
        if !self.kills.is_empty() {
            self.acks_between_kills.push(self.acks_since_kill);
        }
        self.acks_since_kill = 0;
        self.kills.push(t);
    }

    pub fn depth(&mut self, depth: u64) {
        let t = self.started.elapsed().as_secs_f64();
        self.queue_depth.push((t, depth));
    }

    /// Records the end of one send. Returns true when it counts as an error.
    pub fn finish(
        &mut self,
        send: &Send,
        child: &ChildSpec,
        intended: Instant,
        done: Instant,
        last: Final,
    ) -> bool {
        // A give-up's last attempt was counted with its retry.
        if !matches!(last, Final::GaveUp(_)) {
            self.attempts += 1;
        }
        self.completed += 1;
        let latency_us = done.saturating_duration_since(intended).as_micros().max(1) as u64;
        self.latency.saturating_record(latency_us);
        {
            let b = self.bucket_mut(intended);
            b.arrivals += 1;
            b.latency.saturating_record(latency_us);
        }
        let error = match last {
            Final::Answer(Answer::Acknowledged { number }) => {
                self.acks.push(Ack {
                    authority: child.authority,
                    number,
                    child: send.child,
                    device: send.device,
                });
                self.last_ack_s = Some(done.saturating_duration_since(self.started).as_secs_f64());
                self.acks_since_kill += 1;
                if child.second_device_after_s.is_some() && !self.device_acked.insert(send.child) {
                    self.both_devices_acknowledged += 1;
                }
                self.bucket_mut(done).acknowledged += 1;
                None
            }
            Final::Answer(Answer::Refused { status, code, .. }) => {
                let two_devices = child.second_device_after_s.is_some();
                let expected = match code.as_str() {
                    "duplicate_application" => two_devices,
                    // The other device's application consumed the draft, or a too-young
                    // child's draft was never saved.
                    "no_draft" => child.from_draft && (two_devices || child.out_of_range),
                    "age_out_of_range" => child.out_of_range,
                    _ => false,
                };
                if expected {
                    *self.expected_refusals.entry(code).or_default() += 1;
                    None
                } else {
                    Some(format!("{status} {code}"))
                }
            }
            Final::Answer(Answer::Retry { reason, .. }) => Some(reason),
            Final::GaveUp(reason) => {
                self.gave_up += 1;
                Some(reason)
            }
        };
        match error {
            None => false,
            Some(status) => {
                if self.error_examples.len() < 10 {
                    self.error_examples.push(format!(
                        "child {} device {}: {status}",
                        send.child, send.device
                    ));
                }
                *self.errors_by_status.entry(status).or_default() += 1;
                self.bucket_mut(done).errors += 1;
                true
            }
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors_by_status.values().sum()
    }
}
