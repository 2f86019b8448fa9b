//! The HTTP face of ochered: the REST API under `/api/v1`, health and metrics, and the web
//! pages, all served by one axum router over the engine's writers.
//!
//! `serve` parses nothing itself: `main` hands it the arguments, and tests call [`spawn`] to
//! run the real server on port 0.

// `ApiError` carries a whole problem+json body; handlers return it by value on purpose, and
// boxing every error would only move the allocation.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod http;
mod openapi;
mod pages;
pub mod seed;
mod services;
pub mod state;
pub mod status;
pub mod transparency;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;
use ochered_writer::{Engine, WriterConfig};

use crate::config::{ServeArgs, ServerConfig};
use crate::http::error::ApiError;
use crate::http::observe::{metrics_handle, observe, with_timeout};
use crate::http::{admission, cluster, ratelimit};
use crate::state::AppState;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let timeout_ms = state.config.request_timeout_ms;
    let body_limit = state.config.body_limit_bytes;
    let limiter = ratelimit::SubmissionLimiter::new(state.config.rate_limit, state.tokens.clone());
    let engine = state.engine.clone();
    let waits: admission::WaitSource =
        Arc::new(move |authority| engine.writer(authority).map(|w| w.pressure()));
    let admission = admission::Admission::new(
        state.config.max_in_flight,
        state.config.admission_target_ms,
        Some(waits),
    );
    let mut app = Router::new()
        .merge(openapi::router())
        .merge(pages::router())
        .fallback(not_found)
        .layer(middleware::map_response(
            crate::http::error::problem_for_bare_errors,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |req, next| {
            ratelimit::limit(limiter.clone(), req, next)
        }))
        // Admission control before anything costly (the token, the body): a write that would
        // wait past the target, or a request whose class is full, is answered 503 at once;
        // the body of the rest is read (bounded in time) before they take a place. Inside
        // `observe`, so sheds are counted per route.
        .layer(middleware::from_fn(move |req, next| {
            admission::admit(admission.clone(), req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(req, next, timeout_ms)
        }));
    // With trace export, each request's span (and a correlation id when it has none).
    if state.config.otlp_endpoint.is_some() {
        app = app.layer(middleware::from_fn(crate::http::trace::request_span));
    }
    // CORS only for the configured origins (checked by the configuration); without any, no
    // Access-Control-* header is ever sent and browsers keep other sites out.
    let origins: Vec<axum::http::HeaderValue> = state
        .config
        .cors_origins
        .iter()
        .filter_map(|origin| origin.parse().ok())
        .collect();
    if !origins.is_empty() {
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderName::from_static("idempotency-key"),
                    axum::http::HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    axum::http::header::RETRY_AFTER,
                    axum::http::header::LOCATION,
                ]),
        );
    }
    app.with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

/// A running server: its address and a way to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Opens the store, replays every authority, seeds the demo if asked, and starts serving on
/// `config.listen` (port 0 picks a free port).
pub async fn spawn(config: ServerConfig) -> anyhow::Result<RunningServer> {
    spawn_node(config, None).await
}

/// [`spawn`], or with `cluster` one node of several on one PostgreSQL ([`cluster`]).
pub async fn spawn_node(
    config: ServerConfig,
    cluster: Option<config::ClusterOptions>,
) -> anyhow::Result<RunningServer> {
    use anyhow::Context;
    // The recorder first: metrics recorded before it exists (the replay's) would be lost.
    metrics_handle();
    let engine_runtime = EngineRuntime::new().context("failed to start the engine's thread")?;
    if let Some(options) = cluster {
        return spawn_cluster_node(config, options, engine_runtime).await;
    }
    let url = config.database_url.clone();
    let store = engine_runtime
        .run(move || async move { ochered_store::open(&url).await })
        .await?
        .with_context(|| {
            format!(
                "failed to open the store at {}",
                config::redact_url(&config.database_url)
            )
        })?;
    let transparency = new_transparency(&config, store.clone());
    let writer_config = writer_config(&config, &transparency, &engine_runtime);
    let (engine, replays) = engine_runtime
        .run(move || Engine::start(store, writer_config))
        .await?
        .context("failed to replay the log")?;
    for (authority, stats) in &replays {
        tracing::info!(
            authority,
            events = stats.events,
            from_snapshot = ?stats.from_snapshot,
            snapshot_ms = stats.snapshot_elapsed.as_millis() as u64,
            elapsed_ms = stats.elapsed.as_millis() as u64,
            "replayed"
        );
        record_replay(authority, stats);
    }
    let replayed: Vec<String> = replays.iter().map(|(a, _)| a.to_string()).collect();
    if config.seed_demo && seed::demo_needs_seeding(&replayed, &config.demo_authority) {
        seed::seed_demo(&engine, &config.demo_authority, &config.person_secret)
            .await
            .context("failed to seed the demo authority")?;
        tracing::info!(authority = %config.demo_authority, "seeded the demo authority");
    }
    listen_and_serve(config, engine, None, transparency, engine_runtime).await
}

/// A due snapshot waits while its authority receives this many commands a second or more
/// (up to twice `--snapshot-every` events): encoding one holds the authority's commands back
/// for as long as it takes (a stall of about 0.3 s at 200,000 events, seen from /metrics),
/// which in the middle of an enrollment wave put hundreds of submissions over the latency
/// objective (docs/PERFORMANCE.md, "The national wave on PostgreSQL, and a snapshot that
/// waits for a lull"). At this rate a snapshot delays a few dozen requests at most.
const SNAPSHOT_LULL_PER_SECOND: u64 = 100;

/// The writers' settings from the server's.
fn writer_config(
    config: &ServerConfig,
    transparency: &Arc<transparency::Transparency>,
    engine_runtime: &EngineRuntime,
) -> WriterConfig {
    WriterConfig {
        batch_commands_max: config.batch_max,
        queue_commands_max: config.queue_max,
        snapshot_every_events: Some(config.snapshot_every),
        snapshot_lull_per_second: Some(SNAPSHOT_LULL_PER_SECOND),
        on_commit: Some(transparency.hook()),
        runtime: Some(engine_runtime.handle()),
        ..WriterConfig::default()
    }
}

/// The runtime the writers and the store's committer run on: one worker thread of their own,
/// so that a writer's turn never waits behind the HTTP connections' tasks (with two threads
/// the crowd's goodput was higher but a national wave's p99 worse: docs/PERFORMANCE.md). On the HTTP
/// runtime a writer was one task among one per ready connection: under a crowd of them
/// (1,000 connections, each sent again as soon as it was shed) it was polled once per round
/// of all of them, the wait of the commands in front of it rose with the crowd, and
/// admission control, which sheds on that wait, turned away nearly everything — a few
/// submissions a second accepted out of thousands offered. On a thread of its own the writer
/// is scheduled by the kernel beside the HTTP threads, and the wait admission reads is the
/// writer's own (docs/PERFORMANCE.md, "Overload").
struct EngineRuntime(Option<tokio::runtime::Runtime>);

impl EngineRuntime {
    fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ochered-engine")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("running until dropped")
            .handle()
            .clone()
    }

    /// Runs the future `make` gives in this runtime's context (whatever it spawns lands here
    /// too, and its connections are this runtime's) and waits for it. The future is made and
    /// driven on a blocking thread, so it need not be `Send` (sqlx's often cannot be proven
    /// so).
    async fn run<T, F>(&self, make: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T>,
    {
        let handle = self.handle();
        tokio::task::spawn_blocking(move || handle.block_on(make()))
            .await
            .map_err(|e| anyhow::anyhow!("the engine's thread failed: {e}"))
    }
}

impl Drop for EngineRuntime {
    fn drop(&mut self) {
        // Dropped on the HTTP runtime when the server stops: never block there.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The trees, heads and signing key of the server (docs/TRANSPARENCY.md).
fn new_transparency(
    config: &ServerConfig,
    store: Arc<dyn ochered_store::EventStore>,
) -> Arc<transparency::Transparency> {
    let key = match &config.signing_key {
        Some(key) => key.clone(),
        None => {
            tracing::warn!("no OCHERED_SIGNING_KEY_FILE configured: receipts and tree heads are signed with a development key that anyone can derive; do not run like this in production");
            config::development_signing_key()
        }
    };
    transparency::Transparency::new(store, key, config.tree_head_interval)
}

/// The start-up replay of an authority, for the dashboard: how many events were folded (after
/// the snapshot, if one was used), from which position, and how long it took.
fn record_replay(authority: &str, stats: &ochered_writer::ReplayStats) {
    let labels = [("authority", authority.to_owned())];
    metrics::gauge!("ochered_replay_events", &labels).set(stats.events as f64);
    metrics::gauge!("ochered_replay_seconds", &labels).set(stats.elapsed.as_secs_f64());
    metrics::gauge!("ochered_replay_from_snapshot_seq", &labels)
        .set(stats.from_snapshot.unwrap_or(0) as f64);
}

/// Cluster mode: joins the cluster, takes this node's share of the authorities (seeding the
/// demo if the log is empty and this node wins it), follows the rest, and serves.
async fn spawn_cluster_node(
    config: ServerConfig,
    options: config::ClusterOptions,
    engine_runtime: EngineRuntime,
) -> anyhow::Result<RunningServer> {
    use anyhow::Context;
    let url = config.database_url.clone();
    let store = Arc::new(
        engine_runtime
            .run(move || async move { ochered_store::PgStore::open(&url).await })
            .await?
            .with_context(|| {
                format!(
                    "failed to open the store at {}",
                    config::redact_url(&config.database_url)
                )
            })?,
    );
    let transparency = new_transparency(&config, store.clone());
    let writer_config = writer_config(&config, &transparency, &engine_runtime);
    let (cluster, engine) = {
        let (store, options) = (store.clone(), options.clone());
        let (timeout, body_limit) = (
            Duration::from_millis(config.request_timeout_ms),
            config.body_limit_bytes,
        );
        engine_runtime
            .run(move || async move {
                cluster::Cluster::start(store, &options, writer_config, timeout, body_limit).await
            })
            .await?
            .context("failed to join the cluster")?
    };
    tracing::info!(node = %options.node_id, writes = ?engine.authorities(), "joined the cluster");
    if config.seed_demo {
        use ochered_store::EventStore;
        if seed::demo_needs_seeding(&store.authorities().await?, &config.demo_authority) {
            match seed::seed_demo(&engine, &config.demo_authority, &config.person_secret).await {
                Ok(()) => {
                    tracing::info!(authority = %config.demo_authority, "seeded the demo authority")
                }
                Err(e) => tracing::info!(error = %e, "another node seeds the demo authority"),
            }
        }
    }
    {
        // The cluster's leases and take-overs run beside the writers.
        let _on_engine = engine_runtime.handle().enter();
        cluster.run();
    }
    listen_and_serve(config, engine, Some(cluster), transparency, engine_runtime).await
}

/// Listens on `config.listen` and serves the engine (behind the cluster's forwarding layer
/// in cluster mode).
async fn listen_and_serve(
    config: ServerConfig,
    engine: Arc<Engine>,
    cluster: Option<Arc<cluster::Cluster>>,
    transparency: Arc<transparency::Transparency>,
    engine_runtime: EngineRuntime,
) -> anyhow::Result<RunningServer> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let master = match &config.data_key {
        Some(key) => key.clone(),
        None => {
            tracing::warn!("no OCHERED_DATA_KEY configured: personal data is encrypted under a development key derived from the development secret; anyone can decrypt it; do not run like this in production");
            ochered_writer::privacy::MasterKey::derive_for_development(
                config::DEV_JWT_SECRET.as_bytes(),
            )
        }
    };
    let tokens = Arc::new(crate::http::oidc::Tokens::new(
        &config.jwt_secret,
        config.jwt_secret_is_default,
        config.oidc.clone(),
    )?);
    if let Some(oidc) = tokens.oidc() {
        tracing::info!(issuer = %oidc.config().issuer, "accepting the identity provider's tokens");
        if !config.jwt_secret_is_default {
            tracing::info!("also accepting HS256 tokens signed with the configured secret");
        }
    }
    let state = AppState {
        tokens,
        privacy: Arc::new(ochered_writer::privacy::Privacy::new(
            engine.store().clone(),
            master,
        )),
        engine,
        config: Arc::new(config),
        metrics: metrics_handle(),
        started_at: Instant::now(),
        transparency: transparency.clone(),
    };
    let app = router(state.clone());
    let app = match cluster {
        Some(cluster) => cluster::layer(app, cluster),
        None => app,
    };
    tokio::spawn(expire_periodically(state.engine.clone()));
    let signer = tokio::spawn(transparency.run());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (app, rx) = status::start(app, rx, &state)?;
    let task = tokio::spawn(async move {
        // The peer address is the rate limiter's key for requests without a valid token.
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await;
        // Heads are signed while the server serves; one being stored finishes or is not.
        signer.abort();
        // The writers stop with the server (everything acknowledged is committed).
        drop(engine_runtime);
        served
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Offers past their deadline and lapsed clinic holds are recorded as time passes: once a
/// minute every writer decides `ExpireOffers` and `ExpireSlotHolds` at the current time.
/// Rules never depend on this having run (they compare deadlines with `now`); it only
/// records the facts and returns the seats.
async fn expire_periodically(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for writer in engine.writers() {
            for command in [
                ochered_core::Command::ExpireOffers {},
                ochered_core::Command::ExpireSlotHolds {},
            ] {
                let meta = ochered_writer::RequestMeta {
                    actor: Some("system:clock".into()),
                    ..Default::default()
                };
                if let Err(e) = writer.submit(command, meta).await {
                    tracing::debug!(error = %e, "periodic expiry skipped");
                }
            }
        }
    }
}

/// `ochered serve`: runs until SIGTERM or Ctrl-C, then stops accepting and finishes in-flight
/// requests (and so their commits) before returning.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cluster_args = args.settings.cluster.clone();
    let config = ServerConfig::resolve(args)?;
    let traces = crate::http::trace::init(config.otlp_endpoint.as_deref())?;
    let cluster = config::cluster_options(&cluster_args, &config.database_url)?;
    if config.jwt_secret_is_default {
        tracing::warn!("no OCHERED_JWT_SECRET configured: using the development secret; do not run like this in production");
    }
    let server = spawn_node(config, cluster).await?;
    tracing::info!(addr = %server.addr, "listening; open http://{}/", server.addr);
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.stop().await;
    traces.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
