//! Server configuration. Every setting of `ochered serve` is declared once, in [`Settings`]:
//! its flag, its `OCHERED_*` variable, its key in the TOML file (`--config`) and its default.
//! Precedence: the flag, then the variable, then the file, then the default.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};

/// The event log `ochered` opens when none is named.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://ochered.db";

/// The settings of `ochered serve`, one declaration each. A key of the TOML file is the
/// field's name; the flag is the same name in kebab case.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "OCHERED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Event log: a SQLite file or a postgres:// URL.
    #[arg(long, env = "OCHERED_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// File holding the database URL (it may carry a password), used when no database URL
    /// is given.
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
    /// File holding the server's Ed25519 key (its 32-byte seed as 64 hex digits, as
    /// `ochered checkpoint keygen` writes it), which signs receipts and tree heads
    /// (docs/TRANSPARENCY.md); without it a development key is used, with a warning.
    #[arg(long, env = "OCHERED_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// The signing key itself, 64 hex digits (instead of --signing-key-file).
    #[arg(long, env = "OCHERED_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// Seconds between two signed tree heads of an authority, signed only when its log grew.
    #[arg(long, env = "OCHERED_TREE_HEAD_INTERVAL_S", default_value_t = 10)]
    pub tree_head_interval_s: u64,
    /// Most commands waiting per authority before the server answers 503.
    #[arg(long, env = "OCHERED_QUEUE_MAX", default_value_t = 65_536)]
    pub queue_max: usize,
    /// Most API reads, and as many writes, in progress at once (under /api/v1/); past it the
    /// server answers 503 `overloaded` with Retry-After at once; 0 turns the bound off.
    #[arg(long, env = "OCHERED_MAX_IN_FLIGHT", default_value_t = crate::http::admission::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// The wait in front of an authority's writer that admission control accepts, in
    /// milliseconds: while the writer's queue stands longer than this (the smallest wait over
    /// its last 100 ms), a write is answered 503 with Retry-After at once; a passing burst is
    /// queued. 0 turns the check off.
    #[arg(long, env = "OCHERED_ADMISSION_TARGET_MS", default_value_t = crate::http::admission::DEFAULT_TARGET_MS)]
    pub admission_target_ms: u64,
    /// Most commands per group commit.
    #[arg(long, env = "OCHERED_BATCH_MAX", default_value_t = 2048)]
    pub batch_max: usize,
    /// Request timeout in milliseconds.
    #[arg(long, env = "OCHERED_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Largest request body in bytes.
    #[arg(long, env = "OCHERED_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// An origin allowed to call the API from a browser, e.g. https://portal.example (repeat
    /// the flag or separate with commas); CORS is off unless set. In the file: a list
    /// (`cors_origins = [...]`) or a comma-separated text (`cors_origin = "..."`).
    #[arg(long, env = "OCHERED_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(alias = "cors_origins", deserialize_with = "one_or_many")]
    pub cors_origin: Vec<String>,
    /// Submissions (applications, bookings) per minute per client; 0 turns the limit off.
    #[arg(long, env = "OCHERED_RATE_LIMIT_PER_MINUTE", default_value_t = 30)]
    pub rate_limit_per_minute: u32,
    /// Submissions a client may make at once before the per-minute rate applies.
    #[arg(long, env = "OCHERED_RATE_LIMIT_BURST", default_value_t = 20)]
    pub rate_limit_burst: u32,
    /// Save a snapshot every N events per authority.
    #[arg(long, env = "OCHERED_SNAPSHOT_EVERY", default_value_t = 200_000)]
    pub snapshot_every: u64,
    /// The demo authority's id.
    #[arg(long, env = "OCHERED_DEMO_AUTHORITY", default_value = "demo")]
    pub demo_authority: String,
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
    /// Timeout of one webhook delivery in milliseconds.
    #[arg(long, env = "OCHERED_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000)]
    pub webhook_timeout_ms: u64,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    #[arg(
        long,
        env = "OCHERED_WEBHOOK_BACKOFF_INITIAL_MS",
        default_value_t = 500
    )]
    pub webhook_backoff_initial_ms: u64,
    /// Longest retry delay in milliseconds.
    #[arg(long, env = "OCHERED_WEBHOOK_BACKOFF_MAX_MS", default_value_t = 60_000)]
    pub webhook_backoff_max_ms: u64,
    /// Attempts before a notification is given up (logged and counted); 0 retries for ever.
    #[arg(long, env = "OCHERED_WEBHOOK_MAX_ATTEMPTS", default_value_t = 0)]
    pub webhook_max_attempts: u32,
    /// Notifications in flight at once per authority; 1 keeps strict log order.
    #[arg(long, env = "OCHERED_WEBHOOK_CONCURRENCY", default_value_t = 1)]
    pub webhook_concurrency: usize,
    /// The OpenID Connect provider's issuer (the tokens' `iss`), e.g.
    /// https://id.example/realms/city; with it, RS256 and ES256 tokens signed with the
    /// provider's keys are accepted (docs/OPERATIONS.md). Needs the audience and a JWKS.
    #[arg(long, env = "OCHERED_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience (`aud`) the provider gives this server's tokens: its client id.
    #[arg(long, env = "OCHERED_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// A file with the provider's public keys (JWKS), read at start and again when a token
    /// names a key it does not hold.
    #[arg(long, env = "OCHERED_OIDC_JWKS_FILE")]
    pub oidc_jwks_file: Option<PathBuf>,
    /// The provider's JWKS URL (http:// only: this build has no TLS client), fetched on
    /// first use, again when a token names an unknown key, and when the keys grow old.
    #[arg(long, env = "OCHERED_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    /// Least seconds between two reads of the keys caused by tokens naming unknown keys.
    #[arg(long, env = "OCHERED_OIDC_JWKS_REFETCH_S", default_value_t = 60)]
    pub oidc_jwks_refetch_s: u64,
    /// Seconds after which the keys are read again before the next token is checked.
    #[arg(long, env = "OCHERED_OIDC_JWKS_MAX_AGE_S", default_value_t = 3600)]
    pub oidc_jwks_max_age_s: u64,
    /// Clock skew allowed on the tokens' `exp` and `nbf`, in seconds.
    #[arg(long, env = "OCHERED_OIDC_LEEWAY_S", default_value_t = 60)]
    pub oidc_leeway_s: u64,
    /// The claim holding the caller's subject (a name, or a dotted path).
    #[arg(long, env = "OCHERED_OIDC_SUBJECT_CLAIM", default_value = "sub")]
    pub oidc_subject_claim: String,
    /// The claim holding the caller's role, a text or a list of texts (a name, or a dotted
    /// path such as realm_access.roles).
    #[arg(long, env = "OCHERED_OIDC_ROLE_CLAIM", default_value = "role")]
    pub oidc_role_claim: String,
    /// Provider role values and the role each stands for, e.g. school-officer=officer (repeat
    /// the flag or separate with commas); a value not listed counts when it is a role's name.
    #[arg(long, env = "OCHERED_OIDC_ROLE_MAP", value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    pub oidc_role_map: Vec<String>,
    /// Export the request and commit spans to this OpenTelemetry collector (OTLP over HTTP,
    /// JSON), e.g. http://127.0.0.1:4318 (sent to its /v1/traces); off unless set.
    #[arg(long, env = "OCHERED_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// TOML file with any of the settings above (snake_case keys) except the cluster's.
    #[arg(long, env = "OCHERED_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Read from the command line or the environment only.
    #[command(flatten)]
    #[serde(skip)]
    pub cluster: ClusterArgs,
}

/// `--cluster` and its two companions: read from the command line or the environment only.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
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

impl Default for Settings {
    /// Every setting at its declared default (the environment is not read).
    fn default() -> Self {
        let command = Settings::augment_args(clap::Command::new("serve").no_binary_name(true))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(std::iter::empty::<OsString>())
            .expect("the declared defaults parse");
        Settings::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

/// A list, or one comma-separated text.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(text) => text.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(list) => list,
    })
}

/// `ochered serve`'s flags: the [`Settings`] as parsed, and which of them were given as a
/// flag or an `OCHERED_*` variable (those win over the file; the others are defaults).
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub settings: Settings,
    given: BTreeSet<String>,
}

impl ServeArgs {
    /// The flags of `ochered serve` (without the program and command names), with the
    /// `OCHERED_*` variables of the environment.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Self::augment_args(clap::Command::new("serve").no_binary_name(true));
        Self::from_arg_matches(&command.try_get_matches_from(flags)?)
    }

    /// The settings with the file's values (`--config`) under the flags' and variables', and
    /// the names of the settings given anywhere (not left at their defaults).
    pub fn with_file(self) -> anyhow::Result<(Settings, BTreeSet<String>)> {
        let Some(path) = self.settings.config.clone() else {
            return Ok((self.settings, self.given));
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let parse = || format!("failed to parse {}", path.display());
        let file: Settings = toml::from_str(&text).with_context(parse)?;
        let keys: toml::Table = toml::from_str(&text).with_context(parse)?;
        let flags = serde_json::to_value(&self.settings)?;
        let mut merged = serde_json::to_value(&file)?;
        for key in &self.given {
            if let (Some(value), Some(slot)) = (flags.get(key), merged.get_mut(key)) {
                *slot = value.clone();
            }
        }
        let mut settings: Settings = serde_json::from_value(merged)?;
        settings.config = self.settings.config;
        settings.cluster = self.settings.cluster;
        let mut given = self.given;
        given.extend(keys.keys().map(|key| match key.as_str() {
            "cors_origins" => "cors_origin".to_owned(),
            key => key.to_owned(),
        }));
        Ok((settings, given))
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let given = matches
            .ids()
            .filter(|id| {
                matches!(
                    matches.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.as_str().to_owned())
            .collect();
        Ok(Self {
            settings: Settings::from_arg_matches(matches)?,
            given,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for ServeArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        Settings::augment_args(command)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Settings::augment_args_for_update(command)
    }
}

/// Where the identity provider's public keys are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file (kept up to date by the operator, e.g. by a timer fetching it).
    File(PathBuf),
    /// The provider's JWKS endpoint (`http://` only).
    Url(String),
}

/// The OpenID Connect settings ([`crate::http::oidc`]), checked.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (this server's client id at the provider).
    pub audience: String,
    pub jwks: JwksSource,
    /// Least time between two reads of the keys caused by unknown key ids.
    pub refetch_min: std::time::Duration,
    /// Keys older than this are read again before a token is checked.
    pub max_age: std::time::Duration,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// The claim holding the subject: a name, or a dotted path into nested objects.
    pub subject_claim: String,
    /// The claim holding the role: a text or a list of texts (a name or a dotted path).
    pub role_claim: String,
    /// Provider values and the role name each stands for.
    pub role_map: Vec<(String, String)>,
}

impl OidcConfig {
    /// The provider's settings, or none when no issuer is set.
    fn from_settings(s: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(issuer) = s.oidc_issuer.clone() else {
            if s.oidc_audience.is_some() || s.oidc_jwks_file.is_some() || s.oidc_jwks_url.is_some()
            {
                anyhow::bail!("oidc_issuer: needed with the other oidc_ settings");
            }
            return Ok(None);
        };
        let audience = s
            .oidc_audience
            .clone()
            .ok_or_else(|| anyhow::anyhow!("oidc_audience: needed with oidc_issuer"))?;
        let jwks = match (&s.oidc_jwks_file, &s.oidc_jwks_url) {
            (Some(file), None) => JwksSource::File(file.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            _ => anyhow::bail!(
                "oidc_jwks_file or oidc_jwks_url (one of them) is needed with oidc_issuer"
            ),
        };
        let role_map = s
            .oidc_role_map
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (value, role) = entry.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("oidc_role_map: {entry:?} is not `provider-value=role`")
                })?;
                Ok((value.trim().to_owned(), role.trim().to_owned()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(Self {
            issuer,
            audience,
            jwks,
            refetch_min: std::time::Duration::from_secs(s.oidc_jwks_refetch_s),
            max_age: std::time::Duration::from_secs(s.oidc_jwks_max_age_s),
            leeway_s: s.oidc_leeway_s,
            subject_claim: s.oidc_subject_claim.clone(),
            role_claim: s.oidc_role_claim.clone(),
            role_map,
        }))
    }
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
    args: &ClusterArgs,
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

/// The rate limit of submissions per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained submissions per minute per client; 0 turns limiting off.
    pub per_minute: u32,
    /// Submissions a client may make at once before the sustained rate applies (at least 1).
    pub burst: u32,
}

impl Default for RateLimitConfig {
    /// The declared defaults ([`Settings`]): 30 a minute with bursts of 20, so that a
    /// parent's handful of submissions, retries included, never meet the limit while a
    /// script in a loop is held to one every two seconds.
    fn default() -> Self {
        Self::from(&Settings::default())
    }
}

impl From<&Settings> for RateLimitConfig {
    fn from(settings: &Settings) -> Self {
        Self {
            per_minute: settings.rate_limit_per_minute,
            burst: settings.rate_limit_burst,
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

/// The signing key used when none is configured: derived from the development secret, so
/// that it is the same across restarts; anyone can derive it, and the server warns.
pub fn development_signing_key() -> ochered_transparency::SigningKey {
    use sha2::Digest;
    let seed: [u8; 32] =
        sha2::Sha256::digest(format!("{DEV_JWT_SECRET}/signing-key").as_bytes()).into();
    ochered_transparency::SigningKey::from_bytes(&seed)
}

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
    /// Tokens of an OpenID Connect provider; none: HS256 tokens only.
    pub oidc: Option<OidcConfig>,
    /// Where request and commit spans are exported (OTLP/HTTP); none: not exported.
    pub otlp_endpoint: Option<String>,
    /// Signs receipts and tree heads; none: a development key (the server warns).
    pub signing_key: Option<ochered_transparency::SigningKey>,
    /// Time between two signed tree heads of an authority whose log grew.
    pub tree_head_interval: std::time::Duration,
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
    /// Off, with the declared defaults ([`Settings`]) for the rest.
    fn default() -> Self {
        let settings = Settings::default();
        Self {
            url: None,
            secret: None,
            cursor_file: None,
            timeout_ms: settings.webhook_timeout_ms,
            backoff_initial_ms: settings.webhook_backoff_initial_ms,
            backoff_max_ms: settings.webhook_backoff_max_ms,
            max_attempts: settings.webhook_max_attempts,
            concurrency: settings.webhook_concurrency,
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
    /// The configuration of these flags and their file, secrets read from their files.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let (s, given) = args.with_file()?;
        let oidc = OidcConfig::from_settings(&s)?;
        let rate_limit = RateLimitConfig::from(&s);
        rate_limit.check()?;
        let jwt_secret = secret(s.jwt_secret, s.jwt_secret_file, "jwt_secret_file")?;
        let database_url = match (&s.database_url_file, given.contains("database_url")) {
            (Some(path), false) => read_secret_file(path, "database_url_file")?,
            _ => s.database_url.clone(),
        };
        let webhooks = WebhookConfig {
            url: s.webhook_url,
            secret: secret(
                s.webhook_secret,
                s.webhook_secret_file,
                "webhook_secret_file",
            )?
            .map(String::into_bytes),
            cursor_file: s
                .webhook_cursor_file
                .or_else(|| default_webhook_cursor_file(&database_url)),
            timeout_ms: s.webhook_timeout_ms,
            backoff_initial_ms: s.webhook_backoff_initial_ms,
            backoff_max_ms: s.webhook_backoff_max_ms,
            max_attempts: s.webhook_max_attempts,
            concurrency: s.webhook_concurrency.max(1),
        };
        let data_key = match (s.data_key, &s.data_key_file) {
            (Some(key), _) => Some(
                ochered_writer::privacy::MasterKey::from_hex(&key)
                    .map_err(|e| anyhow::anyhow!("data_key: {e}"))?,
            ),
            (None, Some(path)) => Some(
                ochered_writer::privacy::MasterKey::from_hex(&read_secret_file(
                    path,
                    "data_key_file",
                )?)
                .map_err(|e| anyhow::anyhow!("data_key_file {}: {e}", path.display()))?,
            ),
            (None, None) => None,
        };
        let signing_key = match (s.signing_key, &s.signing_key_file) {
            (Some(key), _) => Some(
                ochered_transparency::parse_secret_key(&key)
                    .map_err(|e| anyhow::anyhow!("signing_key: {e}"))?,
            ),
            (None, Some(path)) => Some(
                ochered_transparency::parse_secret_key(&read_secret_file(
                    path,
                    "signing_key_file",
                )?)
                .map_err(|e| anyhow::anyhow!("signing_key_file {}: {e}", path.display()))?,
            ),
            (None, None) => None,
        };
        if s.tree_head_interval_s == 0 {
            anyhow::bail!("tree_head_interval_s must be at least 1");
        }
        Ok(Self {
            signing_key,
            tree_head_interval: std::time::Duration::from_secs(s.tree_head_interval_s),
            listen: s.listen,
            database_url,
            seed_demo: !s.no_demo,
            jwt_secret_is_default: jwt_secret.is_none(),
            jwt_secret: jwt_secret
                .unwrap_or_else(|| DEV_JWT_SECRET.into())
                .into_bytes(),
            person_secret: secret(s.person_secret, s.person_secret_file, "person_secret_file")?
                .unwrap_or_else(|| DEV_PERSON_SECRET.into())
                .into_bytes(),
            data_key,
            queue_max: s.queue_max,
            max_in_flight: s.max_in_flight,
            admission_target_ms: s.admission_target_ms,
            batch_max: s.batch_max,
            request_timeout_ms: s.request_timeout_ms,
            body_limit_bytes: s.body_limit_bytes,
            cors_origins: cors_origins(s.cors_origin)?,
            rate_limit,
            snapshot_every: s.snapshot_every,
            demo_authority: s.demo_authority,
            webhooks,
            oidc,
            otlp_endpoint: s.otlp_endpoint,
        })
    }
}

/// A secret given inline, else read from its file, else none.
fn secret(
    inline: Option<String>,
    file: Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(secret), _) => Ok(Some(secret)),
        (None, Some(path)) => read_secret_file(&path, what).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a secret from a file (surrounding whitespace, such as the final newline, is
/// dropped); an empty file is refused. The secret itself never appears in an error.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what}: failed to read {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!("{what}: {} is empty", path.display());
    }
    Ok(secret.to_owned())
}

/// The CORS origins, each a bare `http(s)://host[:port]` origin; `*` is refused (name the
/// portals instead).
fn cors_origins(raw: Vec<String>) -> anyhow::Result<Vec<String>> {
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
mod tests;
