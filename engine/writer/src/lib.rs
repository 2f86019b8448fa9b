//! One writer per authority: decides commands in order against the in-memory state and
//! commits every waiting command (up to a bound) in one transaction with one disk sync, then
//! acknowledges each. Reads come from the same in-memory state.
//!
//! # Invariants
//! - A command is acknowledged only after the transaction holding its events committed.
//! - If a commit fails, nothing in the batch is acknowledged, and the state is rebuilt from the
//!   log before the next command is decided, so it equals the state before the batch (or, if
//!   the commit did reach the disk after all, the state the log now holds).
//! - While the store is away the rebuild is retried with a backoff (100 ms doubling to 2 s),
//!   also when no command comes, so reads come back by themselves with the store; batches
//!   that arrive during a backoff are refused at once with `Unavailable` (a prompt 503).
//! - Time never goes backwards for an authority: `now` is the larger of the clock and the
//!   previous batch's time, so registration times follow acknowledgement order.
//! - Between applying a batch and its commit (milliseconds), readers may see the batch's
//!   effects; callers only learn application numbers after the commit.

pub mod audit;
pub mod demo;
mod engine;
mod follower;
mod key_index;
mod log;
mod pressure;
pub mod privacy;
mod replay;

pub use engine::{Engine, Ownership, Readiness, Role};
pub use follower::Follower;
pub use key_index::KeyIndex;
pub use log::{read_status_events, LogPage};
pub use pressure::Pressure;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use ochered_core::{decide, Command, Event, Rejection, State, SCHEMA_VERSION};
use ochered_store::{EventStore, Idempotency, IdempotencyHit, Metadata, NewEvent, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub use replay::{
    decode_event, encode_snapshot, load_state, store_snapshot, EncodedSnapshot, ReplayStats,
    SNAPSHOT_CHUNK_BYTES,
};

/// The clock the shell reads; injected so tests and the simulator control time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

#[derive(Clone)]
pub struct WriterConfig {
    /// Most commands committed in one transaction.
    pub batch_commands_max: usize,
    /// Most commands waiting for the writer; past it, submissions are refused at once.
    pub queue_commands_max: usize,
    /// Save a snapshot after this many events since the last one (None: never).
    pub snapshot_every_events: Option<u64>,
    /// Wait for a lull before a due snapshot: while the writer has received at least this
    /// many commands in the last second, a due snapshot waits, up to twice
    /// `snapshot_every_events` (then it is taken at the next idle moment regardless). Encoding
    /// a snapshot holds the writer's commands back (hundreds of milliseconds for a large
    /// authority), so in a surge it waits for the surge to pass. None: a due snapshot is
    /// taken at the first idle moment, however busy the writer is.
    pub snapshot_lull_per_second: Option<u64>,
    pub clock: Clock,
    /// Fault injection for tests: stop after committing a batch, before acknowledging it.
    #[doc(hidden)]
    pub crash_after_commit: bool,
    /// Cluster mode: called once when an append is fenced (another node took the authority
    /// over). The writer has stopped by then (see [`FencedHook`]).
    pub on_fenced: Option<FencedHook>,
    /// Told, on the commit's task, the chain hashes of every batch that committed, before any
    /// of its commands is acknowledged (see [`CommitHook`]).
    pub on_commit: Option<CommitHook>,
    /// The runtime a writer's task runs on (None: the runtime [`Writer::start`] is called
    /// on). The server gives its writers a runtime of their own, so that their turn never
    /// waits behind the HTTP connections' tasks (docs/PERFORMANCE.md, "Overload").
    pub runtime: Option<tokio::runtime::Handle>,
}

/// Told the events of each committed batch as `(authority, authority_seq of the first,
/// their chain hashes in order)`, right after the commit and before its commands are
/// acknowledged: the transparency log's tree is fed here (docs/TRANSPARENCY.md). Not told
/// of a batch whose commit reported a failure even if it reached the disk, nor of events
/// committed by another process: a listener that needs every event reads a gap from the
/// store. Keep it cheap: it runs on the commit's task.
pub type CommitHook = Arc<dyn Fn(&str, i64, &[ochered_store::Hash]) + Send + Sync>;

/// Cluster mode: told, from the writer's task, that the store refused an append with
/// [`StoreError::Fenced`]. By then the writer has stopped for good: its queue is closed
/// (`submit` answers [`WriterError::Stopped`]), every command it had taken was refused with
/// nothing written, and its state was rebuilt from the log (unless
/// [`Writer::is_consistent`] is false), so the handle can go on as a read-only copy.
pub type FencedHook = Arc<dyn Fn(&Writer) + Send + Sync>;

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_commands_max: 2048,
            queue_commands_max: 65_536,
            snapshot_every_events: None,
            snapshot_lull_per_second: None,
            clock: system_clock(),
            crash_after_commit: false,
            on_fenced: None,
            on_commit: None,
            runtime: None,
        }
    }
}

/// Who sent a command and how; stored as the events' metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Scoped by the caller (e.g. prefixed with the account) so clients cannot collide.
    pub idempotency_key: Option<String>,
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub correlation_id: Option<String>,
}

/// An event as committed: its place in the authority's chain and the event (tagged by
/// `type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommittedEvent {
    pub authority_seq: i64,
    pub recorded_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub event: Event,
}

/// The answer to a command: the events it produced, or the rule that refused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Accepted { events: Vec<CommittedEvent> },
    Rejected { rejection: Rejection },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub outcome: Outcome,
    /// True when this is the stored first answer to an earlier request with the same key.
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriterError {
    #[error("the writer's queue is full; retry later")]
    Overloaded,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("this idempotency key was used for a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still being processed")]
    KeyInFlight,
    #[error("the writer has stopped")]
    Stopped,
    /// The authority's log does not verify (an event changed, missing or out of place): the
    /// writer refuses every command until an operator has repaired or restored the log.
    #[error("{0}")]
    Broken(String),
}

impl From<StoreError> for WriterError {
    fn from(e: StoreError) -> Self {
        WriterError::Unavailable(e.to_string())
    }
}

struct Job {
    command: Command,
    meta: RequestMeta,
    request_hash: [u8; 32],
    /// The digest of the idempotency key as recorded ([`ochered_store::key_digest`]),
    /// computed on the caller's task so the writer does not hash it again.
    key_digest: Option<ochered_store::Hash>,
    /// When the job entered the queue: how long jobs wait for the writer is the signal of
    /// overload ([`WriterStats::queue_wait_micros`]).
    enqueued: Instant,
    /// A new data key the command's sealed value needs, stored with its events if it is
    /// accepted ([`Writer::submit_with_key`]).
    new_key: Option<privacy::NewKey>,
    reply: oneshot::Sender<Result<Reply, WriterError>>,
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub events: AtomicU64,
    pub commit_failures: AtomicU64,
    pub shed: AtomicU64,
    pub last_batch_size: AtomicU64,
    pub last_commit_micros: AtomicU64,
    /// Time spent in commits since the start (successful or not).
    pub commit_micros_total: AtomicU64,
    pub queue_depth: AtomicU64,
    /// How long the oldest command of the last batch waited in the queue before the writer
    /// took it (its sojourn time), in microseconds.
    pub queue_wait_micros: AtomicU64,
    /// Commands acknowledged per second over the last commits (a moving average), the
    /// writer's measured throughput.
    pub commit_rate_per_s: AtomicU64,
    /// Head waits over 100 ms intervals and the drain rate while busy ([`Writer::pressure`]).
    wait: pressure::WaitStats,
}

impl WriterStats {
    /// Batches taken, and the head waits summed over them in microseconds (a mean wait in
    /// front of the writer for metrics).
    pub fn head_waits(&self) -> (u64, u64) {
        (
            self.wait.batches_taken.load(Ordering::Relaxed),
            self.wait.wait_sum_us.load(Ordering::Relaxed),
        )
    }
}

struct Shared {
    authority: String,
    state: RwLock<State>,
    /// The digests ([`ochered_store::key_digest`]) of the idempotency keys of submissions
    /// waiting for their answer.
    in_flight: Mutex<HashSet<ochered_store::Hash>>,
    stats: WriterStats,
    head: RwLock<ochered_store::ChainHead>,
    /// False while the state could not be rebuilt after a failed commit (the store is away),
    /// and while the log is broken.
    consistent: std::sync::atomic::AtomicBool,
    /// Why the authority's log does not verify, if it does not: every command is refused.
    broken: RwLock<Option<String>>,
    /// The events of each acknowledged batch, in log order, for status updates. Best effort:
    /// a slow subscriber lags and must read what it missed from the store.
    committed: tokio::sync::broadcast::Sender<Arc<Vec<CommittedEvent>>>,
    /// The writer's clock, for checks that ask the rules without recording ([`Writer::check`]).
    clock: Clock,
}

/// How many acknowledged batches a subscriber may fall behind before it lags.
const COMMITTED_BROADCAST_BATCHES: usize = 1024;

/// A cloneable handle to one authority's writer and its state.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Replays the authority's log (from its newest snapshot, if any) and starts its writer.
    pub async fn start(
        store: Arc<dyn EventStore>,
        authority: &str,
        config: WriterConfig,
    ) -> Result<(Writer, ReplayStats), WriterError> {
        let (state, mut stats, broken) = match load_state(store.as_ref(), authority).await {
            Ok((state, stats)) => (state, stats, None),
            Err(WriterError::Broken(why)) => {
                tracing::error!(
                    authority,
                    %why,
                    "the log does not verify: this authority refuses every write until an operator repairs or restores the log and restarts the server"
                );
                let stats = ReplayStats {
                    events: 0,
                    from_snapshot: None,
                    head: store.head(authority).await?,
                    last_recorded_at: DateTime::<Utc>::MIN_UTC,
                    idempotency_keys: KeyIndex::default(),
                    snapshot_elapsed: std::time::Duration::ZERO,
                    elapsed: std::time::Duration::ZERO,
                };
                (State::new(), stats, Some(why))
            }
            Err(e) => return Err(e),
        };
        let (tx, rx) = mpsc::channel(config.queue_commands_max.max(1));
        let shared = Arc::new(Shared {
            authority: authority.to_owned(),
            state: RwLock::new(state),
            in_flight: Mutex::new(HashSet::new()),
            stats: WriterStats::default(),
            head: RwLock::new(stats.head.clone()),
            consistent: std::sync::atomic::AtomicBool::new(broken.is_none()),
            broken: RwLock::new(broken),
            committed: tokio::sync::broadcast::channel(COMMITTED_BROADCAST_BATCHES).0,
            clock: config.clock.clone(),
        });
        let runtime = config.runtime.clone();
        let mut task = WriterTask {
            handle: config.on_fenced.as_ref().map(|_| tx.downgrade()),
            store,
            shared: shared.clone(),
            config,
            // Moved, not copied: at millions of keys a copy is hundreds of megabytes.
            keys: std::mem::take(&mut stats.idempotency_keys),
            last_now: stats.last_recorded_at,
            decided_seq: stats.head.authority_seq,
            needs_reload: false,
            next_reload_at: None,
            reload_backoff: RELOAD_BACKOFF_MIN,
            reload_error: None,
            // A start that replayed a long tail takes a snapshot at its first idle moment.
            events_since_snapshot: stats.events,
            snapshot_task: None,
            arrivals: Arrivals::new(tokio::time::Instant::now()),
            snapshot_recheck_at: None,
        };
        let run = async move { task.run(rx).await };
        match runtime {
            Some(runtime) => runtime.spawn(run),
            None => tokio::spawn(run),
        };
        Ok((Writer { tx, shared }, stats))
    }

    pub fn authority(&self) -> &str {
        &self.shared.authority
    }

    /// Submits a command and waits for its durable answer. Refuses at once with
    /// [`WriterError::Overloaded`] when the queue is full.
    pub async fn submit(&self, command: Command, meta: RequestMeta) -> Result<Reply, WriterError> {
        self.submit_with_key(command, meta, None).await
    }

    /// [`Writer::submit`] a command whose sealed personal data needs a data key not stored
    /// yet ([`privacy::Privacy::seal_for_event`]): if the command is accepted, the key is
    /// stored with its events, in the same transaction (on SQLite; elsewhere the store puts
    /// it first), and told [`privacy::NewKey::stored`] before the command is acknowledged.
    /// A rejected command's key is not stored, and neither is its data.
    pub async fn submit_with_key(
        &self,
        command: Command,
        meta: RequestMeta,
        new_key: Option<privacy::NewKey>,
    ) -> Result<Reply, WriterError> {
        let request_hash = request_hash(&command);
        let key_digest = meta
            .idempotency_key
            .as_deref()
            .map(ochered_store::key_digest);
        if let Some(digest) = &key_digest {
            if !self.shared.in_flight.lock().unwrap().insert(*digest) {
                return Err(WriterError::KeyInFlight);
            }
        }
        let _guard = InFlightGuard {
            shared: &self.shared,
            key_digest,
        };
        let (reply, rx) = oneshot::channel();
        let job = Job {
            command,
            meta,
            request_hash,
            key_digest,
            enqueued: Instant::now(),
            new_key,
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.stats.shed.fetch_add(1, Ordering::Relaxed);
                return Err(WriterError::Overloaded);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WriterError::Stopped),
        }
        self.shared.stats.queue_depth.store(
            (self.tx.max_capacity() - self.tx.capacity()) as u64,
            Ordering::Relaxed,
        );
        rx.await.unwrap_or(Err(WriterError::Stopped))
    }

    /// Runs a read against the current state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
        f(&state)
    }

    /// Asks the rules about each command against the current state at the writer's clock,
    /// recording nothing. Lets a caller refuse bad input before work of its own (such as
    /// making a data key, or sending the rows of a file one by one); the writer decides each
    /// again, authoritatively, when it is submitted.
    pub fn check<'a>(
        &self,
        commands: impl IntoIterator<Item = &'a Command>,
    ) -> Vec<Result<(), Rejection>> {
        let now = (self.shared.clock)();
        self.read(|state| {
            commands
                .into_iter()
                .map(|command| decide(state, command, now).map(|_| ()))
                .collect()
        })
    }

    /// Decides one command against the current state at the writer's clock and hands the
    /// events it would give (or the rejection) to `f` together with that state, recording
    /// nothing: what a command *would* do, such as a round's preview. The state is not
    /// changed; the writer decides again, authoritatively, if the command is later submitted.
    pub fn dry_run<R>(
        &self,
        command: &Command,
        f: impl FnOnce(&State, Result<Vec<Event>, Rejection>) -> R,
    ) -> R {
        let now = (self.shared.clock)();
        self.read(|state| f(state, decide(state, command, now)))
    }

    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// The committed head of the authority's chain.
    pub fn head(&self) -> ochered_store::ChainHead {
        self.shared.head.read().unwrap().clone()
    }

    /// Commands waiting for the writer now.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// The wait in front of this writer: commands queued, how fast it drains them, and how
    /// long the oldest waited ([`Pressure`]). Lock-free; what admission control sheds on.
    pub fn pressure(&self) -> Pressure {
        self.shared.stats.wait.pressure(self.queue_depth())
    }

    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The events of every batch acknowledged from now on, one message per batch, in log
    /// order. A receiver that falls behind gets `Lagged` and should read the missed
    /// `authority_seq` range from the store; events committed but never acknowledged (a crash
    /// or a failed commit that reached the disk) are never sent, so readers must also treat a
    /// gap in `authority_seq` as something to read from the store.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<CommittedEvent>>> {
        self.shared.committed.subscribe()
    }

    /// False while the in-memory state is being rebuilt after a failed commit; reads should
    /// then answer "unavailable" rather than show an empty or uncommitted state.
    pub fn is_consistent(&self) -> bool {
        self.shared.consistent.load(Ordering::Acquire)
    }

    /// Why the authority's log does not verify, when it does not (found at start, from the
    /// newest snapshot to the head, or when rebuilding the state): the writer then refuses
    /// every command with [`WriterError::Broken`] until the server is restarted on a
    /// repaired log.
    pub fn broken(&self) -> Option<String> {
        self.shared.broken.read().unwrap().clone()
    }
}

struct InFlightGuard<'a> {
    shared: &'a Shared,
    key_digest: Option<ochered_store::Hash>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(digest) = &self.key_digest {
            self.shared.in_flight.lock().unwrap().remove(digest);
        }
    }
}

/// A digest of the command, to tell a retry from a different request with the same key:
/// SHA-256 of its JSON.
pub fn request_hash(command: &Command) -> [u8; 32] {
    let bytes = serde_json::to_vec(command).expect("commands serialise");
    Sha256::digest(&bytes).into()
}

struct WriterTask {
    /// Cluster mode: rebuilds a [`Writer`] handle for [`WriterConfig::on_fenced`] (weak, so
    /// the task still ends when every handle is dropped).
    handle: Option<mpsc::WeakSender<Job>>,
    store: Arc<dyn EventStore>,
    shared: Arc<Shared>,
    config: WriterConfig,
    /// Where the log records each committed idempotency key ([`KeyIndex`]): the only index
    /// of keys there is, so the uniqueness of a key is decided here, before the commit.
    keys: KeyIndex,
    last_now: DateTime<Utc>,
    /// The last authority_seq given to a decided event (committed or in flight).
    decided_seq: i64,
    needs_reload: bool,
    /// While the store is away: the next reload is not tried before this moment, and
    /// batches that come earlier are refused at once (a 503 now rather than a hang).
    next_reload_at: Option<tokio::time::Instant>,
    /// The wait after the next failed reload (doubles up to [`RELOAD_BACKOFF_MAX`]).
    reload_backoff: std::time::Duration,
    /// Why the last reload failed, for the refusals in between.
    reload_error: Option<WriterError>,
    events_since_snapshot: u64,
    /// The snapshot being stored, if one is: one at a time.
    snapshot_task: Option<tokio::task::JoinHandle<()>>,
    /// Commands received lately, for the lull a due snapshot waits for.
    arrivals: Arrivals,
    /// A due snapshot waits for a lull: look again at this moment even if no command comes.
    snapshot_recheck_at: Option<tokio::time::Instant>,
}

/// How often a due snapshot that waits for a lull looks again while no command comes.
const SNAPSHOT_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Commands received per second: counted in one-second windows, the rate being the larger of
/// the last full window and the current one (so a window just begun does not look quiet).
#[derive(Debug, Clone, Copy)]
struct Arrivals {
    window_start: tokio::time::Instant,
    current: u64,
    previous: u64,
}

impl Arrivals {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

    fn new(now: tokio::time::Instant) -> Self {
        Self {
            window_start: now,
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self, now: tokio::time::Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Self::WINDOW {
            self.previous = if elapsed >= 2 * Self::WINDOW {
                0
            } else {
                self.current
            };
            self.current = 0;
            self.window_start = now;
        }
    }

    fn add(&mut self, commands: u64, now: tokio::time::Instant) {
        self.roll(now);
        self.current += commands;
    }

    fn per_second(&mut self, now: tokio::time::Instant) -> u64 {
        self.roll(now);
        self.previous.max(self.current)
    }
}

/// The first wait after a failed reload, and the longest.
const RELOAD_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const RELOAD_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// What one job of a batch came to before the commit.
enum Decided {
    Accepted {
        job: Job,
        events: Vec<CommittedEvent>,
    },
    Rejected {
        job: Job,
        rejection: Rejection,
    },
}

/// A decided batch: its answers-to-be and, once started, its commit.
struct Pending {
    decided: Vec<Decided>,
    n_events: u64,
    /// The last authority_seq the batch's events take.
    last_seq: i64,
    /// The rows to write, until the commit starts.
    rows: Option<Vec<NewEvent>>,
    /// The new data keys of the accepted commands, stored with the rows.
    new_keys: Vec<Arc<ochered_store::keys::NewDataKey>>,
    /// The commit's task; it answers with the last event as stored (the new head).
    commit: Option<tokio::task::JoinHandle<Result<Option<ochered_store::StoredEvent>, StoreError>>>,
    started: Instant,
    /// When the batch was decided (for the commit rate).
    decided_at: Instant,
}

/// How finishing an in-flight commit went.
enum Finished {
    Committed,
    Failed(WriterError),
    /// The store refused the append because another node took the authority over. The
    /// batch's jobs are answered only after the writer has handed the authority back, so a
    /// client that sees the refusal and retries already finds this node forwarding.
    Fenced(WriterError, Vec<Decided>),
    Crash,
}

/// Refuses a batch decided on top of one whose commit failed.
fn refuse(next: Option<Pending>, error: &WriterError) {
    if let Some(next) = next {
        refuse_decided(next.decided, error);
    }
}

/// Answers every job of a batch with the error.
fn refuse_decided(decided: Vec<Decided>, error: &WriterError) {
    for d in decided {
        let (Decided::Accepted { job, .. } | Decided::Rejected { job, .. }) = d;
        let _ = job.reply.send(Err(error.clone()));
    }
}

impl WriterTask {
    /// A two-stage pipeline: while batch N commits (disk sync), batch N+1 is decided against
    /// the state that already includes N. N+1 is committed only after N is, and if N fails,
    /// N+1 is refused too (it was decided on top of N) and the state is rebuilt from the log.
    async fn run(&mut self, mut rx: mpsc::Receiver<Job>) {
        let mut inflight: Option<Pending> = None;
        let mut interval = pressure::Interval::new();
        // Reused from batch to batch: a batch bound of thousands makes a fresh vector a large
        // allocation (and its pages) for every batch, however few commands it holds.
        let mut batch = Vec::new();
        loop {
            if inflight.is_none() {
                if rx.is_empty() {
                    interval.idle(&self.shared.stats.wait);
                    // Idle with nothing committing (also right after a start that replayed
                    // a long tail): a snapshot now blocks no command.
                    self.maybe_snapshot().await;
                }
                let next = match self.next_reload_at.filter(|_| self.needs_reload) {
                    // The state waits for a reload: try again when the backoff ends even if
                    // no command comes, so reads come back by themselves with the store.
                    Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            let _ = self.try_reload().await;
                            continue;
                        }
                    },
                    // A due snapshot waits for a lull: look again when no command comes.
                    None => match self.snapshot_recheck_at {
                        Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                            Ok(next) => next,
                            Err(_) => continue,
                        },
                        None => rx.recv().await,
                    },
                };
                match next {
                    Some(job) => batch.push(job),
                    None => break,
                }
            }
            while batch.len() < self.config.batch_commands_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.arrivals
                .add(batch.len() as u64, tokio::time::Instant::now());
            if let Some(oldest) = batch.first() {
                interval.took(
                    &self.shared.stats.wait,
                    batch.len(),
                    oldest.enqueued,
                    Instant::now(),
                );
            }
            self.shared
                .stats
                .queue_depth
                .store(rx.len() as u64, Ordering::Relaxed);
            if let Some(oldest) = batch.first() {
                self.shared.stats.queue_wait_micros.store(
                    oldest.enqueued.elapsed().as_micros() as u64,
                    Ordering::Relaxed,
                );
            } else {
                self.shared
                    .stats
                    .queue_wait_micros
                    .store(0, Ordering::Relaxed);
            }
            if batch.is_empty() {
                // Nothing new to decide: finish the commit in flight.
                if let Some(pending) = inflight.take() {
                    match self.finish(pending).await {
                        Finished::Crash => {
                            rx.close();
                            return;
                        }
                        Finished::Fenced(error, failed) => {
                            self.stop_fenced(rx, error, failed, None);
                            return;
                        }
                        Finished::Committed | Finished::Failed(_) => {}
                    }
                }
                self.maybe_snapshot().await;
                continue;
            }
            let next = self.decide_batch(&mut batch).await;
            if let Some(pending) = inflight.take() {
                match self.finish(pending).await {
                    Finished::Committed => {}
                    Finished::Crash => {
                        rx.close();
                        return;
                    }
                    Finished::Failed(error) => {
                        // The new batch was decided on top of the failed one.
                        refuse(next, &error);
                        continue;
                    }
                    Finished::Fenced(error, failed) => {
                        self.stop_fenced(rx, error, failed, next);
                        return;
                    }
                }
            }
            inflight = next.map(|pending| self.start_commit(pending));
        }
        if let Some(pending) = inflight.take() {
            let _ = self.finish(pending).await;
        }
    }

    /// Cluster mode: another node took the authority over, so nothing this writer decides can
    /// commit any more. Refuses everything queued (nothing was written: the client retries,
    /// and the HTTP layer forwards the retry to the new owner), closes the queue and hands
    /// the handle to [`WriterConfig::on_fenced`], which turns it into a read-only copy.
    fn stop_fenced(
        &mut self,
        mut rx: mpsc::Receiver<Job>,
        error: WriterError,
        failed: Vec<Decided>,
        next: Option<Pending>,
    ) {
        rx.close();
        self.shared.stats.queue_depth.store(0, Ordering::Relaxed);
        tracing::warn!(authority = %self.shared.authority, "another node writes this authority now: this writer stopped");
        let tx = self.handle.take().and_then(|weak| weak.upgrade());
        if let (Some(hook), Some(tx)) = (self.config.on_fenced.clone(), tx) {
            hook(&Writer {
                tx,
                shared: self.shared.clone(),
            });
        }
        // Answered after the hand-back: the fenced batch, the one decided on top of it, and
        // everything still queued.
        refuse_decided(failed, &error);
        refuse(next, &error);
        while let Ok(job) = rx.try_recv() {
            let _ = job.reply.send(Err(error.clone()));
        }
    }

    /// Answers retries from the store, then decides and folds the rest in order. The events
    /// are not committed yet.
    async fn decide_batch(&mut self, batch: &mut Vec<Job>) -> Option<Pending> {
        if let Some(why) = self.shared.broken.read().unwrap().clone() {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(WriterError::Broken(why.clone())));
            }
            return None;
        }
        if self.needs_reload {
            let waiting = self
                .next_reload_at
                .is_some_and(|at| tokio::time::Instant::now() < at);
            let result = if waiting {
                Err(self.reload_error.clone().unwrap_or_else(|| {
                    WriterError::Unavailable("the store was unavailable; retrying".into())
                }))
            } else {
                self.try_reload().await
            };
            if let Err(e) = result {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return None;
            }
        }
        let now = (self.config.clock)().max(self.last_now);
        self.last_now = now;

        // Retries: answer from the store before deciding anything.
        let mut pending = Vec::with_capacity(batch.len());
        // Keys by digest (SHA-256: equal digests are equal keys).
        let mut keys_in_batch = HashSet::with_capacity(batch.len());
        for job in batch.drain(..) {
            let (Some(key), Some(digest)) = (&job.meta.idempotency_key, job.key_digest) else {
                pending.push(job);
                continue;
            };
            if !keys_in_batch.insert(digest) {
                let _ = job.reply.send(Err(WriterError::KeyInFlight));
                continue;
            }
            let candidates = self.keys.candidates(&digest);
            if candidates[0].is_none() {
                pending.push(job);
                continue;
            }
            // A candidate position is confirmed against its record (the index holds only a
            // prefix of each digest); the first that records this key holds the answer.
            let key = key.clone();
            let mut found = Ok(None);
            for seq in candidates.into_iter().flatten() {
                found = self
                    .store
                    .idempotency_at(&self.shared.authority, &key, seq)
                    .await;
                if !matches!(found, Ok(None)) {
                    break;
                }
            }
            match found {
                Ok(Some(hit)) => {
                    let answer = if hit.request_hash == job.request_hash {
                        self.first_answer(&hit).await.map(|outcome| Reply {
                            outcome,
                            replayed: true,
                        })
                    } else {
                        Err(WriterError::KeyReused)
                    };
                    let _ = job.reply.send(answer);
                }
                Ok(None) => pending.push(job),
                Err(e) => {
                    let _ = job.reply.send(Err(e.into()));
                }
            }
        }
        if pending.is_empty() {
            return None;
        }

        // Decide and fold in order, collecting the events to commit.
        let mut decided = Vec::with_capacity(pending.len());
        let mut new_events = Vec::new();
        let mut new_keys = Vec::new();
        let mut next_seq = self.decided_seq;
        {
            let mut state = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
            for mut job in pending {
                match decide(&state, &job.command, now) {
                    Ok(events) => {
                        // The request's metadata moves into its last event (it is not read
                        // again); earlier events of the request get copies.
                        let mut metadata = Some(Metadata {
                            actor: job.meta.actor.take(),
                            channel: job.meta.channel.take(),
                            correlation_id: job.meta.correlation_id.take(),
                        });
                        let n = events.len();
                        let mut committed = Vec::with_capacity(n);
                        for (i, event) in events.into_iter().enumerate() {
                            let stream = event.stream();
                            let version = state.next_stream_version(&stream);
                            state.apply(&event);
                            debug_assert_eq!(state.next_stream_version(&stream), version + 1);
                            next_seq += 1;
                            new_events.push(NewEvent {
                                stream_id: stream.to_string(),
                                stream_version: version as i64,
                                event_type: event.type_name().to_owned(),
                                schema_version: SCHEMA_VERSION,
                                recorded_at: now,
                                payload: ochered_store::cbor::to_vec(&event)
                                    .expect("events always encode"),
                                metadata: if i + 1 == n {
                                    metadata.take().unwrap_or_default()
                                } else {
                                    metadata.clone().unwrap_or_default()
                                },
                                idempotency: None,
                            });
                            committed.push(CommittedEvent {
                                authority_seq: next_seq,
                                recorded_at: ochered_store::truncate_to_micros(now),
                                event,
                            });
                        }
                        if let (Some(key_digest), Some(last)) =
                            (job.key_digest, new_events.last_mut())
                        {
                            // The first answer is the events themselves: the last of them
                            // records the key and how many events the answer spans, inside
                            // the hashed record.
                            if !committed.is_empty() {
                                last.idempotency = Some(Idempotency {
                                    key_digest,
                                    request_hash: job.request_hash,
                                    answer_events: committed.len() as u32,
                                });
                            }
                        }
                        if let (Some(key), false) = (&job.new_key, committed.is_empty()) {
                            new_keys.push(key.to_store());
                        }
                        decided.push(Decided::Accepted {
                            job,
                            events: committed,
                        });
                    }
                    Err(rejection) => decided.push(Decided::Rejected { job, rejection }),
                }
            }
        }
        self.decided_seq = next_seq;
        let n_events = new_events.len() as u64;
        Some(Pending {
            decided,
            n_events,
            last_seq: next_seq,
            rows: Some(new_events),
            new_keys,
            commit: None,
            started: Instant::now(),
            decided_at: Instant::now(),
        })
    }

    /// Starts a decided batch's commit: one transaction, one sync. Only one commit is ever in
    /// flight, so the log receives batches in the order they were decided.
    fn start_commit(&self, mut pending: Pending) -> Pending {
        pending.started = Instant::now();
        if let Some(events) = pending.rows.take() {
            if !events.is_empty() {
                let store = self.store.clone();
                let authority = self.shared.authority.clone();
                let span = commit_span(&authority, &events);
                // The head this batch was decided on: a log that moved meanwhile (another
                // writer) refuses the batch.
                let after = pending.last_seq - events.len() as i64;
                let on_commit = self.config.on_commit.clone();
                let new_keys = std::mem::take(&mut pending.new_keys);
                pending.commit = Some(tokio::spawn(
                    // Only the last stored event is kept (the head): the others are
                    // dropped here, on the commit's task, not on the writer's.
                    async move {
                        store
                            .append_with_keys(&authority, Some(after), events, new_keys)
                            .await
                            .map(|mut stored| {
                                if let (Some(hook), Some(first)) = (&on_commit, stored.first()) {
                                    let hashes: Vec<_> = stored.iter().map(|e| e.hash).collect();
                                    hook(&authority, first.authority_seq, &hashes);
                                }
                                stored.pop()
                            })
                    }
                    .instrument(span),
                ));
            }
        }
        pending
    }

    /// Waits for a batch's commit and answers its commands, or refuses them all.
    async fn finish(&mut self, pending: Pending) -> Finished {
        let stats = &self.shared.stats;
        if let Some(commit) = pending.commit {
            let result = commit
                .await
                .unwrap_or_else(|e| Err(StoreError::Other(format!("commit task failed: {e}"))));
            let commit_micros = pending.started.elapsed().as_micros() as u64;
            stats
                .last_commit_micros
                .store(commit_micros, Ordering::Relaxed);
            stats
                .commit_micros_total
                .fetch_add(commit_micros, Ordering::Relaxed);
            match result {
                Ok(last) => {
                    if let Some(last) = &last {
                        debug_assert_eq!(last.authority_seq, pending.last_seq);
                        *self.shared.head.write().unwrap() = ochered_store::ChainHead::of(last);
                    }
                }
                Err(e) => {
                    let fenced = matches!(e, StoreError::Fenced(_));
                    stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(authority = %self.shared.authority, error = %e, "commit failed; nothing in the batch is acknowledged");
                    // Restore the state before answering, so nobody reads the failed batch;
                    // if the store does not allow it now, before the next batch.
                    self.needs_reload = true;
                    if self.try_reload().await.is_err() {
                        let mut state =
                            self.shared.state.write().unwrap_or_else(|e| e.into_inner());
                        // Until the reload succeeds, reads answer "unavailable" rather than
                        // show effects that were never committed.
                        *state = State::new();
                        self.shared.consistent.store(false, Ordering::Release);
                    }
                    let error = if fenced {
                        WriterError::Unavailable(format!(
                            "another node writes {} now; nothing was written, retry shortly with the same Idempotency-Key",
                            self.shared.authority
                        ))
                    } else {
                        WriterError::from(e)
                    };
                    if fenced {
                        return Finished::Fenced(error, pending.decided);
                    }
                    refuse_decided(pending.decided, &error);
                    return Finished::Failed(error);
                }
            }
            if self.config.crash_after_commit {
                return Finished::Crash;
            }
        }

        // Acknowledge.
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .commands
            .fetch_add(pending.decided.len() as u64, Ordering::Relaxed);
        stats.events.fetch_add(pending.n_events, Ordering::Relaxed);
        stats
            .last_batch_size
            .store(pending.decided.len() as u64, Ordering::Relaxed);
        // Commands per second of this batch, from its decision to its acknowledgement,
        // smoothed over about eight batches.
        let seconds = pending.decided_at.elapsed().as_secs_f64().max(1e-6);
        let rate = pending.decided.len() as f64 / seconds;
        let previous = stats.commit_rate_per_s.load(Ordering::Relaxed) as f64;
        let smoothed = if previous == 0.0 {
            rate
        } else {
            previous + (rate - previous) / 8.0
        };
        stats
            .commit_rate_per_s
            .store(smoothed as u64, Ordering::Relaxed);
        // Copies for subscribers only when there are any.
        let mut broadcast = (self.shared.committed.receiver_count() > 0)
            .then(|| Vec::with_capacity(pending.n_events as usize));
        for d in pending.decided {
            match d {
                Decided::Accepted { job, events } => {
                    if let (Some(digest), Some(last)) = (&job.key_digest, events.last()) {
                        self.keys.insert(digest, last.authority_seq);
                    }
                    if let (Some(key), false) = (&job.new_key, events.is_empty()) {
                        // Stored with the events: from now on an ordinary stored key.
                        key.stored();
                    }
                    if let Some(b) = &mut broadcast {
                        b.extend(events.iter().cloned());
                    }
                    let _ = job.reply.send(Ok(Reply {
                        outcome: Outcome::Accepted { events },
                        replayed: false,
                    }));
                }
                Decided::Rejected { job, rejection } => {
                    let _ = job.reply.send(Ok(Reply {
                        outcome: Outcome::Rejected { rejection },
                        replayed: false,
                    }));
                }
            }
        }
        if let Some(events) = broadcast.filter(|b| !b.is_empty()) {
            let _ = self.shared.committed.send(Arc::new(events));
        }
        self.events_since_snapshot += pending.n_events;
        Finished::Committed
    }

    /// Saves a snapshot when enough events were committed since the last one, in a lull
    /// (see [`WriterConfig::snapshot_lull_per_second`]). Called only when no decided batch is
    /// waiting for its commit, so the state equals the committed log.
    async fn maybe_snapshot(&mut self) {
        self.snapshot_recheck_at = None;
        let Some(every) = self.config.snapshot_every_events else {
            return;
        };
        if self.events_since_snapshot < every {
            return;
        }
        let now = tokio::time::Instant::now();
        let overdue = self.events_since_snapshot >= every.saturating_mul(2);
        if let Some(lull) = self.config.snapshot_lull_per_second {
            if !overdue && self.arrivals.per_second(now) >= lull {
                self.snapshot_recheck_at = Some(now + SNAPSHOT_RECHECK);
                return;
            }
        }
        self.save_snapshot().await;
    }

    /// Rebuilds the first answer to a request from the events the log records for its key.
    async fn first_answer(&self, hit: &IdempotencyHit) -> Result<Outcome, WriterError> {
        let count = hit.last_seq - hit.first_seq + 1;
        let stored = self
            .store
            .read(&self.shared.authority, hit.first_seq - 1, count)
            .await?;
        let mut events = Vec::with_capacity(stored.len());
        for e in &stored {
            events.push(CommittedEvent {
                authority_seq: e.authority_seq,
                recorded_at: e.recorded_at,
                event: replay::decode_stored(e)?,
            });
        }
        if events.len() as i64 != count
            || events.last().map(|e| e.authority_seq) != Some(hit.last_seq)
        {
            return Err(WriterError::Unavailable(
                "the events of a stored answer are missing from the log".into(),
            ));
        }
        Ok(Outcome::Accepted { events })
    }

    /// [`Self::reload`], and on failure waits longer before the next try (refusing batches
    /// at once meanwhile).
    async fn try_reload(&mut self) -> Result<(), WriterError> {
        match self.reload().await {
            Ok(()) => {
                self.next_reload_at = None;
                self.reload_backoff = RELOAD_BACKOFF_MIN;
                self.reload_error = None;
                Ok(())
            }
            Err(WriterError::Broken(why)) => {
                tracing::error!(authority = %self.shared.authority, %why, "the log does not verify: this authority refuses every write until an operator repairs or restores the log and restarts the server");
                *self.shared.broken.write().unwrap() = Some(why.clone());
                self.needs_reload = false;
                Err(WriterError::Broken(why))
            }
            Err(e) => {
                tracing::warn!(authority = %self.shared.authority, error = %e, backoff_ms = self.reload_backoff.as_millis() as u64, "rebuilding the state failed; will retry");
                self.next_reload_at = Some(tokio::time::Instant::now() + self.reload_backoff);
                self.reload_backoff = (self.reload_backoff * 2).min(RELOAD_BACKOFF_MAX);
                self.reload_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn reload(&mut self) -> Result<(), WriterError> {
        let (state, stats) = load_state(self.store.as_ref(), &self.shared.authority).await?;
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        *self.shared.head.write().unwrap() = stats.head.clone();
        self.decided_seq = stats.head.authority_seq;
        self.keys = stats.idempotency_keys;
        self.last_now = self.last_now.max(stats.last_recorded_at);
        self.needs_reload = false;
        self.shared.consistent.store(true, Ordering::Release);
        Ok(())
    }

    /// Encodes a snapshot in pieces on a blocking thread (the writer waits for it: this is how
    /// long a snapshot holds commands back, logged as `encode_ms`), then stores the pieces and
    /// the header in a task of its own while the writer goes on. One snapshot at a time; a
    /// failed one is retried after the next `snapshot_every_events`.
    async fn save_snapshot(&mut self) {
        if self
            .snapshot_task
            .as_ref()
            .is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let started = std::time::Instant::now();
        let shared = self.shared.clone();
        let keys = std::mem::take(&mut self.keys);
        let encoded = tokio::task::spawn_blocking(move || {
            let state = shared.state.read().unwrap_or_else(|e| e.into_inner());
            let seq = shared.head.read().unwrap().authority_seq;
            let snapshot = replay::encode_snapshot(&state, &keys, replay::SNAPSHOT_CHUNK_BYTES);
            (keys, seq, snapshot)
        })
        .await;
        let (keys, seq, snapshot) = match encoded {
            Ok(done) => done,
            Err(e) => {
                // The key index went with the failed task: rebuild it from the log.
                tracing::error!(error = %e, "encoding a snapshot failed; rebuilding the state");
                self.needs_reload = true;
                self.shared.consistent.store(false, Ordering::Release);
                return;
            }
        };
        self.keys = keys;
        self.events_since_snapshot = 0;
        let encode_ms = started.elapsed().as_millis() as u64;
        let store = self.store.clone();
        let authority = self.shared.authority.clone();
        self.snapshot_task = Some(tokio::spawn(async move {
            let (bytes, chunks) = (snapshot.len, snapshot.chunks.len());
            let storing = std::time::Instant::now();
            match replay::store_snapshot(store.as_ref(), &authority, seq, snapshot).await {
                Ok(()) => tracing::info!(
                    %authority,
                    authority_seq = seq,
                    bytes,
                    chunks,
                    encode_ms,
                    store_ms = storing.elapsed().as_millis() as u64,
                    "snapshot stored"
                ),
                Err(e) => {
                    tracing::warn!(%authority, error = %e, "snapshot failed; will retry later")
                }
            }
        }));
    }
}

/// The span of one commit (debug level: off unless a trace exporter or `OCHERED_LOG=debug`
/// asks for it): the authority, the events, and the correlation ids of the requests whose
/// events it commits, which join each HTTP request to its commit in a trace.
fn commit_span(authority: &str, events: &[NewEvent]) -> tracing::Span {
    let span = tracing::debug_span!(
        "commit",
        authority = %authority,
        events = events.len(),
        correlation_ids = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let mut ids: Vec<&str> = events
            .iter()
            .filter_map(|e| e.metadata.correlation_id.as_deref())
            .collect();
        ids.dedup();
        span.record("correlation_ids", ids.join(","));
    }
    span
}
