//! Ordering policies as data: priority tiers, then a tie-break, then the application number.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{ApplicationNumber, InstitutionId};

/// A privilege a parent claims; an officer confirms or revokes it. Only confirmed
/// privileges move an application up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Privilege {
    /// Внеочередное право: ahead of everyone, at every institution.
    Extraordinary,
    /// Первоочередное право: after extraordinary, at every institution.
    FirstPriority,
    /// A sibling already attends this institution (преимущественное право); applies there only.
    Sibling { institution: InstitutionId },
    /// The child lives in the school's catchment area; applies to that school only.
    Catchment { institution: InstitutionId },
}

impl Privilege {
    /// The institution a privilege is tied to, if it is tied to one.
    pub fn institution(&self) -> Option<&InstitutionId> {
        match self {
            Privilege::Sibling { institution } | Privilege::Catchment { institution } => {
                Some(institution)
            }
            Privilege::Extraordinary | Privilege::FirstPriority => None,
        }
    }
}

/// Where a claimed privilege stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PrivilegeStatus {
    Claimed,
    Confirmed,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrivilegeClaim {
    pub privilege: Privilege,
    pub status: PrivilegeStatus,
}

/// The lowest (worst) tier: general queue.
pub const TIER_GENERAL: u8 = 3;

/// Tier of a kindergarten application at one kindergarten: extraordinary 0, first-priority 1,
/// sibling at that kindergarten 2, general 3. Only confirmed privileges count.
pub fn kindergarten_tier(claims: &[PrivilegeClaim], institution: &InstitutionId) -> u8 {
    let mut tier = TIER_GENERAL;
    for claim in claims
        .iter()
        .filter(|c| c.status == PrivilegeStatus::Confirmed)
    {
        let t = match &claim.privilege {
            Privilege::Extraordinary => 0,
            Privilege::FirstPriority => 1,
            Privilege::Sibling { institution: i } if i == institution => 2,
            _ => TIER_GENERAL,
        };
        tier = tier.min(t);
    }
    tier
}

/// Tier of a first-grade application at one school: extraordinary or first-priority 0,
/// sibling at that school 1, catchment resident of that school 2, others 3.
pub fn school_tier(claims: &[PrivilegeClaim], institution: &InstitutionId) -> u8 {
    let mut tier = TIER_GENERAL;
    for claim in claims
        .iter()
        .filter(|c| c.status == PrivilegeStatus::Confirmed)
    {
        let t = match &claim.privilege {
            Privilege::Extraordinary | Privilege::FirstPriority => 0,
            Privilege::Sibling { institution: i } if i == institution => 1,
            Privilege::Catchment { institution: i } if i == institution => 2,
            _ => TIER_GENERAL,
        };
        tier = tier.min(t);
    }
    tier
}

/// How applications of equal tier are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TieBreak {
    /// Earlier registration (submission) time first.
    RegistrationTime,
    /// Older children (earlier birth date) first, as in Pskov.
    BirthDate,
    /// One seeded lottery number per application.
    Lottery { seed: u64 },
}

impl TieBreak {
    /// The tie-break value of an application: smaller goes first.
    pub fn key(
        &self,
        registered_at: DateTime<Utc>,
        birth_date: NaiveDate,
        number: ApplicationNumber,
    ) -> i64 {
        match self {
            TieBreak::RegistrationTime => registered_at.timestamp_micros(),
            TieBreak::BirthDate => i64::from(chrono::Datelike::num_days_from_ce(&birth_date)),
            TieBreak::Lottery { seed } => lottery_number(*seed, number),
        }
    }
}

/// A lottery number drawn from the seed and the application number: the same on every
/// machine, and independent of arrival order. Non-negative.
pub fn lottery_number(seed: u64, number: ApplicationNumber) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"ochered-lottery-v1");
    hasher.update(seed.to_le_bytes());
    hasher.update(number.0.to_le_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) >> 1) as i64
}

/// The position key of an application in one queue: tier, tie-break, application number.
/// Distinct applications always have distinct keys, so the order is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SortKey {
    pub tier: u8,
    pub tie_break: i64,
    pub number: ApplicationNumber,
}
