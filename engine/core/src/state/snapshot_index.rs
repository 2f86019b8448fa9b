//! Rebuilding a state's indexes from a snapshot's applications ([`SnapshotIndexer`]): the
//! child indexes, and each queue's members gathered in application order, then sorted and
//! built in bulk ([`OrderStatisticSet::from_sorted`]) instead of by one insert each.

use std::collections::{BTreeMap, HashMap};

use crate::domain::ApplicationNumber;
use crate::ordering::SortKey;
use crate::ostree::OrderStatisticSet;
use crate::queues::{Change, QueueKey, Queues};

use super::{Application, ApplicationStatus, HistoryStep, ServiceKind, State};

/// What follows a snapshot's applications: the histories and the queues' change logs
/// ([`State::read_snapshot_tail`]).
pub struct SnapshotTail {
    pub(super) submitted: super::segmented::Segmented<u64>,
    pub(super) steps: HashMap<ApplicationNumber, Vec<HistoryStep>>,
    pub(super) changes: Vec<(QueueKey, Vec<Change>)>,
}

/// A state being rebuilt from a snapshot: it takes the applications in order, batch by
/// batch, indexing each (the child index, the enrolled index and each queue's members),
/// and builds every queue's order-statistic set in bulk at the end. It may run on a
/// thread of its own while the rest of the stream is read.
pub struct SnapshotIndexer {
    pub(super) state: State,
    pub(super) queues: Queues,
    /// Each queue's members, in the order the applications come (sorted at the end).
    pub(super) members: BTreeMap<QueueKey, Vec<SortKey>>,
}

impl SnapshotIndexer {
    /// Indexes the next applications, in the stream's order, and keeps them.
    pub fn add(&mut self, batch: Vec<Application>) {
        let state = &mut self.state;
        let first = state.data.applications.len();
        state.data.applications.extend(batch);
        // The child index reads an entry's key from its application: they go in first.
        let applications = &state.data.applications;
        for app in applications.iter_from(first) {
            if app.status.is_current(app.service) {
                state
                    .active_by_child
                    .insert(applications, app.service, &app.child, app.number);
            }
            if app.service == ServiceKind::Kindergarten && app.status == ApplicationStatus::Enrolled
            {
                state.enrolled_by_child.insert(app.child, app.number);
            }
        }
        let members = &mut self.members;
        for app in state.data.applications.iter_from(first) {
            state.for_each_queue_entry(app, |queue, key| {
                members.entry(queue).or_default().push(key);
            });
        }
    }

    /// Builds the queues' members from the applications indexed so far (each queue's set in
    /// bulk, from its sorted keys). Called by [`SnapshotIndexer::finish`] if not before: a
    /// caller with a thread of its own for the indexer calls it there.
    pub fn build_queues(&mut self) {
        for (queue, mut keys) in std::mem::take(&mut self.members) {
            sort_keys(&mut keys);
            let members =
                OrderStatisticSet::from_sorted(keys).expect("an application is once in a queue");
            self.queues.set_members(queue, members);
        }
    }

    /// The state, once every application is in and the tail is read.
    pub fn finish(mut self, tail: SnapshotTail) -> Result<State, String> {
        self.build_queues();
        let SnapshotTail {
            submitted,
            steps,
            changes,
        } = tail;
        let mut state = self.state;
        state.histories.submitted = submitted;
        state.histories.steps = steps;
        self.queues.restore_changes(changes);
        state.queues = self.queues;
        Ok(state)
    }
}

/// Sorts a queue's keys gathered in application order: by a counting sort on the tier
/// (stable), after which each tier's keys are usually in order already (registration
/// times grow with application numbers); a tier that is not is sorted.
fn sort_keys(keys: &mut Vec<SortKey>) {
    if keys.is_sorted() {
        return;
    }
    let mut counts = [0usize; 256];
    for k in keys.iter() {
        counts[usize::from(k.tier)] += 1;
    }
    let mut starts = [0usize; 256];
    let mut at = 0;
    for (start, count) in starts.iter_mut().zip(counts) {
        *start = at;
        at += count;
    }
    if counts.iter().filter(|&&c| c > 0).count() > 1 {
        let mut by_tier = vec![keys[0]; keys.len()];
        let mut next = starts;
        for &k in keys.iter() {
            let slot = &mut next[usize::from(k.tier)];
            by_tier[*slot] = k;
            *slot += 1;
        }
        *keys = by_tier;
    }
    for (start, count) in starts.into_iter().zip(counts) {
        let tier = &mut keys[start..start + count];
        if !tier.is_sorted() {
            tier.sort_unstable();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_as_a_plain_sort_does() {
        // Keys in application order: registration times mostly growing, a few tiers, and
        // some tiers out of order (as under a lottery or a birth-date tie-break).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (n, tiers, shuffled) in [
            (0, 1, false),
            (1, 1, false),
            (500, 1, false),
            (500, 3, false),
            (2000, 5, true),
            (3000, 256, true),
        ] {
            let mut keys: Vec<SortKey> = (0..n)
                .map(|i| SortKey {
                    tier: (next() % tiers) as u8,
                    tie_break: if shuffled {
                        (next() % 1000) as i64
                    } else {
                        i as i64 / 3
                    },
                    number: ApplicationNumber(i as u32 + 1),
                })
                .collect();
            let mut want = keys.clone();
            want.sort_unstable();
            sort_keys(&mut keys);
            assert_eq!(keys, want, "{n} keys, {tiers} tiers");
        }
    }
}
