//! The `ochered` command: parses the command line and runs the server, the simulator or one
//! of the operator's and auditor's commands (the `ochered` library, `src/lib.rs`).

use std::process::ExitCode;

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

// Parsed once at start-up: the size of the largest variant (the server's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the HTTP server (seeds a demo authority on first start unless --no-demo).
    Serve(ochered_api::config::ServeArgs),
    /// Rebuild every authority's state from the log; print its state hash, events and time.
    Replay(ochered::ReplayArgs),
    /// Check every authority's hash chain; print the head or the first broken event. With a
    /// checkpoint, also check that every checkpointed head is still in the log with the same
    /// hash (detects truncation and rewritten-then-rehashed chains). With heads files, check
    /// the signed tree heads kept by auditors and mirrors: signatures, the consistency proofs
    /// between consecutive heads, forks between files, and (with a database) each head
    /// against the tree rebuilt from the log (docs/TRANSPARENCY.md). Exits 1 on any failure.
    Verify(ochered::VerifyArgs),
    /// Check a parent's receipt offline: its signature and, with --proof, that its event is
    /// in the tree a signed head covers (docs/TRANSPARENCY.md). Exits 1 if it does not verify.
    VerifyReceipt(ochered::VerifyReceiptArgs),
    /// Sign every authority's chain head (sequence and hash) with an Ed25519 key and write
    /// the checkpoint as JSON; keep it outside the database. `checkpoint keygen` makes a key.
    #[command(args_conflicts_with_subcommands = true)]
    Checkpoint(ochered::CheckpointArgs),
    /// Write every event as one JSON object per line (chain order, per authority), with its
    /// hashes and the event as JSON: readable without this program, and each v2 line rebuilds
    /// its exact stored record and hash.
    Export(ochered::ExportArgs),
    /// Run deferred acceptance on an instance file (docs/RULES.md#allocation-instance); print the result.
    Allocate(ochered::AllocateArgs),
    /// Print the allocation instance (docs/RULES.md#allocation-rounds) of a round, rebuilt from the log;
    /// `ochered allocate --instance` on it reproduces the round's placements.
    ExportInstance(ochered::ExportInstanceArgs),
    /// Copy a SQLite log while the server keeps writing (one consistent moment), with a
    /// checkpoint of every chain head signed by the checkpoint key stored inside the copy.
    /// Never overwrites FILE. For PostgreSQL use pg_dump or a base backup (docs/OPERATIONS.md).
    Backup(ochered::BackupArgs),
    /// Put a backup in place as the SQLite log once it proves itself: its checkpoint's
    /// signature holds, every chain verifies and every head is the signed one. Refuses a
    /// database a running process has open; replaces an existing one only with --force
    /// (which moves it aside). Exits 1 when the backup does not prove itself.
    Restore(ochered::RestoreArgs),
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
            ochered_api::serve(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay(args) => ochered::replay(args).await,
        Cmd::Verify(args) => ochered::verify(args).await,
        Cmd::VerifyReceipt(args) => ochered::verify_receipt(args).await,
        Cmd::Checkpoint(args) => ochered::checkpoint(args).await,
        Cmd::Export(args) => ochered::export(args).await,
        Cmd::Allocate(args) => ochered::allocate(args).await,
        Cmd::ExportInstance(args) => ochered::export_instance(args).await,
        Cmd::Backup(args) => ochered::backup(args).await,
        Cmd::Restore(args) => ochered::restore(args).await,
        Cmd::Token(args) => {
            println!("{}", ochered_api::http::auth::mint_from_args(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate(args) => ochered_simulator::run(args).await,
    }
}
