//! The `ochered` command: runs the server and the operator's and auditor's tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ochered",
    version,
    about = "Event-sourced engine for the electronic queues of public services"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the event log lives: a SQLite file (the default) or a PostgreSQL URL.
#[derive(clap::Args, Clone)]
struct StoreArgs {
    #[arg(
        long,
        env = "OCHERED_DATABASE_URL",
        default_value = "sqlite://ochered.db"
    )]
    database_url: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the HTTP server (seeds a demo authority on first start unless --no-demo).
    Serve(ochered_api::config::ServeArgs),
    /// Rebuild every authority's state from the log; print its state hash, events and time.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this authority.
        #[arg(long)]
        authority: Option<String>,
    },
    /// Check every authority's hash chain; print the head or the first broken event.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        authority: Option<String>,
    },
    /// Run deferred acceptance on an instance file (PRODUCT.md section 4); print the result.
    Allocate {
        #[arg(long)]
        instance: PathBuf,
    },
    /// Print the allocation instance (PRODUCT.md section 4) of a round, rebuilt from the log;
    /// `ochered allocate --instance` on it reproduces the round's placements.
    ExportInstance {
        #[command(flatten)]
        store: StoreArgs,
        /// The round's id.
        #[arg(long)]
        round: String,
        /// The authority that ran the round (needed when the log holds several).
        #[arg(long)]
        authority: Option<String>,
    },
    /// Mint a development token for a role (parent, officer, registrar, auditor, admin).
    Token(ochered_api::config::TokenArgs),
    /// Rehearse an enrollment-day surge (in process or over HTTP), audit the log, report.
    Simulate(ochered_simulator::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Serve(args) => {
            init_tracing();
            ochered_api::serve(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay { store, authority } => {
            let store = ochered_store::open(&store.database_url)
                .await
                .context("failed to open the store")?;
            for authority in authorities(store.as_ref(), authority).await? {
                let started = Instant::now();
                let (state, stats) = ochered_writer::load_state(store.as_ref(), &authority)
                    .await
                    .with_context(|| format!("failed to replay {authority}"))?;
                let elapsed = started.elapsed();
                let rate = stats.events as f64 / elapsed.as_secs_f64().max(1e-9);
                println!(
                    "authority={authority} state_hash={} events={} head_seq={} from_snapshot={} elapsed_ms={} events_per_s={:.0}",
                    state.state_hash(),
                    stats.events,
                    stats.head.authority_seq,
                    stats.from_snapshot.map_or("none".to_string(), |s| s.to_string()),
                    elapsed.as_millis(),
                    rate
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify { store, authority } => {
            let store = ochered_store::open(&store.database_url)
                .await
                .context("failed to open the store")?;
            let mut ok = true;
            for authority in authorities(store.as_ref(), authority).await? {
                match store.verify(&authority).await? {
                    ochered_store::VerifyOutcome::Ok { head, events } => println!(
                        "authority={authority} ok events={events} head_seq={} head_hash={}",
                        head.authority_seq, head.hash
                    ),
                    ochered_store::VerifyOutcome::Broken {
                        authority_seq,
                        global_seq,
                        reason,
                    } => {
                        ok = false;
                        println!(
                            "authority={authority} BROKEN at authority_seq={authority_seq} global_seq={global_seq}: {reason}"
                        );
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Allocate { instance } => {
            let text = std::fs::read_to_string(&instance)
                .with_context(|| format!("failed to read {}", instance.display()))?;
            match ochered_core::allocation::solve_instance_json(&text) {
                Ok(result) => {
                    println!("{result}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("error: {}: {error}", instance.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::ExportInstance {
            store,
            round,
            authority,
        } => {
            let round_id = ochered_core::domain::RoundId::parse(&round)
                .map_err(|e| anyhow::anyhow!("--round: {}", e.reason))?;
            let store = ochered_store::open(&store.database_url)
                .await
                .context("failed to open the store")?;
            let candidates = authorities(store.as_ref(), authority.clone()).await?;
            if authority.is_none() && candidates.len() > 1 {
                anyhow::bail!(
                    "the log holds {} authorities ({}); name one with --authority",
                    candidates.len(),
                    candidates.join(", ")
                );
            }
            let Some(authority) = candidates.into_iter().next() else {
                anyhow::bail!("the log holds no authority");
            };
            let (state, _) = ochered_writer::load_state(store.as_ref(), &authority)
                .await
                .with_context(|| format!("failed to replay {authority}"))?;
            let Some(idx) = state.round_idx(&round_id) else {
                eprintln!("error: authority {authority} has no round {round_id}");
                return Ok(ExitCode::from(1));
            };
            let instance = state.round_instance(&state.rounds()[idx as usize]);
            println!(
                "{}",
                serde_json::to_string_pretty(&instance).context("failed to write the instance")?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token(args) => {
            println!("{}", ochered_api::auth::mint_from_args(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate(args) => ochered_simulator::run(args).await,
    }
}

async fn authorities(
    store: &dyn ochered_store::EventStore,
    only: Option<String>,
) -> anyhow::Result<Vec<String>> {
    Ok(match only {
        Some(a) => vec![a],
        None => store
            .authorities()
            .await
            .context("failed to list authorities")?,
    })
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("OCHERED_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
