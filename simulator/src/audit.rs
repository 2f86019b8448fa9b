//! The audit at the end of every run, against a freshly opened store:
//!
//! - **lost**: every application a client got a 2xx for is in the log, under the number it
//!   was given and submitted by the account that sent it. Checked on the raw events, not
//!   on the fold, so it works on a broken chain too.
//! - **duplicates**: no child has two active applications of one service.
//! - **order violations**: every queue's members are in strictly increasing order of the
//!   key recomputed from each application under its policy, each member belongs there, each
//!   active application stands in all its queues, ranks match positions, and registration
//!   times never go backwards as numbers go up (first come, first served).
//! - **chain**: `verify` recomputes every hash.
//! - **replay**: two fresh replays give the same state hash, equal to the live engine's (in
//!   process) or to the chain head the server reported before it stopped (HTTP).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use ochered_core::state::{ApplicationStatus, State};
use ochered_core::Event;
use ochered_store::{EventStore, VerifyOutcome};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::workload::Workload;

/// A 2xx a client received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Ack {
    pub authority: usize,
    pub number: u32,
    pub child: u32,
    pub device: u8,
}

/// What the audit compares the replay with.
pub enum Live {
    /// The in-process engine's state hash per authority.
    StateHashes(Vec<String>),
    /// The server's chain head (authority_seq, hash) per authority, read before it stopped.
    Heads(Vec<(i64, String)>),
    None,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuthorityAudit {
    pub authority: String,
    pub events: u64,
    pub applications: u64,
    pub chain_ok: bool,
    pub chain_problem: Option<String>,
    pub state_hash: Option<String>,
    pub replay_deterministic: bool,
    pub live_equal: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub lost: u64,
    pub lost_examples: Vec<String>,
    pub duplicates: u64,
    pub duplicate_examples: Vec<String>,
    pub order_violations: u64,
    pub order_examples: Vec<String>,
    pub chain_ok: bool,
    pub replay_deterministic: bool,
    /// None when there was nothing live to compare with.
    pub live_equal: Option<bool>,
    /// The state hash of the fresh replay (one authority), or a digest of every
    /// authority's `id=hash` line.
    pub state_hash: Option<String>,
    /// Applications of this run committed without any client seeing a 2xx (the client gave
    /// up, or its answer was lost in a crash): not an error, kept for the record.
    pub committed_unacknowledged: u64,
    pub authorities: Vec<AuthorityAudit>,
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.order_violations == 0
            && self.chain_ok
            && self.replay_deterministic
            && self.live_equal != Some(false)
            && self.problems.is_empty()
    }
}

/// Applications found in the raw log: number → (submitted_by, authority_seq).
async fn scan_submissions(
    store: &dyn EventStore,
    authority: &str,
) -> anyhow::Result<HashMap<u32, (String, i64)>> {
    let mut found = HashMap::new();
    let mut after = 0;
    loop {
        let page = store
            .read(authority, after, 20_000)
            .await
            .with_context(|| format!("failed to read the log of {authority}"))?;
        let Some(last) = page.last() else { break };
        after = last.authority_seq;
        for stored in &page {
            if !stored.event_type.ends_with("ApplicationSubmitted") {
                continue;
            }
            let event = ochered_writer::decode_event(stored)
                .map_err(|e| anyhow::anyhow!("{authority} event {}: {e}", stored.authority_seq))?;
            if let Event::KindergartenApplicationSubmitted {
                number,
                submitted_by,
                ..
            }
            | Event::SchoolApplicationSubmitted {
                number,
                submitted_by,
                ..
            } = event
            {
                found.insert(number.0, (submitted_by, stored.authority_seq));
            }
        }
    }
    Ok(found)
}

/// A planted fault for the audit's own tests: deletes the events of the `n` acknowledged
/// applications committed last (SQLite only), as a store that lost acknowledged writes.
pub async fn drop_acknowledged(
    database_url: &str,
    workload: &Workload,
    acks: &[Ack],
    n: usize,
) -> anyhow::Result<()> {
    let store = ochered_store::SqliteStore::open(database_url)
        .await
        .context("the planted fault needs a SQLite store")?;
    let mut candidates = Vec::new();
    for (index, a) in workload.authorities.iter().enumerate() {
        let found = scan_submissions(&store, &a.id).await?;
        for ack in acks.iter().filter(|k| k.authority == index) {
            if let Some((_, seq)) = found.get(&ack.number) {
                candidates.push((*seq, a.id.clone()));
            }
        }
    }
    candidates.sort();
    for (seq, authority) in candidates.iter().rev().take(n) {
        // The SQLite log's row id packs the authority's id and the sequence (schema v2).
        sqlx::query(
            "DELETE FROM log WHERE id = ((SELECT id FROM authority_ids WHERE name = ?1) << 40) | ?2",
        )
            .bind(authority)
            .bind(seq)
            .execute(store.pool())
            .await?;
        sqlx::query("DELETE FROM snapshots WHERE authority = ? AND authority_seq >= ?")
            .bind(authority)
            .bind(seq)
            .execute(store.pool())
            .await?;
        eprintln!("planted fault: deleted event {seq} of {authority}");
    }
    store.close().await;
    Ok(())
}

pub async fn audit(
    store: Arc<dyn EventStore>,
    workload: &Workload,
    acks: &[Ack],
    live: &Live,
) -> AuditReport {
    let mut report = AuditReport {
        chain_ok: true,
        replay_deterministic: true,
        ..AuditReport::default()
    };
    let prefix = format!("sim-{}-", workload.tag);
    let mut hashes = Vec::new();
    for (index, a) in workload.authorities.iter().enumerate() {
        let mut entry = AuthorityAudit {
            authority: a.id.clone(),
            ..AuthorityAudit::default()
        };
        match store.verify(&a.id).await {
            Ok(VerifyOutcome::Ok { events, .. }) => {
                entry.chain_ok = true;
                entry.events = events;
            }
            Ok(VerifyOutcome::Broken {
                authority_seq,
                reason,
                ..
            }) => {
                entry.chain_problem = Some(format!("broken at {authority_seq}: {reason}"));
            }
            Err(e) => entry.chain_problem = Some(format!("verify failed: {e}")),
        }
        report.chain_ok &= entry.chain_ok;

        // Lost: on the raw events.
        let acked_here: Vec<&Ack> = acks.iter().filter(|k| k.authority == index).collect();
        match scan_submissions(store.as_ref(), &a.id).await {
            Ok(found) => {
                let acked_numbers: HashSet<u32> = acked_here.iter().map(|k| k.number).collect();
                for ack in &acked_here {
                    let expected = workload.parent(ack.child, ack.device);
                    match found.get(&ack.number) {
                        Some((by, _)) if *by == expected => {}
                        other => {
                            report.lost += 1;
                            if report.lost_examples.len() < 5 {
                                report.lost_examples.push(format!(
                                    "{}: application {} acknowledged to {expected} is {}",
                                    a.id,
                                    ack.number,
                                    match other {
                                        None => "not in the log".to_owned(),
                                        Some((by, _)) => format!("submitted by {by}"),
                                    }
                                ));
                            }
                        }
                    }
                }
                report.committed_unacknowledged += found
                    .iter()
                    .filter(|(n, (by, _))| by.starts_with(&prefix) && !acked_numbers.contains(n))
                    .count() as u64;
            }
            Err(e) => report.problems.push(format!("{e:#}")),
        }

        // Two fresh replays.
        let first = ochered_writer::load_state(store.as_ref(), &a.id).await;
        let second = ochered_writer::load_state(store.as_ref(), &a.id).await;
        match (first, second) {
            (Ok((state, stats)), Ok((again, _))) => {
                let hash = state.state_hash();
                entry.replay_deterministic = hash == again.state_hash();
                entry.applications = state.applications().len() as u64;
                check_duplicates(&state, &a.id, &mut report);
                check_order(&state, &a.id, &mut report);
                entry.live_equal = match live {
                    Live::StateHashes(h) => Some(h.get(index) == Some(&hash)),
                    Live::Heads(heads) => Some(heads.get(index).is_some_and(|(seq, h)| {
                        *seq == stats.head.authority_seq && *h == stats.head.hash
                    })),
                    Live::None => None,
                };
                hashes.push(format!("{}={hash}", a.id));
                entry.state_hash = Some(hash);
            }
            (Err(e), _) | (_, Err(e)) => {
                entry.replay_deterministic = false;
                report
                    .problems
                    .push(format!("{}: replay failed: {e}", a.id));
            }
        }
        report.replay_deterministic &= entry.replay_deterministic;
        if let Some(equal) = entry.live_equal {
            report.live_equal = Some(report.live_equal.unwrap_or(true) && equal);
        }
        report.authorities.push(entry);
    }
    if hashes.len() == workload.authorities.len() {
        report.state_hash = Some(if hashes.len() == 1 {
            report.authorities[0].state_hash.clone().unwrap_or_default()
        } else {
            let mut digest = Sha256::new();
            for line in &hashes {
                digest.update(line.as_bytes());
                digest.update(b"\n");
            }
            hex::encode(digest.finalize())
        });
    }
    report
}

fn check_duplicates(state: &State, authority: &str, report: &mut AuditReport) {
    let mut active: BTreeMap<_, Vec<u32>> = BTreeMap::new();
    for app in state.applications() {
        if app.status == ApplicationStatus::Active {
            active
                .entry((app.service as u8, app.child.0))
                .or_default()
                .push(app.number.0);
        }
    }
    for numbers in active.values().filter(|n| n.len() > 1) {
        report.duplicates += numbers.len() as u64 - 1;
        if report.duplicate_examples.len() < 5 {
            report.duplicate_examples.push(format!(
                "{authority}: one child has active applications {numbers:?}"
            ));
        }
    }
}

fn check_order(state: &State, authority: &str, report: &mut AuditReport) {
    let violation = |report: &mut AuditReport, what: String| {
        report.order_violations += 1;
        if report.order_examples.len() < 5 {
            report.order_examples.push(format!("{authority}: {what}"));
        }
    };
    // First come, first served: numbers follow registration time.
    let applications = state.applications();
    for (earlier, later) in applications.iter().zip(applications.iter_from(1)) {
        if later.registered_at < earlier.registered_at {
            violation(
                report,
                format!(
                    "application {} registered before {}",
                    later.number, earlier.number
                ),
            );
        }
    }
    // Every active application stands in each of its queues under its recomputed key.
    let mut expected = 0usize;
    for app in state.applications() {
        for (queue, key) in state.queue_entries(app) {
            expected += 1;
            if state.queues.position(&queue, &key).is_none() {
                violation(
                    report,
                    format!("application {} missing from a queue", app.number),
                );
            }
        }
    }
    // Each queue: strictly increasing keys, each the one its application's policy gives,
    // and ranks equal to positions.
    let mut members = 0usize;
    for (queue, q) in state.queues.iter() {
        let mut previous = None;
        for (index, key) in q.members.iter().enumerate() {
            members += 1;
            if previous.is_some_and(|p| p >= key) {
                violation(
                    report,
                    format!("queue out of order at position {}", index + 1),
                );
            }
            previous = Some(key);
            match state.application(key.number) {
                Some(app) if state.queue_entries(app).contains(&(*queue, key)) => {}
                _ => violation(
                    report,
                    format!(
                        "application {} stands in a queue its policy does not give it",
                        key.number
                    ),
                ),
            }
            if index % 64 == 0 && q.members.rank(&key) != Some(index + 1) {
                violation(
                    report,
                    format!("rank of application {} is not its position", key.number),
                );
            }
        }
    }
    if members != expected {
        violation(
            report,
            format!("{members} queue places for {expected} expected"),
        );
    }
}
