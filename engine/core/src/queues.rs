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
    /// An allocation round (by its index in the state) placed the application.
    Round(u16),
    OfferDeclined,
    OfferExpired,
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
            Event::OfferDeclined { .. } => Cause::OfferDeclined,
            Event::OfferExpired { .. } => Cause::OfferExpired,
            // A round's cause carries the round's index, which only the state knows.
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
            Cause::Round(_) => "an allocation round placed an application",
            Cause::OfferDeclined => "an offer was declined and the application queued again",
            Cause::OfferExpired => "an offer expired and the application queued again",
            Cause::Other => "the queue changed",
        }
    }
}

impl Cause {
    /// The cause as a code (0 submitted, 1 preferences amended, 2 withdrawn, 3–5 privilege
    /// claimed, confirmed, revoked, 6 round, 7 offer declined, 8 offer expired, 9 other) and,
    /// for a round, its index.
    pub fn code(self) -> (u8, Option<u16>) {
        match self {
            Cause::Submitted => (0, None),
            Cause::PreferencesAmended => (1, None),
            Cause::Withdrawn => (2, None),
            Cause::PrivilegeClaimed => (3, None),
            Cause::PrivilegeConfirmed => (4, None),
            Cause::PrivilegeRevoked => (5, None),
            Cause::Round(r) => (6, Some(r)),
            Cause::OfferDeclined => (7, None),
            Cause::OfferExpired => (8, None),
            Cause::Other => (9, None),
        }
    }

    /// The cause of a [`Cause::code`] (the round's index is read only for code 6).
    pub fn from_code(
        code: u8,
        round: impl FnOnce() -> Result<u16, String>,
    ) -> Result<Self, String> {
        Ok(match code {
            0 => Cause::Submitted,
            1 => Cause::PreferencesAmended,
            2 => Cause::Withdrawn,
            3 => Cause::PrivilegeClaimed,
            4 => Cause::PrivilegeConfirmed,
            5 => Cause::PrivilegeRevoked,
            6 => Cause::Round(round()?),
            7 => Cause::OfferDeclined,
            8 => Cause::OfferExpired,
            9 => Cause::Other,
            other => return Err(format!("unknown cause {other}")),
        })
    }
}

/// One membership change of a queue, as read ([`Change::unpack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueChange {
    pub at_micros: i64,
    pub key: SortKey,
    pub joined: bool,
    pub cause: Cause,
}

/// One membership change of a queue as the log keeps it: 24 bytes, against 32 for a
/// [`QueueChange`] (whose key's padding cannot hold the cause). A log holds one per join or
/// leave, three or so per application: a tenth of a large state's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    at_micros: i64,
    tie_break: i64,
    number: ApplicationNumber,
    tier: u8,
    /// [`Cause::code`], plus 128 when the application joined.
    code: u8,
    /// The round's index for [`Cause::Round`], else 0.
    round: u16,
}

const JOINED: u8 = 0x80;

impl Change {
    pub fn pack(c: QueueChange) -> Change {
        let (code, round) = c.cause.code();
        Change {
            at_micros: c.at_micros,
            tie_break: c.key.tie_break,
            number: c.key.number,
            tier: c.key.tier,
            code: code | if c.joined { JOINED } else { 0 },
            round: round.unwrap_or(0),
        }
    }

    pub fn unpack(&self) -> QueueChange {
        let round = self.round;
        QueueChange {
            at_micros: self.at_micros,
            key: SortKey {
                tier: self.tier,
                tie_break: self.tie_break,
                number: self.number,
            },
            joined: self.code & JOINED != 0,
            cause: Cause::from_code(self.code & !JOINED, || Ok(round))
                .expect("a change is packed from a cause"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub members: OrderStatisticSet<SortKey>,
    /// Oldest first ([`Change::unpack`] reads one).
    pub changes: Vec<Change>,
}

/// Every queue of an authority.
#[derive(Debug, Clone, Default)]
pub struct Queues {
    queues: BTreeMap<QueueKey, Queue>,
    /// How explanations name each round, by the index in [`Cause::Round`].
    round_labels: Vec<RoundLabel>,
}

/// How an explanation names a round: "the round of 1 June 2026 (main)" and what it did to
/// the applications it took ("placed", "enrolled").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundLabel {
    pub id: String,
    pub name: String,
    pub verb: &'static str,
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
    /// How many applications' changes this movement sums up: a round that placed nine
    /// children ahead is one movement of nine.
    pub applications: usize,
    /// The round behind the movement, if a round caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<String>,
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
        q.changes.push(Change::pack(QueueChange {
            at_micros: at.timestamp_micros(),
            key,
            joined: true,
            cause,
        }));
    }

    pub fn leave(&mut self, queue: QueueKey, key: SortKey, cause: Cause, at: DateTime<Utc>) {
        let q = self.queues.entry(queue).or_default();
        let removed = q.members.remove(&key);
        debug_assert!(removed, "only members leave a queue");
        q.changes.push(Change::pack(QueueChange {
            at_micros: at.timestamp_micros(),
            key,
            joined: false,
            cause,
        }));
    }

    /// Registers the label of the next round (rounds are labelled in order).
    pub(crate) fn label_round(&mut self, label: RoundLabel) {
        self.round_labels.push(label);
    }

    fn round_label(&self, cause: Cause) -> Option<&RoundLabel> {
        match cause {
            Cause::Round(r) => self.round_labels.get(r as usize),
            _ => None,
        }
    }

    /// Sets a queue's members (built in bulk from a snapshot).
    pub(crate) fn set_members(&mut self, queue: QueueKey, members: OrderStatisticSet<SortKey>) {
        self.queues.entry(queue).or_default().members = members;
    }

    pub(crate) fn changes_for_snapshot(&self) -> Vec<(QueueKey, &[Change])> {
        self.queues
            .iter()
            .map(|(k, q)| (*k, q.changes.as_slice()))
            .collect()
    }

    pub(crate) fn restore_changes(&mut self, changes: Vec<(QueueKey, Vec<Change>)>) {
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
            for change in q.changes[index..].iter().map(Change::unpack) {
                if change.key < *k {
                    count -= if change.joined { 1 } else { -1 };
                }
            }
            count.max(0) as usize
        };

        let mut index = q.changes.len();
        while index > 0 {
            index -= 1;
            let change = q.changes[index].unpack();
            if change.at_micros < since_micros {
                break;
            }
            let merges_into_last = matches!(change.cause, Cause::Round(_))
                && change.key.number != me
                && my_key.is_some_and(|mine| change.key < mine)
                && movements.last().is_some_and(|last: &Movement| {
                    last.cause == change.cause
                        && last.other_application.is_some()
                        && last.position_before == position
                });
            if movements.len() >= limit && !merges_into_last {
                truncated = true;
                break;
            }
            let at = Utc
                .timestamp_micros(change.at_micros)
                .single()
                .unwrap_or_default();
            if change.key.number == me {
                if change.joined {
                    // This application joined (or re-joined with a new key) here.
                    let previous = (index > 0)
                        .then(|| q.changes[index - 1].unpack())
                        .filter(|p| {
                            p.key.number == me && !p.joined && p.at_micros == change.at_micros
                        });
                    match previous {
                        Some(left) => {
                            let before = count_less_before(index - 1, &left.key) + 1;
                            // A change of this application that left its position as it was
                            // is no movement.
                            if Some(before) != position {
                                movements.push(Movement {
                                    at,
                                    cause: change.cause,
                                    reason: format!(
                                        "this application: {}",
                                        change.cause.describe()
                                    ),
                                    other_application: None,
                                    position_before: Some(before),
                                    position_after: position,
                                    applications: 1,
                                    round: None,
                                });
                            }
                            position = Some(before);
                            my_key = Some(left.key);
                            index -= 1;
                        }
                        None => {
                            movements.push(Movement {
                                at,
                                cause: change.cause,
                                reason: match change.cause {
                                    Cause::OfferDeclined | Cause::OfferExpired => format!(
                                        "this application joined the queue: {}",
                                        change.cause.describe()
                                    ),
                                    _ => "this application joined the queue".to_owned(),
                                },
                                other_application: None,
                                position_before: None,
                                position_after: position,
                                applications: 1,
                                round: None,
                            });
                            position = None;
                            my_key = None;
                        }
                    }
                } else {
                    // This application left the queue (withdrawn, placed or moved elsewhere).
                    let before = count_less_before(index, &change.key) + 1;
                    let label = self.round_label(change.cause);
                    movements.push(Movement {
                        at,
                        cause: change.cause,
                        reason: match label {
                            Some(l) => format!("{} {} this application", l.name, l.verb),
                            None => format!(
                                "this application left the queue: {}",
                                change.cause.describe()
                            ),
                        },
                        other_application: None,
                        position_before: Some(before),
                        position_after: None,
                        applications: 1,
                        round: label.map(|l| l.id.clone()),
                    });
                    position = Some(before);
                    my_key = Some(change.key);
                }
                continue;
            }
            let (Some(mine), Some(pos)) = (my_key, position) else {
                continue;
            };
            // Another application re-keyed by one event (it left with its old key and joined
            // with its new one at the same instant, e.g. a confirmed privilege): one movement
            // if it crossed this application, none if it stayed on the same side.
            let rekeyed_from = (change.joined && index > 0)
                .then(|| q.changes[index - 1].unpack())
                .filter(|p| {
                    p.key.number == change.key.number
                        && !p.joined
                        && p.at_micros == change.at_micros
                        && p.cause == change.cause
                });
            if let Some(left) = rekeyed_from {
                index -= 1;
                let (was_ahead, is_ahead) = (left.key < mine, change.key < mine);
                if was_ahead != is_ahead {
                    let before = if is_ahead { pos - 1 } else { pos + 1 };
                    movements.push(Movement {
                        at,
                        cause: change.cause,
                        reason: if is_ahead {
                            format!("{} ahead of you", change.cause.describe())
                        } else {
                            format!(
                                "{}: an application ahead of you moved behind you",
                                change.cause.describe()
                            )
                        },
                        other_application: Some(change.key.number),
                        position_before: Some(before),
                        position_after: Some(pos),
                        applications: 1,
                        round: None,
                    });
                    position = Some(before);
                }
                continue;
            }
            if change.key < mine {
                let before = if change.joined { pos - 1 } else { pos + 1 };
                if let Some(label) = self.round_label(change.cause) {
                    // Consecutive changes of one round make one movement.
                    match movements.last_mut() {
                        Some(last)
                            if last.cause == change.cause
                                && last.other_application.is_some()
                                && last.position_before == Some(pos) =>
                        {
                            last.applications += 1;
                            last.position_before = Some(before);
                            last.other_application = Some(change.key.number);
                            last.reason = round_reason(label, last.applications);
                        }
                        _ => movements.push(Movement {
                            at,
                            cause: change.cause,
                            reason: round_reason(label, 1),
                            other_application: Some(change.key.number),
                            position_before: Some(before),
                            position_after: Some(pos),
                            applications: 1,
                            round: Some(label.id.clone()),
                        }),
                    }
                    position = Some(before);
                    continue;
                }
                movements.push(Movement {
                    at,
                    cause: change.cause,
                    reason: if change.joined {
                        format!("{} ahead of you", change.cause.describe())
                    } else {
                        format!(
                            "{}: an application ahead of you left",
                            change.cause.describe()
                        )
                    },
                    other_application: Some(change.key.number),
                    position_before: Some(before),
                    position_after: Some(pos),
                    applications: 1,
                    round: None,
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

fn round_reason(label: &RoundLabel, n: usize) -> String {
    let children = if n == 1 { "child" } else { "children" };
    format!("{} {} {n} {children} ahead of you", label.name, label.verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_change_takes_24_bytes_and_unpacks_to_what_was_packed() {
        // Memory budget: the change log holds one entry per join or leave.
        assert_eq!(std::mem::size_of::<Change>(), 24);
        let causes = [
            Cause::Submitted,
            Cause::PreferencesAmended,
            Cause::Withdrawn,
            Cause::PrivilegeClaimed,
            Cause::PrivilegeConfirmed,
            Cause::PrivilegeRevoked,
            Cause::Round(0),
            Cause::Round(u16::MAX),
            Cause::OfferDeclined,
            Cause::OfferExpired,
            Cause::Other,
        ];
        for (i, cause) in causes.into_iter().enumerate() {
            for joined in [false, true] {
                let change = QueueChange {
                    at_micros: -5 + i as i64 * 1_000_000_007,
                    key: SortKey {
                        tier: i as u8,
                        tie_break: i64::MIN + i as i64,
                        number: ApplicationNumber(u32::MAX - i as u32),
                    },
                    joined,
                    cause,
                };
                assert_eq!(Change::pack(change).unpack(), change);
            }
        }
    }
}
