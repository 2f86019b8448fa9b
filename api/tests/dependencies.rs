//! The dependency rule of `api`'s modules (docs/ARCHITECTURE.md), read from the sources:
//!
//! - **Leaves** (`config`, `state`, `wire`, `http::*`, `transparency`) import nothing but other leaves: no
//!   service, no status update, not the OpenAPI document, the pages or the crate root.
//! - **Features** (`services::<service>`, `status::*`) import leaves and their own service's
//!   files, never another service; `status` imports no service and no service imports `status`.
//! - **No cycle** among the modules.
//!
//! A module's dependencies are the `crate::…`, `super::…` and `self::…` paths its file names
//! (in `use` items and inline), each resolved to the longest module path it starts with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `api/src` with its source, comments removed.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut segments = prefix.to_vec();
            if name != "mod" && name != "lib" {
                segments.push(name);
            }
            let source = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere; the rule is about the server's code.
            let source = source.split("#[cfg(test)]").next().unwrap_or_default();
            let code: String = source
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let module = if segments.is_empty() {
                "crate".to_owned()
            } else {
                segments.join("::")
            };
            out.insert(module, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let Some(close) = tree.rfind('}').filter(|close| *close > open) else {
        return vec![tree];
    };
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The paths a module's code names: `use` trees expanded, and inline paths.
fn paths_named(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    // `use` items start a line (after an optional `pub` or `pub(…)`).
    let mut at = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let item = trimmed
            .strip_prefix("pub ")
            .or_else(|| trimmed.strip_prefix("pub(crate) "))
            .unwrap_or(trimmed);
        if let Some(tree) = item.strip_prefix("use ") {
            let start = at + (line.len() - tree.len());
            if let Some(end) = code[start..].find(';') {
                paths.extend(expand(&code[start..start + end]));
            }
        }
        at += line.len();
    }
    for root in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(root) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path);
        }
    }
    paths
}

/// The module a path names, from the module `from`: the longest module path it starts with.
fn resolve(from: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let here: Vec<&str> = if from == "crate" {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    let mut base: Vec<&str> = match segments.first().copied() {
        Some("crate") => Vec::new(),
        Some("self") => here.clone(),
        // `super` of module `a::b` (file `a/b.rs`, or `a/b/mod.rs`) is `a`.
        Some("super") => here[..here.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    segments.remove(0);
    while segments.first() == Some(&"super") {
        base.pop();
        segments.remove(0);
    }
    let mut best = None;
    for n in 0..=segments.len() {
        let mut candidate = base.clone();
        candidate.extend(&segments[..n]);
        let name = if candidate.is_empty() {
            "crate".to_owned()
        } else {
            candidate.join("::")
        };
        if known.contains(&name) {
            best = Some(name);
        }
    }
    best
}

/// Each module's dependencies on other modules.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, code)| {
            let deps = paths_named(code)
                .iter()
                .filter_map(|p| resolve(module, p, &known))
                .filter(|dep| dep != module)
                .collect();
            (module.clone(), deps)
        })
        .collect()
}

fn is_leaf(module: &str) -> bool {
    let top = module.split("::").next().unwrap();
    matches!(top, "config" | "state" | "wire" | "http" | "transparency")
}

/// `services::kindergarten` for `services::kindergarten` and its files; `status` for status;
/// `services` for the router that gathers the services.
fn feature(module: &str) -> Option<String> {
    let segments: Vec<&str> = module.split("::").collect();
    match segments.as_slice() {
        ["services", service, ..] => Some(format!("services::{service}")),
        // The services' router, which gathers them all.
        ["services"] => Some("services".to_owned()),
        ["status", ..] => Some("status".to_owned()),
        _ => None,
    }
}

#[test]
fn the_modules_are_read() {
    let graph = graph();
    for module in [
        "crate",
        "http::command",
        "services::files",
        "services::files::csv",
        "status::sse",
        "wire::schema",
    ] {
        assert!(graph.contains_key(module), "{module} not found: {graph:?}");
    }
    assert!(graph["services::kindergarten"].contains("http::command"));
    assert!(graph["status::sse"].contains("status::changes"));
    assert!(graph["services::files"].contains("services::files::csv"));
    assert_eq!(
        expand("crate::{http::{a, b::C}, wire}"),
        vec!["crate::http::a", "crate::http::b::C", "crate::wire"]
    );
}

#[test]
fn leaves_import_only_leaves() {
    let mut broken = Vec::new();
    for (module, deps) in graph() {
        if !is_leaf(&module) {
            continue;
        }
        for dep in deps.iter().filter(|d| !is_leaf(d)) {
            broken.push(format!("{module} -> {dep}"));
        }
    }
    assert!(
        broken.is_empty(),
        "leaves import features or the top: {broken:#?}"
    );
}

#[test]
fn no_feature_imports_another() {
    let mut broken = Vec::new();
    for (module, deps) in graph() {
        let Some(own) = feature(&module) else {
            continue;
        };
        for dep in &deps {
            if let Some(other) = feature(dep) {
                if other != own {
                    broken.push(format!("{module} -> {dep}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "features import each other: {broken:#?}");
}

#[test]
fn no_import_cycle() {
    let graph = graph();
    // Depth-first search; a back edge closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|m| m == module) {
            let mut cycle = path[i..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for dep in &graph[module] {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
