//! The instance layer of the allocation: the JSON file of `ochered allocate --instance FILE`
//! (docs/RULES.md#allocation-instance). It resolves string ids to indices, calls the index
//! layer, and names the result by id again.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{deferred_acceptance, ProblemBuilder, ProblemError, UNNAMED_CLASS};

/// An allocation instance as written in the instance file (docs/RULES.md#allocation-instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub institutions: Vec<InstitutionSpec>,
    pub applicants: Vec<ApplicantSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstitutionSpec {
    pub id: String,
    /// Parsed wide so that a negative number is reported as such, not as a type error.
    pub capacity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantSpec {
    pub id: String,
    /// Institution ids, best first.
    pub preferences: Vec<String>,
    /// Priority class per institution id; smaller is better; institutions not named rank
    /// below every named class.
    #[serde(default)]
    pub priorities: BTreeMap<String, i64>,
    /// Tie-break key; unique; smaller goes first.
    pub rank: u64,
}

/// The result file: every applicant id, with its institution id or `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationResult {
    pub assignments: BTreeMap<String, Option<String>>,
}

/// Why an instance cannot be allocated. Each variant names the ids involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InstanceError {
    #[error("malformed instance JSON at line {line}, column {column}: {message}")]
    MalformedJson {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("institution id {institution:?} appears more than once")]
    DuplicateInstitutionId { institution: String },
    #[error("institution {institution:?} has negative capacity {capacity}")]
    NegativeCapacity { institution: String, capacity: i64 },
    #[error(
        "institution {institution:?} has capacity {capacity}; at most {} is supported",
        u32::MAX
    )]
    CapacityTooLarge { institution: String, capacity: i64 },
    #[error("applicant id {applicant:?} appears more than once")]
    DuplicateApplicantId { applicant: String },
    #[error(
        "applicant {applicant:?} lists unknown institution {institution:?} in its preferences"
    )]
    UnknownInstitutionInPreferences {
        applicant: String,
        institution: String,
    },
    #[error("applicant {applicant:?} lists institution {institution:?} more than once in its preferences")]
    DuplicatePreference {
        applicant: String,
        institution: String,
    },
    #[error("applicant {applicant:?} has a priority at unknown institution {institution:?}")]
    UnknownInstitutionInPriorities {
        applicant: String,
        institution: String,
    },
    #[error("applicant {applicant:?} has priority class {class} at institution {institution:?}; classes must be between 0 and {}", UNNAMED_CLASS - 1)]
    PriorityClassOutOfRange {
        applicant: String,
        institution: String,
        class: i64,
    },
    #[error("applicants {first_applicant:?} and {second_applicant:?} share the rank {rank}; ranks must be unique")]
    DuplicateRank {
        rank: u64,
        first_applicant: String,
        second_applicant: String,
    },
    #[error("the instance is too large: {reason}")]
    TooLarge { reason: String },
}

impl From<serde_json::Error> for InstanceError {
    fn from(error: serde_json::Error) -> Self {
        let full = error.to_string();
        let position = format!(" at line {} column {}", error.line(), error.column());
        let message = full.strip_suffix(&position).unwrap_or(&full).to_owned();
        InstanceError::MalformedJson {
            message,
            line: error.line(),
            column: error.column(),
        }
    }
}

/// Validates `instance`, runs [`deferred_acceptance`] and names the result by id.
///
/// Errors are reported in a fixed order (institutions in file order, then the smallest
/// duplicated applicant id, then applicants in file order, then ranks), so the same file
/// always gives the same error.
pub fn solve_instance(instance: &Instance) -> Result<AllocationResult, InstanceError> {
    let allocated = allocate_instance(instance)?;
    let assignments = allocated
        .sorted_assignments(instance)
        .map(|(applicant, institution)| (applicant.to_owned(), institution.map(str::to_owned)))
        .collect();
    Ok(AllocationResult { assignments })
}

/// The outcome of an instance by index, with the applicants' order by id.
struct AllocatedInstance {
    /// Per applicant in file order.
    assignment: Vec<Option<u32>>,
    /// Applicant indices sorted by id.
    applicants_by_id: Vec<u32>,
}

impl AllocatedInstance {
    /// `(applicant id, institution id)` in the order of applicant ids.
    fn sorted_assignments<'a>(
        &'a self,
        instance: &'a Instance,
    ) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.applicants_by_id.iter().map(move |&applicant| {
            let institution = self.assignment[applicant as usize]
                .map(|index| instance.institutions[index as usize].id.as_str());
            (
                instance.applicants[applicant as usize].id.as_str(),
                institution,
            )
        })
    }
}

/// Serializes exactly like [`AllocationResult`], borrowing the ids instead of copying them.
struct SortedResult<'a> {
    allocated: &'a AllocatedInstance,
    instance: &'a Instance,
}

impl Serialize for SortedResult<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        struct Assignments<'a>(&'a SortedResult<'a>);
        impl Serialize for Assignments<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.allocated.sorted_assignments(self.0.instance))
            }
        }

        let mut result = serializer.serialize_struct("AllocationResult", 1)?;
        result.serialize_field("assignments", &Assignments(self))?;
        result.end()
    }
}

fn allocate_instance(instance: &Instance) -> Result<AllocatedInstance, InstanceError> {
    let mut institution_index: HashMap<&str, u32> =
        HashMap::with_capacity(instance.institutions.len());
    let mut capacities = Vec::with_capacity(instance.institutions.len());
    for spec in &instance.institutions {
        let index = u32::try_from(capacities.len()).map_err(|_| InstanceError::TooLarge {
            reason: format!("more than {} institutions", u32::MAX),
        })?;
        if institution_index.insert(&spec.id, index).is_some() {
            return Err(InstanceError::DuplicateInstitutionId {
                institution: spec.id.clone(),
            });
        }
        if spec.capacity < 0 {
            return Err(InstanceError::NegativeCapacity {
                institution: spec.id.clone(),
                capacity: spec.capacity,
            });
        }
        let capacity =
            u32::try_from(spec.capacity).map_err(|_| InstanceError::CapacityTooLarge {
                institution: spec.id.clone(),
                capacity: spec.capacity,
            })?;
        capacities.push(capacity);
    }

    let n_preferences = instance
        .applicants
        .iter()
        .map(|spec| spec.preferences.len())
        .sum();
    let mut builder =
        ProblemBuilder::with_capacity(capacities, instance.applicants.len(), n_preferences);
    let n_applicants = u32::try_from(instance.applicants.len())
        .ok()
        .filter(|&n| n < u32::MAX)
        .ok_or_else(|| InstanceError::TooLarge {
            reason: ProblemError::TooManyApplicants.to_string(),
        })?;
    // Sorting finds duplicate ids and gives the output order in one step. Sort by
    // (first 8 bytes, whole id): most comparisons end on the integer, without
    // following the pointer to the string. Zero-padded big-endian prefixes order like the
    // strings themselves, and equal prefixes fall back to comparing the whole id.
    let mut ids: Vec<(u64, &str, u32)> = instance
        .applicants
        .iter()
        .zip(0..n_applicants)
        .map(|(spec, applicant)| (id_prefix(&spec.id), spec.id.as_str(), applicant))
        .collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0].1 == pair[1].1) {
        return Err(InstanceError::DuplicateApplicantId {
            applicant: pair[0].1.to_owned(),
        });
    }
    let applicants_by_id: Vec<u32> = ids.iter().map(|&(_, _, applicant)| applicant).collect();
    drop(ids);

    let mut preferences = Vec::new();
    let mut priorities = Vec::new();
    for spec in &instance.applicants {
        preferences.clear();
        for institution in &spec.preferences {
            let Some(&index) = institution_index.get(institution.as_str()) else {
                return Err(InstanceError::UnknownInstitutionInPreferences {
                    applicant: spec.id.clone(),
                    institution: institution.clone(),
                });
            };
            preferences.push(index);
        }
        priorities.clear();
        for (institution, &class) in &spec.priorities {
            let Some(&index) = institution_index.get(institution.as_str()) else {
                return Err(InstanceError::UnknownInstitutionInPriorities {
                    applicant: spec.id.clone(),
                    institution: institution.clone(),
                });
            };
            let class = u32::try_from(class)
                .ok()
                .filter(|&class| class != UNNAMED_CLASS)
                .ok_or_else(|| InstanceError::PriorityClassOutOfRange {
                    applicant: spec.id.clone(),
                    institution: institution.clone(),
                    class,
                })?;
            priorities.push((index, class));
        }
        builder
            .push_applicant(&preferences, &priorities, spec.rank)
            .map_err(|error| name_problem_error(error, instance))?;
    }
    let problem = builder
        .build()
        .map_err(|error| name_problem_error(error, instance))?;

    Ok(AllocatedInstance {
        assignment: deferred_acceptance(&problem),
        applicants_by_id,
    })
}

/// The first 8 bytes of `id`, zero-padded, as a big-endian integer.
fn id_prefix(id: &str) -> u64 {
    let mut prefix = [0u8; 8];
    let n_bytes = id.len().min(8);
    prefix[..n_bytes].copy_from_slice(&id.as_bytes()[..n_bytes]);
    u64::from_be_bytes(prefix)
}

/// Turns an index-layer error into one that names ids. Only the errors that
/// [`solve_instance`] does not catch itself can reach here.
fn name_problem_error(error: ProblemError, instance: &Instance) -> InstanceError {
    let applicant_id = |applicant: u32| instance.applicants[applicant as usize].id.clone();
    let institution_id = |institution: u32| instance.institutions[institution as usize].id.clone();
    match error {
        ProblemError::DuplicatePreference {
            applicant,
            institution,
        } => InstanceError::DuplicatePreference {
            applicant: applicant_id(applicant),
            institution: institution_id(institution),
        },
        ProblemError::DuplicateRank {
            rank,
            first,
            second,
        } => InstanceError::DuplicateRank {
            rank,
            first_applicant: applicant_id(first),
            second_applicant: applicant_id(second),
        },
        ProblemError::TooManyApplicants | ProblemError::TooManyPreferences => {
            InstanceError::TooLarge {
                reason: error.to_string(),
            }
        }
        ProblemError::PreferenceOutOfRange { .. }
        | ProblemError::PriorityOutOfRange { .. }
        | ProblemError::DuplicatePriority { .. }
        | ProblemError::ClassOutOfRange { .. } => {
            unreachable!("solve_instance resolves ids and checks classes first: {error}")
        }
    }
}

/// Parses an instance file, allocates, and returns the result JSON (pretty-printed, keys
/// sorted, no trailing newline). The same text always gives the same bytes.
pub fn solve_instance_json(text: &str) -> Result<String, InstanceError> {
    let instance: Instance = serde_json::from_str(text)?;
    let allocated = allocate_instance(&instance)?;
    let result = SortedResult {
        allocated: &allocated,
        instance: &instance,
    };
    Ok(serde_json::to_string_pretty(&result).expect("a map of strings always serializes"))
}
