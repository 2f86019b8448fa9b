//! What the Debian package and the container ship beside the binary: the commented
//! configuration file lists every setting `ochered serve` has, and every example line in it
//! is one the server reads; the systemd unit starts the server with that file.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Args;
use ochered_api::config::{ServeArgs, ServerConfig, Settings};

fn repository_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The key of a `key = value` line, commented out or not.
fn setting_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start_matches('#').trim();
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .then_some((key, line))
}

#[test]
fn the_shipped_configuration_mentions_every_setting_and_only_real_ones() {
    let file = repository_file("deploy/ochered.toml");
    let lines: Vec<(&str, &str)> = file.lines().filter_map(setting_line).collect();
    let keys: BTreeSet<&str> = lines.iter().map(|(key, _)| *key).collect();

    // Every setting of `ochered serve` (its flags, each of which also reads OCHERED_*): a
    // `key = value` line, or, for one read only from the command line or the environment,
    // its variable named in the text.
    let command = ServeArgs::augment_args(clap::Command::new("serve"));
    let mut missing = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "config" || long == "help" {
            continue;
        }
        let key = long.replace('-', "_");
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = !env.is_empty() && file.contains(&format!("{env}="));
        if !keys.contains(key.as_str()) && !named {
            missing.push(format!("{key} ({env})"));
        }
    }
    assert!(
        missing.is_empty(),
        "deploy/ochered.toml does not mention these settings: {missing:?}"
    );

    // Every example line is a setting the server reads from the file: on its own, with the
    // `#` removed, it parses (unknown keys and wrong types are refused by the parser).
    let dir = tempfile::tempdir().unwrap();
    for (key, line) in &lines {
        let path = dir.path().join(format!("{key}.toml"));
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let resolved = ServerConfig::resolve(
            ServeArgs::from_flags(["--config", path.to_str().unwrap()]).unwrap(),
        );
        if let Err(error) = resolved {
            let error = format!("{error:#}");
            assert!(
                !error.contains("failed to parse"),
                "deploy/ochered.toml: `{line}` is not read by the server: {error}"
            );
        }
    }
}

#[test]
fn each_commented_setting_shows_its_declared_default() {
    // A commented `# key = value` line of a setting that has a default shows that default:
    // the file cannot drift from the one declaration in `Settings`.
    let file = repository_file("deploy/ochered.toml");
    let defaults = serde_json::to_value(Settings::default()).unwrap();
    let mut checked = 0;
    for line in file.lines().filter(|l| l.starts_with('#')) {
        let Some((key, line)) = setting_line(line) else {
            continue;
        };
        let default = &defaults[key];
        if default.is_null() || default == &serde_json::json!([]) {
            continue; // no default: the line is an example
        }
        let shown: Settings = toml::from_str(line).unwrap_or_else(|e| panic!("`{line}`: {e}"));
        assert_eq!(
            &serde_json::to_value(shown).unwrap()[key],
            default,
            "deploy/ochered.toml: `{line}` is not the declared default"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} defaults shown");
}

#[test]
fn the_unit_starts_the_server_with_the_shipped_configuration() {
    let unit = repository_file("deploy/debian/ochered.service");
    let manifest = repository_file("Cargo.toml");
    let value = |key: &str| {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .next_back()
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .to_owned()
    };
    assert_eq!(
        value("ExecStart"),
        "/usr/bin/ochered serve --config /etc/ochered/ochered.toml"
    );
    assert!(
        manifest.contains(r#"["deploy/ochered.toml", "etc/ochered/ochered.toml", "640"]"#),
        "the package installs deploy/ochered.toml as /etc/ochered/ochered.toml"
    );
    assert_eq!(value("User"), "ochered");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("WorkingDirectory"), "/var/lib/ochered");
    assert_eq!(value("ReadWritePaths"), "/var/lib/ochered");
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "{hardening}");
    }
    // The configuration points at the directories the unit and the package set up.
    let config = repository_file("deploy/ochered.toml");
    assert!(config.contains("database_url = \"sqlite:///var/lib/ochered/ochered.db\""));
    assert!(config.contains("jwt_secret_file = \"/etc/ochered/secrets/jwt_secret\""));
}
