//! The auditor's check of the signed heads they kept (`ochered verify --heads`).
//!
//! A heads file is what an auditor or a mirror collected: JSON Lines of [`PublishedHead`]
//! (one per line, as `GET …/transparency/head` gives them), or the document that
//! `GET …/transparency/heads` gives (`{"heads": [...]}`). Several files, from several parties,
//! are checked together: that is how heads are gossiped.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::head::{consistent, parse_path};
use crate::{hash_hex, Hash, LogTree, PublishedHead, SignedTreeHead, VerifyError, VerifyingKey};

/// One party's collection of heads, in the order they were kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadsFile {
    /// Names the file in findings.
    pub source: String,
    pub heads: Vec<PublishedHead>,
}

impl HeadsFile {
    /// Parses JSON Lines of published heads, or a `{"heads": [...]}` document.
    pub fn parse(source: &str, text: &str) -> Result<Self, VerifyError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Document {
            heads: Vec<PublishedHead>,
        }
        let bad = |line: usize, e: serde_json::Error| {
            VerifyError::Format(format!("{source}:{line}: not a published head: {e}"))
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') && trimmed.contains("\"heads\"") {
            if let Ok(document) = serde_json::from_str::<Document>(text) {
                return Ok(HeadsFile {
                    source: source.to_string(),
                    heads: document.heads,
                });
            }
        }
        let mut heads = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            heads.push(serde_json::from_str(line).map_err(|e| bad(n + 1, e))?);
        }
        Ok(HeadsFile {
            source: source.to_string(),
            heads,
        })
    }
}

/// Something wrong with one kept head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadProblem {
    pub source: String,
    /// 1-based position of the head in its file.
    pub entry: usize,
    pub authority: String,
    pub tree_size: u64,
    pub reason: String,
}

impl HeadProblem {
    fn new(file: &HeadsFile, index: usize, head: &SignedTreeHead, reason: String) -> Self {
        HeadProblem {
            source: file.source.clone(),
            entry: index + 1,
            authority: head.authority.clone(),
            tree_size: head.tree_size,
            reason,
        }
    }
}

/// What [`audit_heads`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadsAudit {
    /// Heads whose signature holds.
    pub heads_verified: usize,
    /// Consistency proofs that held.
    pub proofs_verified: usize,
    /// Heads compared with the tree rebuilt from the log.
    pub heads_matched_to_log: usize,
    /// Per authority, the largest verified head: its size and root.
    pub newest: BTreeMap<String, (u64, String)>,
    pub problems: Vec<HeadProblem>,
}

/// Checks the heads that one or more parties kept:
///
/// 1. every head's signature, with the auditor's copy of the public key;
/// 2. within a file, an authority's heads never shrink, and each one after the first carries a
///    consistency proof from the previous one's size (equal sizes need equal roots);
/// 3. every consistency proof against every kept head of its `from_size`, whichever file holds
///    it (a proof fetched later settles a head another party kept);
/// 4. across all files, two heads of the same size must have the same root: otherwise the
///    server signed two different logs, a fork;
/// 5. with `log` (trees rebuilt from the database, by authority): the log still holds each
///    head's events and its tree at that size has the signed root.
///
/// A change, deletion or insertion of an event covered by a kept head fails 2, 3 or 5; a
/// forged branch shown to one party fails 4 or 3 once its heads meet another party's.
pub fn audit_heads(
    files: &[HeadsFile],
    key: &VerifyingKey,
    log: Option<&HashMap<String, LogTree>>,
) -> HeadsAudit {
    let mut audit = HeadsAudit::default();
    // (authority, size) -> (root, where first seen)
    let mut by_size: HashMap<(String, u64), (Hash, String, usize)> = HashMap::new();
    // The heads whose signatures hold: (file, entry, head, root).
    let mut verified = Vec::new();
    for file in files {
        for (i, published) in file.heads.iter().enumerate() {
            let head = &published.tree_head;
            let problem = |reason: String| HeadProblem::new(file, i, head, reason);
            if let Err(e) = head.verify(key) {
                audit.problems.push(problem(e.to_string()));
                continue;
            }
            let root = head.root().expect("verify checked the root");
            audit.heads_verified += 1;
            let slot = (head.authority.clone(), head.tree_size);
            match by_size.get(&slot) {
                Some((other, source, entry)) if *other != root => {
                    audit.problems.push(problem(format!(
                        "FORK: {source} entry {entry} has a head of the same size {} with root {}, this one has {}: the server signed two different logs",
                        head.tree_size,
                        hash_hex(other),
                        head.root_hash
                    )));
                }
                Some(_) => {}
                None => {
                    by_size.insert(slot, (root, file.source.clone(), i + 1));
                }
            }
            verified.push((file, i, published, root));
        }
    }

    // Consistency proofs, against every kept head of their from_size, and the order of each
    // file's heads.
    let mut previous: HashMap<(&str, &str), (u64, Hash)> = HashMap::new();
    for (file, i, published, root) in &verified {
        let head = &published.tree_head;
        let problem = |reason: String| HeadProblem::new(file, *i, head, reason);
        let mut proved_from = None;
        if let Some(consistency) = &published.consistency {
            match parse_path(&consistency.path, "each consistency path node") {
                Err(e) => audit.problems.push(problem(e.to_string())),
                Ok(path) => {
                    proved_from = Some(consistency.from_size);
                    for ((authority, size), (old_root, source, entry)) in &by_size {
                        if *authority != head.authority || *size != consistency.from_size {
                            continue;
                        }
                        if consistent(*size, old_root, head.tree_size, root, &path) {
                            audit.proofs_verified += 1;
                        } else {
                            audit.problems.push(problem(format!(
                                "the consistency proof from size {size} fails against the head of that size in {source} entry {entry}: the log was rewritten, truncated or forked between them"
                            )));
                        }
                    }
                }
            }
        }
        let key = (file.source.as_str(), head.authority.as_str());
        if let Some((prev_size, prev_root)) = previous.get(&key) {
            if head.tree_size < *prev_size {
                audit.problems.push(problem(format!(
                    "the tree shrank from {prev_size} to {} events: events were removed",
                    head.tree_size
                )));
            } else if head.tree_size == *prev_size {
                if prev_root != root {
                    audit.problems.push(problem(format!(
                        "FORK: the previous head has the same size {prev_size} and another root"
                    )));
                }
            } else if proved_from != Some(*prev_size) && log.is_none() {
                audit.problems.push(problem(format!(
                    "no consistency proof from the previous head's size {prev_size}: fetch one with ?from_size={prev_size}, or check against the log with --database-url"
                )));
            }
        }
        previous.insert(key, (head.tree_size, *root));
        let newest = audit
            .newest
            .entry(head.authority.clone())
            .or_insert((0, String::new()));
        if head.tree_size > newest.0 {
            *newest = (head.tree_size, head.root_hash.clone());
        }

        if let Some(log) = log {
            let tree = log.get(&head.authority);
            let log_size = tree.map_or(0, LogTree::len);
            match tree.and_then(|t| t.root_at(head.tree_size)) {
                None => audit.problems.push(problem(format!(
                    "the log holds {log_size} events of {}, fewer than the {} this head signs: events were removed",
                    head.authority, head.tree_size
                ))),
                Some(log_root) if log_root != *root => audit.problems.push(problem(format!(
                    "the log's first {} events have root {}, the head signs {}: events up to it were changed, inserted or removed",
                    head.tree_size,
                    hash_hex(&log_root),
                    head.root_hash
                ))),
                Some(_) => audit.heads_matched_to_log += 1,
            }
        }
    }
    audit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_key;
    use chrono::Utc;

    fn published(
        key: &ed25519_dalek::SigningKey,
        tree: &LogTree,
        size: u64,
        from: Option<u64>,
    ) -> PublishedHead {
        PublishedHead::of_tree(key, "demo", tree, size, from, Utc::now()).unwrap()
    }

    fn tree_of(hashes: &[Hash]) -> LogTree {
        let mut tree = LogTree::new();
        for h in hashes {
            tree.push(h);
        }
        tree
    }

    #[test]
    fn honest_heads_pass_and_a_rewritten_log_is_caught() {
        let key = generate_key();
        let public = key.verifying_key();
        let mut events: Vec<Hash> = (0..20u8).map(|i| [i; 32]).collect();
        let honest = tree_of(&events);
        let file = HeadsFile {
            source: "mirror".into(),
            heads: vec![
                published(&key, &honest, 3, None),
                published(&key, &honest, 3, Some(3)),
                published(&key, &honest, 11, Some(3)),
                published(&key, &honest, 20, Some(11)),
            ],
        };
        let text: String = file
            .heads
            .iter()
            .map(|h| serde_json::to_string(h).unwrap() + "\n")
            .collect();
        assert_eq!(HeadsFile::parse("mirror", &text).unwrap(), file);
        let audit = audit_heads(std::slice::from_ref(&file), &public, None);
        assert_eq!(audit.problems, vec![]);
        assert_eq!(audit.heads_verified, 4);
        assert_eq!(audit.proofs_verified, 3);
        assert_eq!(audit.newest["demo"].0, 20);

        // The log as the database holds it, compared with the kept heads.
        let log = HashMap::from([("demo".to_string(), honest.clone())]);
        let audit = audit_heads(std::slice::from_ref(&file), &public, Some(&log));
        assert_eq!((audit.problems.len(), audit.heads_matched_to_log), (0, 4));
        // Changed event 5: every head from size 5 on disagrees with the log.
        events[4] = [0xee; 32];
        let log = HashMap::from([("demo".to_string(), tree_of(&events))]);
        let audit = audit_heads(std::slice::from_ref(&file), &public, Some(&log));
        assert_eq!(audit.problems.len(), 2, "{:?}", audit.problems);
        // Removed events: the log is shorter than the newest head.
        let log = HashMap::from([("demo".to_string(), tree_of(&events[..15]))]);
        let audit = audit_heads(std::slice::from_ref(&file), &public, Some(&log));
        assert!(audit.problems.iter().any(|p| p.reason.contains("fewer")));

        // An event inserted, or one removed, before the end of a head: caught the same way.
        let mut inserted = events.clone();
        inserted.insert(7, [0xdd; 32]);
        let mut removed = events.clone();
        removed.remove(7);
        for (what, log) in [("inserted", inserted), ("removed", removed)] {
            let log = HashMap::from([("demo".to_string(), tree_of(&log))]);
            let audit = audit_heads(std::slice::from_ref(&file), &public, Some(&log));
            let sizes: Vec<u64> = audit.problems.iter().map(|p| p.tree_size).collect();
            assert_eq!(sizes, [11, 20], "{what}: {:?}", audit.problems);
        }

        // The server, after the rewrite, proves consistency from the mirror's head: fails.
        let rewritten = tree_of(&events);
        let later = HeadsFile {
            source: "server".into(),
            heads: vec![published(&key, &rewritten, 20, Some(11))],
        };
        let audit = audit_heads(&[file.clone(), later], &public, None);
        assert!(audit
            .problems
            .iter()
            .any(|p| p.source == "server"
                && p.reason.contains("consistency proof from size 11 fails")));
        assert!(audit.problems.iter().any(|p| p.reason.starts_with("FORK")));
    }

    #[test]
    fn missing_proofs_shrinking_trees_and_bad_signatures_are_reported() {
        let key = generate_key();
        let public = key.verifying_key();
        let events: Vec<Hash> = (0..9u8).map(|i| [i; 32]).collect();
        let tree = tree_of(&events);
        let mut forged = published(&key, &tree, 9, Some(4));
        forged.tree_head.root_hash = hash_hex(&[1; 32]);
        let file = HeadsFile {
            source: "f".into(),
            heads: vec![
                published(&key, &tree, 4, None),
                published(&key, &tree, 6, None),
                published(&key, &tree, 5, None),
                forged,
            ],
        };
        let audit = audit_heads(&[file], &public, None);
        let reasons: Vec<&str> = audit.problems.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("signature"));
        assert!(reasons[1].starts_with("no consistency proof from the previous head's size 4"));
        assert!(reasons[2].contains("shrank from 6 to 5"));
    }
}
