//! docs/RULES.md stays the rule book of the code: every way a rule can refuse is written
//! there under its code, and every citation of a section of it, anywhere in the repository,
//! names an anchor that exists.

use std::path::{Path, PathBuf};

use crate::purity::core_dir;

fn repository_dir() -> PathBuf {
    core_dir().join("../..")
}

fn rules_doc() -> String {
    std::fs::read_to_string(repository_dir().join("docs/RULES.md")).expect("docs/RULES.md")
}

/// The codes of the `Rejection` variants, as the API shows them (the serde tag).
fn rejection_codes() -> Vec<String> {
    let source = std::fs::read_to_string(core_dir().join("src/rejection.rs")).unwrap();
    let body = source
        .split("pub enum Rejection {")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("the Rejection enum");
    body.lines()
        .filter_map(|line| {
            let name = line.strip_prefix("    ")?;
            let first = name.chars().next()?;
            first.is_ascii_uppercase().then(|| {
                name.chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
            })
        })
        .map(|name| {
            let mut code = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    code.push('_');
                }
                code.push(c.to_ascii_lowercase());
            }
            code
        })
        .collect()
}

#[test]
fn every_rejection_is_documented_under_its_code() {
    let doc = rules_doc();
    let codes = rejection_codes();
    assert!(codes.len() >= 30, "found only {codes:?} in rejection.rs");
    let missing: Vec<&String> = codes
        .iter()
        .filter(|code| !doc.contains(&format!("`{code}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/RULES.md does not mention {missing:?}"
    );
}

/// Files that may cite docs/RULES.md: sources, documents, manifests and scripts outside the
/// build output and installed packages.
fn citing_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if (name.starts_with('.') && name != ".ci") || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            citing_files(&path, out);
        } else if ["rs", "md", "toml", "sh", "mjs", "js", "html"]
            .iter()
            .any(|ext| name.ends_with(&format!(".{ext}")))
            || name == "run"
        {
            out.push(path);
        }
    }
}

#[test]
fn every_cited_section_of_the_rules_exists() {
    let doc = rules_doc();
    let anchors: Vec<&str> = doc
        .split("<a id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let mut files = Vec::new();
    citing_files(&repository_dir(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("decide/mod.rs")),
        "the walk missed the core"
    );
    let mut unknown = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A citation is the file's name, `#` and an anchor, possibly followed by more anchors
        // (`, #b, #c`) on the same or the next comment line.
        for citation in text.split("RULES.md").skip(1) {
            let mut rest = citation;
            while let Some(after) = rest.strip_prefix('#') {
                let anchor: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                if !anchors.contains(&anchor.as_str()) {
                    unknown.push(format!("{}: #{anchor}", path.display()));
                }
                rest = after[anchor.len()..].trim_start_matches([',', ' ', '\n', '/', '!']);
            }
        }
        // Links inside the rule book itself.
        if path.ends_with("docs/RULES.md") {
            for link in text.split("](#").skip(1) {
                let anchor = link.split(')').next().unwrap_or("");
                if !anchors.contains(&anchor) {
                    unknown.push(format!("docs/RULES.md: link #{anchor}"));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "citations of missing sections: {unknown:?}"
    );
}
