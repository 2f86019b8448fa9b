//! A demo authority: the commands that set one up, and a seeded generator of plausible
//! applications. Used to seed the server on first start, by the simulator and by tests.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use ochered_core::command::{
    AgeGroupSeats, CampaignConfig, CampaignMode, CampaignSchool, Command, KindergartenForm,
    SchoolForm, SlotSpec,
};
use ochered_core::domain::{
    AuthorityConfig, AuthorityId, CampaignId, Channel, DoctorId, DocumentNumber, InstitutionId,
    InstitutionKind, MonthDay, PersonKey, RoundCalendar, SlotId, Specialty,
};
use ochered_core::ordering::{Privilege, TieBreak};

/// The secret the demo derives person keys with. A real deployment configures its own.
pub const DEMO_PERSON_SECRET: &[u8] = b"ochered-demo-secret";

/// splitmix64: a tiny deterministic generator, so every demo and simulation is reproducible.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// An index in `0..n` skewed towards small indices (Zipf-like with exponent `s`).
    pub fn skewed(&mut self, n: usize, s: f64) -> usize {
        // Inverse transform on a continuous power law; fast and good enough for load shapes.
        let u = self.unit();
        if s <= 0.0 {
            return (u * n as f64) as usize % n;
        }
        let x = ((n as f64 + 1.0).powf(1.0 - s) - 1.0) * u + 1.0;
        ((x.powf(1.0 / (1.0 - s)) - 1.0) as usize).min(n - 1)
    }
}

/// Shape of a demo authority.
#[derive(Debug, Clone)]
pub struct DemoShape {
    pub kindergartens: usize,
    pub schools: usize,
    pub campaign_year: i32,
    pub time_zone: chrono_tz::Tz,
    /// When the campaign's stage 1 opens (local date).
    pub stage1_opens: NaiveDate,
    pub stage2_opens: NaiveDate,
}

impl Default for DemoShape {
    fn default() -> Self {
        Self {
            kindergartens: 12,
            schools: 8,
            campaign_year: 2027,
            time_zone: chrono_tz::Europe::Moscow,
            stage1_opens: NaiveDate::from_ymd_opt(2027, 4, 1).expect("valid"),
            stage2_opens: NaiveDate::from_ymd_opt(2027, 7, 6).expect("valid"),
        }
    }
}

pub fn kindergarten_id(i: usize) -> InstitutionId {
    InstitutionId::parse(&format!("K{:03}", i + 1)).expect("valid id")
}

pub fn school_id(i: usize) -> InstitutionId {
    InstitutionId::parse(&format!("S{:03}", i + 1)).expect("valid id")
}

pub fn campaign_id(year: i32) -> CampaignId {
    CampaignId::parse(&format!("school-{year}")).expect("valid id")
}

/// The demo's districts. Institutions are spread over them in blocks of three, so the
/// popular kindergartens (the first ones, see [`kindergarten_application`]) share the first
/// district, which the demand report shows short of seats, and the last district has more
/// seats than waiting children.
pub const DEMO_DISTRICTS: [&str; 4] = ["Central", "Northern", "Riverside", "Southern"];

/// The district of the i-th demo kindergarten or school.
pub fn demo_district(i: usize) -> &'static str {
    DEMO_DISTRICTS[(i / 3) % DEMO_DISTRICTS.len()]
}

/// The commands that configure a demo authority: institutions, a first-grade campaign,
/// clinic specialties with a week of slots starting at `slots_from`.
pub fn setup_commands(
    authority: &str,
    shape: &DemoShape,
    slots_from: DateTime<Utc>,
) -> Vec<Command> {
    let mut config = AuthorityConfig::with_defaults(
        AuthorityId::parse(authority).expect("valid authority id"),
        format!("Demo authority {authority}"),
        shape.time_zone,
    );
    // The demo is tried on any day of the year, and its rounds one after another: its round
    // calendar lets a main round run on any day and top-ups without waiting
    // (docs/RULES.md#kindergarten-round-calendar). A real authority keeps its own.
    config.round_calendar = RoundCalendar {
        main_round_from: MonthDay::parse("01-01").expect("a day"),
        main_round_until: MonthDay::parse("12-31").expect("a day"),
        top_up_interval_days: 0,
    };
    let mut commands = vec![Command::ConfigureAuthority { config }];
    for i in 0..shape.kindergartens {
        commands.push(Command::RegisterInstitution {
            id: kindergarten_id(i),
            kind: InstitutionKind::Kindergarten,
            name: format!("Kindergarten No. {}", i + 1),
            district: Some(demo_district(i).into()),
            address: Some(format!("{} street, {}", demo_district(i), 10 + 2 * i)),
        });
    }
    for i in 0..shape.schools {
        commands.push(Command::RegisterInstitution {
            id: school_id(i),
            kind: InstitutionKind::School,
            name: format!("School No. {}", i + 1),
            district: Some(demo_district(i).into()),
            address: None,
        });
    }
    commands.push(Command::RegisterInstitution {
        id: InstitutionId::parse("P001").expect("valid id"),
        kind: InstitutionKind::Clinic,
        name: "City polyclinic No. 1".into(),
        district: Some(DEMO_DISTRICTS[0].into()),
        address: None,
    });
    commands.push(Command::ConfigureCampaign {
        config: CampaignConfig {
            id: campaign_id(shape.campaign_year),
            year: shape.campaign_year,
            stage1_opens: shape.stage1_opens,
            stage2_opens: shape.stage2_opens,
            closes: NaiveDate::from_ymd_opt(shape.campaign_year, 9, 5).expect("valid"),
            tie_break: TieBreak::RegistrationTime,
            mode: CampaignMode::SingleSchool,
            schools: (0..shape.schools)
                .map(|i| CampaignSchool {
                    institution: school_id(i),
                    seats: 50 + 25 * (i as u32 % 3),
                })
                .collect(),
        },
    });
    for (specialty, referral_only) in [
        ("therapist", false),
        ("paediatrician", false),
        ("cardiology", true),
    ] {
        let specialty = Specialty::parse(specialty).expect("valid specialty");
        commands.push(Command::ConfigureSpecialty {
            specialty: specialty.clone(),
            referral_only,
        });
        let slots = (0..40)
            .map(|i| SlotSpec {
                id: SlotId::parse(&format!("{specialty}-{i:04}")).expect("valid slot id"),
                start: slots_from + Duration::days(1 + i / 8) + Duration::minutes(30 * (i % 8)),
                duration_minutes: 30,
            })
            .collect();
        commands.push(Command::PublishSlots {
            doctor: DoctorId::parse(&format!("dr-{specialty}")).expect("valid doctor id"),
            specialty,
            slots,
        });
    }
    commands
}

/// Publishes seats in every age group (0–6) of every demo kindergarten for an intake year:
/// a few seats per group, more in the popular kindergartens' neighbours than in the
/// popular ones, so that rounds have both full and half-empty kindergartens.
pub fn kindergarten_seat_commands(shape: &DemoShape, intake_year: i32) -> Vec<Command> {
    (0..shape.kindergartens)
        .map(|i| Command::PublishKindergartenSeats {
            institution: kindergarten_id(i),
            intake_year,
            seats: (0..=6)
                .map(|age_group| AgeGroupSeats {
                    age_group,
                    seats: 2 + ((i as u32 + u32::from(age_group)) % 4),
                })
                .collect(),
        })
        .collect()
}

/// The person key of the n-th demo child (the same document gives the same key).
pub fn demo_child(n: u64) -> PersonKey {
    PersonKey::derive(DEMO_PERSON_SECRET, &demo_document(n))
}

/// The n-th demo child's birth certificate number.
pub fn demo_document(n: u64) -> DocumentNumber {
    DocumentNumber::parse(&format!("I-DM {n:08}")).expect("valid document")
}

/// The intake year of the demo's kindergarten applications made on `today`: they ask for a
/// start on 1 September of the next year.
pub fn kindergarten_intake_year(today: NaiveDate) -> i32 {
    today.year() + 1
}

/// A plausible kindergarten application for child `n`, with preferences skewed towards the
/// popular kindergartens and a few privileges.
pub fn kindergarten_application(
    rng: &mut SeededRng,
    n: u64,
    shape: &DemoShape,
    today: NaiveDate,
) -> Command {
    let n_prefs = 1 + rng.below(3) as usize;
    let mut preferences: Vec<InstitutionId> = Vec::new();
    while preferences.len() < n_prefs.min(shape.kindergartens) {
        let id = kindergarten_id(rng.skewed(shape.kindergartens, 1.1));
        if !preferences.contains(&id) {
            preferences.push(id);
        }
    }
    let age_days = 60 + rng.below(365 * 5) as i64;
    let birth_date = today - Duration::days(age_days);
    let desired_start =
        NaiveDate::from_ymd_opt(kindergarten_intake_year(today), 9, 1).expect("valid date");
    let mut privileges = Vec::new();
    let roll = rng.below(100);
    if roll < 3 {
        privileges.push(Privilege::Extraordinary);
    } else if roll < 10 {
        privileges.push(Privilege::FirstPriority);
    } else if roll < 20 {
        privileges.push(Privilege::Sibling {
            institution: preferences[0].clone(),
        });
    }
    Command::SubmitKindergartenApplication {
        form: KindergartenForm {
            child: demo_child(n),
            birth_date,
            preferences,
            desired_start,
            any_other: rng.below(4) == 0,
            privileges,
            channel: if rng.below(10) == 0 {
                Channel::ServiceCentre
            } else {
                Channel::Portal
            },
            submitted_by: format!("parent-{n}"),
            sealed: None,
        },
    }
}

/// A plausible first-grade form for child `n` (age 6.5–8 on 1 September of the year).
pub fn school_form(rng: &mut SeededRng, n: u64, shape: &DemoShape, stage1: bool) -> SchoolForm {
    let sept1 = NaiveDate::from_ymd_opt(shape.campaign_year, 9, 1).expect("valid date");
    let age_days = 6 * 365 + 200 + rng.below(480) as i64;
    let school = school_id(rng.skewed(shape.schools, 1.0));
    let privileges = if stage1 || rng.below(3) == 0 {
        vec![Privilege::Catchment {
            institution: school.clone(),
        }]
    } else {
        Vec::new()
    };
    SchoolForm {
        campaign: campaign_id(shape.campaign_year),
        child: demo_child(n),
        birth_date: sept1 - Duration::days(age_days),
        schools: vec![school],
        privileges,
        channel: Channel::Portal,
        submitted_by: format!("parent-{n}"),
        sealed: None,
    }
}
