//! The operator's and auditor's commands of `ochered` (all but `serve`, `token` and
//! `simulate`, which their crates run): each one's arguments and what it does with its
//! files, the log and standard output. `src/main.rs` only parses the command line and calls
//! these; the exit code is the command's verdict (1: a check failed or was refused; an
//! error is 2).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// The process's allocator, for the `ochered` command and everything that links this crate
/// (the benchmarks name it with `use ochered as _`): mimalloc (feature `mimalloc`, on by
/// default), the system's otherwise. See docs/PERFORMANCE.md ("The allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the event log lives: a SQLite file (the default) or a PostgreSQL URL.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    #[arg(long, env = "OCHERED_DATABASE_URL", default_value = ochered_api::config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(clap::Subcommand)]
pub enum CheckpointCmd {
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

/// The arguments of `ochered replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this authority.
    #[arg(long)]
    pub authority: Option<String>,
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let ReplayArgs { store, authority } = args;
    let store = open_store(&store).await?;
    ochered_writer::audit::replay(store.as_ref(), authority.as_deref(), &mut stdout())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

/// The arguments of `ochered verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The log to check [default: sqlite://ochered.db; with --heads and no database, only
    /// the heads files are checked].
    #[arg(long, env = "OCHERED_DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long)]
    pub authority: Option<String>,
    /// A checkpoint file written by `ochered checkpoint`.
    #[arg(long, requires = "public_key")]
    pub checkpoint: Option<PathBuf>,
    /// A heads file (JSON Lines of published tree heads); repeat it for the files of
    /// several parties, which are then also compared with each other.
    #[arg(long = "heads", requires = "public_key")]
    pub heads: Vec<PathBuf>,
    /// The auditor's copy of the signer's public key (checkpoints and tree heads).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs {
        database_url,
        authority,
        checkpoint,
        heads,
        public_key,
    } = args;
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
    ok &=
        ochered_writer::audit::verify(store.as_ref(), authority.as_deref(), trusted, &mut stdout())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    if !heads.is_empty() {
        let key = read_transparency_key(public_key.as_deref())?;
        let mut trees = std::collections::HashMap::new();
        for authority in authorities(store.as_ref(), authority.clone()).await? {
            let tree = log_tree(store.as_ref(), &authority).await?;
            trees.insert(authority, tree);
        }
        ok &= report_heads(&heads, &key, Some(&trees), authority.as_deref()) == ExitCode::SUCCESS;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The arguments of `ochered verify-receipt`.
#[derive(clap::Args)]
pub struct VerifyReceiptArgs {
    /// The receipt file (from the confirmation page or the submission's answer).
    #[arg(long)]
    pub receipt: PathBuf,
    /// The inclusion proof (`GET …/applications/{number}/proof`).
    #[arg(long)]
    pub proof: Option<PathBuf>,
    /// Your copy of the server's public key.
    #[arg(long)]
    pub public_key: PathBuf,
}

pub async fn verify_receipt(args: VerifyReceiptArgs) -> anyhow::Result<ExitCode> {
    let VerifyReceiptArgs {
        receipt,
        proof,
        public_key,
    } = args;
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

/// The arguments of `ochered export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub authority: Option<String>,
    /// The output format (only `jsonl`).
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Where to write [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportArgs {
        store,
        authority,
        format: _,
        out,
    } = args;
    let store = open_store(&store).await?;
    let written = match &out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            let mut file = std::io::BufWriter::new(file);
            ochered_writer::audit::export_jsonl(store.as_ref(), authority.as_deref(), &mut file)
                .await
                .map_err(|e| anyhow::anyhow!(e))?
        }
        None => {
            let mut out = std::io::BufWriter::new(stdout());
            ochered_writer::audit::export_jsonl(store.as_ref(), authority.as_deref(), &mut out)
                .await
                .map_err(|e| anyhow::anyhow!(e))?
        }
    };
    eprintln!("exported {written} events");
    Ok(ExitCode::SUCCESS)
}

/// The arguments of `ochered allocate`.
#[derive(clap::Args)]
pub struct AllocateArgs {
    #[arg(long)]
    pub instance: PathBuf,
}

pub async fn allocate(args: AllocateArgs) -> anyhow::Result<ExitCode> {
    let AllocateArgs { instance } = args;
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

/// The arguments of `ochered export-instance`.
#[derive(clap::Args)]
pub struct ExportInstanceArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The round's id.
    #[arg(long)]
    pub round: String,
    /// The authority that ran the round (needed when the log holds several).
    #[arg(long)]
    pub authority: Option<String>,
}

pub async fn export_instance(args: ExportInstanceArgs) -> anyhow::Result<ExitCode> {
    let ExportInstanceArgs {
        store,
        round,
        authority,
    } = args;
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

/// The arguments of `ochered checkpoint`.
#[derive(clap::Args)]
pub struct CheckpointArgs {
    #[command(subcommand)]
    pub action: Option<CheckpointCmd>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The secret key file (from `ochered checkpoint keygen`).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Where to write the checkpoint [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let CheckpointArgs {
        action,
        store,
        key,
        out,
    } = args;
    if let Some(CheckpointCmd::Keygen {
        out_secret,
        out_public,
    }) = action
    {
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
        return Ok(ExitCode::SUCCESS);
    }
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

/// The arguments of `ochered backup`.
#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The backup file to create.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The checkpoint secret key (from `ochered checkpoint keygen`).
    #[arg(long, env = "OCHERED_CHECKPOINT_KEY_FILE")]
    pub key: PathBuf,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let BackupArgs { store, out, key } = args;
    let text = std::fs::read_to_string(&key)
        .with_context(|| format!("failed to read {}", key.display()))?;
    let key = ochered_store::checkpoint::parse_secret_key(&text)
        .with_context(|| format!("{}", key.display()))?;
    let started_at = chrono::Utc::now();
    let report =
        match ochered_store::backup::backup_sqlite(&store.database_url, &out, &key, started_at)
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

/// The arguments of `ochered restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup file (from `ochered backup`).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The public key of the checkpoint key that signed the backup.
    #[arg(long)]
    pub public_key: PathBuf,
    /// Replace an existing database (moved aside to <file>.before-restore-<time>).
    #[arg(long)]
    pub force: bool,
    /// The server's webhook cursor file, if not the default beside the SQLite file: its
    /// positions are moved back to the restored heads, so that events written after the
    /// restore are notified.
    #[arg(long, env = "OCHERED_WEBHOOK_CURSOR_FILE")]
    pub webhook_cursor_file: Option<PathBuf>,
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let RestoreArgs {
        from,
        store,
        public_key,
        force,
        webhook_cursor_file,
    } = args;
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
