//! The settings: flags over the file over the declared defaults.

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
    let config = ServerConfig::resolve(
        ServeArgs::from_flags(["--config", path.to_str().unwrap(), "--batch-max", "3"]).unwrap(),
    )
    .unwrap();
    assert_eq!(config.queue_max, 7);
    assert_eq!(config.batch_max, 3);
    assert_eq!(config.max_in_flight, 5);
    assert_eq!(config.admission_target_ms, 20);
    let defaults = ServerConfig::resolve(ServeArgs::default()).unwrap();
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
    let config = ServerConfig::resolve(
        ServeArgs::from_flags([
            "--config",
            path.to_str().unwrap(),
            "--database-url",
            "sqlite:///var/lib/ochered/q.db",
            "--webhook-backoff-max-ms",
            "1000",
        ])
        .unwrap(),
    )
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
fn a_setting_given_anywhere_wins_over_its_file_form_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "sqlite:///from/url_file.db\n").unwrap();
    std::fs::write(
        &path,
        "database_url = \"sqlite:///from/file.db\"\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n",
    )
    .unwrap();
    let flags = |extra: &[&str]| {
        let mut flags = vec!["--config", path.to_str().unwrap()];
        flags.extend_from_slice(extra);
        ServerConfig::resolve(ServeArgs::from_flags(flags).unwrap()).unwrap()
    };
    // The file names a database URL: the URL file of the flags does not replace it.
    let config = flags(&["--database-url-file", url_file.to_str().unwrap()]);
    assert_eq!(config.database_url, "sqlite:///from/file.db");
    assert_eq!(
        config.cors_origins,
        ["https://a.example", "https://b.example"]
    );
    // A flag wins over the file, and a comma-separated text is a list too.
    let config = flags(&["--cors-origin", "https://c.example,https://d.example"]);
    assert_eq!(
        config.cors_origins,
        ["https://c.example", "https://d.example"]
    );
    // Without any URL, the URL file; without either, the declared default.
    let config = ServerConfig::resolve(
        ServeArgs::from_flags(["--database-url-file", url_file.to_str().unwrap()]).unwrap(),
    )
    .unwrap();
    assert_eq!(config.database_url, "sqlite:///from/url_file.db");
    let defaults = Settings::default();
    assert_eq!(defaults.database_url, DEFAULT_DATABASE_URL);
    assert_eq!(
        ServerConfig::resolve(ServeArgs::default())
            .unwrap()
            .queue_max,
        defaults.queue_max
    );
    assert_eq!(
        WebhookConfig::default().timeout_ms,
        defaults.webhook_timeout_ms
    );
    assert_eq!(RateLimitConfig::default().burst, defaults.rate_limit_burst);
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "qeue_max = 7\n").unwrap();
    let error =
        ServerConfig::resolve(ServeArgs::from_flags(["--config", path.to_str().unwrap()]).unwrap())
            .unwrap_err();
    assert!(format!("{error:#}").contains("qeue_max"));
}

#[test]
fn the_signing_key_is_read_from_its_file_and_a_bad_one_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("server.key");
    let public = dir.path().join("server.pub");
    let verifying = ochered_transparency::write_key_pair(&secret, &public).unwrap();
    let resolve = |flags: &[&str]| {
        ServerConfig::resolve(ServeArgs::from_flags(flags.iter().copied()).unwrap())
    };
    let config = resolve(&["--signing-key-file", secret.to_str().unwrap()]).unwrap();
    assert_eq!(config.signing_key.unwrap().verifying_key(), verifying);
    assert_eq!(
        config.tree_head_interval,
        std::time::Duration::from_secs(10)
    );
    let none = resolve(&[]).unwrap();
    assert!(
        none.signing_key.is_none(),
        "the development key is the server's choice"
    );
    let error = format!("{:#}", resolve(&["--signing-key", "zz"]).err().unwrap());
    assert!(error.contains("signing_key"), "{error}");
    let error = format!(
        "{:#}",
        resolve(&["--tree-head-interval-s", "0"]).err().unwrap()
    );
    assert!(error.contains("tree_head_interval_s"), "{error}");
    // The development key is the same across restarts.
    assert_eq!(
        development_signing_key().to_bytes(),
        development_signing_key().to_bytes()
    );
}
