//! Queue projections: the ordered members of every queue, each application's position in
//! O(log n), and a compact log of membership changes that explains why a position moved.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ApplicationNumber;
use crate::event::Event;
use crate::ordering::SortKey;
use crate::ostree::OrderStatisticSet;
use crate::state::{CampaignIdx, InstitutionIdx};

/// One queue: a kindergarten × age group × intake year, or a school within a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QueueKey {
    Kindergarten {
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    },
    School {
        campaign: CampaignIdx,
        institution: InstitutionIdx,
    },
}

/// Why a membership change happened: the type of the event behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Submitted,
    PreferencesAmended,
    Withdrawn,
    PrivilegeClaimed,
    PrivilegeConfirmed,
    PrivilegeRevoked,
    Other,
}

impl Cause {
    pub fn of(event: &Event) -> Self {
        match event {
            Event::KindergartenApplicationSubmitted { .. }
            | Event::SchoolApplicationSubmitted { .. } => Cause::Submitted,
            Event::KindergartenPreferencesAmended { .. } => Cause::PreferencesAmended,
            Event::ApplicationWithdrawn { .. } => Cause::Withdrawn,
            Event::PrivilegeClaimed { .. } => Cause::PrivilegeClaimed,
            Event::PrivilegeConfirmed { .. } => Cause::PrivilegeConfirmed,
            Event::PrivilegeRevoked { .. } => Cause::PrivilegeRevoked,
            _ => Cause::Other,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Cause::Submitted => "a new application was registered",
            Cause::PreferencesAmended => "an application changed its preferences",
            Cause::Withdrawn => "an application was withdrawn",
            Cause::PrivilegeClaimed => "a privilege was claimed",
            Cause::PrivilegeConfirmed => "a privilege was confirmed by an officer",
            Cause::PrivilegeRevoked => "a privilege was revoked by an officer",
            Cause::Other => "the queue changed",
        }
    }
}

/// One membership change of a queue, kept compact (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueChange {
    pub at_micros: i64,
    pub key: SortKey,
    pub joined: bool,
    pub cause: Cause,
}

#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub members: OrderStatisticSet<SortKey>,
    pub changes: Vec<QueueChange>,
}

/// Every queue of an authority.
#[derive(Debug, Clone, Default)]
pub struct Queues {
    queues: BTreeMap<QueueKey, Queue>,
}

/// A movement of one application's position, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub at: DateTime<Utc>,
    pub cause: Cause,
    pub reason: String,
    /// The other application whose change moved this one (none when it was this one's own).
    pub other_application: Option<ApplicationNumber>,
    pub position_before: Option<usize>,
    pub position_after: Option<usize>,
}

/// Why an application's position in one queue changed since a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub position_now: Option<usize>,
    /// Oldest first.
    pub movements: Vec<Movement>,
    /// True when older movements were left out to respect the limit.
    pub truncated: bool,
}

impl Queues {
    pub fn join(&mut self, queue: QueueKey, key: SortKey, cause: Cause, at: DateTime<Utc>) {
        let q = self.queues.entry(queue).or_default();
        let inserted = q.members.insert(key);
        debug_assert!(inserted, "a key joins a queue once");
        q.changes.push(QueueChange {
            at_micros: at.timestamp_micros(),
            key,
            joined: true,
            cause,
        });
    }

    pub fn leave(&mut self, queue: QueueKey, key: SortKey, cause: Cause, at: DateTime<Utc>) {
        let q = self.queues.entry(queue).or_default();
        let removed = q.members.remove(&key);
        debug_assert!(removed, "only members leave a queue");
        q.changes.push(QueueChange {
            at_micros: at.timestamp_micros(),
            key,
            joined: false,
            cause,
        });
    }

    pub(crate) fn insert_silently(&mut self, queue: QueueKey, key: SortKey) {
        self.queues.entry(queue).or_default().members.insert(key);
    }

    pub(crate) fn changes_for_snapshot(&self) -> Vec<(QueueKey, &[QueueChange])> {
        self.queues
            .iter()
            .map(|(k, q)| (*k, q.changes.as_slice()))
            .collect()
    }

    pub(crate) fn restore_changes(&mut self, changes: Vec<(QueueKey, Vec<QueueChange>)>) {
        for (key, list) in changes {
            self.queues.entry(key).or_default().changes = list;
        }
    }

    pub fn get(&self, queue: &QueueKey) -> Option<&Queue> {
        self.queues.get(queue)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QueueKey, &Queue)> {
        self.queues.iter()
    }

    /// 1-based position of a key in a queue, if it is there.
    pub fn position(&self, queue: &QueueKey, key: &SortKey) -> Option<usize> {
        self.queues.get(queue)?.members.rank(key)
    }

    pub fn len(&self, queue: &QueueKey) -> usize {
        self.queues.get(queue).map_or(0, |q| q.members.len())
    }

    /// Explains how the position of the application with key `key` moved since `since`,
    /// walking the queue's change log backwards from now. At most `limit` movements.
    pub fn explain(
        &self,
        queue: &QueueKey,
        key: &SortKey,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Explanation {
        let Some(q) = self.queues.get(queue) else {
            return Explanation {
                position_now: None,
                movements: Vec::new(),
                truncated: false,
            };
        };
        let since_micros = since.timestamp_micros();
        let me = key.number;
        let mut my_key = q.members.contains(key).then_some(*key);
        let position_now = my_key.and_then(|k| q.members.rank(&k));
        let mut position = position_now;
        let mut movements = Vec::new();
        let mut truncated = false;

        // Number of members with a key below `k` just before change `index` happened.
        let count_less_before = |index: usize, k: &SortKey| -> usize {
            let mut count = q.members.count_less(k) as i64;
            for change in &q.changes[index..] {
                if change.key < *k {
                    count -= if change.joined { 1 } else { -1 };
                }
            }
            count.max(0) as usize
        };

        let mut index = q.changes.len();
        while index > 0 {
            index -= 1;
            let change = q.changes[index];
            if change.at_micros < since_micros {
                break;
            }
            if movements.len() >= limit {
                truncated = true;
                break;
            }
            let at = Utc.timestamp_micros(change.at_micros).single().unwrap_or_default();
            if change.key.number == me {
                if change.joined {
                    // This application joined (or re-joined with a new key) here.
                    let previous = (index > 0)
                        .then(|| q.changes[index - 1])
                        .filter(|p| p.key.number == me && !p.joined && p.at_micros == change.at_micros);
                    match previous {
                        Some(left) => {
                            let before = count_less_before(index - 1, &left.key) + 1;
                            movements.push(Movement {
                                at,
                                cause: change.cause,
                                reason: format!("this application: {}", change.cause.describe()),
                                other_application: None,
                                position_before: Some(before),
                                position_after: position,
                            });
                            position = Some(before);
                            my_key = Some(left.key);
                            index -= 1;
                        }
                        None => {
                            movements.push(Movement {
                                at,
                                cause: change.cause,
                                reason: "this application joined the queue".to_owned(),
                                other_application: None,
                                position_before: None,
                                position_after: position,
                            });
                            position = None;
                            my_key = None;
                        }
                    }
                } else {
                    // This application left the queue (withdrawn or moved elsewhere).
                    let before = count_less_before(index, &change.key) + 1;
                    movements.push(Movement {
                        at,
                        cause: change.cause,
                        reason: format!("this application left the queue: {}", change.cause.describe()),
                        other_application: None,
                        position_before: Some(before),
                        position_after: None,
                    });
                    position = Some(before);
                    my_key = Some(change.key);
                }
                continue;
            }
            let (Some(mine), Some(pos)) = (my_key, position) else {
                continue;
            };
            if change.key < mine {
                let before = if change.joined { pos - 1 } else { pos + 1 };
                movements.push(Movement {
                    at,
                    cause: change.cause,
                    reason: if change.joined {
                        format!("{} ahead of you", change.cause.describe())
                    } else {
                        format!("{}: an application ahead of you left", change.cause.describe())
                    },
                    other_application: Some(change.key.number),
                    position_before: Some(before),
                    position_after: Some(pos),
                });
                position = Some(before);
            }
        }
        movements.reverse();
        Explanation {
            position_now,
            movements,
            truncated,
        }
    }
}
