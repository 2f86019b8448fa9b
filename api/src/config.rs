//! Server configuration: flags, `OCHERED_*` environment variables and an optional TOML file,
//! in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Flags of `ochered serve`. Every flag also reads an `OCHERED_*` variable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "OCHERED_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Event log: a SQLite file or a postgres:// URL [default: sqlite://ochered.db].
    #[arg(long, env = "OCHERED_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the database URL (it may carry a password), instead of --database-url.
    #[arg(long, env = "OCHERED_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Do not seed the demo authority on first start.
    #[arg(long, env = "OCHERED_NO_DEMO")]
    pub no_demo: bool,
    /// Secret for HS256 bearer tokens.
    #[arg(long, env = "OCHERED_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the token secret (instead of --jwt-secret).
    #[arg(long, env = "OCHERED_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Secret for the keyed hash of identity documents (deduplication key).
    #[arg(long, env = "OCHERED_PERSON_SECRET", hide_env_values = true)]
    pub person_secret: Option<String>,
    /// File holding the document-hash secret (instead of --person-secret).
    #[arg(long, env = "OCHERED_PERSON_SECRET_FILE")]
    pub person_secret_file: Option<PathBuf>,
    /// Master key (64 hex digits) wrapping the per-applicant keys of personal data; without
    /// it a development key is used, with a warning. Generate one with
    /// `head -c 32 /dev/urandom | xxd -p -c 64`.
    #[arg(long, env = "OCHERED_DATA_KEY", hide_env_values = true)]
    pub data_key: Option<String>,
    /// File holding the master data key (instead of --data-key).
    #[arg(long, env = "OCHERED_DATA_KEY_FILE")]
    pub data_key_file: Option<PathBuf>,
    /// Most commands waiting per authority before the server answers 503 [default: 65536].
    #[arg(long, env = "OCHERED_QUEUE_MAX")]
    pub queue_max: Option<usize>,
    /// Most API reads, and as many writes, in progress at once (under /api/v1/); past it the
    /// server answers 503 `overloaded` with Retry-After at once; 0 turns the bound off
    /// [default: 1024].
    #[arg(long, env = "OCHERED_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// The wait in front of an authority's writer that admission control accepts, in
    /// milliseconds: a write that would wait longer (queued commands over the writer's
    /// measured drain rate) is answered 503 with Retry-After at once; 0 turns the check off
    /// [default: 50].
    #[arg(long, env = "OCHERED_ADMISSION_TARGET_MS")]
    pub admission_target_ms: Option<u64>,
    /// Most commands per group commit [default: 2048].
    #[arg(long, env = "OCHERED_BATCH_MAX")]
    pub batch_max: Option<usize>,
    /// Request timeout in milliseconds [default: 10000].
    #[arg(long, env = "OCHERED_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Largest request body in bytes [default: 65536].
    #[arg(long, env = "OCHERED_BODY_LIMIT_BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// An origin allowed to call the API from a browser, e.g. https://portal.example (repeat
    /// the flag or separate with commas); CORS is off unless set.
    #[arg(long, env = "OCHERED_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Submissions (applications, bookings) per minute per client; 0 turns the limit off
    /// [default: 30].
    #[arg(long, env = "OCHERED_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Submissions a client may make at once before the per-minute rate applies [default: 20].
    #[arg(long, env = "OCHERED_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Save a snapshot every N events per authority [default: 200000].
    #[arg(long, env = "OCHERED_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// The demo authority's id [default: demo].
    #[arg(long, env = "OCHERED_DEMO_AUTHORITY")]
    pub demo_authority: Option<String>,
    /// Status-change webhooks are POSTed here (at least once, in log order); off unless set.
    #[arg(long, env = "OCHERED_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Key of the HMAC-SHA256 signature of each webhook body (`X-Ochered-Signature`).
    #[arg(long, env = "OCHERED_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// File holding the webhook signature key (instead of --webhook-secret).
    #[arg(long, env = "OCHERED_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the last delivered position per authority [default: the SQLite file's
    /// path + `.webhooks.json`, or `ochered-webhooks.json` for PostgreSQL].
    #[arg(long, env = "OCHERED_WEBHOOK_CURSOR_FILE")]
    pub webhook_cursor_file: Option<PathBuf>,
    /// Timeout of one webhook delivery in milliseconds [default: 5000].
    #[arg(long, env = "OCHERED_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// First retry delay in milliseconds; doubles per attempt, with jitter [default: 500].
    #[arg(long, env = "OCHERED_WEBHOOK_BACKOFF_INITIAL_MS")]
    pub webhook_backoff_initial_ms: Option<u64>,
    /// Longest retry delay in milliseconds [default: 60000].
    #[arg(long, env = "OCHERED_WEBHOOK_BACKOFF_MAX_MS")]
    pub webhook_backoff_max_ms: Option<u64>,
    /// Attempts before a notification is given up (logged and counted); 0 retries for ever
    /// [default: 0].
    #[arg(long, env = "OCHERED_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// Notifications in flight at once per authority; 1 keeps strict log order [default: 1].
    #[arg(long, env = "OCHERED_WEBHOOK_CONCURRENCY")]
    pub webhook_concurrency: Option<usize>,
    /// TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "OCHERED_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cluster mode (PostgreSQL only): several nodes share one database, one writer per
    /// authority (docs/SCALING.md). Needs --node-id and --advertise-url.
    #[arg(long, env = "OCHERED_CLUSTER")]
    pub cluster: bool,
    /// This node's id in the cluster (1-32 letters, digits, '-' or '_').
    #[arg(long, env = "OCHERED_NODE_ID", requires = "cluster")]
    pub node_id: Option<String>,
    /// The URL the other nodes forward writes to, e.g. http://10.0.0.5:8080.
    #[arg(long, env = "OCHERED_ADVERTISE_URL", requires = "cluster")]
    pub advertise_url: Option<String>,
}

/// `--cluster` settings.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node_id: String,
    /// How the other nodes reach this one (e.g. `http://10.0.0.5:8080`).
    pub advertise_url: String,
}

/// The cluster settings of `serve`, checked (none without --cluster).
pub fn cluster_options(
    args: &ServeArgs,
    database_url: &str,
) -> anyhow::Result<Option<ClusterOptions>> {
    if !args.cluster {
        return Ok(None);
    }
    if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
        anyhow::bail!("--cluster needs a postgres:// --database-url");
    }
    let node_id = args
        .node_id
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--cluster needs --node-id"))?;
    let advertise_url = args
        .advertise_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--cluster needs --advertise-url"))?;
    if !advertise_url.starts_with("http://") {
        anyhow::bail!("--advertise-url must be an http:// URL, got {advertise_url:?}");
    }
    Ok(Some(ClusterOptions {
        node_id,
        advertise_url,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    no_demo: Option<bool>,
    jwt_secret: Option<String>,
    jwt_secret_file: Option<PathBuf>,
    person_secret: Option<String>,
    queue_max: Option<usize>,
    max_in_flight: Option<usize>,
    admission_target_ms: Option<u64>,
    batch_max: Option<usize>,
    request_timeout_ms: Option<u64>,
    body_limit_bytes: Option<usize>,
    cors_origin: Option<String>,
    cors_origins: Option<Vec<String>>,
    rate_limit_per_minute: Option<u32>,
    rate_limit_burst: Option<u32>,
    person_secret_file: Option<PathBuf>,
    data_key: Option<String>,
    data_key_file: Option<PathBuf>,
    database_url_file: Option<PathBuf>,
    webhook_secret_file: Option<PathBuf>,
    snapshot_every: Option<u64>,
    demo_authority: Option<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    webhook_cursor_file: Option<PathBuf>,
    webhook_timeout_ms: Option<u64>,
    webhook_backoff_initial_ms: Option<u64>,
    webhook_backoff_max_ms: Option<u64>,
    webhook_max_attempts: Option<u32>,
    webhook_concurrency: Option<usize>,
}

/// The rate limit of submissions per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained submissions per minute per client; 0 turns limiting off.
    pub per_minute: u32,
    /// Submissions a client may make at once before the sustained rate applies (at least 1).
    pub burst: u32,
}

impl Default for RateLimitConfig {
    /// 30 a minute with bursts of 20: a parent's handful of submissions, retries included,
    /// never meet the limit; a script in a loop is held to one every two seconds.
    fn default() -> Self {
        Self {
            per_minute: 30,
            burst: 20,
        }
    }
}

impl RateLimitConfig {
    /// No limit.
    pub fn off() -> Self {
        Self {
            per_minute: 0,
            burst: 1,
        }
    }

    /// Refuses a zero burst while limiting is on.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.per_minute > 0 && self.burst == 0 {
            anyhow::bail!(
                "rate_limit_burst must be at least 1 (set rate_limit_per_minute = 0 to turn rate limiting off)"
            );
        }
        Ok(())
    }
}

/// The development secret used when none is configured; the server warns about it.
pub const DEV_JWT_SECRET: &str = "ochered-development-secret-change-me";
pub const DEV_PERSON_SECRET: &str = "ochered-demo-secret";

/// The resolved configuration.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub seed_demo: bool,
    pub jwt_secret: Vec<u8>,
    pub jwt_secret_is_default: bool,
    pub person_secret: Vec<u8>,
    pub queue_max: usize,
    /// API reads, and as many writes, in progress at once before the server sheds
    /// ([`crate::http::admission`]); 0: no bound.
    pub max_in_flight: usize,
    /// The wait in front of a writer past which writes are shed, in milliseconds
    /// ([`crate::http::admission`]); 0: no such check.
    pub admission_target_ms: u64,
    pub batch_max: usize,
    pub request_timeout_ms: u64,
    pub body_limit_bytes: usize,
    /// Origins allowed by CORS; none: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Submissions per client ([`crate::http::ratelimit`]).
    pub rate_limit: RateLimitConfig,
    /// Wraps the per-applicant keys of personal data; none: a development key derived from
    /// the development secret (the server warns).
    pub data_key: Option<ochered_writer::privacy::MasterKey>,
    pub snapshot_every: u64,
    pub demo_authority: String,
    /// Status-change webhooks (off when `url` is none).
    pub webhooks: WebhookConfig,
}

/// Where and how status-change webhooks are delivered.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The portal's endpoint; no webhooks when none.
    pub url: Option<String>,
    /// HMAC-SHA256 key; bodies are unsigned when none.
    pub secret: Option<Vec<u8>>,
    /// The durable delivery cursor; none keeps it in memory only (an in-memory database).
    pub cursor_file: Option<PathBuf>,
    pub timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// 0: retry for ever.
    pub max_attempts: u32,
    /// Notifications in flight at once per authority (1: strict log order).
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            cursor_file: None,
            timeout_ms: 5_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            max_attempts: 0,
            concurrency: 1,
        }
    }
}

/// The default cursor file: next to a SQLite file, in the working directory for PostgreSQL,
/// none for an in-memory database.
pub fn default_webhook_cursor_file(database_url: &str) -> Option<PathBuf> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Some(PathBuf::from("ochered-webhooks.json"));
    }
    if database_url.contains(":memory:") || database_url.contains("mode=memory") {
        return None;
    }
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty()).then(|| PathBuf::from(format!("{path}.webhooks.json")))
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("seed_demo", &self.seed_demo)
            .field("queue_max", &self.queue_max)
            .field("max_in_flight", &self.max_in_flight)
            .field("admission_target_ms", &self.admission_target_ms)
            .field("batch_max", &self.batch_max)
            .field("cors_origins", &self.cors_origins)
            .field("rate_limit", &self.rate_limit)
            .field("webhook_url", &self.webhooks.url.as_deref().map(redact_url))
            .finish_non_exhaustive()
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl ServerConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        use anyhow::Context;
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("failed to read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("failed to parse {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let secret_file = args.jwt_secret_file.or(file.jwt_secret_file);
        let jwt_secret = match (args.jwt_secret.or(file.jwt_secret), secret_file) {
            (Some(s), _) => Some(s),
            (None, Some(path)) => Some(read_secret_file(&path, "jwt_secret_file")?),
            (None, None) => None,
        };
        let jwt_secret_is_default = jwt_secret.is_none();
        let database_url = match (
            args.database_url.or(file.database_url),
            args.database_url_file.or(file.database_url_file),
        ) {
            (Some(url), _) => url,
            (None, Some(path)) => read_secret_file(&path, "database_url_file")?,
            (None, None) => "sqlite://ochered.db".into(),
        };
        let defaults = WebhookConfig::default();
        let webhooks = WebhookConfig {
            url: args.webhook_url.or(file.webhook_url),
            secret: match (
                args.webhook_secret.or(file.webhook_secret),
                args.webhook_secret_file.or(file.webhook_secret_file),
            ) {
                (Some(secret), _) => Some(secret.into_bytes()),
                (None, Some(path)) => {
                    Some(read_secret_file(&path, "webhook_secret_file")?.into_bytes())
                }
                (None, None) => None,
            },
            cursor_file: args
                .webhook_cursor_file
                .or(file.webhook_cursor_file)
                .or_else(|| default_webhook_cursor_file(&database_url)),
            timeout_ms: args
                .webhook_timeout_ms
                .or(file.webhook_timeout_ms)
                .unwrap_or(defaults.timeout_ms),
            backoff_initial_ms: args
                .webhook_backoff_initial_ms
                .or(file.webhook_backoff_initial_ms)
                .unwrap_or(defaults.backoff_initial_ms),
            backoff_max_ms: args
                .webhook_backoff_max_ms
                .or(file.webhook_backoff_max_ms)
                .unwrap_or(defaults.backoff_max_ms),
            max_attempts: args
                .webhook_max_attempts
                .or(file.webhook_max_attempts)
                .unwrap_or(defaults.max_attempts),
            concurrency: args
                .webhook_concurrency
                .or(file.webhook_concurrency)
                .unwrap_or(defaults.concurrency)
                .max(1),
        };
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid address")),
            database_url,
            seed_demo: !(args.no_demo || file.no_demo.unwrap_or(false)),
            jwt_secret: jwt_secret
                .unwrap_or_else(|| DEV_JWT_SECRET.into())
                .into_bytes(),
            jwt_secret_is_default,
            person_secret: match (
                args.person_secret.or(file.person_secret),
                args.person_secret_file.or(file.person_secret_file),
            ) {
                (Some(secret), _) => secret,
                (None, Some(path)) => read_secret_file(&path, "person_secret_file")?,
                (None, None) => DEV_PERSON_SECRET.into(),
            }
            .into_bytes(),
            data_key: match (
                args.data_key.or(file.data_key),
                args.data_key_file.or(file.data_key_file),
            ) {
                (Some(key), _) => Some(
                    ochered_writer::privacy::MasterKey::from_hex(&key)
                        .map_err(|e| anyhow::anyhow!("data_key: {e}"))?,
                ),
                (None, Some(path)) => Some(
                    ochered_writer::privacy::MasterKey::from_hex(&read_secret_file(
                        &path,
                        "data_key_file",
                    )?)
                    .map_err(|e| anyhow::anyhow!("data_key_file {}: {e}", path.display()))?,
                ),
                (None, None) => None,
            },
            queue_max: args.queue_max.or(file.queue_max).unwrap_or(65_536),
            max_in_flight: args
                .max_in_flight
                .or(file.max_in_flight)
                .unwrap_or(crate::http::admission::DEFAULT_MAX_IN_FLIGHT),
            admission_target_ms: args
                .admission_target_ms
                .or(file.admission_target_ms)
                .unwrap_or(crate::http::admission::DEFAULT_TARGET_MS),
            batch_max: args.batch_max.or(file.batch_max).unwrap_or(2048),
            request_timeout_ms: args
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .unwrap_or(10_000),
            body_limit_bytes: args
                .body_limit_bytes
                .or(file.body_limit_bytes)
                .unwrap_or(64 * 1024),
            cors_origins: cors_origins(args.cors_origin, file.cors_origins, file.cors_origin)?,
            rate_limit: {
                let defaults = RateLimitConfig::default();
                let rate_limit = RateLimitConfig {
                    per_minute: args
                        .rate_limit_per_minute
                        .or(file.rate_limit_per_minute)
                        .unwrap_or(defaults.per_minute),
                    burst: args
                        .rate_limit_burst
                        .or(file.rate_limit_burst)
                        .unwrap_or(defaults.burst),
                };
                rate_limit.check()?;
                rate_limit
            },
            snapshot_every: args
                .snapshot_every
                .or(file.snapshot_every)
                .unwrap_or(200_000),
            demo_authority: args
                .demo_authority
                .or(file.demo_authority)
                .unwrap_or_else(|| "demo".into()),
            webhooks,
        })
    }
}

/// Reads a secret from a file (surrounding whitespace, such as the final newline, is
/// dropped); an empty file is refused. The secret itself never appears in an error.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what}: failed to read {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!("{what}: {} is empty", path.display());
    }
    Ok(secret.to_owned())
}

/// The CORS origins from the flags (or `OCHERED_CORS_ORIGINS`), else from the file's
/// `cors_origins` list or `cors_origin` (comma-separated). Each must be a bare
/// `http(s)://host[:port]` origin; `*` is refused (name the portals instead).
fn cors_origins(
    flags: Vec<String>,
    list: Option<Vec<String>>,
    text: Option<String>,
) -> anyhow::Result<Vec<String>> {
    let raw = if !flags.is_empty() {
        flags
    } else if let Some(list) = list {
        list
    } else {
        text.map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut origins = Vec::new();
    for origin in raw.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        });
        if !valid {
            anyhow::bail!(
                "cors_origin: {origin:?} is not an origin like https://portal.example or http://localhost:3000 (no path, no '*')"
            );
        }
        if !origins.iter().any(|o| o == origin) {
            origins.push(origin.to_owned());
        }
    }
    Ok(origins)
}

/// Flags of `ochered token`.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// parent, officer, registrar, auditor or admin.
    #[arg(long)]
    pub role: String,
    /// The subject: an account id (no personal data).
    #[arg(long)]
    pub sub: String,
    /// Hours until the token expires.
    #[arg(long, default_value_t = 24)]
    pub ttl_hours: i64,
    #[arg(long, env = "OCHERED_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the token secret (instead of --jwt-secret).
    #[arg(long, env = "OCHERED_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "queue_max = 7\nbatch_max = 9\nmax_in_flight = 5\nadmission_target_ms = 20\nno_demo = true\n",
        )
        .unwrap();
        let config = ServerConfig::resolve(ServeArgs {
            config: Some(path),
            batch_max: Some(3),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.queue_max, 7);
        assert_eq!(config.batch_max, 3);
        assert_eq!(config.max_in_flight, 5);
        assert_eq!(config.admission_target_ms, 20);
        let defaults = ServerConfig::resolve(ServeArgs {
            max_in_flight: None,
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            defaults.max_in_flight,
            crate::http::admission::DEFAULT_MAX_IN_FLIGHT
        );
        assert_eq!(
            defaults.admission_target_ms,
            crate::http::admission::DEFAULT_TARGET_MS
        );
        assert!(!config.seed_demo);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(config.jwt_secret_is_default);
    }

    #[test]
    fn webhook_settings_resolve_with_a_cursor_file_beside_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "webhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_max_attempts = 4\n",
        )
        .unwrap();
        let config = ServerConfig::resolve(ServeArgs {
            config: Some(path),
            database_url: Some("sqlite:///var/lib/ochered/q.db".into()),
            webhook_backoff_max_ms: Some(1000),
            ..ServeArgs::default()
        })
        .unwrap();
        let w = &config.webhooks;
        assert_eq!(w.url.as_deref(), Some("http://127.0.0.1:9/hook"));
        assert_eq!(
            (w.max_attempts, w.backoff_max_ms, w.timeout_ms),
            (4, 1000, 5000)
        );
        assert_eq!(
            w.cursor_file.as_deref(),
            Some(std::path::Path::new("/var/lib/ochered/q.db.webhooks.json"))
        );
        assert_eq!(default_webhook_cursor_file("sqlite::memory:"), None);
        assert_eq!(
            default_webhook_cursor_file("q.db"),
            Some(PathBuf::from("q.db.webhooks.json"))
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "qeue_max = 7\n").unwrap();
        let error = ServerConfig::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("qeue_max"));
    }
}
