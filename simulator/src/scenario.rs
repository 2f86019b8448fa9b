//! Scenarios: who applies, when, and how they behave; presets built from observed surges.
//!
//! A scenario is data (JSON, all fields optional): an arrival curve as cumulative windows
//! counted from each authority's opening, the authorities (one per time zone for a national
//! wave) with their share of the population, and the behaviour of parents. Presets are made
//! from the published surges in `simulator/presets/presets.json` (embedded in the binary,
//! each with its source), or from a surges file of the same shape given with `--surges`.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// The embedded preset table: each surge's figures with the publication it comes from.
pub const EMBEDDED_PRESETS: &str = include_str!("../presets/presets.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    School,
    Kindergarten,
}

/// One window of an arrival curve: `applications` submitted in total (cumulative) by
/// `minutes` after the opening.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub minutes: f64,
    pub applications: f64,
}

/// An authority of the scenario: one education authority, or one time zone of a national
/// wave. Its campaign opens `opens_after_min` after the scenario's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySpec {
    pub id: String,
    pub time_zone: String,
    /// Share of the scenario's applications (normalised over all authorities).
    #[serde(default = "one")]
    pub share: f64,
    #[serde(default)]
    pub opens_after_min: f64,
}

fn one() -> f64 {
    1.0
}

/// How parents retry: on 503, timeouts and connection errors, with the same key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Attempts of a patient parent before giving up (1 = never retries).
    pub max_attempts: u32,
    /// Share of parents who give up early.
    pub impatient_share: f64,
    pub impatient_max_attempts: u32,
    /// First backoff; doubles each attempt, with jitter, never below Retry-After.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    /// A client's timeout for one attempt (HTTP mode).
    pub timeout_ms: u64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            impatient_share: 0.1,
            impatient_max_attempts: 2,
            backoff_ms: 200,
            backoff_max_ms: 5_000,
            timeout_ms: 5_000,
        }
    }
}

/// Children's ages: uniform between the bounds (school: months on 1 September of the
/// campaign year; kindergarten: months today), plus a share outside the allowed range, whose
/// applications the rules refuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BirthDates {
    pub min_age_months: u32,
    pub max_age_months: u32,
    pub out_of_range_share: f64,
}

impl Default for BirthDates {
    fn default() -> Self {
        Self {
            min_age_months: 79,
            max_age_months: 94,
            out_of_range_share: 0.005,
        }
    }
}

/// Shares of applications claiming each privilege (at most one each; the rest claim none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegeShares {
    pub extraordinary: f64,
    pub first_priority: f64,
    pub sibling: f64,
    /// School only: the child lives in the school's catchment area.
    pub catchment: f64,
}

impl Default for PrivilegeShares {
    fn default() -> Self {
        Self {
            extraordinary: 0.01,
            first_priority: 0.04,
            sibling: 0.10,
            catchment: 0.55,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub name: String,
    pub service: Service,
    /// The opening moment the scenario reproduces; `--clock virtual` runs at this time.
    pub opened_at: Option<DateTime<FixedOffset>>,
    pub authorities: Vec<AuthoritySpec>,
    /// Cumulative arrivals from each authority's opening, summed over all authorities.
    pub arrivals: Vec<Window>,
    /// Institutions per authority; by default one per 60 expected applications (4-3000).
    pub institutions: Option<usize>,
    /// Seats per school, uniform between the two bounds.
    pub seats: [u32; 2],
    /// Zipf exponent of the institutions' popularity: 0 uniform, 1+ a few are overloaded.
    pub popularity_skew: f64,
    /// Share of first-grade applications submitted from a draft saved before the opening.
    pub drafts_share: f64,
    /// Share of children submitted a second time from another device (another parent's
    /// account, another key); the second submission must be refused as a duplicate.
    pub second_device_share: f64,
    /// The second device submits within this many scenario seconds of the first.
    pub second_device_delay_s: f64,
    pub retry: RetrySpec,
    pub birth_dates: BirthDates,
    pub privileges: PrivilegeShares,
    /// Kindergarten: most kindergartens a parent lists.
    pub kindergarten_preferences_max: usize,
    pub source: Option<String>,
    pub notes: Option<String>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            service: Service::School,
            opened_at: None,
            authorities: vec![AuthoritySpec {
                id: "sim".into(),
                time_zone: "Europe/Moscow".into(),
                share: 1.0,
                opens_after_min: 0.0,
            }],
            arrivals: vec![Window {
                minutes: 1.0,
                applications: 1000.0,
            }],
            institutions: None,
            seats: [25, 100],
            popularity_skew: 1.1,
            drafts_share: 0.0,
            second_device_share: 0.03,
            second_device_delay_s: 30.0,
            retry: RetrySpec::default(),
            birth_dates: BirthDates::default(),
            privileges: PrivilegeShares::default(),
            kindergarten_preferences_max: 3,
            source: None,
            notes: None,
        }
    }
}

impl Scenario {
    pub fn from_json(text: &str) -> anyhow::Result<Scenario> {
        let scenario: Scenario = serde_json::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.authorities.is_empty() {
            bail!("a scenario needs at least one authority");
        }
        if self.arrivals.is_empty() {
            bail!("a scenario needs at least one arrival window");
        }
        let mut previous = Window {
            minutes: 0.0,
            applications: 0.0,
        };
        for w in &self.arrivals {
            if !w.minutes.is_finite()
                || w.minutes <= previous.minutes
                || w.applications < previous.applications
            {
                bail!("arrival windows must have increasing minutes and non-decreasing cumulative applications");
            }
            previous = *w;
        }
        for a in &self.authorities {
            ochered_core::domain::AuthorityId::parse(&a.id)
                .map_err(|e| anyhow::anyhow!("authority id {:?}: {}", a.id, e.reason))?;
            a.time_zone
                .parse::<chrono_tz::Tz>()
                .map_err(|e| anyhow::anyhow!("time zone {:?}: {e}", a.time_zone))?;
            if !a.share.is_finite() || a.share <= 0.0 || a.opens_after_min < 0.0 {
                bail!(
                    "authority {}: share must be positive and opens_after_min not negative",
                    a.id
                );
            }
        }
        if self.seats[0] == 0 || self.seats[1] < self.seats[0] {
            bail!("seats must be [min, max] with 0 < min <= max");
        }
        for (name, share) in [
            ("drafts_share", self.drafts_share),
            ("second_device_share", self.second_device_share),
            ("retry.impatient_share", self.retry.impatient_share),
            (
                "birth_dates.out_of_range_share",
                self.birth_dates.out_of_range_share,
            ),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("{name} must be between 0 and 1");
            }
        }
        let p = &self.privileges;
        if p.extraordinary + p.first_priority + p.sibling + p.catchment > 1.0 + 1e-9 {
            bail!("privilege shares add up to more than 1");
        }
        if self.retry.max_attempts == 0 || self.retry.impatient_max_attempts == 0 {
            bail!("retry attempts must be at least 1");
        }
        if self.birth_dates.max_age_months < self.birth_dates.min_age_months {
            bail!("birth_dates: max_age_months below min_age_months");
        }
        if self.kindergarten_preferences_max == 0 {
            bail!("kindergarten_preferences_max must be at least 1");
        }
        Ok(())
    }

    /// Total applications of the curve at scale 1.
    pub fn total_applications(&self) -> f64 {
        self.arrivals.last().map_or(0.0, |w| w.applications)
    }

    /// Scenario minutes from the first opening to the end of the last authority's curve.
    pub fn span_minutes(&self) -> f64 {
        let last_opening = self
            .authorities
            .iter()
            .map(|a| a.opens_after_min)
            .fold(0.0, f64::max);
        last_opening + self.arrivals.last().map_or(0.0, |w| w.minutes)
    }

    /// Keeps only the first `minutes` of every authority's curve (interpolated).
    pub fn truncate(&mut self, minutes: f64) {
        let mut kept = Vec::new();
        let mut previous = Window {
            minutes: 0.0,
            applications: 0.0,
        };
        for w in &self.arrivals {
            if w.minutes <= minutes {
                kept.push(*w);
                previous = *w;
                continue;
            }
            let fraction = (minutes - previous.minutes) / (w.minutes - previous.minutes);
            let applications =
                previous.applications + fraction * (w.applications - previous.applications);
            if minutes > previous.minutes {
                kept.push(Window {
                    minutes,
                    applications,
                });
            }
            break;
        }
        self.arrivals = kept;
    }
}

/// One time zone of the national preset.
#[derive(Debug, Clone, Deserialize)]
struct Zone {
    id: String,
    time_zone: String,
    utc_offset_h: i32,
    share: f64,
}

/// A published surge: its arrival windows and source (unknown fields are kept out of the way, not refused).
#[derive(Debug, Clone, Deserialize)]
pub struct Surge {
    pub id: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub opened_at_local: Option<String>,
    pub windows: Vec<Window>,
    #[serde(default)]
    pub drafts_share: Option<f64>,
    #[serde(default)]
    pub share_right_after_start: Option<f64>,
    #[serde(default)]
    pub all_time_zones_at_once: bool,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PresetTable {
    time_zones: Vec<Zone>,
    surges: Vec<Surge>,
    #[serde(default)]
    derived: Vec<Surge>,
}

#[derive(Debug, Clone, Deserialize)]
struct SurgesFile {
    surges: Vec<Surge>,
}

/// Where the preset figures came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetSource {
    /// A surges file given with `--surges`.
    File(String),
    /// The table embedded in the binary.
    Embedded,
}

/// The presets: the surges of a file given with `--surges` or the table embedded in the
/// binary, plus the derived ones (the national first minute).
pub struct Presets {
    zones: Vec<Zone>,
    surges: Vec<Surge>,
    pub source: PresetSource,
}

impl Presets {
    /// The embedded table, or its surges replaced by those of `surges_file`. A file that was
    /// asked for and cannot be read or parsed is an error, not a silent fallback.
    pub fn load(surges_file: Option<&Path>) -> anyhow::Result<Presets> {
        let table: PresetTable =
            serde_json::from_str(EMBEDDED_PRESETS).expect("the embedded preset table parses");
        let (mut surges, source) = match surges_file {
            None => (table.surges.clone(), PresetSource::Embedded),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("failed to read --surges {}", path.display()))?;
                let file: SurgesFile = serde_json::from_str(&text)
                    .with_context(|| format!("failed to parse --surges {}", path.display()))?;
                (file.surges, PresetSource::File(path.display().to_string()))
            }
        };
        surges.extend(table.derived);
        Ok(Presets {
            zones: table.time_zones,
            surges,
            source,
        })
    }

    pub fn ids(&self) -> Vec<String> {
        self.surges.iter().map(|s| s.id.clone()).collect()
    }

    pub fn describe(&self) -> Vec<(String, String)> {
        self.surges
            .iter()
            .map(|s| {
                let total = s.windows.last().map_or(0.0, |w| w.applications);
                let minutes = s.windows.last().map_or(0.0, |w| w.minutes);
                (
                    s.id.clone(),
                    format!(
                        "{total:.0} applications in {minutes} min; {}",
                        s.source.clone().unwrap_or_default()
                    ),
                )
            })
            .collect()
    }

    pub fn scenario(&self, id: &str) -> anyhow::Result<Scenario> {
        let surge =
            self.surges.iter().find(|s| s.id == id).with_context(|| {
                format!("unknown preset {id:?}; known: {}", self.ids().join(", "))
            })?;
        self.scenario_from_surge(surge)
    }

    fn scenario_from_surge(&self, surge: &Surge) -> anyhow::Result<Scenario> {
        let service = match surge.service.as_deref() {
            None | Some("school") => Service::School,
            Some("kindergarten") => Service::Kindergarten,
            Some(other) => bail!("preset {}: unknown service {other:?}", surge.id),
        };
        let opened_at = surge
            .opened_at_local
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let mut arrivals = surge.windows.clone();
        if let Some(share) = surge.share_right_after_start {
            // "About 20% arrived right after the start": the first minute carries that share.
            let total = arrivals.last().map_or(0.0, |w| w.applications);
            if arrivals.first().is_some_and(|w| w.minutes > 1.0) {
                arrivals.insert(
                    0,
                    Window {
                        minutes: 1.0,
                        applications: share * total,
                    },
                );
            }
        }
        let national = opened_at.is_none() || surge.all_time_zones_at_once;
        let authorities = if national {
            let max_offset = self.zones.iter().map(|z| z.utc_offset_h).max().unwrap_or(0);
            self.zones
                .iter()
                .map(|z| AuthoritySpec {
                    id: z.id.clone(),
                    time_zone: z.time_zone.clone(),
                    share: z.share,
                    // Local midnight comes first in the east: staggered by time zone.
                    opens_after_min: if surge.all_time_zones_at_once {
                        0.0
                    } else {
                        f64::from(max_offset - z.utc_offset_h) * 60.0
                    },
                })
                .collect()
        } else {
            let offset_h = opened_at.map_or(3, |t| t.offset().local_minus_utc() / 3600);
            let zone = self
                .zones
                .iter()
                .find(|z| z.utc_offset_h == offset_h)
                .map_or("Europe/Moscow".to_owned(), |z| z.time_zone.clone());
            let city = surge.id.split('-').next().unwrap_or("sim").to_owned();
            vec![AuthoritySpec {
                id: city,
                time_zone: zone,
                share: 1.0,
                opens_after_min: 0.0,
            }]
        };
        // A national wave ("local in each of 11 time zones") starts at local midnight in the
        // easternmost zone, UTC+12.
        let opened_at = opened_at.or_else(|| {
            DateTime::parse_from_rfc3339(
                &surge
                    .opened_at_local
                    .as_deref()
                    .and_then(|s| s.get(..19))
                    .map(|s| format!("{s}+12:00"))
                    .unwrap_or_default(),
            )
            .ok()
        });
        let scenario = Scenario {
            name: surge.id.clone(),
            service,
            opened_at,
            authorities,
            arrivals,
            drafts_share: surge.drafts_share.unwrap_or(0.0),
            source: surge.source.clone(),
            notes: surge.notes.clone(),
            ..Scenario::default()
        };
        scenario.validate()?;
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> Presets {
        Presets::load(None).unwrap()
    }

    #[test]
    fn a_surges_file_that_was_asked_for_and_is_missing_is_an_error() {
        let missing = Path::new("/nonexistent/surges.json");
        let err = Presets::load(Some(missing))
            .err()
            .expect("a missing file is refused");
        assert!(
            format!("{err:#}").contains("/nonexistent/surges.json"),
            "{err:#}"
        );
    }

    #[test]
    fn every_embedded_preset_builds() {
        let presets = embedded();
        assert_eq!(presets.source, PresetSource::Embedded);
        for id in presets.ids() {
            presets.scenario(&id).unwrap();
        }
    }

    #[test]
    fn the_national_wave_is_staggered_by_time_zone() {
        let s = embedded().scenario("gosuslugi-2025").unwrap();
        assert_eq!(s.authorities.len(), 11);
        let moscow = s.authorities.iter().find(|a| a.id == "moscow").unwrap();
        assert_eq!(moscow.opens_after_min, 540.0);
        assert_eq!(s.arrivals[0].minutes, 1.0);
        assert!((s.arrivals[0].applications - 100_200.0).abs() < 1.0);
        assert_eq!(s.drafts_share, 0.85);
    }

    #[test]
    fn truncation_interpolates_the_curve() {
        let mut s = embedded().scenario("novosibirsk-2024").unwrap();
        s.truncate(30.0);
        assert_eq!(s.arrivals.len(), 2);
        assert_eq!(s.arrivals[1].minutes, 30.0);
        let expected = 1144.0 + (4154.0 - 1144.0) * 25.0 / 55.0;
        assert!((s.arrivals[1].applications - expected).abs() < 1e-6);
    }
}
