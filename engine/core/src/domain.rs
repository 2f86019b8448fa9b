//! Domain values parsed at the boundary: once constructed, each holds only a valid value.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A field that failed to parse: which one and why. The API turns it into problem+json.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Identifier of an institution (kindergarten, school, clinic), chosen by the authority.
/// 1–64 characters of ASCII letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstitutionId(String);

impl InstitutionId {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        parse_code(raw, "institution id").map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_code(raw: &str, what: &str) -> Result<String, InvalidField> {
    let ok_len = (1..=64).contains(&raw.len());
    let ok_chars = raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok_len && ok_chars {
        Ok(raw.to_owned())
    } else {
        Err(InvalidField::new(
            what,
            "must be 1-64 characters of ASCII letters, digits, '-', '_' or '.'",
        ))
    }
}

impl TryFrom<String> for InstitutionId {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<InstitutionId> for String {
    fn from(value: InstitutionId) -> Self {
        value.0
    }
}
impl fmt::Display for InstitutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! code_id {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);
        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidField> {
                parse_code(raw, $what).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidField;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

code_id!(AuthorityId, "authority id");
code_id!(CampaignId, "campaign id");
code_id!(SlotId, "slot id");
code_id!(Specialty, "specialty");
code_id!(DoctorId, "doctor id");
code_id!(RoundId, "round id");

/// Application number, unique within an authority, assigned in order of receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApplicationNumber(pub u32);

impl fmt::Display for ApplicationNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Booking number of a clinic appointment, unique within an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BookingNumber(pub u32);

impl fmt::Display for BookingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A child's identity document (birth certificate), normalised: upper case, no spaces,
/// dashes or number signs, Cyrillic letters that look like Latin ones mapped to Latin.
/// "IV-АБ №123456" and "ivab 123456" are the same document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocumentNumber(String);

impl DocumentNumber {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let mut out = String::with_capacity(raw.len());
        for c in raw.chars() {
            if c.is_whitespace() || matches!(c, '-' | '–' | '—' | '№' | '#' | '.' | '/') {
                continue;
            }
            let upper = c.to_uppercase().next().unwrap_or(c);
            let mapped = match upper {
                'А' => 'A',
                'В' => 'B',
                'Е' => 'E',
                'К' => 'K',
                'М' => 'M',
                'Н' => 'H',
                'О' => 'O',
                'Р' => 'P',
                'С' => 'C',
                'Т' => 'T',
                'Х' => 'X',
                'У' => 'Y',
                other => other,
            };
            if !mapped.is_alphanumeric() {
                return Err(InvalidField::new(
                    "document",
                    "may contain only letters, digits, spaces, '-' and '№'",
                ));
            }
            out.push(mapped);
        }
        let n_chars = out.chars().count();
        if !(6..=32).contains(&n_chars) {
            return Err(InvalidField::new(
                "document",
                "must have 6-32 letters and digits",
            ));
        }
        if !out.chars().any(|c| c.is_ascii_digit()) {
            return Err(InvalidField::new("document", "must contain digits"));
        }
        Ok(Self(out))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key under which a person is deduplicated: a keyed SHA-256 of the normalised document.
/// Events carry only this key, never the document itself.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersonKey(pub [u8; 32]);

impl PersonKey {
    /// Derives the key with the authority's secret (the shell supplies the secret).
    pub fn derive(secret: &[u8], document: &DocumentNumber) -> Self {
        let mut hasher = Sha256::new();
        hasher.update((secret.len() as u64).to_le_bytes());
        hasher.update(secret);
        hasher.update(document.as_str().as_bytes());
        Self(hasher.finalize().into())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(raw: &str) -> Result<Self, InvalidField> {
        let bytes = hex::decode(raw)
            .map_err(|_| InvalidField::new("person key", "must be 64 hexadecimal digits"))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| InvalidField::new("person key", "must be 64 hexadecimal digits"))?;
        Ok(Self(array))
    }
}

impl fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonKey({}…)", &self.to_hex()[..12])
    }
}

impl Serialize for PersonKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // On the stack: every event and request hash of an application serialises one.
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.0, &mut hex).expect("64 hex digits for 32 bytes");
        serializer.serialize_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for PersonKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::from_hex(&raw).map_err(serde::de::Error::custom)
    }
}

/// A hasher for maps keyed by [`PersonKey`]s (alone or with a small tag): such a key is
/// already a keyed SHA-256 (the authority's secret is the key), not choosable by a user, so
/// 8 of its bytes and one multiplication make the hash, instead of SipHash over all 32.
/// Small writes (an enum's discriminant, a length prefix) are mixed in. The multiplication
/// spreads keys that are not random (test data: a counter in the first bytes) over the
/// table too. Never use it for keys a user chooses: they could pick colliding ones.
#[derive(Debug, Default, Clone, Copy)]
pub struct PersonKeyHasher(u64);

impl std::hash::Hasher for PersonKeyHasher {
    fn finish(&self) -> u64 {
        // Folded multiplication by an odd constant (2^64 / golden ratio): every bit of the
        // key reaches the bits the table uses (its low bits and its top seven).
        let product = u128::from(self.0) * 0x9e37_79b9_7f4a_7c15;
        (product as u64) ^ ((product >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            // A digest: 8 of its bytes.
            Some(head) if bytes.len() >= 16 => self.0 ^= u64::from_le_bytes(*head),
            _ => {
                for &b in bytes {
                    self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
}

/// What builds a [`PersonKeyHasher`] (deterministic: no per-process seed is needed).
pub type PersonKeyHash = std::hash::BuildHasherDefault<PersonKeyHasher>;

/// A birth date the engine accepts: not in the future relative to `today`, and not more than
/// 20 years before it (nobody older is served by these queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    pub fn parse(date: NaiveDate, today: NaiveDate) -> Result<Self, InvalidField> {
        if date > today {
            return Err(InvalidField::new("birth_date", "is in the future"));
        }
        if today.year() - date.year() > 20 {
            return Err(InvalidField::new("birth_date", "is more than 20 years ago"));
        }
        Ok(Self(date))
    }
    /// For replaying events: the date was checked when the command was decided.
    pub fn from_event(date: NaiveDate) -> Self {
        Self(date)
    }
    pub fn date(&self) -> NaiveDate {
        self.0
    }
    /// Age in full years on the given day.
    pub fn age_on(&self, day: NaiveDate) -> i32 {
        let mut age = day.year() - self.0.year();
        if (day.month(), day.day()) < (self.0.month(), self.0.day()) {
            age -= 1;
        }
        age
    }
    /// Age in full months on the given day.
    pub fn age_in_months_on(&self, day: NaiveDate) -> i32 {
        let mut months =
            (day.year() - self.0.year()) * 12 + day.month() as i32 - self.0.month() as i32;
        if day.day() < self.0.day() {
            months -= 1;
        }
        months
    }
}

/// 1 September of a year: the start of the school and kindergarten year.
pub fn september_first(year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, 9, 1).expect("1 September exists in every year")
}

/// The intake year for a desired start date: the first 1 September on or after it.
pub fn intake_year_for(desired_start: NaiveDate) -> i32 {
    if desired_start <= september_first(desired_start.year()) {
        desired_start.year()
    } else {
        desired_start.year() + 1
    }
}

/// What kind of service an institution gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstitutionKind {
    Kindergarten,
    School,
    Clinic,
}

/// Through which channel an application arrived. The registration time does not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[default]
    Portal,
    ServiceCentre,
    Api,
}

/// An authority's configuration: its time zone and the variants of the default rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    pub id: AuthorityId,
    #[cfg_attr(feature = "openapi", schema(example = "Новосибирск"))]
    pub name: String,
    /// An IANA time zone.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "Asia/Novosibirsk"))]
    pub time_zone: Tz,
    #[serde(default = "defaults::max_kindergarten_preferences")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::max_kindergarten_preferences))]
    pub max_kindergarten_preferences: u8,
    #[serde(default = "defaults::offer_deadline_days")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::offer_deadline_days))]
    pub offer_deadline_days: u16,
    /// Oldest age (full years on 1 September of the intake year) a kindergarten accepts.
    #[serde(default = "defaults::kindergarten_max_age_years")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::kindergarten_max_age_years))]
    pub kindergarten_max_age_years: u8,
    /// Minimum age on 1 September of the campaign year for school, in months (6.5 years).
    #[serde(default = "defaults::school_min_age_months")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::school_min_age_months))]
    pub school_min_age_months: u16,
    /// Maximum age on 1 September of the campaign year for school, in months (8 years).
    #[serde(default = "defaults::school_max_age_months")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::school_max_age_months))]
    pub school_max_age_months: u16,
    #[serde(default = "defaults::clinic_hold_minutes")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::clinic_hold_minutes))]
    pub clinic_hold_minutes: u32,
    #[serde(default = "defaults::no_show_block_count")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::no_show_block_count))]
    pub no_show_block_count: u8,
    #[serde(default = "defaults::no_show_window_days")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::no_show_window_days))]
    pub no_show_window_days: u16,
    /// When kindergarten rounds may run (docs/RULES.md#kindergarten-round-calendar).
    #[serde(default, skip_serializing_if = "RoundCalendar::is_default")]
    pub round_calendar: RoundCalendar,
}

/// When kindergarten rounds may run without an officer's stated reason: the main round of an
/// intake year (its first round) only on a local day of its season, and each later (top-up)
/// round only once `top_up_interval_days` have passed since the intake year's previous round
/// (docs/RULES.md#kindergarten-round-calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoundCalendar {
    /// The first local day of the main round's season, `MM-DD`.
    #[serde(default = "defaults::main_round_from")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^[0-9]{2}-[0-9]{2}$", default = "06-01")
    )]
    pub main_round_from: MonthDay,
    /// The last local day of the main round's season, `MM-DD` (before `main_round_from`: the
    /// season runs over the new year).
    #[serde(default = "defaults::main_round_until")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^[0-9]{2}-[0-9]{2}$", default = "08-31")
    )]
    pub main_round_until: MonthDay,
    /// Days from an intake year's previous round before a top-up round may run.
    #[serde(default = "defaults::top_up_interval_days")]
    #[cfg_attr(feature = "openapi", schema(default = defaults::top_up_interval_days))]
    pub top_up_interval_days: u16,
}

impl Default for RoundCalendar {
    fn default() -> Self {
        Self {
            main_round_from: defaults::main_round_from(),
            main_round_until: defaults::main_round_until(),
            top_up_interval_days: defaults::top_up_interval_days(),
        }
    }
}

impl RoundCalendar {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a local day falls in the main round's season (both ends included).
    pub fn in_main_season(&self, day: NaiveDate) -> bool {
        let d = MonthDay {
            month: day.month() as u8,
            day: day.day() as u8,
        };
        let (from, until) = (self.main_round_from, self.main_round_until);
        if from <= until {
            from <= d && d <= until
        } else {
            d >= from || d <= until
        }
    }

    pub fn top_up_interval(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.top_up_interval_days))
    }
}

/// A day of the year, `MM-DD` (29 February included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MonthDay {
    month: u8,
    day: u8,
}

impl MonthDay {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let bad = || InvalidField::new("month_day", "must be a day of the year as MM-DD");
        let (m, d) = raw.split_once('-').ok_or_else(bad)?;
        if m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let (month, day) = (
            m.parse::<u32>().map_err(|_| bad())?,
            d.parse::<u32>().map_err(|_| bad())?,
        );
        // 2000 is a leap year: 29 February is a day of the year.
        NaiveDate::from_ymd_opt(2000, month, day).ok_or_else(bad)?;
        Ok(Self {
            month: month as u8,
            day: day as u8,
        })
    }
}

impl TryFrom<String> for MonthDay {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<MonthDay> for String {
    fn from(value: MonthDay) -> Self {
        value.to_string()
    }
}
impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

pub mod defaults {
    pub fn max_kindergarten_preferences() -> u8 {
        3
    }
    pub fn offer_deadline_days() -> u16 {
        15
    }
    pub fn kindergarten_max_age_years() -> u8 {
        7
    }
    pub fn school_min_age_months() -> u16 {
        78
    }
    pub fn school_max_age_months() -> u16 {
        96
    }
    pub fn clinic_hold_minutes() -> u32 {
        120
    }
    pub fn no_show_block_count() -> u8 {
        2
    }
    pub fn no_show_window_days() -> u16 {
        365
    }
    pub fn main_round_from() -> super::MonthDay {
        super::MonthDay { month: 6, day: 1 }
    }
    pub fn main_round_until() -> super::MonthDay {
        super::MonthDay { month: 8, day: 31 }
    }
    pub fn top_up_interval_days() -> u16 {
        30
    }
}

impl AuthorityConfig {
    /// The default rules (docs/RULES.md#authority-settings) for an authority in the given time
    /// zone.
    pub fn with_defaults(id: AuthorityId, name: impl Into<String>, time_zone: Tz) -> Self {
        Self {
            id,
            name: name.into(),
            time_zone,
            max_kindergarten_preferences: defaults::max_kindergarten_preferences(),
            offer_deadline_days: defaults::offer_deadline_days(),
            kindergarten_max_age_years: defaults::kindergarten_max_age_years(),
            school_min_age_months: defaults::school_min_age_months(),
            school_max_age_months: defaults::school_max_age_months(),
            clinic_hold_minutes: defaults::clinic_hold_minutes(),
            no_show_block_count: defaults::no_show_block_count(),
            no_show_window_days: defaults::no_show_window_days(),
            round_calendar: RoundCalendar::default(),
        }
    }

    /// How long a freed clinic slot is held for one patient of the waiting list.
    pub fn clinic_hold(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.clinic_hold_minutes))
    }

    /// The calendar day in the authority's time zone at an instant.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// The instant of local midnight at the start of a local calendar day.
    pub fn local_midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        use chrono::TimeZone;
        let naive = day.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self.time_zone.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
            // A midnight skipped by a daylight-saving change: the day starts an hour later.
            chrono::LocalResult::None => self
                .time_zone
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
                .expect("one hour after a gap exists")
                .with_timezone(&Utc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_key_hashes_spread_counters_and_tell_tags_apart() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let hash = |v: &dyn Fn(&mut PersonKeyHasher)| {
            let mut h = PersonKeyHash::default().build_hasher();
            v(&mut h);
            std::hash::Hasher::finish(&h)
        };
        // Keys that are a counter in their first bytes (as the load tools make them): the
        // table's low bits and its top seven bits (hashbrown's tag) both vary.
        let keys: Vec<PersonKey> = (0..4096u64)
            .map(|c| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&c.to_le_bytes());
                PersonKey(k)
            })
            .collect();
        let hashes: Vec<u64> = keys
            .iter()
            .map(|k| hash(&|h| std::hash::Hash::hash(k, h)))
            .collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 2500, "{} distinct low bits", low.len());
        assert_eq!(top.len(), 128);
        // A key with a tag hashes differently per tag.
        let k = keys[7];
        let tagged = |tag: u8| hash(&|h| std::hash::Hash::hash(&(tag, k), h));
        assert_ne!(tagged(0), tagged(1));
    }

    #[test]
    fn document_normalisation_merges_spellings() {
        let a = DocumentNumber::parse("IV-АБ №123456").unwrap();
        let b = DocumentNumber::parse("iv аб 123456").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "IVAБ123456");
    }

    #[test]
    fn a_person_key_serialises_as_its_lower_case_hex_and_back() {
        let key = PersonKey(std::array::from_fn(|i| (i * 37 + 11) as u8));
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", key.to_hex()));
        assert_eq!(key.to_hex().len(), 64);
        assert!(key
            .to_hex()
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(serde_json::from_str::<PersonKey>(&json).unwrap(), key);
    }

    #[test]
    fn document_rejects_garbage() {
        assert_eq!(DocumentNumber::parse("12").unwrap_err().field, "document");
        assert!(DocumentNumber::parse("abc$%^123456").is_err());
        assert!(DocumentNumber::parse("ABCDEFGH").is_err());
    }

    #[test]
    fn age_in_full_years() {
        let b = BirthDate::from_event(NaiveDate::from_ymd_opt(2020, 9, 2).unwrap());
        assert_eq!(b.age_on(september_first(2026)), 5);
        assert_eq!(b.age_on(NaiveDate::from_ymd_opt(2026, 9, 2).unwrap()), 6);
        assert_eq!(b.age_in_months_on(september_first(2026)), 71);
    }

    #[test]
    fn intake_year_is_next_first_of_september() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(intake_year_for(d(2027, 1, 15)), 2027);
        assert_eq!(intake_year_for(d(2027, 9, 1)), 2027);
        assert_eq!(intake_year_for(d(2027, 9, 2)), 2028);
    }

    #[test]
    fn local_midnight_across_time_zones() {
        let cfg = |tz| AuthorityConfig::with_defaults(AuthorityId::parse("a").unwrap(), "A", tz);
        let day = NaiveDate::from_ymd_opt(2025, 4, 1).unwrap();
        let kamchatka = cfg(chrono_tz::Asia::Kamchatka).local_midnight(day);
        let kaliningrad = cfg(chrono_tz::Europe::Kaliningrad).local_midnight(day);
        assert_eq!(kamchatka.to_rfc3339(), "2025-03-31T12:00:00+00:00");
        assert_eq!(kaliningrad.to_rfc3339(), "2025-03-31T22:00:00+00:00");
    }
}
