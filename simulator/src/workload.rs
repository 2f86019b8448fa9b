//! The workload of a run, derived from the scenario and the seed: the institutions of each
//! authority, every child's application, and the schedule of sends (open model).
//!
//! Every random choice comes from the seed: the schedule from one generator per authority,
//! each child's form from a generator seeded by the run's seed and the child's number, so a
//! child's form can be rebuilt anywhere (setup, send, chart) without storing it. The sends
//! are not stored either: [`Workload::schedule`] makes them in time order as the run asks
//! for them, so the generator's memory does not grow with the rate or the duration.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use ochered_core::command::{
    CampaignConfig, CampaignMode, CampaignSchool, Command, KindergartenForm, SchoolForm,
};
use ochered_core::domain::{
    AuthorityConfig, AuthorityId, CampaignId, Channel, DocumentNumber, InstitutionId,
    InstitutionKind, PersonKey,
};
use ochered_core::ordering::{Privilege, TieBreak};
use ochered_writer::demo::SeededRng;

use crate::scenario::{Scenario, Service};

/// One authority of the run with its institutions and campaign.
#[derive(Debug, Clone)]
pub struct Authority {
    pub id: String,
    pub time_zone: chrono_tz::Tz,
    /// Offset of its opening from the start of the run, in scenario seconds.
    pub opens_after_s: f64,
    pub n_institutions: usize,
    /// Seats per institution (schools); kindergartens get the same figure as capacity.
    pub seats: Vec<u32>,
    /// Children `first_child..first_child + n_children` belong to this authority.
    pub first_child: u32,
    pub n_children: u32,
    /// Its arrival windows, in order: the first-device sends of its children.
    pub slots: Vec<Slot>,
}

/// One send: a child's submission from one device at an intended scenario time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Send {
    /// Scenario seconds from the start of the run (before compression).
    pub at_s: f64,
    pub child: u32,
    /// 0: the first device; 1: a second device (another parent, another key).
    pub device: u8,
}

/// What a child's parents submit.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub n: u32,
    pub authority: usize,
    pub document: String,
    pub birth_date: NaiveDate,
    /// Ranked institutions (one for a single-school campaign).
    pub institutions: Vec<usize>,
    pub privileges: Vec<Privilege>,
    pub from_draft: bool,
    pub out_of_range: bool,
    pub any_other: bool,
    /// Attempts before the parent gives up.
    pub patience: u32,
    /// Scenario seconds after the first device's send at which a second device sends.
    pub second_device_after_s: Option<f64>,
}

/// Everything fixed before the run starts.
pub struct Workload {
    pub scenario: Scenario,
    pub seed: u64,
    /// A short tag of the seed, in documents and accounts so runs against one server differ.
    pub tag: String,
    pub authorities: Vec<Authority>,
    /// Children, each with one first-device send; some send from a second device too.
    pub n_children: u32,
    /// The campaign's school year (1 September of it) and its opening day.
    pub campaign_year: i32,
    pub opening_day: NaiveDate,
    /// Share of children (0..=1) whose HTTP submissions carry a `contact` (sealed by the
    /// server with a data key of the child's own). 0 unless set with
    /// [`Workload::with_contact_share`].
    pub contact_share: f64,
}

/// How to reach a child's family, as a submission's `contact` object carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub child_name: String,
    pub guardian_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

const GIVEN_NAMES: [&str; 8] = [
    "Анна",
    "Мария",
    "Иван",
    "Дмитрий",
    "Софья",
    "Алексей",
    "Елена",
    "Михаил",
];
const SURNAMES: [&str; 8] = [
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
];

impl Workload {
    /// Builds the workload at `scale` for a run whose first opening is at `origin`.
    pub fn build(scenario: Scenario, seed: u64, scale: f64, origin: DateTime<Utc>) -> Workload {
        let total_share: f64 = scenario.authorities.iter().map(|a| a.share).sum();
        let total = scenario.total_applications() * scale;
        let mut authorities = Vec::new();
        let mut first_child = 0u32;
        let opening_day = origin.with_timezone(&first_tz(&scenario)).date_naive();
        let campaign_year = if opening_day.month() < 8 {
            opening_day.year()
        } else {
            opening_day.year() + 1
        };
        for spec in &scenario.authorities {
            let share = spec.share / total_share;
            let n_children = (total * share).round().max(0.0) as u32;
            let n_institutions = scenario
                .institutions
                .unwrap_or_else(|| (n_children as usize).div_ceil(60))
                .clamp(4, 3000);
            let mut seat_rng = SeededRng::new(seed ^ hash_str(&spec.id));
            let seats = (0..n_institutions)
                .map(|_| {
                    let [lo, hi] = scenario.seats;
                    lo + seat_rng.below(u64::from(hi - lo) + 1) as u32
                })
                .collect();
            let opens_after_s = spec.opens_after_min * 60.0;
            // Each window's arrivals lie uniformly at random inside it (placed by
            // [`Workload::schedule`]): a Poisson-like stream whose counts match the published
            // figures.
            let mut placed = 0u32;
            let mut previous = 0.0f64;
            let mut slots = Vec::new();
            for w in &scenario.arrivals {
                let target = ((w.applications * scale * share).round() as u32).min(n_children);
                if target > placed {
                    slots.push(Slot {
                        start_s: opens_after_s + previous * 60.0,
                        end_s: opens_after_s + w.minutes * 60.0,
                        count: target - placed,
                    });
                    placed = target;
                }
                previous = w.minutes;
            }
            authorities.push(Authority {
                id: spec.id.clone(),
                time_zone: spec.time_zone.parse().expect("validated time zone"),
                opens_after_s,
                n_institutions,
                seats,
                first_child,
                n_children: placed,
                slots,
            });
            first_child += placed;
        }
        Workload {
            scenario,
            seed,
            tag: format!("{:06}", seed % 1_000_000),
            authorities,
            n_children: first_child,
            campaign_year,
            opening_day,
            contact_share: 0.0,
        }
    }

    /// The sends in time order (then by child, then device), made as they are taken.
    pub fn schedule(&self) -> Schedule<'_> {
        let mut streams: Vec<Stream> = self
            .authorities
            .iter()
            .map(|a| Stream {
                rng: SeededRng::new(self.seed ^ 0x5C4E_D01E ^ hash_str(&a.id).rotate_left(29)),
                slot: 0,
                t: a.slots.first().map_or(0.0, |s| s.start_s),
                left: a.slots.first().map_or(0, |s| s.count),
                next_child: a.first_child,
            })
            .collect();
        let heads = streams
            .iter_mut()
            .zip(&self.authorities)
            .map(|(s, a)| s.next(a))
            .collect();
        Schedule {
            workload: self,
            streams,
            heads,
            later: Default::default(),
        }
    }

    /// Scenario seconds from the start to the end of the last arrival window (the last
    /// first-device send comes before it; a second device may come later).
    pub fn span_s(&self) -> f64 {
        self.authorities
            .iter()
            .filter_map(|a| a.slots.last().map(|s| s.end_s))
            .fold(0.0, f64::max)
    }

    /// The same workload whose children give a contact with this share (clamped to 0..=1)
    /// of their HTTP submissions. Which children do, and what they give, comes from the seed
    /// through a generator of its own, so every other choice stays as without contacts.
    pub fn with_contact_share(mut self, share: f64) -> Workload {
        self.contact_share = share.clamp(0.0, 1.0);
        self
    }

    /// The contact child `n`'s parents give with a submission (the same on every device),
    /// if the child is in the contact share.
    pub fn contact(&self, n: u32) -> Option<Contact> {
        if self.contact_share <= 0.0 {
            return None;
        }
        let mut rng = SeededRng::new(
            (self.seed ^ 0xC0_47AC_7000).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ u64::from(n).wrapping_mul(0x2545_F491),
        );
        if rng.unit() >= self.contact_share {
            return None;
        }
        let name = |rng: &mut SeededRng| {
            let given = GIVEN_NAMES[rng.below(GIVEN_NAMES.len() as u64) as usize];
            let surname = SURNAMES[rng.below(SURNAMES.len() as u64) as usize];
            format!("{given} {surname}")
        };
        let child_name = name(&mut rng);
        let guardian_name = name(&mut rng);
        // A phone, an email or both, as the API requires at least one.
        let (phone, email) = match rng.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        let phone = phone.then(|| {
            let digits = rng.below(10_000_000);
            format!(
                "+7 9{:02} {:03}-{:02}-{:02}",
                rng.below(100),
                digits / 10_000,
                digits / 100 % 100,
                digits % 100
            )
        });
        let email = email.then(|| format!("parent{n}.{}@example.org", self.tag));
        Some(Contact {
            child_name,
            guardian_name,
            phone,
            email,
        })
    }

    pub fn authority_of(&self, child: u32) -> usize {
        self.authorities
            .partition_point(|a| a.first_child + a.n_children <= child)
            .min(self.authorities.len() - 1)
    }

    pub fn campaign_id(&self) -> CampaignId {
        CampaignId::parse(&format!("school-{}", self.campaign_year)).expect("valid id")
    }

    pub fn institution_id(&self, index: usize) -> InstitutionId {
        let prefix = match self.scenario.service {
            Service::School => 'S',
            Service::Kindergarten => 'K',
        };
        InstitutionId::parse(&format!("{prefix}{:04}", index + 1)).expect("valid id")
    }

    /// The account of the parent submitting from `device`.
    pub fn parent(&self, child: u32, device: u8) -> String {
        let who = if device == 0 { "a" } else { "b" };
        format!("sim-{}-{child}-{who}", self.tag)
    }

    /// The Idempotency-Key a device uses for all its attempts.
    pub fn idempotency_key(&self, child: u32, device: u8) -> String {
        format!("sim-{}-{}-{child}-{device}", self.tag, self.seed)
    }

    /// The child's form, rebuilt from the seed.
    pub fn child(&self, n: u32) -> ChildSpec {
        let s = &self.scenario;
        let authority = self.authority_of(n);
        let a = &self.authorities[authority];
        let mut rng = SeededRng::new(
            self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ u64::from(n).wrapping_mul(0x9E37_79B9),
        );
        let n_choices = match s.service {
            Service::School => 1,
            Service::Kindergarten => 1 + rng.below(s.kindergarten_preferences_max as u64) as usize,
        };
        let mut institutions = Vec::with_capacity(n_choices);
        while institutions.len() < n_choices.min(a.n_institutions) {
            let i = rng.skewed(a.n_institutions, s.popularity_skew);
            if !institutions.contains(&i) {
                institutions.push(i);
            }
        }
        let out_of_range = rng.unit() < s.birth_dates.out_of_range_share;
        let birth_date = match s.service {
            Service::School => {
                let sept1 = NaiveDate::from_ymd_opt(self.campaign_year, 9, 1).expect("valid date");
                let months = if out_of_range {
                    // Too young: five years old on 1 September.
                    60 + rng.below(6) as u32
                } else {
                    s.birth_dates.min_age_months
                        + rng.below(
                            u64::from(s.birth_dates.max_age_months - s.birth_dates.min_age_months)
                                + 1,
                        ) as u32
                };
                // Whole months back from 1 September, then up to 27 days more.
                sept1
                    .checked_sub_months(chrono::Months::new(months))
                    .expect("valid date")
                    - Duration::days(rng.below(28) as i64)
            }
            Service::Kindergarten => {
                let months = if out_of_range {
                    96 + rng.below(12) as u32
                } else {
                    2 + rng.below(60) as u32
                };
                self.opening_day
                    .checked_sub_months(chrono::Months::new(months))
                    .expect("valid date")
                    - Duration::days(rng.below(28) as i64)
            }
        };
        let p = &s.privileges;
        let roll = rng.unit();
        let first = institutions[0];
        let privileges = if roll < p.extraordinary {
            vec![Privilege::Extraordinary]
        } else if roll < p.extraordinary + p.first_priority {
            vec![Privilege::FirstPriority]
        } else if roll < p.extraordinary + p.first_priority + p.sibling {
            vec![Privilege::Sibling {
                institution: self.institution_id(first),
            }]
        } else if s.service == Service::School
            && roll < p.extraordinary + p.first_priority + p.sibling + p.catchment
        {
            vec![Privilege::Catchment {
                institution: self.institution_id(first),
            }]
        } else {
            Vec::new()
        };
        let from_draft = s.service == Service::School && rng.unit() < s.drafts_share;
        let patience = if rng.unit() < s.retry.impatient_share {
            s.retry.impatient_max_attempts
        } else {
            s.retry.max_attempts
        };
        let second_device_after_s =
            (rng.unit() < s.second_device_share).then(|| rng.unit() * s.second_device_delay_s);
        ChildSpec {
            n,
            authority,
            document: format!("SIM {} {n:09}", self.tag),
            birth_date,
            institutions,
            privileges,
            from_draft,
            out_of_range,
            any_other: rng.below(4) == 0,
            patience,
            second_device_after_s,
        }
    }

    pub fn person_key(&self, secret: &[u8], child: &ChildSpec) -> PersonKey {
        PersonKey::derive(
            secret,
            &DocumentNumber::parse(&child.document).expect("valid document"),
        )
    }

    pub fn school_form(&self, secret: &[u8], child: &ChildSpec, device: u8) -> SchoolForm {
        SchoolForm {
            campaign: self.campaign_id(),
            child: self.person_key(secret, child),
            birth_date: child.birth_date,
            schools: child
                .institutions
                .iter()
                .map(|&i| self.institution_id(i))
                .collect(),
            privileges: child.privileges.clone(),
            channel: Channel::Portal,
            submitted_by: self.parent(child.n, device),
            sealed: None,
        }
    }

    pub fn kindergarten_form(
        &self,
        secret: &[u8],
        child: &ChildSpec,
        device: u8,
    ) -> KindergartenForm {
        KindergartenForm {
            child: self.person_key(secret, child),
            birth_date: child.birth_date,
            preferences: child
                .institutions
                .iter()
                .map(|&i| self.institution_id(i))
                .collect(),
            desired_start: self.desired_start(),
            any_other: child.any_other,
            privileges: child.privileges.clone(),
            channel: Channel::Portal,
            submitted_by: self.parent(child.n, device),
            sealed: None,
        }
    }

    pub fn desired_start(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.opening_day.year() + 1, 9, 1).expect("valid date")
    }

    /// The command a device sends: the first device submits its draft if it saved one.
    pub fn command(&self, secret: &[u8], child: &ChildSpec, device: u8) -> Command {
        match self.scenario.service {
            Service::Kindergarten => Command::SubmitKindergartenApplication {
                form: self.kindergarten_form(secret, child, device),
            },
            Service::School if device == 0 && child.from_draft => Command::SubmitSchoolDraft {
                campaign: self.campaign_id(),
                child: self.person_key(secret, child),
            },
            Service::School => Command::SubmitSchoolApplication {
                form: self.school_form(secret, child, device),
            },
        }
    }

    /// The commands that configure an authority: the authority, its institutions and (for
    /// schools) a campaign whose stages both open on the opening day, so every applicant
    /// may apply at once.
    pub fn setup_commands(&self, authority: usize) -> Vec<Command> {
        let a = &self.authorities[authority];
        let mut commands = vec![Command::ConfigureAuthority {
            config: AuthorityConfig::with_defaults(
                AuthorityId::parse(&a.id).expect("validated id"),
                format!("Simulated authority {}", a.id),
                a.time_zone,
            ),
        }];
        let kind = match self.scenario.service {
            Service::School => InstitutionKind::School,
            Service::Kindergarten => InstitutionKind::Kindergarten,
        };
        for i in 0..a.n_institutions {
            commands.push(Command::RegisterInstitution {
                id: self.institution_id(i),
                kind,
                name: format!(
                    "{} No. {}",
                    if kind == InstitutionKind::School {
                        "School"
                    } else {
                        "Kindergarten"
                    },
                    i + 1
                ),
                district: None,
                address: None,
            });
        }
        if self.scenario.service == Service::School {
            commands.push(Command::ConfigureCampaign {
                config: self.campaign_config(authority),
            });
        }
        commands
    }

    pub fn campaign_config(&self, authority: usize) -> CampaignConfig {
        let a = &self.authorities[authority];
        CampaignConfig {
            id: self.campaign_id(),
            year: self.campaign_year,
            stage1_opens: self.opening_day - Duration::days(1),
            stage2_opens: self.opening_day - Duration::days(1),
            closes: NaiveDate::from_ymd_opt(self.campaign_year, 9, 5).expect("valid date"),
            tie_break: TieBreak::RegistrationTime,
            mode: CampaignMode::SingleSchool,
            schools: (0..a.n_institutions)
                .map(|i| CampaignSchool {
                    institution: self.institution_id(i),
                    seats: a.seats[i],
                })
                .collect(),
        }
    }

    /// Children whose parents saved a draft before the opening, per authority.
    pub fn drafts(&self, authority: usize) -> impl Iterator<Item = ChildSpec> + '_ {
        let a = &self.authorities[authority];
        (a.first_child..a.first_child + a.n_children)
            .map(|n| self.child(n))
            .filter(|c| c.from_draft)
    }

    /// Applications wanting each institution first, per authority (the demand chart).
    pub fn demand(&self) -> Vec<Vec<u32>> {
        let mut demand: Vec<Vec<u32>> = self
            .authorities
            .iter()
            .map(|a| vec![0; a.n_institutions])
            .collect();
        for n in 0..self.n_children {
            let c = self.child(n);
            demand[c.authority][c.institutions[0]] += 1;
        }
        demand
    }
}

fn first_tz(s: &Scenario) -> chrono_tz::Tz {
    s.authorities[0]
        .time_zone
        .parse()
        .expect("validated time zone")
}

fn hash_str(s: &str) -> u64 {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One window of an authority's arrivals: `count` first-device sends placed uniformly at
/// random in `[start_s, end_s)`, scenario seconds from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub start_s: f64,
    pub end_s: f64,
    pub count: u32,
}

/// The sends of a run in time order, made as they are asked for ([`Workload::schedule`]):
/// memory does not grow with the run's length or rate. Each authority's first-device sends
/// are the sorted uniform points of its windows, drawn one after the other (the smallest of
/// `k` uniform points in `[t, end)` lies at `t + (end − t)(1 − V^{1/k})`, V uniform in
/// `(0, 1]`), so each authority's children are numbered in the order they send; second
/// devices wait in a heap until their time. The same seed gives the same sends.
pub struct Schedule<'a> {
    workload: &'a Workload,
    streams: Vec<Stream>,
    /// The next first-device send of each authority.
    heads: Vec<Option<Send>>,
    /// Second devices, due later.
    later: std::collections::BinaryHeap<std::cmp::Reverse<Due>>,
}

/// One authority's first-device sends.
struct Stream {
    rng: SeededRng,
    slot: usize,
    t: f64,
    left: u32,
    next_child: u32,
}

/// A send ordered by time, then child, then device.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Due(Send);

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (&self.0, &other.0);
        a.at_s
            .total_cmp(&b.at_s)
            .then(a.child.cmp(&b.child))
            .then(a.device.cmp(&b.device))
    }
}

impl Stream {
    fn next(&mut self, authority: &Authority) -> Option<Send> {
        while self.left == 0 {
            self.slot += 1;
            let slot = authority.slots.get(self.slot)?;
            self.t = slot.start_s;
            self.left = slot.count;
        }
        let end = authority.slots[self.slot].end_s;
        let v = 1.0 - self.rng.unit();
        self.t += (end - self.t) * (1.0 - v.powf(1.0 / f64::from(self.left)));
        self.left -= 1;
        let child = self.next_child;
        self.next_child += 1;
        Some(Send {
            at_s: self.t,
            child,
            device: 0,
        })
    }
}

impl Iterator for Schedule<'_> {
    type Item = Send;

    fn next(&mut self) -> Option<Send> {
        let first = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|s| (i, Due(s))))
            .min_by(|a, b| a.1.cmp(&b.1));
        let later = self.later.peek().map(|r| r.0);
        match (first, later) {
            (Some((_, f)), Some(l)) if l < f => {
                self.later.pop();
                Some(l.0)
            }
            (Some((i, f)), _) => {
                self.heads[i] = self.streams[i].next(&self.workload.authorities[i]);
                if let Some(after) = self.workload.child(f.0.child).second_device_after_s {
                    self.later.push(std::cmp::Reverse(Due(Send {
                        at_s: f.0.at_s + after,
                        child: f.0.child,
                        device: 1,
                    })));
                }
                Some(f.0)
            }
            (None, Some(l)) => {
                self.later.pop();
                Some(l.0)
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Presets;

    fn workload(scale: f64) -> Workload {
        let presets = Presets::load(None).unwrap();
        let scenario = presets.scenario("novosibirsk-2024").unwrap();
        let origin = DateTime::parse_from_rfc3339("2027-04-01T00:00:00+07:00")
            .unwrap()
            .with_timezone(&Utc);
        Workload::build(scenario, 7, scale, origin)
    }

    #[test]
    fn the_schedule_matches_the_published_windows() {
        let w = workload(1.0);
        assert_eq!(w.n_children, 9475);
        let sends: Vec<Send> = w.schedule().collect();
        let first_five_minutes = sends
            .iter()
            .filter(|s| s.device == 0 && s.at_s < 300.0)
            .count();
        assert_eq!(first_five_minutes, 1144);
        assert!(sends.windows(2).all(|p| Due(p[0]) < Due(p[1])));
        // Every child sends once from its first device, in the order of its number within
        // its authority.
        let firsts: Vec<u32> = sends
            .iter()
            .filter(|s| s.device == 0)
            .map(|s| s.child)
            .collect();
        assert_eq!(firsts, (0..w.n_children).collect::<Vec<_>>());
        let seconds = sends.iter().filter(|s| s.device == 1).count();
        assert!(
            seconds > 150 && seconds < 450,
            "{seconds} second-device sends"
        );
        // Every window holds its count.
        for a in &w.authorities {
            for slot in &a.slots {
                let inside = sends
                    .iter()
                    .filter(|s| s.device == 0 && s.at_s >= slot.start_s && s.at_s < slot.end_s)
                    .count();
                assert_eq!(inside, slot.count as usize, "{slot:?}");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_children() {
        let a = workload(0.1);
        let b = workload(0.1);
        assert!(a.schedule().eq(b.schedule()));
        for n in [0, 5, 900] {
            assert_eq!(format!("{:?}", a.child(n)), format!("{:?}", b.child(n)));
        }
        assert_eq!(a.campaign_year, 2027);
    }

    #[test]
    fn a_long_schedule_is_made_as_it_goes() {
        // 20 million children: building the workload and taking its first sends must not
        // cost memory or time in proportion to the whole run.
        let started = std::time::Instant::now();
        let w = workload(2000.0);
        assert!(w.n_children > 18_000_000, "{}", w.n_children);
        let mut schedule = w.schedule();
        let mut last = f64::MIN;
        for _ in 0..100_000 {
            let s = schedule.next().unwrap();
            assert!(s.at_s >= last);
            last = s.at_s;
        }
        // Only second devices wait in memory, a few seconds' worth of the run.
        assert!(schedule.later.len() < 10_000, "{}", schedule.later.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn contacts_follow_the_share_and_the_seed_and_pass_the_api_checks() {
        let none = workload(0.05);
        assert!((0..none.n_children).all(|n| none.contact(n).is_none()));
        let half = workload(0.05).with_contact_share(0.5);
        let again = workload(0.05).with_contact_share(0.5);
        let mut given = 0;
        for n in 0..half.n_children {
            assert_eq!(half.contact(n), again.contact(n));
            // Contacts draw from a generator of their own: the forms stay the same.
            assert_eq!(
                format!("{:?}", half.child(n)),
                format!("{:?}", none.child(n))
            );
            let Some(c) = half.contact(n) else { continue };
            given += 1;
            let request: ochered_api::wire::ContactRequest =
                serde_json::from_value(serde_json::json!({
                    "child_name": c.child_name,
                    "guardian_name": c.guardian_name,
                    "phone": c.phone,
                    "email": c.email,
                }))
                .unwrap();
            request.validate(&half.child(n).document).unwrap();
        }
        let share = f64::from(given) / f64::from(half.n_children);
        assert!((0.4..0.6).contains(&share), "{share}");
        let all = workload(0.05).with_contact_share(1.0);
        assert!((0..all.n_children).all(|n| all.contact(n).is_some()));
    }

    #[test]
    fn forms_pass_the_rules_unless_meant_not_to() {
        let w = workload(0.05);
        let sept1 = NaiveDate::from_ymd_opt(2027, 9, 1).unwrap();
        for n in 0..w.n_children {
            let c = w.child(n);
            let months = (sept1.year() - c.birth_date.year()) * 12 + sept1.month() as i32
                - c.birth_date.month() as i32;
            if c.out_of_range {
                assert!(months < 78);
            } else {
                assert!((78..96).contains(&months), "{months}");
            }
        }
    }
}
