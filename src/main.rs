//! The `ochered` command: runs the server and the operator's and auditor's tools.

use std::path::PathBuf;
use std::process::ExitCode;

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
    #[arg(long, env = "OCHERED_DATABASE_URL", default_value = ochered_api::config::DEFAULT_DATABASE_URL)]
    database_url: String,
}

// Parsed once at start-up: the size of the largest variant (the server's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Check every authority's hash chain; print the head or the first broken event. With a
    /// checkpoint, also check that every checkpointed head is still in the log with the same
    /// hash (detects truncation and rewritten-then-rehashed chains). With heads files, check
    /// the signed tree heads kept by auditors and mirrors: signatures, the consistency proofs
    /// between consecutive heads, forks between files, and (with a database) each head
    /// against the tree rebuilt from the log (docs/TRANSPARENCY.md). Exits 1 on any failure.
    Verify {
        /// The log to check [default: sqlite://ochered.db; with --heads and no database, only
        /// the heads files are checked].
        #[arg(long, env = "OCHERED_DATABASE_URL")]
        database_url: Option<String>,
        #[arg(long)]
        authority: Option<String>,
        /// A checkpoint file written by `ochered checkpoint`.
        #[arg(long, requires = "public_key")]
        checkpoint: Option<PathBuf>,
        /// A heads file (JSON Lines of published tree heads); repeat it for the files of
        /// several parties, which are then also compared with each other.
        #[arg(long = "heads", requires = "public_key")]
        heads: Vec<PathBuf>,
        /// The auditor's copy of the signer's public key (checkpoints and tree heads).
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Check a parent's receipt offline: its signature and, with --proof, that its event is
    /// in the tree a signed head covers (docs/TRANSPARENCY.md). Exits 1 if it does not verify.
    VerifyReceipt {
        /// The receipt file (from the confirmation page or the submission's answer).
        #[arg(long)]
        receipt: PathBuf,
        /// The inclusion proof (`GET …/applications/{number}/proof`).
        #[arg(long)]
        proof: Option<PathBuf>,
        /// Your copy of the server's public key.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Sign every authority's chain head (sequence and hash) with an Ed25519 key and write
    /// the checkpoint as JSON; keep it outside the database. `checkpoint keygen` makes a key.
    #[command(args_conflicts_with_subcommands = true)]
    Checkpoint {
        #[command(subcommand)]
        action: Option<CheckpointCmd>,
        #[command(flatten)]
        store: StoreArgs,
        /// The secret key file (from `ochered checkpoint keygen`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to write the checkpoint [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write every event as one JSON object per line (chain order, per authority), with its
    /// hashes and the event as JSON: readable without this program, and each v2 line rebuilds
    /// its exact stored record and hash.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        authority: Option<String>,
        /// The output format (only `jsonl`).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Where to write [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run deferred acceptance on an instance file (docs/RULES.md#allocation-instance); print the result.
    Allocate {
        #[arg(long)]
        instance: PathBuf,
    },
    /// Print the allocation instance (docs/RULES.md#allocation-rounds) of a round, rebuilt from the log;
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
    /// Copy a SQLite log while the server keeps writing (one consistent moment), with a
    /// checkpoint of every chain head signed by the checkpoint key stored inside the copy.
    /// Never overwrites FILE. For PostgreSQL use pg_dump or a base backup (docs/OPERATIONS.md).
    Backup {
        #[command(flatten)]
        store: StoreArgs,
        /// The backup file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The checkpoint secret key (from `ochered checkpoint keygen`).
        #[arg(long, env = "OCHERED_CHECKPOINT_KEY_FILE")]
        key: PathBuf,
    },
    /// Put a backup in place as the SQLite log once it proves itself: its checkpoint's
    /// signature holds, every chain verifies and every head is the signed one. Refuses a
    /// database a running process has open; replaces an existing one only with --force
    /// (which moves it aside). Exits 1 when the backup does not prove itself.
    Restore {
        /// The backup file (from `ochered backup`).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// The public key of the checkpoint key that signed the backup.
        #[arg(long)]
        public_key: PathBuf,
        /// Replace an existing database (moved aside to <file>.before-restore-<time>).
        #[arg(long)]
        force: bool,
        /// The server's webhook cursor file, if not the default beside the SQLite file: its
        /// positions are moved back to the restored heads, so that events written after the
        /// restore are notified.
        #[arg(long, env = "OCHERED_WEBHOOK_CURSOR_FILE")]
        webhook_cursor_file: Option<PathBuf>,
    },
    /// Mint a development token for a role (parent, officer, registrar, auditor, admin).
    Token(ochered_api::config::TokenArgs),
    /// Rehearse an enrollment-day surge (in process or over HTTP), audit the log, report.
    Simulate(ochered_simulator::SimulateArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
}

#[derive(Subcommand)]
enum CheckpointCmd {
    /// Make a new Ed25519 key pair for checkpoints (never overwrites a file).
    Keygen {
        /// The secret key file to create (mode 0600); the signer keeps it.
        #[arg(long)]
        out_secret: PathBuf,
        /// The public key file to create; auditors keep a copy.
        #[arg(long)]
        out_public: PathBuf,
    },
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
        Cmd::Replay { store, authority } => {
            let store = open_store(&store).await?;
            ochered_writer::audit::replay(store.as_ref(), authority.as_deref(), &mut stdout())
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            database_url,
            authority,
            checkpoint,
            heads,
            public_key,
        } => {
            // Read and check the checkpoint first: an unreadable file is an error (exit 2).
            let checkpoint = match (checkpoint, &public_key) {
                (Some(file), Some(key)) => Some(read_checkpoint(&file, key)?),
                _ => None,
            };
            let heads = read_heads_files(&heads)?;
            let database_url = match database_url {
                Some(url) => url,
                None if !heads.is_empty() => {
                    let key = read_transparency_key(public_key.as_deref())?;
                    return Ok(report_heads(&heads, &key, None, authority.as_deref()));
                }
                None => ochered_api::config::DEFAULT_DATABASE_URL.to_string(),
            };
            let store = open_store(&StoreArgs { database_url }).await?;
            let mut ok = true;
            if let Some(checkpoint) = &checkpoint {
                match checkpoint {
                    Ok(checkpoint) => println!(
                        "checkpoint ok: signature valid, created_at={} authorities={}",
                        checkpoint.created_at,
                        checkpoint.heads.len()
                    ),
                    Err(error) => {
                        ok = false;
                        println!("checkpoint BROKEN: {error}");
                    }
                }
            }
            // Only a checkpoint whose signature holds is compared with the log.
            let trusted = checkpoint.as_ref().and_then(|c| c.as_ref().ok());
            ok &= ochered_writer::audit::verify(
                store.as_ref(),
                authority.as_deref(),
                trusted,
                &mut stdout(),
            )
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
            if !heads.is_empty() {
                let key = read_transparency_key(public_key.as_deref())?;
                let mut trees = std::collections::HashMap::new();
                for authority in authorities(store.as_ref(), authority.clone()).await? {
                    let tree = log_tree(store.as_ref(), &authority).await?;
                    trees.insert(authority, tree);
                }
                ok &= report_heads(&heads, &key, Some(&trees), authority.as_deref())
                    == ExitCode::SUCCESS;
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::VerifyReceipt {
            receipt,
            proof,
            public_key,
        } => {
            use ochered_transparency::{verify_receipt, InclusionProofFile, Receipt};
            let key = read_transparency_key(Some(&public_key))?;
            let receipt = Receipt::parse(&read_text(&receipt)?)?;
            let proof = match proof {
                Some(file) => Some(InclusionProofFile::parse(&read_text(&file)?)?),
                None => None,
            };
            match verify_receipt(&receipt, proof.as_ref(), &key) {
                Ok(verified) => {
                    let r = &verified.receipt;
                    println!(
                        "receipt ok: {} application {} of {}, registered {} ({}), is event authority_seq={} hash={}",
                        r.service, r.number, r.authority, r.registered_at, r.time_zone, r.authority_seq, r.event_hash
                    );
                    match verified.included_in {
                        Some(head) => println!(
                            "inclusion ok: the event is in the tree of {} events whose root {} the server signed at {}",
                            head.tree_size, head.root_hash, head.signed_at
                        ),
                        None => println!(
                            "no proof given: this is the server's signed word only; fetch the inclusion proof once a signed head covers the event"
                        ),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    println!("NOT VERIFIED: {error}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Export {
            store,
            authority,
            format: _,
            out,
        } => {
            let store = open_store(&store).await?;
            let written = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("failed to create {}", path.display()))?;
                    let mut file = std::io::BufWriter::new(file);
                    ochered_writer::audit::export_jsonl(
                        store.as_ref(),
                        authority.as_deref(),
                        &mut file,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?
                }
                None => {
                    let mut out = std::io::BufWriter::new(stdout());
                    ochered_writer::audit::export_jsonl(
                        store.as_ref(),
                        authority.as_deref(),
                        &mut out,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?
                }
            };
            eprintln!("exported {written} events");
            Ok(ExitCode::SUCCESS)
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
        Cmd::Checkpoint {
            action:
                Some(CheckpointCmd::Keygen {
                    out_secret,
                    out_public,
                }),
            ..
        } => {
            let public = ochered_store::checkpoint::write_key_pair(&out_secret, &out_public)
                .with_context(|| {
                    format!(
                        "failed to write {} and {} (existing files are never overwritten)",
                        out_secret.display(),
                        out_public.display()
                    )
                })?;
            println!(
                "wrote {} (keep it secret) and {}; public key {}",
                out_secret.display(),
                out_public.display(),
                ochered_store::checkpoint::public_key_text(&public).trim()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Checkpoint {
            action: None,
            store,
            key,
            out,
        } => {
            let Some(key) = key else {
                anyhow::bail!("--key is required (make one with `ochered checkpoint keygen`)");
            };
            let text = std::fs::read_to_string(&key)
                .with_context(|| format!("failed to read {}", key.display()))?;
            let key = ochered_store::checkpoint::parse_secret_key(&text)
                .with_context(|| format!("{}", key.display()))?;
            let store = ochered_store::open(&store.database_url)
                .await
                .context("failed to open the store")?;
            let checkpoint = match ochered_store::checkpoint::Checkpoint::create(
                store.as_ref(),
                &key,
                chrono::Utc::now(),
            )
            .await
            {
                Ok(checkpoint) => checkpoint,
                Err(error @ ochered_store::checkpoint::CheckpointError::Broken { .. }) => {
                    eprintln!("error: refusing to sign a broken log: {error}");
                    return Ok(ExitCode::from(1));
                }
                Err(error) => return Err(error.into()),
            };
            let json = checkpoint.to_json();
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{json}\n"))
                        .with_context(|| format!("failed to write {}", path.display()))?;
                    for head in &checkpoint.heads {
                        println!(
                            "authority={} authority_seq={} hash={}",
                            head.authority, head.authority_seq, head.hash
                        );
                    }
                    println!("wrote {}", path.display());
                }
                None => println!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Backup { store, out, key } => {
            let text = std::fs::read_to_string(&key)
                .with_context(|| format!("failed to read {}", key.display()))?;
            let key = ochered_store::checkpoint::parse_secret_key(&text)
                .with_context(|| format!("{}", key.display()))?;
            let started_at = chrono::Utc::now();
            let report = match ochered_store::backup::backup_sqlite(
                &store.database_url,
                &out,
                &key,
                started_at,
            )
            .await
            {
                Ok(report) => report,
                Err(error) => return refused_or_failed(error),
            };
            for head in &report.checkpoint.heads {
                println!(
                    "authority={} authority_seq={} hash={}",
                    head.authority, head.authority_seq, head.hash
                );
            }
            println!(
                "wrote {} ({} bytes): the log as of {} or later, with its signed checkpoint",
                report.file.display(),
                report.bytes,
                report.checkpoint.created_at
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Restore {
            from,
            store,
            public_key,
            force,
            webhook_cursor_file,
        } => {
            let text = std::fs::read_to_string(&public_key)
                .with_context(|| format!("failed to read {}", public_key.display()))?;
            let key = ochered_store::checkpoint::parse_public_key(&text)
                .with_context(|| format!("{}", public_key.display()))?;
            let report = match ochered_store::backup::restore_sqlite(
                &from,
                &store.database_url,
                &key,
                force,
                chrono::Utc::now(),
            )
            .await
            {
                Ok(report) => report,
                Err(error) => return refused_or_failed(error),
            };
            if let Some(aside) = &report.moved_aside {
                println!("moved the previous database to {}", aside.display());
            }
            for head in &report.checkpoint.heads {
                println!(
                    "authority={} checkpoint ok at authority_seq={} hash={}",
                    head.authority, head.authority_seq, head.hash
                );
            }
            let cursor_file = webhook_cursor_file
                .or_else(|| ochered_api::config::default_webhook_cursor_file(&store.database_url));
            if let Some(path) = cursor_file.filter(|p| p.exists()) {
                rewind_webhook_cursors(&path, &report.checkpoint)?;
            }
            println!(
                "restored {} from {}: complete up to its checkpoint of {}; checkpoint written to {}",
                report.database.display(),
                from.display(),
                report.checkpoint.created_at,
                report.checkpoint_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token(args) => {
            println!("{}", ochered_api::http::auth::mint_from_args(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate(args) => ochered_simulator::run(args).await,
    }
}

/// Moves each authority's webhook delivery position back to the restored head (or to the
/// start, for an authority the backup does not hold): positions past the head would make the
/// server skip the notifications of the events written after the restore.
fn rewind_webhook_cursors(
    path: &std::path::Path,
    checkpoint: &ochered_store::checkpoint::Checkpoint,
) -> anyhow::Result<()> {
    use ochered_api::status::webhooks::{Cursor, CursorFile};
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let listed: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the webhook cursor file {} is not valid", path.display()))?;
    let file = CursorFile::open(Some(path.to_path_buf()))?;
    let authorities = listed["cursors"]
        .as_object()
        .map(|c| c.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for authority in authorities {
        let Some(cursor) = file.get(&authority) else {
            continue;
        };
        let head = checkpoint
            .heads
            .iter()
            .find(|h| h.authority == authority)
            .map_or(0, |h| h.authority_seq);
        if cursor.seq >= head
            && cursor
                != (Cursor {
                    seq: head,
                    partial: 0,
                })
        {
            file.set(
                &authority,
                Cursor {
                    seq: head,
                    partial: 0,
                },
            );
            println!(
                "webhooks of {authority}: delivery position moved back from {} to the restored head {head}",
                cursor.seq
            );
        }
    }
    file.persist(true);
    Ok(())
}

/// A refused or unproven backup or restore is the operator's to fix (exit 1, the reason on
/// standard error); anything else is an error (exit 2).
fn refused_or_failed(error: ochered_store::backup::BackupError) -> anyhow::Result<ExitCode> {
    use ochered_store::backup::BackupError;
    match error {
        BackupError::Refused(_) | BackupError::Invalid(_) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(1))
        }
        other => Err(other.into()),
    }
}

/// A checkpoint file, `Ok` when it parses and its signature holds under the auditor's
/// public key. Files that cannot be read are errors.
fn read_checkpoint(
    file: &std::path::Path,
    public_key: &std::path::Path,
) -> anyhow::Result<
    Result<ochered_store::checkpoint::Checkpoint, ochered_store::checkpoint::CheckpointError>,
> {
    use ochered_store::checkpoint::{parse_public_key, Checkpoint};
    let text = std::fs::read_to_string(public_key)
        .with_context(|| format!("failed to read {}", public_key.display()))?;
    let key = parse_public_key(&text).with_context(|| format!("{}", public_key.display()))?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("failed to read {}", file.display()))?;
    Ok(Checkpoint::parse(&text).and_then(|c| c.verify_signature(&key).map(|()| c)))
}

async fn authorities(
    store: &dyn ochered_store::EventStore,
    only: Option<String>,
) -> anyhow::Result<Vec<String>> {
    ochered_writer::audit::authorities(store, only.as_deref())
        .await
        .context("failed to list authorities")
}

async fn open_store(
    args: &StoreArgs,
) -> anyhow::Result<std::sync::Arc<dyn ochered_store::EventStore>> {
    ochered_store::open(&args.database_url)
        .await
        .context("failed to open the store")
}

fn stdout() -> std::io::Stdout {
    std::io::stdout()
}

fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

/// The public key that tree heads and receipts must be signed with.
fn read_transparency_key(
    path: Option<&std::path::Path>,
) -> anyhow::Result<ochered_transparency::VerifyingKey> {
    let path = path.context("--public-key is required")?;
    Ok(ochered_transparency::parse_public_key(&read_text(path)?)?)
}

fn read_heads_files(paths: &[PathBuf]) -> anyhow::Result<Vec<ochered_transparency::HeadsFile>> {
    paths
        .iter()
        .map(|path| {
            let text = read_text(path)?;
            Ok(ochered_transparency::HeadsFile::parse(
                &path.display().to_string(),
                &text,
            )?)
        })
        .collect()
}

/// The authority's Merkle tree rebuilt from the event hashes in the log.
async fn log_tree(
    store: &dyn ochered_store::EventStore,
    authority: &str,
) -> anyhow::Result<ochered_transparency::LogTree> {
    let mut tree = ochered_transparency::LogTree::new();
    loop {
        let page = store.read(authority, tree.len() as i64, 10_000).await?;
        if page.is_empty() {
            return Ok(tree);
        }
        for event in page {
            tree.push(&event.hash);
        }
    }
}

/// Prints what `audit_heads` found; SUCCESS when nothing.
fn report_heads(
    files: &[ochered_transparency::HeadsFile],
    key: &ochered_transparency::VerifyingKey,
    log: Option<&std::collections::HashMap<String, ochered_transparency::LogTree>>,
    authority: Option<&str>,
) -> ExitCode {
    let files: Vec<_> = files
        .iter()
        .map(|f| ochered_transparency::HeadsFile {
            source: f.source.clone(),
            heads: f
                .heads
                .iter()
                .filter(|h| authority.is_none_or(|a| a == h.tree_head.authority))
                .cloned()
                .collect(),
        })
        .collect();
    let audit = ochered_transparency::audit_heads(&files, key, log);
    for p in &audit.problems {
        println!(
            "authority={} HEADS PROBLEM in {} entry {} (tree_size={}): {}",
            p.authority, p.source, p.entry, p.tree_size, p.reason
        );
    }
    for (authority, (size, root)) in &audit.newest {
        println!("authority={authority} newest head tree_size={size} root_hash={root}");
    }
    println!(
        "heads: {} signatures ok, {} consistency proofs ok{}, {} problems",
        audit.heads_verified,
        audit.proofs_verified,
        match log {
            Some(_) => format!(", {} matched to the log", audit.heads_matched_to_log),
            None => String::new(),
        },
        audit.problems.len()
    );
    if audit.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
