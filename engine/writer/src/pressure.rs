//! How long commands wait in front of a writer, and how fast it drains them: the signal
//! admission control sheds on (the HTTP layer's `admission` module).
//!
//! Every command carries the instant it was queued. When the writer takes a batch it notes
//! the *head wait* (how long the batch's oldest command waited) and, over the time it was
//! busy, how many commands it took per second. With group commit the writer takes everything
//! queued at once, so the head wait is what a command waits in front of the writer, and a
//! queue is only harmful when that wait *stands*: CoDel's signal (RFC 8289) is therefore the
//! smallest head wait over an interval ([`INTERVAL`]), which a passing burst does not raise
//! and a standing backlog does.
//!
//! Everything here is written by the writer's task and read lock-free by anyone holding a
//! handle ([`crate::Writer::pressure`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The interval over which the smallest head wait is taken (CoDel's 100 ms).
pub const INTERVAL: Duration = Duration::from_millis(100);

/// What admission control reads of one writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    /// Commands waiting for the writer now.
    pub queued: usize,
    /// Commands the writer took per second of the time it had work, smoothed over recent
    /// intervals; None until it has been busy long enough to measure.
    pub drain_per_s: Option<f64>,
    /// The smallest head wait of the last complete interval in which the writer was busy
    /// throughout; zero if it found its queue empty in the last interval.
    pub standing_wait: Duration,
    /// How long the oldest command of the last batch waited before the writer took it.
    pub last_wait: Duration,
}

impl Pressure {
    /// How long a command queued now should wait before the writer takes it: the commands
    /// ahead of it over the measured drain rate (Little's law), and never less than the
    /// standing wait the writer has just measured. Zero with nothing queued.
    pub fn expected_wait(&self) -> Duration {
        let by_queue = self.queue_wait();
        if self.queued == 0 {
            by_queue
        } else {
            by_queue.max(self.standing_wait)
        }
    }

    /// The commands queued now over the measured drain rate (Little's law); zero when the
    /// rate is not known yet. With group commit this *overstates* the wait of a burst while
    /// the writer is not saturated: the drain rate measured over its busy cycles is then the
    /// offered rate, not what it could take (at 330 commands a second in cycles of 5 ms, a
    /// burst of 30 is one batch taken within 5 ms, while 30 / 330 s⁻¹ is 91 ms). Admission
    /// therefore uses it only as a ceiling on floods ([`Pressure::standing_wait`] is the
    /// signal of a backlog).
    pub fn queue_wait(&self) -> Duration {
        match self.drain_per_s {
            Some(rate) if rate > 0.0 => Duration::from_secs_f64(self.queued as f64 / rate),
            _ => Duration::ZERO,
        }
    }
}

/// The writer's side: atomics published for readers, and the interval being measured.
#[derive(Debug, Default)]
pub(crate) struct WaitStats {
    last_wait_us: AtomicU64,
    standing_wait_us: AtomicU64,
    /// Commands per second, as f64 bits; 0: not measured yet.
    drain_bits: AtomicU64,
    /// Head waits summed and counted since the start (for a mean in metrics).
    pub(crate) wait_sum_us: AtomicU64,
    pub(crate) batches_taken: AtomicU64,
}

/// The interval in progress (writer task only).
#[derive(Debug)]
pub(crate) struct Interval {
    started: Instant,
    min_wait_us: u64,
    idled: bool,
    taken: u64,
    busy: Duration,
    /// When the previous batch was taken, if the writer has had work since.
    last_take: Option<Instant>,
}

impl Interval {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            min_wait_us: u64::MAX,
            idled: false,
            taken: 0,
            busy: Duration::ZERO,
            last_take: None,
        }
    }

    /// The writer is about to wait for work with an empty queue: the time until the next
    /// batch is idle, not drain time, and the queue did not stand in this interval.
    pub(crate) fn idle(&mut self) {
        self.idled = true;
        self.last_take = None;
    }

    /// The writer took a batch whose oldest command was queued at `oldest`.
    pub(crate) fn took(&mut self, stats: &WaitStats, n: usize, oldest: Instant, now: Instant) {
        let wait_us = now.saturating_duration_since(oldest).as_micros() as u64;
        stats.last_wait_us.store(wait_us, Ordering::Relaxed);
        stats.wait_sum_us.fetch_add(wait_us, Ordering::Relaxed);
        stats.batches_taken.fetch_add(1, Ordering::Relaxed);
        self.min_wait_us = self.min_wait_us.min(wait_us);
        if let Some(previous) = self.last_take {
            self.busy += now.saturating_duration_since(previous);
            self.taken += n as u64;
        }
        self.last_take = Some(now);
        if now.saturating_duration_since(self.started) >= INTERVAL {
            self.close(stats, now);
        }
    }

    fn close(&mut self, stats: &WaitStats, now: Instant) {
        let standing = if self.idled || self.min_wait_us == u64::MAX {
            0
        } else {
            self.min_wait_us
        };
        stats.standing_wait_us.store(standing, Ordering::Relaxed);
        // A rate from at least a tenth of the interval of busy time; smoothed by halves so
        // one odd interval moves it only part of the way.
        if self.busy >= INTERVAL / 10 && self.taken > 0 {
            let sample = self.taken as f64 / self.busy.as_secs_f64();
            let old = f64::from_bits(stats.drain_bits.load(Ordering::Relaxed));
            let rate = if old > 0.0 {
                0.5 * old + 0.5 * sample
            } else {
                sample
            };
            stats.drain_bits.store(rate.to_bits(), Ordering::Relaxed);
        }
        let last_take = self.last_take;
        *self = Interval::new();
        self.started = now;
        self.last_take = last_take;
    }
}

impl WaitStats {
    pub(crate) fn pressure(&self, queued: usize) -> Pressure {
        let rate = f64::from_bits(self.drain_bits.load(Ordering::Relaxed));
        Pressure {
            queued,
            drain_per_s: (rate > 0.0).then_some(rate),
            standing_wait: Duration::from_micros(self.standing_wait_us.load(Ordering::Relaxed)),
            last_wait: Duration::from_micros(self.last_wait_us.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_wait_is_the_smallest_head_wait_of_a_busy_interval() {
        let stats = WaitStats::default();
        let mut interval = Interval::new();
        let t0 = interval.started;
        let ms = Duration::from_millis;
        // Busy: every batch's oldest command waited 20-30 ms; 100 commands every 10 ms.
        for i in 1..=10u64 {
            let now = t0 + ms(10 * i);
            let waited = ms(20 + i % 3 * 5);
            interval.took(&stats, 100, now - waited, now);
        }
        let p = stats.pressure(500);
        assert_eq!(p.standing_wait, ms(20));
        // The last batch (i = 10) waited 20 + 1 * 5 ms.
        assert_eq!(p.last_wait, ms(25));
        // 9 busy cycles of 10 ms took 900 commands: 10,000 a second.
        let rate = p.drain_per_s.unwrap();
        assert!((rate - 10_000.0).abs() < 1.0, "{rate}");
        assert_eq!(p.expected_wait(), ms(50));
        // Fewer queued than the standing wait implies: the standing wait is the floor.
        assert_eq!(stats.pressure(10).expected_wait(), ms(20));
        assert_eq!(stats.pressure(0).expected_wait(), Duration::ZERO);
        // An interval in which the writer found its queue empty: no standing wait.
        interval.idle();
        let now = t0 + ms(250);
        interval.took(&stats, 1, now, now);
        let p = stats.pressure(3);
        assert_eq!(p.standing_wait, Duration::ZERO);
        // The idle time did not count as drain time: the rate is unchanged.
        assert!((p.drain_per_s.unwrap() - 10_000.0).abs() < 1.0);
    }

    #[test]
    fn nothing_is_known_before_the_writer_was_busy() {
        let stats = WaitStats::default();
        let p = stats.pressure(7);
        assert_eq!(p.drain_per_s, None);
        assert_eq!(p.expected_wait(), Duration::ZERO);
    }
}
