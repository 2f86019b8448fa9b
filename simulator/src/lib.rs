//! `ochered simulate`: rehearses an enrollment day against the engine in this process or
//! against an HTTP server, then audits the log (nothing acknowledged lost, no child twice,
//! every queue in policy order, the chain intact, replay equal to the live state) and
//! reports latency, throughput and errors.
//!
//! The flow of [`run`]: a [`scenario::Scenario`] (a preset built from the surges file, or a
//! JSON file) and a seed give a [`workload::Workload`] (institutions, children, the
//! schedule of sends); the target is set up (authority, institutions, campaign, drafts);
//! [`driver`] sends on schedule (open model) while clients retry; [`audit`] checks a fresh
//! replay; [`report`] prints and writes the results; [`slo`] decides the exit status.
//!
//! Exit status: 0 when the audit passed and the SLO (if any) was met, 1 when an SLO was
//! missed, 3 when the audit failed (2 is the binary's own for an error).

pub mod audit;
pub mod driver;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod server_metrics;
pub mod slo;
pub mod target;
pub mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, TimeZone, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use ochered_core::Command;
use ochered_writer::{Engine, Outcome, RequestMeta, WriterConfig};

use crate::audit::Live;
use crate::driver::Target;
use crate::recorder::Recorder;
use crate::report::{InstitutionLoad, Report, SloReport, SloResult};
use crate::scenario::{Presets, Scenario};
use crate::target::{Http, InProcess, SpawnedServer};
use crate::workload::Workload;

/// Exit status when an SLO was missed.
pub const EXIT_SLO_MISSED: u8 = 1;
/// Exit status when the audit found a problem.
pub const EXIT_AUDIT_FAILED: u8 = 3;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the engine's writers in this process (the path the server uses).
    InProcess,
    /// Over HTTP, against --url or a server started with --spawn-server.
    Http,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Real time: sends follow the (compressed) schedule; latency is measured.
    Wall,
    /// In process only: the writers' clock steps through the scenario's own time and every
    /// tick's sends are answered before the next, so the state hash depends on the seed alone.
    Virtual,
}

/// Flags of `ochered simulate`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// A preset built from the surges file: novosibirsk-2024, ekaterinburg-2024,
    /// ekaterinburg-2019, spb-2015, moscow-2018, gosuslugi-2025, national-first-minute.
    #[arg(long, conflicts_with = "scenario")]
    pub preset: Option<String>,
    /// A scenario file (JSON; see simulator/README.md for the fields).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// A surges file (the shape of `simulator/presets/presets.json`'s `surges`) whose figures
    /// replace the embedded table's; without it the embedded table is used.
    #[arg(long)]
    pub surges: Option<PathBuf>,
    /// List the presets and exit.
    #[arg(long)]
    pub list_presets: bool,
    /// Multiply every count of the scenario by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Compress the scenario into this many wall seconds (0: real time).
    #[arg(long, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Keep only the first MIN minutes of each authority's arrival curve.
    #[arg(long, value_name = "MIN")]
    pub until_min: Option<f64>,
    /// Seed of every random choice; printed, with the command to reproduce the run.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = Mode::InProcess)]
    pub mode: Mode,
    #[arg(long, value_enum, default_value_t = ClockMode::Wall)]
    pub clock: ClockMode,
    /// Scenario time per step of the virtual clock.
    #[arg(long, default_value_t = 1000)]
    pub virtual_tick_ms: u64,
    /// The event log (in-process mode, or the database of a --url server for the audit).
    /// Default: a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// A running server to load (HTTP mode); it is set up through the API. Several nodes of a
    /// cluster: a comma-separated list; requests take them in turn (a retry goes to the next
    /// node), health and metrics are read from the first.
    #[arg(long, conflicts_with = "spawn_server")]
    pub url: Option<String>,
    /// Start `ochered serve` on a free loopback port with a fresh SQLite file (HTTP mode).
    #[arg(long)]
    pub spawn_server: bool,
    /// The `ochered` binary to spawn [default: this executable].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Secret the server checks tokens with [default: the development secret].
    #[arg(long, env = "OCHERED_SIM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Secret the server derives children's keys with [default: the development secret].
    #[arg(long, env = "OCHERED_SIM_PERSON_SECRET", hide_env_values = true)]
    pub person_secret: Option<String>,
    /// Requests in flight at once over HTTP; more wait (and the wait counts in latency).
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Clients (sends with their retries) running at once at most. Past it a send waits for
    /// one to finish, so memory stays bounded at any rate and duration; the report says how
    /// often that held the schedule back.
    #[arg(long, default_value_t = 20_000)]
    pub clients_max: usize,
    /// Writer batch size (in-process, and passed to a spawned server).
    #[arg(long)]
    pub batch_max: Option<usize>,
    /// Writer queue bound (in-process, and passed to a spawned server).
    #[arg(long)]
    pub queue_max: Option<usize>,
    /// Kill the spawned server with SIGKILL every N seconds and restart it.
    #[arg(long, value_name = "SECONDS")]
    pub kill_server_every: Option<f64>,
    /// Kill the spawned server with SIGKILL N times and restart it after each kill. Each kill
    /// comes once the server has acknowledged a submission since it (re)started, after an
    /// uptime drawn from the seed (50–600 ms), so every kill lands in the middle of writes.
    #[arg(long, value_name = "N", conflicts_with = "kill_server_every")]
    pub kill_server_random: Option<u32>,
    /// Offer a flat PER_S submissions per wall second for --duration-s instead of the
    /// scenario's arrival curve (to load a server at a chosen multiple of its capacity).
    #[arg(long, value_name = "PER_S")]
    pub rate: Option<f64>,
    /// Request timeout of a spawned server, in milliseconds [default: the server's].
    #[arg(long, value_name = "MS")]
    pub server_request_timeout_ms: Option<u64>,
    /// Take the store away for a while (not available for SQLite; reported and skipped).
    #[arg(long)]
    pub db_outage: bool,
    /// Share (0 to 1) of children whose submissions carry a contact (names, phone and/or
    /// email), sealed under a data key of the child's own: by the server over HTTP, by the
    /// simulator as the API does in process; which children, and what they give, come from
    /// the seed.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub contact_share: f64,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as one self-contained HTML page with SVG charts.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Objectives, e.g. 'p99<100ms,errors<0.1%'; a missed one exits with status 1.
    #[arg(long)]
    pub slo: Option<String>,
    /// Keep the temporary database (its path is printed).
    #[arg(long)]
    pub keep_db: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Test-only planted fault: delete the events of the N acknowledged applications
    /// committed last before the audit (SQLite only).
    #[arg(long, hide = true, default_value_t = 0)]
    pub test_drop_acknowledged: usize,
}

impl SimulateArgs {
    /// The command line that repeats this run with the same seed.
    pub fn reproduce(&self, seed: u64) -> String {
        let mut parts = vec!["ochered simulate".to_owned()];
        let mut flag = |name: &str, value: Option<String>| match value {
            Some(v) => parts.push(format!("--{name} {}", shell_quote(&v))),
            None => parts.push(format!("--{name}")),
        };
        if let Some(p) = &self.preset {
            flag("preset", Some(p.clone()));
        }
        if let Some(s) = &self.scenario {
            flag("scenario", Some(s.display().to_string()));
        }
        if let Some(surges) = &self.surges {
            flag("surges", Some(surges.display().to_string()));
        }
        flag("scale", Some(self.scale.to_string()));
        flag("duration-s", Some(self.duration_s.to_string()));
        if let Some(m) = self.until_min {
            flag("until-min", Some(m.to_string()));
        }
        flag("seed", Some(seed.to_string()));
        flag(
            "mode",
            Some(match self.mode {
                Mode::InProcess => "in-process".into(),
                Mode::Http => "http".into(),
            }),
        );
        if self.clock == ClockMode::Virtual {
            flag("clock", Some("virtual".into()));
            if self.virtual_tick_ms != 1000 {
                flag("virtual-tick-ms", Some(self.virtual_tick_ms.to_string()));
            }
        }
        if let Some(u) = &self.url {
            flag("url", Some(u.clone()));
        }
        if self.spawn_server {
            flag("spawn-server", None);
        }
        if let Some(d) = &self.database_url {
            flag("database-url", Some(d.clone()));
        }
        if self.max_in_flight != 256 {
            flag("max-in-flight", Some(self.max_in_flight.to_string()));
        }
        if self.clients_max != 20_000 {
            flag("clients-max", Some(self.clients_max.to_string()));
        }
        if let Some(b) = self.batch_max {
            flag("batch-max", Some(b.to_string()));
        }
        if let Some(q) = self.queue_max {
            flag("queue-max", Some(q.to_string()));
        }
        if let Some(k) = self.kill_server_every {
            flag("kill-server-every", Some(k.to_string()));
        }
        if let Some(k) = self.kill_server_random {
            flag("kill-server-random", Some(k.to_string()));
        }
        if let Some(r) = self.rate {
            flag("rate", Some(r.to_string()));
        }
        if let Some(t) = self.server_request_timeout_ms {
            flag("server-request-timeout-ms", Some(t.to_string()));
        }
        if self.contact_share != 0.0 {
            flag("contact-share", Some(self.contact_share.to_string()));
        }
        if let Some(s) = &self.slo {
            flag("slo", Some(s.clone()));
        }
        parts.join(" ")
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A fresh temporary directory for a run's database, kept or removed at the end.
struct Scratch {
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl Scratch {
    fn new(keep: bool) -> anyhow::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("ochered-sim-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        Ok(Scratch {
            dir: Some(dir),
            keep,
        })
    }
    fn path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("present until dropped")
            .path()
            .to_path_buf()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("kept {}", path.display());
            }
        }
    }
}

/// Sets an authority up through a writer: configuration, institutions, campaign, drafts.
async fn setup_in_process(
    engine: &Engine,
    workload: &Workload,
    person_secret: &[u8],
) -> anyhow::Result<()> {
    for (index, a) in workload.authorities.iter().enumerate() {
        let (writer, _) = engine
            .writer_or_start(&a.id)
            .await
            .with_context(|| format!("failed to start the writer of {}", a.id))?;
        let meta = |actor: String| RequestMeta {
            actor: Some(actor),
            channel: Some("api".into()),
            ..RequestMeta::default()
        };
        let mut commands: Vec<(Command, RequestMeta)> = workload
            .setup_commands(index)
            .into_iter()
            .map(|c| (c, meta("officer:simulator".into())))
            .collect();
        let n_setup = commands.len();
        for child in workload.drafts(index) {
            let form = workload.school_form(person_secret, &child, 0);
            let actor = format!("parent:{}", form.submitted_by);
            commands.push((Command::SaveSchoolDraft { form }, meta(actor)));
        }
        let drafts_out_of_range: Vec<bool> =
            workload.drafts(index).map(|c| c.out_of_range).collect();
        let replies = driver::submit_ordered(&writer, commands).await;
        for (i, reply) in replies.into_iter().enumerate() {
            let reply = reply.with_context(|| format!("setting up {}", a.id))?;
            if let Outcome::Rejected { rejection } = reply.outcome {
                let expected = i >= n_setup && drafts_out_of_range[i - n_setup];
                if !expected {
                    bail!("setting up {}: command {i} refused: {rejection}", a.id);
                }
            }
        }
    }
    Ok(())
}

/// When the spawned server is killed: every period, or after each uptime drawn from the seed
/// (seconds, counted from the server's first acknowledgement since it started).
enum KillSchedule {
    Every(f64),
    AfterUptimes(Vec<f64>),
}

/// Kills the spawned server with SIGKILL on the schedule and restarts it each time; returns
/// what went wrong restarting it.
async fn kill_loop(
    schedule: KillSchedule,
    server: Arc<tokio::sync::Mutex<Option<SpawnedServer>>>,
    http: Arc<Http>,
    stop: Arc<AtomicBool>,
    recorder: Arc<Mutex<Recorder>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut up_since = 0.0;
    for n in 0.. {
        let at = match &schedule {
            KillSchedule::Every(every) => Instant::now() + Duration::from_secs_f64(*every),
            KillSchedule::AfterUptimes(uptimes) => {
                let Some(uptime) = uptimes.get(n) else { break };
                // Wait for the server to acknowledge something since it started.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return problems;
                    }
                    let acked = recorder
                        .lock()
                        .unwrap()
                        .last_ack_s
                        .is_some_and(|t| t > up_since);
                    if acked {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Instant::now() + Duration::from_secs_f64(*uptime)
            }
        };
        tokio::time::sleep_until(at.into()).await;
        if matches!(schedule, KillSchedule::Every(_)) && stop.load(Ordering::Relaxed) {
            break;
        }
        let mut guard = server.lock().await;
        let Some(s) = guard.as_mut() else { break };
        s.kill().await;
        let t = recorder.lock().unwrap().started.elapsed().as_secs_f64();
        recorder.lock().unwrap().kill(t);
        if let Err(e) = s.start(&http).await {
            problems.push(format!("{e:#}"));
            break;
        }
        up_since = recorder.lock().unwrap().started.elapsed().as_secs_f64();
    }
    problems
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} sends answered, {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn sqlite_path(url: &str) -> Option<String> {
    if url.starts_with("postgres") {
        None
    } else {
        Some(
            url.trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .to_owned(),
        )
    }
}

/// Parses `ochered simulate` flags (for tests and embedding programs).
pub fn args_from<I, T>(argv: I) -> Result<SimulateArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{FromArgMatches, Parser};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let argv = std::iter::once(std::ffi::OsString::from("simulate"))
        .chain(argv.into_iter().map(Into::into));
    let matches = <Cli as clap::CommandFactory>::command().try_get_matches_from(argv)?;
    Ok(Cli::from_arg_matches(&matches)?.args)
}

/// Runs `ochered simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    run_status(args).await.map(ExitCode::from)
}

/// Runs `ochered simulate` and returns its exit status (0, [`EXIT_SLO_MISSED`] or
/// [`EXIT_AUDIT_FAILED`]), one phase after another: [`plan`] the run, [`set_up`] the target,
/// [`drive`] the load, [`take_live`] what the live system holds, [`audit_log`] a fresh
/// replay, [`build_report`] and [`publish`] it.
pub async fn run_status(args: SimulateArgs) -> anyhow::Result<u8> {
    let presets = Presets::load(args.surges.as_deref())?;
    if args.list_presets {
        for (id, about) in presets.describe() {
            println!("{id:<24} {about}");
        }
        return Ok(0);
    }
    let plan = plan(&args, &presets)?;
    let setup = set_up(&args, &plan).await?;
    let (recorder, load) = drive(&args, &plan, &setup).await;
    let live = take_live(&plan, &setup).await?;
    let Setup {
        target,
        database_url,
        scratch,
        ..
    } = setup;
    drop(target);
    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("clients still running"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let audit = audit_log(
        &args,
        &plan,
        database_url.as_deref(),
        &recorder,
        &live,
        &load,
    )
    .await?;
    let report = build_report(
        &args,
        &plan,
        database_url.as_deref(),
        &recorder,
        &load,
        audit,
    );
    let status = publish(&args, &report, &recorder, database_url.as_deref())?;
    drop(scratch);
    Ok(status)
}

/// The objective a run is judged by when `--slo` is not given.
pub const DEFAULT_SLO: &str = "p99<100ms,errors<0.1%";

/// Everything fixed before the target is touched.
struct Plan {
    workload: Arc<Workload>,
    seed: u64,
    /// The objectives, and whether they are the default ([`DEFAULT_SLO`]).
    slo: Vec<slo::Objective>,
    slo_default: bool,
    preset_source: String,
    command: String,
    origin: DateTime<Utc>,
    span_s: f64,
    compression: f64,
    virtual_clock: bool,
    jwt_secret: Vec<u8>,
    person_secret: Vec<u8>,
}

/// Phase 1: the scenario, its checks, the seed and the workload.
fn plan(args: &SimulateArgs, presets: &Presets) -> anyhow::Result<Plan> {
    let mut scenario: Scenario = match (&args.preset, &args.scenario) {
        (Some(id), None) => presets.scenario(id)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            Scenario::from_json(&text)
                .with_context(|| format!("failed to parse {}", path.display()))?
        }
        _ => bail!("give --preset NAME (see --list-presets) or --scenario FILE"),
    };
    let preset_source = match (&args.preset, &presets.source) {
        (None, _) => "scenario file".to_owned(),
        (Some(_), scenario::PresetSource::File(f)) => format!("figures from {f}"),
        (Some(_), scenario::PresetSource::Embedded) => {
            "the embedded table of published surges".to_owned()
        }
    };
    if let Some(minutes) = args.until_min {
        scenario.truncate(minutes);
        scenario
            .validate()
            .context("the scenario is empty after --until-min")?;
    }
    check_flags(args)?;
    if let Some(rate) = args.rate {
        // One flat window: `rate` a second for the run's duration, at compression 1.
        scenario.arrivals = vec![scenario::Window {
            minutes: args.duration_s / 60.0,
            applications: rate * args.duration_s,
        }];
        // Second devices within the run, not in a quiet tail after it.
        scenario.second_device_delay_s = scenario.second_device_delay_s.min(args.duration_s);
        scenario
            .validate()
            .context("the scenario does not fit --rate")?;
    }
    let slo_default = args.slo.is_none();
    let slo = slo::parse(args.slo.as_deref().unwrap_or(DEFAULT_SLO))?;
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ochered_writer::demo::SeededRng::new(nanos ^ u64::from(std::process::id())).next_u64()
            % 1_000_000_000
    });
    let secret = |given: &Option<String>, default: &str| {
        given
            .clone()
            .unwrap_or_else(|| default.to_owned())
            .into_bytes()
    };
    let jwt_secret = secret(&args.jwt_secret, ochered_api::config::DEV_JWT_SECRET);
    let person_secret = secret(&args.person_secret, ochered_api::config::DEV_PERSON_SECRET);
    let virtual_clock = args.clock == ClockMode::Virtual;
    let origin: DateTime<Utc> = if virtual_clock {
        scenario
            .opened_at
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| {
                chrono::FixedOffset::east_opt(3 * 3600)
                    .expect("valid offset")
                    .with_ymd_and_hms(2027, 4, 1, 0, 0, 0)
                    .unwrap()
                    .with_timezone(&Utc)
            })
    } else {
        Utc::now()
    };
    let span_s = scenario.span_minutes() * 60.0;
    let compression = if args.duration_s > 0.0 {
        (span_s / args.duration_s).max(1e-9)
    } else {
        1.0
    };
    let workload = Arc::new(
        Workload::build(scenario, seed, args.scale, origin).with_contact_share(args.contact_share),
    );
    if workload.n_children == 0 {
        bail!("the scenario at this scale has no applications");
    }
    let command = args.reproduce(seed);
    println!(
        "simulate: {} at scale {}: {} children (each sends once, some again from a second device), {} authorities; seed {seed}",
        workload.scenario.name,
        args.scale,
        workload.n_children,
        workload.authorities.len()
    );
    println!("reproduce: {command}");
    if slo_default {
        println!("objective: {DEFAULT_SLO} (the default; give --slo to choose)");
    }
    if args.db_outage {
        println!(
            "--db-outage: skipped: the SQLite store is a file inside the server process and cannot be taken away from outside; rehearse store outages on PostgreSQL"
        );
    }
    Ok(Plan {
        workload,
        seed,
        slo,
        slo_default,
        preset_source,
        command,
        origin,
        span_s,
        compression,
        virtual_clock,
        jwt_secret,
        person_secret,
    })
}

/// The flags' own consistency, before anything is built.
fn check_flags(args: &SimulateArgs) -> anyhow::Result<()> {
    if !args.scale.is_finite() || args.scale <= 0.0 {
        bail!("--scale must be positive");
    }
    if !(0.0..=1.0).contains(&args.contact_share) {
        bail!("--contact-share must be between 0 and 1");
    }
    if args.clients_max == 0 {
        bail!("--clients-max must be positive");
    }
    match args.mode {
        Mode::InProcess if args.url.is_some() || args.spawn_server => {
            bail!("--url and --spawn-server are for --mode http")
        }
        Mode::Http if args.url.is_none() && !args.spawn_server => {
            bail!("--mode http needs --url URL or --spawn-server")
        }
        Mode::Http if args.clock == ClockMode::Virtual => {
            bail!("--clock virtual runs in process only: a server reads its own clock")
        }
        _ => {}
    }
    if (args.kill_server_every.is_some() || args.kill_server_random.is_some()) && !args.spawn_server
    {
        bail!("--kill-server-every and --kill-server-random need --spawn-server");
    }
    if args.server_request_timeout_ms.is_some() && !args.spawn_server {
        bail!("--server-request-timeout-ms needs --spawn-server");
    }
    if let Some(rate) = args.rate {
        if !rate.is_finite() || rate <= 0.0 {
            bail!("--rate must be positive");
        }
        if args.duration_s <= 0.0 {
            bail!("--rate needs a positive --duration-s");
        }
        if args.scale != 1.0 {
            bail!("--rate sets the count itself; leave --scale at 1");
        }
        if args.clock == ClockMode::Virtual {
            bail!("--rate is for the wall clock");
        }
    }
    if args
        .kill_server_every
        .is_some_and(|s| !s.is_finite() || s <= 0.0)
    {
        bail!("--kill-server-every must be positive");
    }
    Ok(())
}

/// The target, set up and ready for the load.
struct Setup {
    target: Target,
    /// The spawned server, shared with the killer.
    server: Arc<tokio::sync::Mutex<Option<SpawnedServer>>>,
    server_pid: Option<Arc<std::sync::atomic::AtomicU32>>,
    /// In process: the store, closed once the live state is taken.
    engine_store: Mutex<Option<Arc<dyn ochered_store::EventStore>>>,
    /// The virtual clock the writers read (in process, `--clock virtual`).
    clock: Arc<AtomicI64>,
    database_url: Option<String>,
    scratch: Scratch,
}

/// Phase 2: the store, the engine or the server, the authorities, institutions, campaigns
/// and drafts.
async fn set_up(args: &SimulateArgs, plan: &Plan) -> anyhow::Result<Setup> {
    let workload = &plan.workload;
    let scratch = Scratch::new(args.keep_db)?;
    let database_url = match (&args.database_url, args.mode, &args.url) {
        (Some(url), _, _) => Some(url.clone()),
        (None, Mode::Http, Some(_)) => None,
        _ => Some(format!(
            "sqlite://{}",
            scratch.path().join("sim.db").display()
        )),
    };
    let clock = Arc::new(AtomicI64::new(
        (plan.origin - chrono::Duration::hours(1)).timestamp_micros(),
    ));
    let mut writer_config = WriterConfig::default();
    if let Some(b) = args.batch_max {
        writer_config.batch_commands_max = b;
    }
    if let Some(q) = args.queue_max {
        writer_config.queue_commands_max = q;
    }
    if plan.virtual_clock {
        let clock = clock.clone();
        writer_config.clock = Arc::new(move || {
            Utc.timestamp_micros(clock.load(Ordering::SeqCst))
                .single()
                .expect("valid time")
        });
    }
    let mut server: Option<SpawnedServer> = None;
    let mut engine_store = None;
    let setup_started = Instant::now();
    let target = match args.mode {
        Mode::InProcess => {
            let url = database_url.clone().expect("in-process has a database");
            let store = ochered_store::open(&url)
                .await
                .with_context(|| format!("failed to open {url}"))?;
            let (engine, _) = Engine::start(store.clone(), writer_config)
                .await
                .context("failed to start the engine")?;
            setup_in_process(&engine, workload, &plan.person_secret).await?;
            let writers = workload
                .authorities
                .iter()
                .map(|a| engine.writer(&a.id).expect("started by setup"))
                .collect();
            // A development master key derived from the run's person secret: the run's
            // contacts are sealed the way a server seals them.
            let privacy = ochered_writer::privacy::Privacy::new(
                store.clone(),
                ochered_writer::privacy::MasterKey::derive_for_development(&plan.person_secret),
            );
            engine_store = Some(store);
            Target::InProcess(Arc::new(InProcess {
                engine,
                writers,
                person_secret: plan.person_secret.clone(),
                privacy,
            }))
        }
        Mode::Http => {
            let timeout = Duration::from_millis(workload.scenario.retry.timeout_ms);
            if args.spawn_server {
                let url = database_url
                    .clone()
                    .expect("spawned servers have a database");
                let s = spawn_server(args, plan, &url, &scratch, timeout).await?;
                let http = Arc::new(Http::new(
                    &s.url(),
                    &plan.jwt_secret,
                    timeout,
                    args.max_in_flight,
                ));
                server = Some(s);
                Target::Http(http)
            } else {
                let url = args.url.clone().expect("checked above");
                let http = Arc::new(Http::new(
                    &url,
                    &plan.jwt_secret,
                    timeout,
                    args.max_in_flight,
                ));
                http.setup(workload)
                    .await
                    .context("failed to set up the authorities through the API")?;
                Target::Http(http)
            }
        }
    };
    println!(
        "setup: {:.1} s ({} drafts); database {}",
        setup_started.elapsed().as_secs_f64(),
        (0..workload.authorities.len())
            .map(|i| workload.drafts(i).count())
            .sum::<usize>(),
        database_url
            .clone()
            .unwrap_or_else(|| "(the server's)".into())
    );
    Ok(Setup {
        target,
        server_pid: server.as_ref().map(|s| s.pid.clone()),
        server: Arc::new(tokio::sync::Mutex::new(server)),
        engine_store: Mutex::new(engine_store),
        clock,
        database_url,
        scratch,
    })
}

/// Sets the authorities up in process on the database file, then starts `ochered serve` on
/// it and waits until it answers.
async fn spawn_server(
    args: &SimulateArgs,
    plan: &Plan,
    url: &str,
    scratch: &Scratch,
    timeout: Duration,
) -> anyhow::Result<SpawnedServer> {
    {
        let store = ochered_store::open(url)
            .await
            .with_context(|| format!("failed to open {url}"))?;
        let (engine, _) = Engine::start(store.clone(), WriterConfig::default()).await?;
        setup_in_process(&engine, &plan.workload, &plan.person_secret).await?;
        drop(engine);
        store.close().await;
    }
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("failed to find this executable")?,
    };
    let mut extra = Vec::new();
    if let Some(b) = args.batch_max {
        extra.extend(["--batch-max".to_owned(), b.to_string()]);
    }
    if let Some(q) = args.queue_max {
        extra.extend(["--queue-max".to_owned(), q.to_string()]);
    }
    if let Some(t) = args.server_request_timeout_ms {
        extra.extend(["--request-timeout-ms".to_owned(), t.to_string()]);
    }
    let env = vec![
        (
            "OCHERED_JWT_SECRET".to_owned(),
            String::from_utf8_lossy(&plan.jwt_secret).into_owned(),
        ),
        (
            "OCHERED_PERSON_SECRET".to_owned(),
            String::from_utf8_lossy(&plan.person_secret).into_owned(),
        ),
    ];
    let mut s = SpawnedServer::new(
        bin,
        url.to_owned(),
        scratch.path().join("server.log"),
        extra,
        env,
    )?;
    let probe = Http::new(&s.url(), &plan.jwt_secret, timeout, 1);
    s.start(&probe).await?;
    println!("server: {} (log {})", s.url(), s.log.display());
    Ok(s)
}

/// What the load came to, besides what the recorder holds.
struct LoadOutcome {
    load_wall_s: f64,
    fault_problems: Vec<String>,
    server_latency: Option<server_metrics::ServerLatency>,
    generator: report::Generator,
}

/// Phase 3: the load on schedule, with the samplers and the killer beside it.
async fn drive(
    args: &SimulateArgs,
    plan: &Plan,
    setup: &Setup,
) -> (Arc<Mutex<Recorder>>, LoadOutcome) {
    let workload = &plan.workload;
    let target = &setup.target;
    let expected_wall = Duration::from_secs_f64(if plan.virtual_clock {
        10.0
    } else {
        plan.span_s / plan.compression
    });
    let started = Instant::now() + Duration::from_millis(100);
    let recorder = Arc::new(Mutex::new(Recorder::new(started, expected_wall)));
    let progress = progress_bar(u64::from(workload.n_children), args.quiet);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(driver::sample_queue_depth(
        target.clone(),
        recorder.clone(),
        Duration::from_millis(if matches!(target, Target::Http(_)) {
            250
        } else {
            100
        }),
        stop.clone(),
    ));
    let memory_sampler = setup.server_pid.as_ref().map(|pid| {
        tokio::spawn(driver::sample_memory(
            pid.clone(),
            recorder.clone(),
            Duration::from_millis(200),
            stop.clone(),
        ))
    });
    // Random kills: uptimes drawn from the seed, each counted from the server's first
    // acknowledgement after it (re)started.
    let kill_uptimes: Option<Vec<f64>> = args.kill_server_random.map(|n| {
        let mut rng = ochered_writer::demo::SeededRng::new(plan.seed ^ 0x6b69_6c6c_5f61_7421);
        (0..n).map(|_| 0.05 + 0.55 * rng.unit()).collect()
    });
    // Both kill modes share one loop: periodic kills wake every period until the load
    // stops; random kills follow their drawn uptimes while the load runs.
    let schedule = match (args.kill_server_every, kill_uptimes) {
        (Some(every), _) => Some(KillSchedule::Every(every)),
        (None, Some(uptimes)) => Some(KillSchedule::AfterUptimes(uptimes)),
        (None, None) => None,
    };
    let killer = match (schedule, target) {
        (Some(schedule), Target::Http(http)) => Some(tokio::spawn(kill_loop(
            schedule,
            setup.server.clone(),
            http.clone(),
            stop.clone(),
            recorder.clone(),
        ))),
        _ => None,
    };
    let cpu_before = cpu::own_seconds();
    let server_cpu_before = setup
        .server_pid
        .as_ref()
        .and_then(|pid| cpu::process_seconds(pid.load(Ordering::Relaxed)));
    let (schedule_stats, sends) = match target {
        Target::InProcess(t) if plan.virtual_clock => {
            let sends = driver::run_virtual(
                t.clone(),
                workload.clone(),
                setup.clock.clone(),
                plan.origin,
                Duration::from_millis(args.virtual_tick_ms.max(1)),
                recorder.clone(),
                progress.clone(),
            )
            .await;
            (None, sends)
        }
        _ => {
            let stats = driver::run_wall(
                target.clone(),
                workload.clone(),
                plan.compression,
                args.clients_max,
                recorder.clone(),
                progress.clone(),
            )
            .await;
            (Some(stats), stats.sends)
        }
    };
    let load_wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu::own_seconds() - cpu_before;
    // The server's CPU over the load, when the same process ran throughout.
    let server_cpu_s = match (&setup.server_pid, server_cpu_before) {
        (Some(pid), Some(before))
            if setup
                .server
                .lock()
                .await
                .as_ref()
                .is_some_and(|s| s.starts == 1) =>
        {
            cpu::process_seconds(pid.load(Ordering::Relaxed)).map(|after| after - before)
        }
        _ => None,
    };
    stop.store(true, Ordering::Relaxed);
    progress.finish_and_clear();
    let _ = sampler.await;
    let mut fault_problems = Vec::new();
    if let Some(k) = killer {
        if args.kill_server_every.is_some() {
            // Wakes up at its next period at the latest; do not wait that long.
            k.abort();
            if let Ok(problems) = k.await {
                fault_problems = problems;
            }
        } else {
            // Ends by itself: after its last kill, or when the load stopped before it.
            match k.await {
                Ok(problems) => fault_problems.extend(problems),
                Err(e) => fault_problems.push(format!("the killer failed: {e}")),
            }
        }
    }
    if let Some(pid) = &setup.server_pid {
        let current = pid.load(Ordering::Relaxed);
        if let Some((rss, hwm)) = driver::process_memory_kib(current).filter(|_| current != 0) {
            recorder.lock().unwrap().memory(rss, hwm);
        }
    }
    if let Some(m) = memory_sampler {
        let _ = m.await;
    }
    // The server's own latency by outcome, before it is stopped and audited.
    let kills = recorder.lock().unwrap().kills.len();
    let server_latency = server_metrics::after_load(target, kills).await;
    let generator = report::Generator::judge(
        schedule_stats,
        schedule_stats.map_or(0.0, |s| s.planned_last_send_s),
        sends,
        args.clients_max,
        cpu_s,
        load_wall_s,
        server_cpu_s,
        matches!(target, Target::InProcess(_)),
    );
    (
        recorder,
        LoadOutcome {
            load_wall_s,
            fault_problems,
            server_latency,
            generator,
        },
    )
}

/// Phase 4: what the live system holds (state hashes in process, chain heads over HTTP),
/// then stop it.
async fn take_live(plan: &Plan, setup: &Setup) -> anyhow::Result<Live> {
    Ok(match &setup.target {
        Target::InProcess(t) => {
            let hashes = t
                .writers
                .iter()
                .map(|w| w.read(|s| s.state_hash()))
                .collect();
            let store = setup.engine_store.lock().unwrap().take();
            if let Some(store) = store {
                store.close().await;
            }
            Live::StateHashes(hashes)
        }
        Target::Http(http) => {
            let mut guard = setup.server.lock().await;
            if let Some(s) = guard.as_mut() {
                if !http.healthy().await {
                    // A kill may have been cut short: bring it back to read its heads.
                    s.kill().await;
                    s.start(http).await?;
                }
            }
            let mut heads = Vec::new();
            let mut ok = true;
            for a in &plan.workload.authorities {
                match http.head(&a.id).await {
                    Ok(h) => heads.push(h),
                    Err(e) => {
                        eprintln!("could not read the server's head: {e:#}");
                        ok = false;
                    }
                }
            }
            if let Some(s) = guard.as_mut() {
                s.stop().await.context("failed to stop the server")?;
            }
            if ok {
                Live::Heads(heads)
            } else {
                Live::None
            }
        }
    })
}

/// Phase 5: the audit on a freshly opened store (None, with the reason, when the store is
/// not reachable from here).
async fn audit_log(
    args: &SimulateArgs,
    plan: &Plan,
    database_url: Option<&str>,
    recorder: &Recorder,
    live: &Live,
    load: &LoadOutcome,
) -> anyhow::Result<Result<audit::AuditReport, String>> {
    if args.test_drop_acknowledged > 0 {
        let url = database_url.context("the planted fault needs the database")?;
        audit::drop_acknowledged(
            url,
            &plan.workload,
            &recorder.acks,
            args.test_drop_acknowledged,
        )
        .await?;
    }
    let Some(url) = database_url else {
        return Ok(Err(
            "pass --database-url of the server's store to audit it".to_owned()
        ));
    };
    let store = ochered_store::open(url)
        .await
        .with_context(|| format!("failed to reopen {url} for the audit"))?;
    let mut report = audit::audit(store.clone(), &plan.workload, &recorder.acks, live).await;
    report.problems.extend(load.fault_problems.iter().cloned());
    store.close().await;
    Ok(Ok(report))
}

/// Phase 6: the figures, the audit verdict and the service verdict.
fn build_report(
    args: &SimulateArgs,
    plan: &Plan,
    database_url: Option<&str>,
    recorder: &Recorder,
    load: &LoadOutcome,
    audit: Result<audit::AuditReport, String>,
) -> Report {
    let workload = &plan.workload;
    let (audit, audit_skipped) = match audit {
        Ok(a) => (Some(a), None),
        Err(why) => (None, Some(why)),
    };
    let latency = report::latency(recorder);
    let submitted = recorder.completed;
    let errors = recorder.errors();
    let duration_s = load.load_wall_s.max(1e-9);
    let offered_peak = recorder
        .buckets
        .iter()
        .map(|b| b.arrivals as f64 / recorder.bucket.as_secs_f64())
        .fold(0.0, f64::max);
    let mut report = Report {
        scenario: workload.scenario.name.clone(),
        mode: match (args.mode, args.spawn_server) {
            (Mode::InProcess, _) => "in-process".into(),
            (Mode::Http, true) => "http (spawned server)".into(),
            (Mode::Http, false) => format!("http ({})", args.url.clone().unwrap_or_default()),
        },
        clock: if plan.virtual_clock {
            "virtual".into()
        } else {
            "wall".into()
        },
        seed: plan.seed,
        scale: args.scale,
        command: plan.command.clone(),
        preset_source: plan.preset_source.clone(),
        authorities: workload.authorities.len(),
        compression: if plan.virtual_clock {
            0.0
        } else {
            plan.compression
        },
        scenario_span_s: plan.span_s,
        last_send_s: load.generator.planned_last_send_s,
        duration_s,
        submitted,
        children: u64::from(workload.n_children),
        attempts: recorder.attempts,
        acknowledged: recorder.acks.len() as u64,
        lost: audit.as_ref().map(|a| a.lost),
        duplicates: audit.as_ref().map(|a| a.duplicates),
        order_violations: audit.as_ref().map(|a| a.order_violations),
        errors,
        error_rate: errors as f64 / submitted.max(1) as f64,
        errors_by_status: recorder.errors_by_status.clone(),
        expected_refusals: recorder.expected_refusals.clone(),
        retries_by_reason: recorder.retries_by_reason.clone(),
        gave_up: recorder.gave_up,
        both_devices_acknowledged: recorder.both_devices_acknowledged,
        throughput_per_s: recorder.acks.len() as f64 / duration_s,
        offered_per_s: submitted as f64 / duration_s,
        offered_peak_per_s: offered_peak,
        latency_ms: latency.clone(),
        state_hash: audit.as_ref().and_then(|a| a.state_hash.clone()),
        audit_passed: audit.as_ref().is_some_and(|a| a.passed()),
        audit,
        audit_skipped,
        server_kills: recorder.kills.len(),
        kill_times_s: recorder.kills.clone(),
        acks_between_kills: recorder.acks_between_kills.clone(),
        attempt_latency_ms: report::AttemptLatency {
            accepted: report::ClassLatency::of(&recorder.attempt_accepted),
            shed: report::ClassLatency::of(&recorder.attempt_shed),
        },
        shed_without_retry_after: recorder.shed_without_retry_after,
        server_latency_ms: load.server_latency.clone(),
        server_peak_rss_kib: recorder.server_rss_peak_kib,
        server_last_rss_kib: recorder.server_rss.last().map(|s| s.1),
        queue_depth_max: recorder.queue_depth.iter().map(|d| d.1).max().unwrap_or(0),
        error_examples: recorder.error_examples.clone(),
        slo: None,
        generator: load.generator.clone(),
        database_url: if args.keep_db || args.database_url.is_some() {
            database_url.map(str::to_owned)
        } else {
            None
        },
        institutions: institution_loads(workload),
    };
    let figures = slo::Figures {
        latency_ms: vec![
            (50.0, latency.p50),
            (90.0, latency.p90),
            (99.0, latency.p99),
            (99.9, latency.p999),
            (100.0, latency.max),
        ],
        error_rate: report.error_rate,
        lost: report.lost.unwrap_or(u64::MAX),
        duplicates: report.duplicates.unwrap_or(u64::MAX),
        order_violations: report.order_violations.unwrap_or(u64::MAX),
        throughput_per_s: report.throughput_per_s,
    };
    let results: Vec<SloResult> = plan
        .slo
        .iter()
        .map(|o| {
            let (value, ok) = o.check(&figures);
            SloResult {
                term: o.text.clone(),
                value,
                ok,
            }
        })
        .collect();
    report.slo = Some(SloReport {
        spec: args.slo.clone().unwrap_or_else(|| DEFAULT_SLO.to_owned()),
        default: plan.slo_default,
        passed: results.iter().all(|r| r.ok),
        results,
    });
    report
}

/// Demand against seats per institution, for the chart.
fn institution_loads(workload: &Workload) -> Vec<InstitutionLoad> {
    let demand = workload.demand();
    let prefix = if workload.scenario.service == scenario::Service::School {
        "S"
    } else {
        "K"
    };
    let mut institutions = Vec::new();
    for (a, auth) in workload.authorities.iter().enumerate() {
        for (i, (&demand, &seats)) in demand[a].iter().zip(&auth.seats).enumerate() {
            institutions.push(InstitutionLoad {
                authority: auth.id.clone(),
                institution: format!("{prefix}{:04}", i + 1),
                demand,
                seats,
            });
        }
    }
    institutions
}

/// Phase 7: print and write the report; the exit status. A missed objective exits with
/// [`EXIT_SLO_MISSED`] only when `--slo` chose it: the default objective is reported, not
/// enforced, so that scripts that only audit keep their meaning.
fn publish(
    args: &SimulateArgs,
    report: &Report,
    recorder: &Recorder,
    database_url: Option<&str>,
) -> anyhow::Result<u8> {
    println!("{}", report.summary());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
        println!("json: {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report::html(report, recorder))
            .with_context(|| format!("failed to write {}", path.display()))?;
        println!("html: {}", path.display());
    }
    if let Some(path) = database_url.and_then(sqlite_path) {
        if args.keep_db {
            println!("database kept: {path}");
        }
    }
    let audit_failed = report.audit.is_some() && !report.audit_passed;
    if audit_failed {
        eprintln!("audit FAILED; reproduce with: {}", report.command);
        return Ok(EXIT_AUDIT_FAILED);
    }
    if report.slo.as_ref().is_some_and(|s| !s.passed) {
        if args.slo.is_some() {
            eprintln!("SLO missed; reproduce with: {}", report.command);
            return Ok(EXIT_SLO_MISSED);
        }
        eprintln!(
            "service objective missed (default {DEFAULT_SLO}); reproduce with: {}",
            report.command
        );
    }
    Ok(0)
}

/// CPU time of processes, from the kernel.
mod cpu {
    /// User and system CPU seconds of this process so far.
    pub fn own_seconds() -> f64 {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }

    /// User and system CPU seconds of another process so far (Linux, from /proc).
    pub fn process_seconds(pid: u32) -> Option<f64> {
        if pid == 0 {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) closed by ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some((utime + stime) / ticks.max(1.0))
    }
}
