//! Allocation tests: properties of deferred acceptance on small random instances (checked
//! against simple reference models written here), then the instance file format by example.

use std::collections::BTreeMap;

use ochered_core::allocation::{
    check_assignment, deferred_acceptance, is_stable, serial_dictatorship, solve_instance,
    solve_instance_json, AllocationResult, ApplicantSpec, AssignmentViolation, Instance,
    InstanceError, InstitutionSpec, Problem, ProblemBuilder, ProblemError,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A small instance in its plainest form, and reference models over it
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Small {
    capacities: Vec<u32>,
    applicants: Vec<SmallApplicant>,
}

#[derive(Debug, Clone)]
struct SmallApplicant {
    preferences: Vec<u32>,
    /// Class per institution (all of them, listed or not); `None` = not named.
    classes: Vec<Option<u32>>,
    rank: u64,
}

impl Small {
    fn n_institutions(&self) -> usize {
        self.capacities.len()
    }

    /// How `institution` ranks `applicant`: smaller is better.
    fn ranking(&self, applicant: usize, institution: u32) -> (u64, u64) {
        let spec = &self.applicants[applicant];
        let class = spec.classes[institution as usize].map_or(u64::from(u32::MAX), u64::from);
        (class, spec.rank)
    }

    fn problem(&self) -> Problem {
        let mut builder = ProblemBuilder::new(self.capacities.clone());
        for spec in &self.applicants {
            let priorities: Vec<(u32, u32)> = spec
                .classes
                .iter()
                .enumerate()
                .filter_map(|(institution, class)| class.map(|class| (institution as u32, class)))
                .collect();
            builder
                .push_applicant(&spec.preferences, &priorities, spec.rank)
                .expect("generated applicants are valid");
        }
        builder.build().expect("generated ranks are unique")
    }

    fn instance(&self) -> Instance {
        Instance {
            institutions: self
                .capacities
                .iter()
                .enumerate()
                .map(|(institution, &capacity)| InstitutionSpec {
                    id: institution_id(institution as u32),
                    capacity: i64::from(capacity),
                })
                .collect(),
            applicants: self
                .applicants
                .iter()
                .enumerate()
                .map(|(applicant, spec)| ApplicantSpec {
                    id: format!("a{applicant}"),
                    preferences: spec
                        .preferences
                        .iter()
                        .map(|&i| institution_id(i))
                        .collect(),
                    priorities: spec
                        .classes
                        .iter()
                        .enumerate()
                        .filter_map(|(institution, class)| {
                            class
                                .map(|class| (institution_id(institution as u32), i64::from(class)))
                        })
                        .collect(),
                    rank: spec.rank,
                })
                .collect(),
        }
    }
}

fn institution_id(institution: u32) -> String {
    format!("K{institution}")
}

/// Textbook Gale–Shapley in rounds: every free applicant proposes to its next choice, every
/// institution keeps the best `capacity` of those it holds and those proposing.
fn reference_deferred_acceptance(small: &Small) -> Vec<Option<u32>> {
    let n_applicants = small.applicants.len();
    let mut next_choice = vec![0usize; n_applicants];
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); small.n_institutions()];
    let mut assigned: Vec<Option<u32>> = vec![None; n_applicants];
    loop {
        let proposers: Vec<usize> = (0..n_applicants)
            .filter(|&a| {
                assigned[a].is_none() && next_choice[a] < small.applicants[a].preferences.len()
            })
            .collect();
        if proposers.is_empty() {
            return assigned;
        }
        for &a in &proposers {
            let institution = small.applicants[a].preferences[next_choice[a]];
            next_choice[a] += 1;
            held[institution as usize].push(a);
            assigned[a] = Some(institution);
        }
        for (institution, holders) in held.iter_mut().enumerate() {
            holders.sort_by_key(|&a| small.ranking(a, institution as u32));
            let kept = holders.len().min(small.capacities[institution] as usize);
            for a in holders.drain(kept..) {
                assigned[a] = None;
            }
        }
    }
}

/// Walks applicants in the given order; each takes its best institution with a free seat.
fn reference_serial_dictatorship(small: &Small, order: &[usize]) -> Vec<Option<u32>> {
    let mut seats_free = small.capacities.clone();
    let mut assigned = vec![None; small.applicants.len()];
    for &a in order {
        for &institution in &small.applicants[a].preferences {
            if seats_free[institution as usize] > 0 {
                seats_free[institution as usize] -= 1;
                assigned[a] = Some(institution);
                break;
            }
        }
    }
    assigned
}

/// The first way in which `assignment` is infeasible or unstable, found the slow, obvious way.
fn reference_violation(small: &Small, assignment: &[Option<u32>]) -> Option<String> {
    for (a, &assigned) in assignment.iter().enumerate() {
        if let Some(institution) = assigned {
            if !small.applicants[a].preferences.contains(&institution) {
                return Some(format!("a{a} assigned to K{institution}, not on its list"));
            }
        }
    }
    for (institution, &capacity) in small.capacities.iter().enumerate() {
        let holders = assignment
            .iter()
            .filter(|&&s| s == Some(institution as u32))
            .count();
        if holders > capacity as usize {
            return Some(format!("K{institution} holds {holders} > {capacity}"));
        }
    }
    for (a, spec) in small.applicants.iter().enumerate() {
        for &institution in &spec.preferences {
            if assignment[a] == Some(institution) {
                break;
            }
            let holders: Vec<usize> = (0..assignment.len())
                .filter(|&b| assignment[b] == Some(institution))
                .collect();
            let has_free_seat = holders.len() < small.capacities[institution as usize] as usize;
            let holds_someone_worse = holders
                .iter()
                .any(|&b| small.ranking(b, institution) > small.ranking(a, institution));
            if has_free_seat || holds_someone_worse {
                return Some(format!("a{a} and K{institution} block"));
            }
        }
    }
    None
}

/// Whether `got` is strictly better than `held` under the true list `preferences`
/// (institutions off the list are worse than being unassigned).
fn truly_prefers(preferences: &[u32], got: Option<u32>, held: Option<u32>) -> bool {
    let position = |choice: Option<u32>| {
        choice.and_then(|institution| preferences.iter().position(|&p| p == institution))
    };
    match (position(got), position(held)) {
        (Some(_), None) => true,
        (Some(got), Some(held)) => got < held,
        (None, _) => false,
    }
}

/// Every ordered list of distinct institutions from `0..n_institutions`, the empty one too.
fn all_lists(n_institutions: u32) -> Vec<Vec<u32>> {
    fn extend(prefix: &mut Vec<u32>, n_institutions: u32, lists: &mut Vec<Vec<u32>>) {
        lists.push(prefix.clone());
        for institution in 0..n_institutions {
            if !prefix.contains(&institution) {
                prefix.push(institution);
                extend(prefix, n_institutions, lists);
                prefix.pop();
            }
        }
    }
    let mut lists = Vec::new();
    extend(&mut Vec::new(), n_institutions, &mut lists);
    lists
}

/// Fixed-seed generator for shuffles inside a property (the seed itself comes from proptest).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn small_instance(
    institutions_max: usize,
    applicants_max: usize,
    with_priorities: bool,
) -> impl Strategy<Value = Small> {
    (1..=institutions_max, 0..=applicants_max).prop_flat_map(
        move |(n_institutions, n_applicants)| {
            let all_institutions: Vec<u32> = (0..n_institutions as u32).collect();
            let class = if with_priorities {
                prop::option::weighted(0.3, 0u32..3).boxed()
            } else {
                Just(None).boxed()
            };
            let applicant = (
                Just(all_institutions).prop_shuffle(),
                0..=n_institutions,
                prop::collection::vec(class, n_institutions),
            );
            let ranks: Vec<u64> = (0..n_applicants as u64).map(|r| r * 7 + 3).collect();
            (
                prop::collection::vec(0u32..4, n_institutions),
                prop::collection::vec(applicant, n_applicants),
                Just(ranks).prop_shuffle(),
            )
                .prop_map(|(capacities, applicants, ranks)| Small {
                    capacities,
                    applicants: applicants
                        .into_iter()
                        .zip(ranks)
                        .map(|((mut preferences, length, classes), rank)| {
                            preferences.truncate(length);
                            SmallApplicant {
                                preferences,
                                classes,
                                rank,
                            }
                        })
                        .collect(),
                })
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn assignment_is_feasible_and_stable(small in small_instance(8, 20, true)) {
        let problem = small.problem();
        let assignment = deferred_acceptance(&problem);
        prop_assert_eq!(assignment.len(), small.applicants.len());
        prop_assert_eq!(reference_violation(&small, &assignment), None);
        prop_assert_eq!(check_assignment(&problem, &assignment), Ok(()));
    }

    #[test]
    fn equals_textbook_gale_shapley_in_rounds(small in small_instance(8, 20, true)) {
        prop_assert_eq!(deferred_acceptance(&small.problem()), reference_deferred_acceptance(&small));
    }

    #[test]
    fn does_not_depend_on_the_order_of_the_input(
        small in small_instance(8, 20, true),
        seed in any::<u64>(),
    ) {
        let instance = small.instance();
        let mut shuffled = instance.clone();
        let mut random = SplitMix64(seed);
        random.shuffle(&mut shuffled.institutions);
        random.shuffle(&mut shuffled.applicants);
        prop_assert_eq!(solve_instance(&instance).unwrap(), solve_instance(&shuffled).unwrap());
    }

    /// The JSON output lists every applicant once, in byte order of ids (ids here share
    /// prefixes, contain NUL and multi-byte characters), exactly as `AllocationResult`
    /// serializes.
    #[test]
    fn json_output_is_the_sorted_result(
        (small, ids) in small_instance(4, 12, true).prop_flat_map(|small| {
            let n_applicants = small.applicants.len();
            (Just(small), prop::collection::btree_set("[ab\u{0}é]{0,10}", n_applicants))
        }),
        seed in any::<u64>(),
    ) {
        let mut ids: Vec<String> = ids.into_iter().collect();
        SplitMix64(seed).shuffle(&mut ids);
        let mut instance = small.instance();
        for (spec, id) in instance.applicants.iter_mut().zip(ids) {
            spec.id = id;
        }
        let text = serde_json::to_string(&instance).unwrap();
        let result = solve_instance(&instance).unwrap();
        prop_assert_eq!(result.assignments.len(), instance.applicants.len());
        prop_assert_eq!(
            solve_instance_json(&text).unwrap(),
            serde_json::to_string_pretty(&result).unwrap()
        );
    }

    #[test]
    fn equals_serial_dictatorship_without_priorities(small in small_instance(8, 20, false)) {
        let problem = small.problem();
        let mut by_rank: Vec<usize> = (0..small.applicants.len()).collect();
        by_rank.sort_by_key(|&a| small.applicants[a].rank);
        let assignment = deferred_acceptance(&problem);
        prop_assert_eq!(&assignment, &serial_dictatorship(&problem));
        prop_assert_eq!(&assignment, &reference_serial_dictatorship(&small, &by_rank));
    }

    /// When every institution ranks applicants the same way (a class that belongs to the
    /// applicant, not the institution), the result is walking the queue in that order.
    #[test]
    fn equals_serial_dictatorship_under_a_common_order(
        small in small_instance(8, 20, false),
        applicant_classes in prop::collection::vec(0u32..3, 20),
    ) {
        let mut small = small;
        for (spec, &class) in small.applicants.iter_mut().zip(&applicant_classes) {
            spec.classes = vec![Some(class); spec.classes.len()];
        }
        let mut queue: Vec<usize> = (0..small.applicants.len()).collect();
        queue.sort_by_key(|&a| (applicant_classes[a], small.applicants[a].rank));
        prop_assert_eq!(
            deferred_acceptance(&small.problem()),
            reference_serial_dictatorship(&small, &queue)
        );
    }

    #[test]
    fn checker_agrees_with_the_reference_on_arbitrary_assignments(
        small in small_instance(6, 12, true),
        seed in any::<u64>(),
    ) {
        let problem = small.problem();
        let mut random = SplitMix64(seed);
        let n_institutions = small.n_institutions() as u64;
        // Start from the stable assignment and disturb a few entries, so that both valid and
        // subtly invalid assignments are common.
        let mut assignment = deferred_acceptance(&problem);
        let n_changes = random.next() % 3;
        for _ in 0..n_changes {
            if assignment.is_empty() {
                break;
            }
            let a = (random.next() % assignment.len() as u64) as usize;
            let choice = random.next() % (n_institutions + 1);
            assignment[a] = (choice < n_institutions).then_some(choice as u32);
        }
        prop_assert_eq!(
            is_stable(&problem, &assignment),
            reference_violation(&small, &assignment).is_none()
        );
    }

    /// Brute force: no applicant gains by submitting any other list (every ordered subset of
    /// the institutions) while everybody else tells the truth.
    #[test]
    fn no_applicant_gains_by_misreporting(small in small_instance(4, 6, true)) {
        let truthful = deferred_acceptance(&small.problem());
        let lists = all_lists(small.n_institutions() as u32);
        for (a, &truthful_outcome) in truthful.iter().enumerate() {
            let true_preferences = small.applicants[a].preferences.clone();
            for list in &lists {
                let mut lying = small.clone();
                lying.applicants[a].preferences = list.clone();
                let got = deferred_acceptance(&lying.problem())[a];
                prop_assert!(
                    !truly_prefers(&true_preferences, got, truthful_outcome),
                    "applicant {} gets {:?} by listing {:?} instead of {:?} (truthful: {:?})",
                    a, got, list, true_preferences, truthful_outcome
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Index layer by example
// ---------------------------------------------------------------------------------------------

#[test]
fn priority_class_beats_rank_and_evicts_the_holder() {
    // K0 has one seat. a0 (rank 1) takes it first; a1 (rank 2) has class 0 at K0 and evicts
    // a0, who moves on to K1.
    let mut builder = ProblemBuilder::new(vec![1, 1]);
    builder.push_applicant(&[0, 1], &[], 1).unwrap();
    builder.push_applicant(&[0], &[(0, 0)], 2).unwrap();
    let problem = builder.build().unwrap();
    assert_eq!(deferred_acceptance(&problem), vec![Some(1), Some(0)]);
    assert_eq!(serial_dictatorship(&problem), vec![Some(0), None]);
    assert_eq!(
        check_assignment(&problem, &[Some(0), None]),
        Err(AssignmentViolation::BlockingPair {
            applicant: 1,
            institution: 0
        })
    );
}

#[test]
fn a_priority_at_an_unlisted_institution_changes_nothing() {
    let mut builder = ProblemBuilder::new(vec![1, 1]);
    builder.push_applicant(&[0], &[(1, 0)], 5).unwrap();
    builder.push_applicant(&[0], &[], 4).unwrap();
    let problem = builder.build().unwrap();
    assert_eq!(deferred_acceptance(&problem), vec![None, Some(0)]);
}

#[test]
fn zero_capacity_and_empty_lists_leave_applicants_unassigned() {
    let mut builder = ProblemBuilder::new(vec![0]);
    builder.push_applicant(&[0], &[], 1).unwrap();
    builder.push_applicant(&[], &[], 2).unwrap();
    let problem = builder.build().unwrap();
    assert_eq!(deferred_acceptance(&problem), vec![None, None]);
}

#[test]
fn builder_rejects_broken_rules_by_applicant_number() {
    let mut builder = ProblemBuilder::new(vec![1, 1]);
    builder.push_applicant(&[0], &[], 10).unwrap();
    // (preferences, priorities, expected error)
    type Case = (&'static [u32], &'static [(u32, u32)], ProblemError);
    let cases: Vec<Case> = vec![
        (
            &[2],
            &[],
            ProblemError::PreferenceOutOfRange {
                applicant: 1,
                institution: 2,
                n_institutions: 2,
            },
        ),
        (
            &[1, 0, 1],
            &[],
            ProblemError::DuplicatePreference {
                applicant: 1,
                institution: 1,
            },
        ),
        (
            &[0],
            &[(5, 0)],
            ProblemError::PriorityOutOfRange {
                applicant: 1,
                institution: 5,
                n_institutions: 2,
            },
        ),
        (
            &[0],
            &[(0, 1), (0, 2)],
            ProblemError::DuplicatePriority {
                applicant: 1,
                institution: 0,
            },
        ),
        (
            &[0],
            &[(0, u32::MAX)],
            ProblemError::ClassOutOfRange {
                applicant: 1,
                institution: 0,
                class: u32::MAX,
            },
        ),
    ];
    for (preferences, priorities, expected) in cases {
        assert_eq!(
            builder.push_applicant(preferences, priorities, 11),
            Err(expected)
        );
    }
    // Failed pushes added nothing.
    assert_eq!(builder.n_applicants(), 1);
    builder.push_applicant(&[1], &[], 12).unwrap();
    builder.push_applicant(&[1], &[], 10).unwrap();
    assert_eq!(
        builder.build().unwrap_err(),
        ProblemError::DuplicateRank {
            rank: 10,
            first: 0,
            second: 2
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Instance file by example
// ---------------------------------------------------------------------------------------------

fn check_error(text: &str, expected: InstanceError) {
    assert_eq!(solve_instance_json(text), Err(expected), "instance: {text}");
}

#[test]
fn worked_example_gives_exact_json() {
    // K2 has one seat: a2 (rank 3) beats a1 (rank 17). a1 falls back to K1, where its class 0
    // beats a3 (no priority, though a3 has the better rank). a4 lists nothing.
    let text = r#"{
        "institutions": [{"id": "K1", "capacity": 1}, {"id": "K2", "capacity": 1}],
        "applicants": [
            {"id": "a1", "preferences": ["K2", "K1"], "priorities": {"K1": 0}, "rank": 17},
            {"id": "a2", "preferences": ["K2"], "rank": 3},
            {"id": "a3", "preferences": ["K1"], "priorities": {}, "rank": 1},
            {"id": "a4", "preferences": [], "rank": 2}
        ]
    }"#;
    let expected = "{\n  \"assignments\": {\n    \"a1\": \"K1\",\n    \"a2\": \"K2\",\n    \"a3\": null,\n    \"a4\": null\n  }\n}";
    assert_eq!(solve_instance_json(text).unwrap(), expected);
    // Same input, same bytes.
    assert_eq!(solve_instance_json(text).unwrap(), expected);
    let parsed: AllocationResult = serde_json::from_str(expected).unwrap();
    assert_eq!(parsed.assignments.len(), 4);
}

#[test]
fn result_keys_are_sorted_whatever_the_input_order() {
    let text = r#"{"institutions": [{"id": "K", "capacity": 5}],
        "applicants": [
            {"id": "b", "preferences": ["K"], "rank": 1},
            {"id": "a", "preferences": ["K"], "rank": 2}
        ]}"#;
    let expected = BTreeMap::from([
        ("a".to_owned(), Some("K".to_owned())),
        ("b".to_owned(), Some("K".to_owned())),
    ]);
    let result: AllocationResult =
        serde_json::from_str(&solve_instance_json(text).unwrap()).unwrap();
    assert_eq!(result.assignments, expected);
    let output = solve_instance_json(text).unwrap();
    assert!(output.find("\"a\"").unwrap() < output.find("\"b\"").unwrap());
}

#[test]
fn malformed_json_reports_serde_message_and_position() {
    let text = "{\"institutions\": [],\n \"applicants\": [}";
    let Err(InstanceError::MalformedJson {
        message,
        line,
        column,
    }) = solve_instance_json(text)
    else {
        panic!("expected MalformedJson");
    };
    assert_eq!(line, 2);
    assert!(column > 0);
    assert!(!message.contains("at line"), "{message}");
    let error = solve_instance_json(text).unwrap_err().to_string();
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn unknown_fields_and_missing_fields_are_malformed() {
    for (text, needle) in [
        (
            r#"{"institutions": [{"id": "K1", "capacity": 1, "seats": 3}], "applicants": []}"#,
            "unknown field `seats`",
        ),
        (
            r#"{"institutions": [], "applicants": [{"id": "a1", "preferences": [], "rank": 1, "age": 3}]}"#,
            "unknown field `age`",
        ),
        (
            r#"{"institutions": [], "applicants": [], "x": 1}"#,
            "unknown field `x`",
        ),
        (
            r#"{"institutions": [], "applicants": [{"id": "a1", "preferences": []}]}"#,
            "missing field `rank`",
        ),
    ] {
        match solve_instance_json(text) {
            Err(InstanceError::MalformedJson { message, .. }) => {
                assert!(message.contains(needle), "{message}")
            }
            other => panic!("expected MalformedJson for {text}, got {other:?}"),
        }
    }
}

#[test]
fn unknown_institution_in_preferences() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 1}],
            "applicants": [{"id": "a1", "preferences": ["K1", "K9"], "rank": 1}]}"#,
        InstanceError::UnknownInstitutionInPreferences {
            applicant: "a1".into(),
            institution: "K9".into(),
        },
    );
}

#[test]
fn unknown_institution_in_priorities() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 1}],
            "applicants": [{"id": "a1", "preferences": ["K1"], "priorities": {"K7": 0}, "rank": 1}]}"#,
        InstanceError::UnknownInstitutionInPriorities {
            applicant: "a1".into(),
            institution: "K7".into(),
        },
    );
}

#[test]
fn duplicate_applicant_id() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 1}],
            "applicants": [{"id": "a1", "preferences": ["K1"], "rank": 1},
                           {"id": "a1", "preferences": [], "rank": 2}]}"#,
        InstanceError::DuplicateApplicantId {
            applicant: "a1".into(),
        },
    );
}

#[test]
fn duplicate_institution_id() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 1}, {"id": "K1", "capacity": 2}],
            "applicants": []}"#,
        InstanceError::DuplicateInstitutionId {
            institution: "K1".into(),
        },
    );
}

#[test]
fn duplicate_rank_names_both_applicants() {
    let text = r#"{"institutions": [{"id": "K1", "capacity": 1}],
            "applicants": [{"id": "a1", "preferences": ["K1"], "rank": 5},
                           {"id": "a2", "preferences": ["K1"], "rank": 6},
                           {"id": "a3", "preferences": ["K1"], "rank": 5}]}"#;
    check_error(
        text,
        InstanceError::DuplicateRank {
            rank: 5,
            first_applicant: "a1".into(),
            second_applicant: "a3".into(),
        },
    );
    let message = solve_instance_json(text).unwrap_err().to_string();
    assert!(
        message.contains("\"a1\"") && message.contains("\"a3\""),
        "{message}"
    );
}

#[test]
fn negative_capacity() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 1}, {"id": "K2", "capacity": -3}],
            "applicants": []}"#,
        InstanceError::NegativeCapacity {
            institution: "K2".into(),
            capacity: -3,
        },
    );
}

#[test]
fn capacity_beyond_u32() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 4294967296}], "applicants": []}"#,
        InstanceError::CapacityTooLarge {
            institution: "K1".into(),
            capacity: 4_294_967_296,
        },
    );
}

#[test]
fn duplicate_institution_within_one_preference_list() {
    check_error(
        r#"{"institutions": [{"id": "K1", "capacity": 1}, {"id": "K2", "capacity": 1}],
            "applicants": [{"id": "a1", "preferences": ["K1", "K2", "K1"], "rank": 1}]}"#,
        InstanceError::DuplicatePreference {
            applicant: "a1".into(),
            institution: "K1".into(),
        },
    );
}

#[test]
fn priority_class_out_of_range() {
    for class in [-1i64, 4_294_967_295] {
        check_error(
            &format!(
                r#"{{"institutions": [{{"id": "K1", "capacity": 1}}],
                    "applicants": [{{"id": "a1", "preferences": ["K1"], "priorities": {{"K1": {class}}}, "rank": 1}}]}}"#
            ),
            InstanceError::PriorityClassOutOfRange {
                applicant: "a1".into(),
                institution: "K1".into(),
                class,
            },
        );
    }
}

#[test]
fn priorities_are_optional_and_the_product_example_parses() {
    let text = r#"{
      "institutions": [{"id": "K1", "capacity": 20}, {"id": "K2", "capacity": 15}],
      "applicants": [
        {"id": "a1", "preferences": ["K2", "K1"], "priorities": {"K1": 0}, "rank": 17}
      ]
    }"#;
    let instance: Instance = serde_json::from_str(text).unwrap();
    assert_eq!(instance.applicants[0].priorities.get("K1"), Some(&0));
    let result = solve_instance(&instance).unwrap();
    assert_eq!(result.assignments["a1"].as_deref(), Some("K2"));
}
