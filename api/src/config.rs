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
    /// Most commands waiting per authority before the server answers 503 [default: 65536].
    #[arg(long, env = "OCHERED_QUEUE_MAX")]
    pub queue_max: Option<usize>,
    /// Most commands per group commit [default: 2048].
    #[arg(long, env = "OCHERED_BATCH_MAX")]
    pub batch_max: Option<usize>,
    /// Request timeout in milliseconds [default: 10000].
    #[arg(long, env = "OCHERED_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Largest request body in bytes [default: 65536].
    #[arg(long, env = "OCHERED_BODY_LIMIT_BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// Allowed CORS origin; CORS is off unless set.
    #[arg(long, env = "OCHERED_CORS_ORIGIN")]
    pub cors_origin: Option<String>,
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
    batch_max: Option<usize>,
    request_timeout_ms: Option<u64>,
    body_limit_bytes: Option<usize>,
    cors_origin: Option<String>,
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
    pub batch_max: usize,
    pub request_timeout_ms: u64,
    pub body_limit_bytes: usize,
    pub cors_origin: Option<String>,
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
            .field("batch_max", &self.batch_max)
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
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("failed to read {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let jwt_secret_is_default = jwt_secret.is_none();
        let database_url = args
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| "sqlite://ochered.db".into());
        let defaults = WebhookConfig::default();
        let webhooks = WebhookConfig {
            url: args.webhook_url.or(file.webhook_url),
            secret: args
                .webhook_secret
                .or(file.webhook_secret)
                .map(String::into_bytes),
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
            person_secret: args
                .person_secret
                .or(file.person_secret)
                .unwrap_or_else(|| DEV_PERSON_SECRET.into())
                .into_bytes(),
            queue_max: args.queue_max.or(file.queue_max).unwrap_or(65_536),
            batch_max: args.batch_max.or(file.batch_max).unwrap_or(2048),
            request_timeout_ms: args
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .unwrap_or(10_000),
            body_limit_bytes: args
                .body_limit_bytes
                .or(file.body_limit_bytes)
                .unwrap_or(64 * 1024),
            cors_origin: args.cors_origin.or(file.cors_origin),
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
        std::fs::write(&path, "queue_max = 7\nbatch_max = 9\nno_demo = true\n").unwrap();
        let config = ServerConfig::resolve(ServeArgs {
            config: Some(path),
            batch_max: Some(3),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.queue_max, 7);
        assert_eq!(config.batch_max, 3);
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
