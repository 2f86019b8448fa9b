//! Student-proposing deferred acceptance (Gale–Shapley) with capacities.
//!
//! Two layers live here. The index layer ([`ProblemBuilder`], [`Problem`],
//! [`deferred_acceptance`]) works on dense `u32` indices and is what the engine and the
//! benchmark call. The instance layer ([`Instance`], [`solve_instance`],
//! [`solve_instance_json`]) reads the file format of `ochered allocate --instance FILE`
//! (docs/RULES.md#allocation-instance, in `instance`), resolves string ids to indices, and
//! writes the result JSON.
//!
//! Everything here is a pure function of its input: no clock, no randomness, no I/O, and no
//! dependence on the order in which applicants or institutions are listed. That is what lets
//! an auditor re-run an exported instance anywhere and get the same bytes.
//!
//! How an institution ranks applicants: by the applicant's priority class at that
//! institution (smaller is better; an institution the applicant did not name gives
//! [`UNNAMED_CLASS`], worse than any named class), then by the applicant's tie-break `rank`
//! (unique; smaller is better).

use std::collections::HashSet;

use thiserror::Error;

mod instance;

pub use instance::{
    solve_instance, solve_instance_json, AllocationResult, ApplicantSpec, Instance, InstanceError,
    InstitutionSpec,
};

/// The class an applicant has at an institution for which no priority was named.
/// Named classes must be strictly smaller, so that any named class beats no class.
pub const UNNAMED_CLASS: u32 = u32::MAX;

/// Above this many entries a duplicate check sorts a copy instead of comparing all pairs.
const QUADRATIC_DUPLICATE_CHECK_LEN_MAX: usize = 16;

// ---------------------------------------------------------------------------------------------
// Index layer
// ---------------------------------------------------------------------------------------------

/// A rule of the index layer was broken while building a [`Problem`].
/// Applicant numbers are the order of [`ProblemBuilder::push_applicant`] calls, from 0.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProblemError {
    #[error("applicant {applicant} lists institution {institution}, but there are only {n_institutions} institutions")]
    PreferenceOutOfRange {
        applicant: u32,
        institution: u32,
        n_institutions: u32,
    },
    #[error("applicant {applicant} lists institution {institution} more than once")]
    DuplicatePreference { applicant: u32, institution: u32 },
    #[error("applicant {applicant} has a priority at institution {institution}, but there are only {n_institutions} institutions")]
    PriorityOutOfRange {
        applicant: u32,
        institution: u32,
        n_institutions: u32,
    },
    #[error("applicant {applicant} has more than one priority at institution {institution}")]
    DuplicatePriority { applicant: u32, institution: u32 },
    #[error("applicant {applicant} has priority class {class} at institution {institution}; named classes must be below {UNNAMED_CLASS}")]
    ClassOutOfRange {
        applicant: u32,
        institution: u32,
        class: u32,
    },
    #[error(
        "applicants {first} and {second} share the tie-break rank {rank}; ranks must be unique"
    )]
    DuplicateRank { rank: u64, first: u32, second: u32 },
    #[error("too many applicants: at most {} are supported", u32::MAX)]
    TooManyApplicants,
    #[error("too many preferences in total: at most {} are supported", u32::MAX)]
    TooManyPreferences,
}

/// Collects applicants one by one and checks each rule as it goes; [`ProblemBuilder::build`]
/// checks the one rule that needs everybody (unique ranks) and lays the data out for
/// [`deferred_acceptance`].
#[derive(Debug, Clone)]
pub struct ProblemBuilder {
    capacities: Vec<u32>,
    /// `preference_starts[a]..preference_starts[a + 1]` is applicant `a`'s slice of the two
    /// arrays below (compressed sparse rows).
    preference_starts: Vec<u32>,
    preference_institutions: Vec<u32>,
    /// The applicant's class at the institution in the same position of
    /// `preference_institutions`. Only institutions on an applicant's own list can ever
    /// compare that applicant, so priorities elsewhere are dropped here.
    preference_classes: Vec<u32>,
    ranks: Vec<u64>,
}

impl ProblemBuilder {
    /// Starts a problem with one institution per entry of `capacities` (seats, may be 0).
    pub fn new(capacities: Vec<u32>) -> Self {
        Self::with_capacity(capacities, 0, 0)
    }

    /// Like [`ProblemBuilder::new`], reserving room for the given numbers of applicants and
    /// of preferences over all applicants, so that building a large problem does not
    /// reallocate.
    pub fn with_capacity(capacities: Vec<u32>, n_applicants: usize, n_preferences: usize) -> Self {
        assert!(
            u32::try_from(capacities.len()).is_ok(),
            "at most u32::MAX institutions"
        );
        let mut preference_starts = Vec::with_capacity(n_applicants + 1);
        preference_starts.push(0);
        Self {
            capacities,
            preference_starts,
            preference_institutions: Vec::with_capacity(n_preferences),
            preference_classes: Vec::with_capacity(n_preferences),
            ranks: Vec::with_capacity(n_applicants),
        }
    }

    /// Number of applicants pushed so far.
    pub fn n_applicants(&self) -> usize {
        self.ranks.len()
    }

    /// Adds an applicant and returns its number.
    ///
    /// `preferences` are institution indices, best first. `priorities` are
    /// `(institution, class)` pairs; institutions not named get [`UNNAMED_CLASS`]. `rank` is
    /// the tie-break key, smaller first, unique over the problem. On error nothing is added.
    pub fn push_applicant(
        &mut self,
        preferences: &[u32],
        priorities: &[(u32, u32)],
        rank: u64,
    ) -> Result<u32, ProblemError> {
        let applicant =
            u32::try_from(self.ranks.len()).map_err(|_| ProblemError::TooManyApplicants)?;
        if applicant == u32::MAX {
            return Err(ProblemError::TooManyApplicants);
        }
        let n_institutions = self.capacities.len() as u32;
        for &institution in preferences {
            if institution >= n_institutions {
                return Err(ProblemError::PreferenceOutOfRange {
                    applicant,
                    institution,
                    n_institutions,
                });
            }
        }
        if let Some(institution) = first_duplicate(preferences.iter().copied()) {
            return Err(ProblemError::DuplicatePreference {
                applicant,
                institution,
            });
        }
        for &(institution, class) in priorities {
            if institution >= n_institutions {
                return Err(ProblemError::PriorityOutOfRange {
                    applicant,
                    institution,
                    n_institutions,
                });
            }
            if class == UNNAMED_CLASS {
                return Err(ProblemError::ClassOutOfRange {
                    applicant,
                    institution,
                    class,
                });
            }
        }
        if let Some(institution) = first_duplicate(priorities.iter().map(|&(i, _)| i)) {
            return Err(ProblemError::DuplicatePriority {
                applicant,
                institution,
            });
        }
        let end = self.preference_institutions.len() + preferences.len();
        let end = u32::try_from(end).map_err(|_| ProblemError::TooManyPreferences)?;

        self.preference_institutions.extend_from_slice(preferences);
        for &institution in preferences {
            let class = priorities
                .iter()
                .find(|&&(named, _)| named == institution)
                .map_or(UNNAMED_CLASS, |&(_, class)| class);
            self.preference_classes.push(class);
        }
        self.preference_starts.push(end);
        self.ranks.push(rank);
        Ok(applicant)
    }

    /// Checks that ranks are unique and stores the applicants in rank order, which is the
    /// order in which [`deferred_acceptance`] lets them propose. Cost: O(n log n) for the
    /// sort plus O(L) to copy the L preferences.
    pub fn build(self) -> Result<Problem, ProblemError> {
        let n_applicants = self.ranks.len();
        let mut order: Vec<(u64, u32)> = self
            .ranks
            .iter()
            .enumerate()
            .map(|(applicant, &rank)| (rank, applicant as u32))
            .collect();
        order.sort_unstable();
        if let Some(pair) = order.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(ProblemError::DuplicateRank {
                rank: pair[0].0,
                first: pair[0].1,
                second: pair[1].1,
            });
        }

        let mut preference_starts = Vec::with_capacity(n_applicants + 1);
        let mut preference_institutions = Vec::with_capacity(self.preference_institutions.len());
        let mut preference_classes = Vec::with_capacity(self.preference_classes.len());
        let mut input_index = Vec::with_capacity(n_applicants);
        preference_starts.push(0u32);
        for &(_, applicant) in &order {
            let start = self.preference_starts[applicant as usize] as usize;
            let end = self.preference_starts[applicant as usize + 1] as usize;
            preference_institutions.extend_from_slice(&self.preference_institutions[start..end]);
            preference_classes.extend_from_slice(&self.preference_classes[start..end]);
            // Cannot overflow: the builder kept the total below u32::MAX.
            preference_starts.push(preference_institutions.len() as u32);
            input_index.push(applicant);
        }
        Ok(Problem {
            capacities: self.capacities,
            preference_starts,
            preference_institutions,
            preference_classes,
            input_index,
        })
    }
}

/// Returns the first value (in input order) that appeared earlier in `values`.
fn first_duplicate(mut values: impl ExactSizeIterator<Item = u32>) -> Option<u32> {
    if values.len() <= QUADRATIC_DUPLICATE_CHECK_LEN_MAX {
        let values: Vec<u32> = values.collect();
        (1..values.len())
            .find(|&i| values[..i].contains(&values[i]))
            .map(|i| values[i])
    } else {
        let mut seen = HashSet::with_capacity(values.len());
        values.find(|&value| !seen.insert(value))
    }
}

/// A validated allocation problem, laid out for [`deferred_acceptance`].
///
/// Internally applicants are stored in rank order (their "position"), so an institution's
/// whole ranking of an applicant fits in one `u64`: `class << 32 | position`. Comparing two
/// applicants is one integer comparison, and the key also names the applicant.
#[derive(Debug, Clone)]
pub struct Problem {
    capacities: Vec<u32>,
    /// Indexed by position; see [`ProblemBuilder`].
    preference_starts: Vec<u32>,
    preference_institutions: Vec<u32>,
    preference_classes: Vec<u32>,
    /// `input_index[position]` is the applicant's number in the builder's input order.
    input_index: Vec<u32>,
}

impl Problem {
    pub fn n_applicants(&self) -> usize {
        self.input_index.len()
    }

    pub fn n_institutions(&self) -> usize {
        self.capacities.len()
    }

    pub fn n_preferences(&self) -> usize {
        self.preference_institutions.len()
    }

    pub fn capacities(&self) -> &[u32] {
        &self.capacities
    }

    /// Heap bytes held by the problem (the vectors' allocated capacity).
    pub fn memory_bytes(&self) -> usize {
        self.capacities.capacity() * 4
            + self.preference_starts.capacity() * 4
            + self.preference_institutions.capacity() * 4
            + self.preference_classes.capacity() * 4
            + self.input_index.capacity() * 4
    }

    fn preference_range(&self, position: usize) -> std::ops::Range<usize> {
        self.preference_starts[position] as usize..self.preference_starts[position + 1] as usize
    }

    /// `position_of[input applicant] = position`.
    fn positions(&self) -> Vec<u32> {
        let mut position_of = vec![0u32; self.n_applicants()];
        for (position, &applicant) in self.input_index.iter().enumerate() {
            position_of[applicant as usize] = position as u32;
        }
        position_of
    }

    /// Converts a per-position assignment (`u32::MAX` = none) to per-input-applicant.
    fn to_input_order(&self, by_position: &[u32]) -> Vec<Option<u32>> {
        let mut assignment = vec![None; self.n_applicants()];
        for (position, &institution) in by_position.iter().enumerate() {
            if institution != u32::MAX {
                assignment[self.input_index[position] as usize] = Some(institution);
            }
        }
        assignment
    }
}

fn ranking_key(class: u32, position: u32) -> u64 {
    (u64::from(class) << 32) | u64::from(position)
}

fn key_position(key: u64) -> u32 {
    key as u32
}

/// Student-proposing deferred acceptance. Returns, per applicant in the builder's input
/// order, the institution index it is assigned to, or `None`.
///
/// The result is the applicant-optimal stable matching: no applicant and institution would
/// both rather be matched to each other, no institution is over capacity, and no applicant can
/// gain by misreporting preferences. It is unique, so it does not depend on the order in which
/// proposals are processed.
///
/// Algorithm: every institution keeps its tentatively accepted applicants in a binary
/// max-heap of ranking keys, so its worst holder is at the root. Applicants propose in rank
/// order; a proposal is accepted if a seat is free, replaces the root if it ranks better
/// (the evicted applicant immediately proposes to its next choice, continuing the chain), and
/// is otherwise rejected after one comparison.
///
/// Complexity: each applicant proposes at most once to each institution on its list, so with
/// L preferences in total there are at most L proposals, each O(1) when rejected and
/// O(log c) when accepted (c = the institution's capacity): O(L log c_max) time. Memory
/// beyond the problem: one `u32` cursor per applicant, one `u64` heap slot per seat that can
/// possibly be filled (`min(capacity, number of applicants listing it)`, at most L), and the
/// result. All the institution state is a few flat arrays, so the loop stays in cache except
/// for the applicant it is working on.
pub fn deferred_acceptance(problem: &Problem) -> Vec<Option<u32>> {
    let n_institutions = problem.n_institutions();
    let n_applicants = problem.n_applicants();

    // A heap never needs more slots than the applicants that could ever propose to it.
    let mut demand = vec![0u32; n_institutions];
    for &institution in &problem.preference_institutions {
        demand[institution as usize] += 1;
    }
    let mut heap_starts = Vec::with_capacity(n_institutions + 1);
    heap_starts.push(0usize);
    let mut n_slots = 0usize;
    for (institution, &capacity) in problem.capacities.iter().enumerate() {
        n_slots += capacity.min(demand[institution]) as usize;
        heap_starts.push(n_slots);
    }
    drop(demand);
    let mut heap_keys = vec![0u64; n_slots];
    let mut heap_lens = vec![0u32; n_institutions];

    // `cursor[position]` is the next entry of the applicant's list it has not proposed to yet.
    let mut cursor: Vec<u32> = problem.preference_starts[..n_applicants].to_vec();
    let preference_starts = &problem.preference_starts;
    let preference_institutions = &problem.preference_institutions;
    let preference_classes = &problem.preference_classes;

    for first_proposer in 0..n_applicants as u32 {
        let mut proposer = first_proposer;
        // Follow one chain of proposals and evictions until it ends with a free seat taken or
        // with an applicant who has run out of choices.
        'chain: loop {
            let end = preference_starts[proposer as usize + 1];
            let mut next = cursor[proposer as usize];
            while next < end {
                let institution = preference_institutions[next as usize] as usize;
                let key = ranking_key(preference_classes[next as usize], proposer);
                next += 1;
                let heap = &mut heap_keys[heap_starts[institution]..heap_starts[institution + 1]];
                let len = heap_lens[institution] as usize;
                if len < heap.len() {
                    heap_push(&mut heap[..=len], key);
                    heap_lens[institution] += 1;
                    cursor[proposer as usize] = next;
                    break 'chain;
                }
                if let Some(&worst) = heap.first() {
                    if key < worst {
                        heap_replace_max(heap, key);
                        cursor[proposer as usize] = next;
                        proposer = key_position(worst);
                        continue 'chain;
                    }
                }
            }
            cursor[proposer as usize] = end;
            break 'chain;
        }
    }

    let mut by_position = vec![u32::MAX; n_applicants];
    for institution in 0..n_institutions {
        let start = heap_starts[institution];
        let len = heap_lens[institution] as usize;
        for &key in &heap_keys[start..start + len] {
            by_position[key_position(key) as usize] = institution as u32;
        }
    }
    problem.to_input_order(&by_position)
}

/// Inserts `key` into the max-heap `heap[..heap.len() - 1]`, using the last slot.
fn heap_push(heap: &mut [u64], key: u64) {
    let mut hole = heap.len() - 1;
    while hole > 0 {
        let parent = (hole - 1) / 2;
        if heap[parent] >= key {
            break;
        }
        heap[hole] = heap[parent];
        hole = parent;
    }
    heap[hole] = key;
}

/// Replaces the root of the non-empty max-heap `heap` with `key` and restores the heap.
fn heap_replace_max(heap: &mut [u64], key: u64) {
    let len = heap.len();
    let mut hole = 0;
    loop {
        let left = 2 * hole + 1;
        if left >= len {
            break;
        }
        let right = left + 1;
        let child = if right < len && heap[right] > heap[left] {
            right
        } else {
            left
        };
        if heap[child] <= key {
            break;
        }
        heap[hole] = heap[child];
        hole = child;
    }
    heap[hole] = key;
}

/// Serial dictatorship: walk the applicants by rank and give each the best institution on
/// its list that still has a free seat, ignoring priority classes. This is the Russian
/// practice of walking the queue; it equals [`deferred_acceptance`] when every institution
/// ranks applicants the same way (for example, when nobody has a priority). O(L) time.
pub fn serial_dictatorship(problem: &Problem) -> Vec<Option<u32>> {
    let mut seats_free = problem.capacities.clone();
    let mut by_position = vec![u32::MAX; problem.n_applicants()];
    for (position, assigned) in by_position.iter_mut().enumerate() {
        let range = problem.preference_range(position);
        for &institution in &problem.preference_institutions[range] {
            let seats = &mut seats_free[institution as usize];
            if *seats > 0 {
                *seats -= 1;
                *assigned = institution;
                break;
            }
        }
    }
    problem.to_input_order(&by_position)
}

/// Why an assignment is not a valid stable allocation of a problem. Applicant numbers are
/// the builder's input order.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AssignmentViolation {
    #[error("the assignment has {found} entries for {expected} applicants")]
    WrongLength { expected: usize, found: usize },
    #[error(
        "applicant {applicant} is assigned to institution {institution}, which is not on its list"
    )]
    NotOnList { applicant: u32, institution: u32 },
    #[error("institution {institution} holds {assigned} applicants but has {capacity} seats")]
    OverCapacity {
        institution: u32,
        assigned: u32,
        capacity: u32,
    },
    #[error("applicant {applicant} and institution {institution} block the assignment: the applicant prefers it, and it has a free seat or holds someone it ranks lower")]
    BlockingPair { applicant: u32, institution: u32 },
}

/// Checks that `assignment` (per applicant in input order) is feasible and stable for
/// `problem`. Reports the first violation: length, then lists, then capacity, then the
/// blocking pair of the lowest-numbered applicant. O(L) time.
pub fn check_assignment(
    problem: &Problem,
    assignment: &[Option<u32>],
) -> Result<(), AssignmentViolation> {
    let n_applicants = problem.n_applicants();
    if assignment.len() != n_applicants {
        return Err(AssignmentViolation::WrongLength {
            expected: n_applicants,
            found: assignment.len(),
        });
    }
    let position_of = problem.positions();
    let mut n_assigned = vec![0u32; problem.n_institutions()];
    // The key of the worst-ranked applicant each institution holds.
    let mut worst_key = vec![0u64; problem.n_institutions()];
    for (applicant, &assigned) in assignment.iter().enumerate() {
        let Some(institution) = assigned else {
            continue;
        };
        let position = position_of[applicant];
        let range = problem.preference_range(position as usize);
        let on_list = problem.preference_institutions[range.clone()]
            .iter()
            .position(|&listed| listed == institution);
        let Some(offset) = on_list else {
            return Err(AssignmentViolation::NotOnList {
                applicant: applicant as u32,
                institution,
            });
        };
        let class = problem.preference_classes[range.start + offset];
        let slot = institution as usize;
        n_assigned[slot] += 1;
        worst_key[slot] = worst_key[slot].max(ranking_key(class, position));
    }
    for (institution, (&assigned, &capacity)) in
        n_assigned.iter().zip(&problem.capacities).enumerate()
    {
        if assigned > capacity {
            return Err(AssignmentViolation::OverCapacity {
                institution: institution as u32,
                assigned,
                capacity,
            });
        }
    }
    for (applicant, &assigned) in assignment.iter().enumerate() {
        let position = position_of[applicant];
        let range = problem.preference_range(position as usize);
        for index in range {
            let institution = problem.preference_institutions[index];
            if Some(institution) == assigned {
                break;
            }
            let slot = institution as usize;
            let key = ranking_key(problem.preference_classes[index], position);
            if n_assigned[slot] < problem.capacities[slot] || key < worst_key[slot] {
                return Err(AssignmentViolation::BlockingPair {
                    applicant: applicant as u32,
                    institution,
                });
            }
        }
    }
    Ok(())
}

/// Whether `assignment` is feasible and stable for `problem`; see [`check_assignment`].
pub fn is_stable(problem: &Problem, assignment: &[Option<u32>]) -> bool {
    check_assignment(problem, assignment).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_keeps_the_largest_key_at_the_root() {
        let mut heap = vec![0u64; 6];
        for (len, key) in [5u64, 1, 9, 3, 7, 2].into_iter().enumerate() {
            heap_push(&mut heap[..=len], key);
            assert_eq!(
                heap[0],
                *[5u64, 1, 9, 3, 7, 2][..=len].iter().max().unwrap()
            );
        }
        heap_replace_max(&mut heap, 4);
        assert_eq!(heap[0], 7);
        heap_replace_max(&mut heap, 0);
        assert_eq!(heap[0], 5);
    }

    #[test]
    fn first_duplicate_finds_the_second_occurrence_in_both_modes() {
        assert_eq!(first_duplicate([3u32, 1, 2].into_iter()), None);
        assert_eq!(first_duplicate([3u32, 1, 2, 1, 3].into_iter()), Some(1));
        let long: Vec<u32> = (0..40).chain([7, 5]).collect();
        assert_eq!(first_duplicate(long.iter().copied()), Some(7));
    }
}
