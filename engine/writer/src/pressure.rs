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
//! The interval slides, batch by batch: the standing wait is the smallest head wait of the
//! batches taken in the last [`INTERVAL`] *and of the last batch before them*, once the writer
//! has been busy (never finding its queue empty) for a whole interval. The batch before is
//! what tells a pause from a backlog. A writer held up for longer than an interval (a slow
//! sync, a checkpoint) takes, when it resumes, one batch that waited the whole pause; on its
//! own that batch would look like a queue standing for the whole interval, and every write
//! would be shed until the next one. With the batch before the pause in the window, the
//! minimum stays what it was before the pause, and the commands queued during the pause are
//! taken in one batch, as a burst is. A backlog that stands raises every batch's head wait,
//! the one before included, and is seen after one interval as before.
//!
//! Everything here is written by the writer's task and read lock-free by anyone holding a
//! handle ([`crate::Writer::pressure`]).

use std::collections::VecDeque;
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
    /// The smallest head wait of the batches taken in the last [`INTERVAL`] and of the last
    /// batch before them, once the writer has been busy for a whole interval; zero if it
    /// found its queue empty more recently than that.
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

/// What the writer measures between batches (writer task only): the sliding window of head
/// waits for the standing wait, and the interval in progress for the drain rate.
#[derive(Debug)]
pub(crate) struct Interval {
    started: Instant,
    taken: u64,
    busy: Duration,
    /// When the previous batch was taken, if the writer has had work since.
    last_take: Option<Instant>,
    /// When the writer last started to be busy (its first batch after finding the queue
    /// empty); None while idle.
    busy_since: Option<Instant>,
    /// The batches that may still hold the window's smallest head wait, oldest first, waits
    /// rising: a batch is dropped once a later one waited no longer (it can never be the
    /// minimum again), and once the batch taken after it is older than the window (it is no
    /// longer the last batch before the window). The front is the window's minimum. At most
    /// one entry per batch of the last interval.
    waits: VecDeque<Taken>,
}

/// One batch in the window of head waits.
#[derive(Debug, Clone, Copy)]
struct Taken {
    wait_us: u64,
    /// When the writer took the next batch; None for the latest.
    next_at: Option<Instant>,
}

impl Interval {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            taken: 0,
            busy: Duration::ZERO,
            last_take: None,
            busy_since: None,
            waits: VecDeque::new(),
        }
    }

    /// The writer is about to wait for work with an empty queue: the time until the next
    /// batch is idle, not drain time, and no queue stands (CoDel's reset on an empty queue).
    pub(crate) fn idle(&mut self, stats: &WaitStats) {
        self.last_take = None;
        self.busy_since = None;
        self.waits.clear();
        stats.standing_wait_us.store(0, Ordering::Relaxed);
    }

    /// The writer took a batch whose oldest command was queued at `oldest`.
    pub(crate) fn took(&mut self, stats: &WaitStats, n: usize, oldest: Instant, now: Instant) {
        let wait_us = now.saturating_duration_since(oldest).as_micros() as u64;
        stats.last_wait_us.store(wait_us, Ordering::Relaxed);
        stats.wait_sum_us.fetch_add(wait_us, Ordering::Relaxed);
        stats.batches_taken.fetch_add(1, Ordering::Relaxed);
        stats
            .standing_wait_us
            .store(self.standing(wait_us, now), Ordering::Relaxed);
        if let Some(previous) = self.last_take {
            self.busy += now.saturating_duration_since(previous);
            self.taken += n as u64;
        }
        self.last_take = Some(now);
        if now.saturating_duration_since(self.started) >= INTERVAL {
            self.close(stats, now);
        }
    }

    /// Adds a batch's head wait to the window and returns the standing wait in µs: the
    /// window's minimum once the writer has been busy for a whole interval, else zero.
    fn standing(&mut self, wait_us: u64, now: Instant) -> u64 {
        let busy_since = *self.busy_since.get_or_insert(now);
        if let Some(latest) = self.waits.back_mut() {
            latest.next_at = Some(now);
        }
        while self.waits.back().is_some_and(|t| t.wait_us >= wait_us) {
            self.waits.pop_back();
        }
        self.waits.push_back(Taken {
            wait_us,
            next_at: None,
        });
        let Some(cutoff) = now.checked_sub(INTERVAL) else {
            return 0;
        };
        // A batch whose next batch is already before the window is not the last batch
        // before it; the latest batch (no next) always stays.
        while self
            .waits
            .front()
            .and_then(|t| t.next_at)
            .is_some_and(|next| next <= cutoff)
        {
            self.waits.pop_front();
        }
        if busy_since > cutoff {
            return 0;
        }
        self.waits.front().map_or(0, |t| t.wait_us)
    }

    fn close(&mut self, stats: &WaitStats, now: Instant) {
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
        self.started = now;
        self.taken = 0;
        self.busy = Duration::ZERO;
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
        for i in 0..=10u64 {
            let now = t0 + ms(10 * i);
            let waited = ms(20 + i % 3 * 5);
            interval.took(&stats, 100, now - waited, now);
            if i < 10 {
                // Not yet busy for a whole interval: nothing stands yet.
                assert_eq!(stats.pressure(500).standing_wait, Duration::ZERO, "{i}");
            }
        }
        let p = stats.pressure(500);
        assert_eq!(p.standing_wait, ms(20));
        // The last batch (i = 10) waited 20 + 1 * 5 ms.
        assert_eq!(p.last_wait, ms(25));
        // 10 busy cycles of 10 ms took 1,000 commands: 10,000 a second.
        let rate = p.drain_per_s.unwrap();
        assert!((rate - 10_000.0).abs() < 1.0, "{rate}");
        assert_eq!(p.expected_wait(), ms(50));
        // Fewer queued than the standing wait implies: the standing wait is the floor.
        assert_eq!(stats.pressure(10).expected_wait(), ms(20));
        assert_eq!(stats.pressure(0).expected_wait(), Duration::ZERO);
        // The writer found its queue empty: nothing stands from then on.
        interval.idle(&stats);
        let p = stats.pressure(3);
        assert_eq!(p.standing_wait, Duration::ZERO);
        let now = t0 + ms(250);
        interval.took(&stats, 1, now, now);
        let p = stats.pressure(3);
        assert_eq!(p.standing_wait, Duration::ZERO);
        // The idle time did not count as drain time: the rate is unchanged.
        assert!((p.drain_per_s.unwrap() - 10_000.0).abs() < 1.0);
    }

    #[test]
    fn a_pause_is_not_a_standing_queue_and_a_backlog_is() {
        let stats = WaitStats::default();
        let mut interval = Interval::new();
        let t0 = interval.started;
        let ms = Duration::from_millis;
        // Busy for 300 ms, each batch taken 2 ms after its oldest command came.
        for i in 0..=30u64 {
            let now = t0 + ms(10 * i);
            interval.took(&stats, 20, now - ms(2), now);
        }
        assert_eq!(stats.pressure(20).standing_wait, ms(2));
        // The writer is held up for 200 ms (a slow sync): the batch it takes then waited
        // the whole pause. The batch before the pause is still the window's minimum.
        let resumed = t0 + ms(500);
        interval.took(&stats, 2_000, resumed - ms(200), resumed);
        assert_eq!(stats.pressure(50).standing_wait, ms(2));
        assert_eq!(stats.pressure(50).last_wait, ms(200));
        // The queue built during the pause went in that batch: the next ones wait briefly.
        for i in 1..=20u64 {
            let now = resumed + ms(5 * i);
            interval.took(&stats, 20, now - ms(3), now);
            assert!(stats.pressure(20).standing_wait <= ms(3), "{i}");
        }
        // A backlog: every batch waits 80 ms or so, one every 20 ms. After one interval of
        // it (and once the last short wait is older than the interval), it stands.
        let backlog = resumed + ms(100);
        let mut seen = Vec::new();
        for i in 1..=12u64 {
            let now = backlog + ms(20 * i);
            interval.took(&stats, 400, now - ms(80 + i % 2), now);
            seen.push(stats.pressure(400).standing_wait);
        }
        assert!(seen[..4].iter().all(|w| *w <= ms(3)), "{seen:?}");
        assert!(seen[5..].iter().all(|w| *w >= ms(80)), "{seen:?}");
        // A single long cycle in a busy writer whose other batches wait little: a burst.
        let calm = backlog + ms(1_000);
        interval.idle(&stats);
        for i in 0..=15u64 {
            let now = calm + ms(10 * i);
            let waited = if i == 12 { ms(60) } else { ms(4) };
            interval.took(&stats, 30, now - waited, now);
        }
        assert_eq!(stats.pressure(30).standing_wait, ms(4));
        // Long cycles that all wait long (one batch every 150 ms, each waiting about as
        // long): each window holds the batch before it, which waited long too: it stands.
        let slow = calm + ms(1_000);
        interval.idle(&stats);
        for i in 0..=4u64 {
            let now = slow + ms(150 * i);
            interval.took(&stats, 3_000, now - ms(150 - i), now);
        }
        assert_eq!(stats.pressure(3_000).standing_wait, ms(146));
    }

    #[test]
    fn nothing_is_known_before_the_writer_was_busy() {
        let stats = WaitStats::default();
        let p = stats.pressure(7);
        assert_eq!(p.drain_per_s, None);
        assert_eq!(p.expected_wait(), Duration::ZERO);
    }
}
