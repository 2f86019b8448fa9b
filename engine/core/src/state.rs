//! The authority's state and `apply`, which folds one event into it and cannot fail.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{CampaignConfig, SchoolForm, Sealed};
use crate::domain::{
    intake_year_for, september_first, ApplicationNumber, AuthorityConfig, BirthDate, BookingNumber,
    CampaignId, Channel, DoctorId, InstitutionId, InstitutionKind, PersonKey, RoundId, SlotId,
    Specialty,
};
use crate::event::{Event, StreamId};
use crate::ordering::{
    kindergarten_tier, school_tier, Privilege, PrivilegeClaim, PrivilegeStatus, SortKey, TieBreak,
};
use crate::queues::{Cause, QueueKey, Queues, RoundLabel};
use crate::rounds::{Round, RoundPlacement, RoundScope, RoundSeatGroup};

/// Index of an institution in [`State::institutions`], in order of registration.
pub type InstitutionIdx = u32;
/// Index of a campaign in [`State::campaigns`], in order of configuration.
pub type CampaignIdx = u32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Institution {
    pub id: InstitutionId,
    pub kind: InstitutionKind,
    pub name: String,
    pub version: u32,
}

/// Which service an application belongs to; one active application per child per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Kindergarten,
    School,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    /// Waiting in its queues.
    Active,
    /// Holds an outstanding kindergarten offer; out of the queues until it is answered.
    Offered,
    /// The child got the place (accepted offer or enrollment decision).
    Enrolled,
    /// A kindergarten place the child left for the place of a later (transfer) application.
    Transferred,
    Withdrawn,
}

impl ApplicationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ApplicationStatus::Active => "active",
            ApplicationStatus::Offered => "offered",
            ApplicationStatus::Enrolled => "enrolled",
            ApplicationStatus::Transferred => "transferred",
            ApplicationStatus::Withdrawn => "withdrawn",
        }
    }

    /// Whether the application is the child's current one in its service, which blocks a
    /// second application. An enrolled kindergarten child may apply again (a transfer); an
    /// enrolled first-grader may not.
    pub fn is_current(&self, service: ServiceKind) -> bool {
        match self {
            ApplicationStatus::Active | ApplicationStatus::Offered => true,
            ApplicationStatus::Enrolled => service == ServiceKind::School,
            ApplicationStatus::Transferred | ApplicationStatus::Withdrawn => false,
        }
    }
}

/// One application (kindergarten or first grade). Kept after it closes, for history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub number: ApplicationNumber,
    pub service: ServiceKind,
    /// The campaign of a first-grade application.
    pub campaign: Option<CampaignIdx>,
    pub child: PersonKey,
    pub birth_date: BirthDate,
    /// Fixed at receipt; amending preferences keeps it.
    pub registered_at: DateTime<Utc>,
    /// Ranked institutions, best first, as indices into the institution table.
    pub preferences: Box<[InstitutionIdx]>,
    /// Kindergarten: the desired start date. First grade: 1 September of the campaign year.
    pub desired_start: NaiveDate,
    pub any_other: bool,
    pub privileges: Vec<PrivilegeClaim>,
    pub status: ApplicationStatus,
    pub channel: Channel,
    pub from_draft: bool,
    pub submitted_by: Box<str>,
    /// The application's latest placement (offer or enrollment), an index into
    /// [`StateData::placements`].
    #[serde(default)]
    pub placement: Option<u32>,
    pub version: u32,
    /// The applicant's sealed personal data, until it is erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
    /// The applicant's personal data was erased (its data key destroyed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub erased: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub config: CampaignConfig,
    pub school_idx: Box<[InstitutionIdx]>,
    /// Seats taken by enrollment decisions, per school in the order of `school_idx`.
    #[serde(default)]
    pub seats_taken: Vec<u32>,
    pub drafts: BTreeMap<PersonKey, SchoolForm>,
    pub age_exceptions: std::collections::BTreeSet<PersonKey>,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingEntry {
    pub patient: PersonKey,
    pub tier: u8,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialtyState {
    pub referral_only: bool,
    /// Waiting list in order: tier, then time of joining.
    pub waiting: Vec<WaitingEntry>,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub doctor: DoctorId,
    pub specialty: Specialty,
    pub start: DateTime<Utc>,
    pub duration_minutes: u16,
    pub booking: Option<BookingNumber>,
    /// Set while a freed slot is held for the waiting list.
    #[serde(default)]
    pub hold: Option<SlotHold>,
}

/// A freed slot held for one patient of the specialty's waiting list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotHold {
    pub patient: PersonKey,
    pub until: DateTime<Utc>,
    /// Earlier holders of this slot whose holds lapsed; the chain skips them.
    pub passed_over: Vec<PersonKey>,
}

/// Seats of a kindergarten age group for an intake year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatGroup {
    pub intake_year: i32,
    pub institution: InstitutionIdx,
    pub age_group: u8,
    /// As last published by an officer.
    pub published: u32,
    /// Outstanding offers plus enrolled children.
    pub taken: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStatus {
    /// A kindergarten offer waiting for an answer.
    Offered,
    /// The child took the place (accepted offer, or a school enrollment decision).
    Accepted,
    Declined,
    Expired,
    /// The application was withdrawn while the offer was outstanding.
    Withdrawn,
    /// The child left the place for another (transfer).
    Released,
}

/// A place given by a round: a kindergarten offer or a school enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub round: u32,
    pub application: ApplicationNumber,
    pub institution: InstitutionIdx,
    /// Kindergarten age group and intake year; none for schools.
    pub age_group: Option<u8>,
    pub intake_year: i32,
    /// The offer's deadline; none for school enrollments.
    pub deadline: Option<DateTime<Utc>>,
    pub status: PlacementStatus,
    pub answered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Active,
    Cancelled,
    NoShow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    pub number: BookingNumber,
    pub slot: SlotId,
    pub specialty: Specialty,
    pub patient: PersonKey,
    pub status: BookingStatus,
    pub booked_at: DateTime<Utc>,
    pub booked_by: Box<str>,
    pub version: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub active_bookings: BTreeMap<Specialty, BookingNumber>,
    pub no_shows: Vec<DateTime<Utc>>,
}

/// The part of the state that is hashed and snapshotted. Everything else is derived from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    pub config: Option<AuthorityConfig>,
    pub config_version: u32,
    pub institutions: Vec<Institution>,
    pub applications: Vec<Application>,
    pub campaigns: Vec<Campaign>,
    pub specialties: BTreeMap<Specialty, SpecialtyState>,
    pub slots: BTreeMap<SlotId, Slot>,
    pub bookings: Vec<Booking>,
    pub patients: BTreeMap<PersonKey, Patient>,
    /// Sorted by (intake year, institution, age group).
    #[serde(default)]
    pub kindergarten_seats: Vec<SeatGroup>,
    #[serde(default)]
    pub rounds: Vec<Round>,
    #[serde(default)]
    pub placements: Vec<Placement>,
    pub n_events: u64,
    /// Erasure events recorded per person (the version of the person's stream).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub erasures: BTreeMap<PersonKey, u32>,
}

/// The authority's state: a fold of its events, plus derived indexes and queue projections.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub data: StateData,
    institution_by_id: HashMap<InstitutionId, InstitutionIdx>,
    campaign_by_id: HashMap<CampaignId, CampaignIdx>,
    active_by_child: HashMap<(ServiceKind, PersonKey), ApplicationNumber>,
    /// The enrolled kindergarten application of each child that has one.
    enrolled_by_child: HashMap<PersonKey, ApplicationNumber>,
    round_by_id: HashMap<RoundId, u32>,
    /// Slots with a waiting-list hold.
    held_slots: std::collections::BTreeSet<SlotId>,
    pub queues: Queues,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn config(&self) -> Option<&AuthorityConfig> {
        self.data.config.as_ref()
    }

    pub fn n_events(&self) -> u64 {
        self.data.n_events
    }

    pub fn institution_idx(&self, id: &InstitutionId) -> Option<InstitutionIdx> {
        self.institution_by_id.get(id).copied()
    }

    pub fn institution(&self, idx: InstitutionIdx) -> &Institution {
        &self.data.institutions[idx as usize]
    }

    pub fn institutions(&self) -> &[Institution] {
        &self.data.institutions
    }

    pub fn campaign_idx(&self, id: &CampaignId) -> Option<CampaignIdx> {
        self.campaign_by_id.get(id).copied()
    }

    pub fn campaign(&self, idx: CampaignIdx) -> &Campaign {
        &self.data.campaigns[idx as usize]
    }

    pub fn campaigns(&self) -> &[Campaign] {
        &self.data.campaigns
    }

    pub fn application(&self, number: ApplicationNumber) -> Option<&Application> {
        let index = (number.0 as usize).checked_sub(1)?;
        self.data.applications.get(index)
    }

    pub fn applications(&self) -> &[Application] {
        &self.data.applications
    }

    pub fn next_application_number(&self) -> ApplicationNumber {
        ApplicationNumber(self.data.applications.len() as u32 + 1)
    }

    pub fn active_application_of(
        &self,
        service: ServiceKind,
        child: &PersonKey,
    ) -> Option<ApplicationNumber> {
        self.active_by_child.get(&(service, *child)).copied()
    }

    /// Children with a current application (active, offered, or enrolled in first grade).
    pub fn n_active_applications(&self) -> usize {
        self.active_by_child.len()
    }

    /// The enrolled kindergarten application of a child.
    pub fn enrolled_application_of(&self, child: &PersonKey) -> Option<ApplicationNumber> {
        self.enrolled_by_child.get(child).copied()
    }

    /// The kindergarten a child attends (through an accepted offer), if any.
    pub fn enrolled_kindergarten(&self, child: &PersonKey) -> Option<InstitutionIdx> {
        let app = self.application(self.enrolled_application_of(child)?)?;
        Some(self.placement(app.placement?).institution)
    }

    /// The index of a round in [`State::rounds`] by id.
    pub fn round_idx(&self, id: &RoundId) -> Option<u32> {
        self.round_by_id.get(id).copied()
    }

    pub fn placement(&self, idx: u32) -> &Placement {
        &self.data.placements[idx as usize]
    }

    /// The application's outstanding offer, if it has one.
    pub fn outstanding_offer(&self, app: &Application) -> Option<&Placement> {
        let p = self.placement(app.placement?);
        (p.status == PlacementStatus::Offered).then_some(p)
    }

    /// Every published kindergarten seat group, by intake year, institution and age group.
    pub fn kindergarten_seats(&self) -> &[SeatGroup] {
        &self.data.kindergarten_seats
    }

    /// Seats of a kindergarten age group for an intake year, if published.
    pub fn seat_group(
        &self,
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    ) -> Option<&SeatGroup> {
        self.seat_group_position(institution, age_group, intake_year)
            .ok()
            .map(|i| &self.data.kindergarten_seats[i])
    }

    fn seat_group_position(
        &self,
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    ) -> Result<usize, usize> {
        self.data
            .kindergarten_seats
            .binary_search_by_key(&(intake_year, institution, age_group), |g| {
                (g.intake_year, g.institution, g.age_group)
            })
    }

    fn seat_group_mut(
        &mut self,
        institution: InstitutionIdx,
        age_group: u8,
        intake_year: i32,
    ) -> &mut SeatGroup {
        let i = match self.seat_group_position(institution, age_group, intake_year) {
            Ok(i) => i,
            Err(i) => {
                self.data.kindergarten_seats.insert(
                    i,
                    SeatGroup {
                        intake_year,
                        institution,
                        age_group,
                        published: 0,
                        taken: 0,
                    },
                );
                i
            }
        };
        &mut self.data.kindergarten_seats[i]
    }

    /// Slots that hold a waiting-list hold now.
    pub fn held_slots(&self) -> impl Iterator<Item = (&SlotId, &Slot)> {
        self.held_slots.iter().map(|id| (id, &self.data.slots[id]))
    }

    pub fn booking(&self, number: BookingNumber) -> Option<&Booking> {
        let index = (number.0 as usize).checked_sub(1)?;
        self.data.bookings.get(index)
    }

    pub fn next_booking_number(&self) -> BookingNumber {
        BookingNumber(self.data.bookings.len() as u32 + 1)
    }

    pub fn slot(&self, id: &SlotId) -> Option<&Slot> {
        self.data.slots.get(id)
    }

    pub fn specialty(&self, id: &Specialty) -> Option<&SpecialtyState> {
        self.data.specialties.get(id)
    }

    pub fn patient(&self, key: &PersonKey) -> Option<&Patient> {
        self.data.patients.get(key)
    }

    /// The version the next event of a stream gets (first event: 1).
    pub fn next_stream_version(&self, stream: &StreamId) -> u32 {
        let current = match stream {
            StreamId::Authority => self.data.config_version,
            StreamId::Institution(id) => self
                .institution_idx(id)
                .map_or(0, |i| self.institution(i).version),
            StreamId::Application(n) => self.application(*n).map_or(0, |a| a.version),
            StreamId::Campaign(id) => self
                .campaign_idx(id)
                .map_or(0, |c| self.campaign(c).version),
            StreamId::Specialty(id) => self.specialty(id).map_or(0, |s| s.version),
            StreamId::Booking(n) => self.booking(*n).map_or(0, |b| b.version),
            StreamId::Round(id) => self
                .round_by_id
                .get(id)
                .map_or(0, |&r| self.data.rounds[r as usize].version),
            StreamId::Person(key) => self.data.erasures.get(key).copied().unwrap_or(0),
        };
        current + 1
    }

    /// The queues an application stands in, with its key in each, while it is active.
    pub fn queue_entries(&self, app: &Application) -> Vec<(QueueKey, SortKey)> {
        // Offered, enrolled and closed applications wait in no queue.
        if app.status != ApplicationStatus::Active {
            return Vec::new();
        }
        match app.service {
            ServiceKind::Kindergarten => {
                let intake_year = intake_year_for(app.desired_start);
                let age = app.birth_date.age_on(september_first(intake_year));
                let age_group = age.clamp(0, u8::MAX as i32) as u8;
                app.preferences
                    .iter()
                    .map(|&institution| {
                        let id = &self.institution(institution).id;
                        let key = SortKey {
                            tier: kindergarten_tier(&app.privileges, id),
                            tie_break: TieBreak::RegistrationTime.key(
                                app.registered_at,
                                app.birth_date.date(),
                                app.number,
                            ),
                            number: app.number,
                        };
                        (
                            QueueKey::Kindergarten {
                                institution,
                                age_group,
                                intake_year,
                            },
                            key,
                        )
                    })
                    .collect()
            }
            ServiceKind::School => {
                let campaign_idx = app.campaign.expect("school applications have a campaign");
                let campaign = self.campaign(campaign_idx);
                app.preferences
                    .iter()
                    .map(|&institution| {
                        let id = &self.institution(institution).id;
                        let key = SortKey {
                            tier: school_tier(&app.privileges, id),
                            tie_break: campaign.config.tie_break.key(
                                app.registered_at,
                                app.birth_date.date(),
                                app.number,
                            ),
                            number: app.number,
                        };
                        (
                            QueueKey::School {
                                campaign: campaign_idx,
                                institution,
                            },
                            key,
                        )
                    })
                    .collect()
            }
        }
    }

    /// Folds one event into the state. Events were decided against this state, so every
    /// reference in them resolves; a failure here is a programmer error and panics.
    pub fn apply(&mut self, event: &Event) {
        let cause = Cause::of(event);
        match event {
            Event::AuthorityConfigured { config } => {
                self.data.config = Some(config.clone());
                self.data.config_version += 1;
            }
            Event::InstitutionRegistered { id, kind, name } => {
                let idx = self.data.institutions.len() as InstitutionIdx;
                self.data.institutions.push(Institution {
                    id: id.clone(),
                    kind: *kind,
                    name: name.clone(),
                    version: 1,
                });
                self.institution_by_id.insert(id.clone(), idx);
            }
            Event::KindergartenApplicationSubmitted {
                number,
                child,
                birth_date,
                preferences,
                desired_start,
                any_other,
                privileges,
                registered_at,
                channel,
                submitted_by,
                sealed,
            } => {
                let app = Application {
                    number: *number,
                    service: ServiceKind::Kindergarten,
                    campaign: None,
                    child: *child,
                    birth_date: BirthDate::from_event(*birth_date),
                    registered_at: *registered_at,
                    preferences: self.resolve_institutions(preferences),
                    desired_start: *desired_start,
                    any_other: *any_other,
                    privileges: claimed(privileges),
                    status: ApplicationStatus::Active,
                    channel: *channel,
                    from_draft: false,
                    submitted_by: submitted_by.as_str().into(),
                    placement: None,
                    version: 1,
                    sealed: sealed.clone(),
                    erased: false,
                };
                self.insert_application(app, cause, *registered_at);
            }
            Event::SchoolApplicationSubmitted {
                number,
                campaign,
                child,
                birth_date,
                schools,
                privileges,
                registered_at,
                from_draft,
                channel,
                submitted_by,
                sealed,
            } => {
                let campaign_idx = self.campaign_by_id[campaign];
                let year = self.campaign(campaign_idx).config.year;
                let app = Application {
                    number: *number,
                    service: ServiceKind::School,
                    campaign: Some(campaign_idx),
                    child: *child,
                    birth_date: BirthDate::from_event(*birth_date),
                    registered_at: *registered_at,
                    preferences: self.resolve_institutions(schools),
                    desired_start: september_first(year),
                    any_other: false,
                    privileges: claimed(privileges),
                    status: ApplicationStatus::Active,
                    channel: *channel,
                    from_draft: *from_draft,
                    submitted_by: submitted_by.as_str().into(),
                    placement: None,
                    version: 1,
                    sealed: sealed.clone(),
                    erased: false,
                };
                self.data.campaigns[campaign_idx as usize]
                    .drafts
                    .remove(child);
                self.insert_application(app, cause, *registered_at);
            }
            Event::KindergartenPreferencesAmended {
                number,
                preferences,
                desired_start,
                any_other,
                at,
            } => {
                let preferences = self.resolve_institutions(preferences);
                self.change_application(*number, cause, *at, |app| {
                    app.preferences = preferences;
                    app.desired_start = *desired_start;
                    app.any_other = *any_other;
                });
            }
            Event::ApplicationWithdrawn { number, at, .. } => {
                self.end_offer(*number, PlacementStatus::Withdrawn, *at);
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Withdrawn;
                });
                let app = self
                    .application(*number)
                    .expect("withdrawn application exists");
                self.active_by_child.remove(&(app.service, app.child));
            }
            Event::PrivilegeClaimed {
                number,
                privilege,
                at,
            } => {
                self.change_application(*number, cause, *at, |app| {
                    set_privilege(app, privilege, PrivilegeStatus::Claimed);
                });
            }
            Event::PrivilegeConfirmed {
                number,
                privilege,
                at,
            } => {
                self.change_application(*number, cause, *at, |app| {
                    set_privilege(app, privilege, PrivilegeStatus::Confirmed);
                });
            }
            Event::PrivilegeRevoked {
                number,
                privilege,
                at,
                ..
            } => {
                self.change_application(*number, cause, *at, |app| {
                    set_privilege(app, privilege, PrivilegeStatus::Revoked);
                });
            }
            Event::CampaignConfigured { config } => {
                let idx = self.data.campaigns.len() as CampaignIdx;
                let school_idx = config
                    .schools
                    .iter()
                    .map(|s| self.institution_by_id[&s.institution])
                    .collect();
                self.data.campaigns.push(Campaign {
                    config: config.clone(),
                    seats_taken: vec![0; config.schools.len()],
                    school_idx,
                    drafts: BTreeMap::new(),
                    age_exceptions: Default::default(),
                    version: 1,
                });
                self.campaign_by_id.insert(config.id.clone(), idx);
            }
            Event::SchoolDraftSaved { form, .. } => {
                let idx = self.campaign_by_id[&form.campaign];
                let campaign = &mut self.data.campaigns[idx as usize];
                campaign.drafts.insert(form.child, form.clone());
                campaign.version += 1;
            }
            Event::AgeExceptionGranted {
                campaign, child, ..
            } => {
                let idx = self.campaign_by_id[campaign];
                let campaign = &mut self.data.campaigns[idx as usize];
                campaign.age_exceptions.insert(*child);
                campaign.version += 1;
            }
            Event::SpecialtyConfigured {
                specialty,
                referral_only,
            } => {
                let entry =
                    self.data
                        .specialties
                        .entry(specialty.clone())
                        .or_insert(SpecialtyState {
                            referral_only: *referral_only,
                            waiting: Vec::new(),
                            version: 0,
                        });
                entry.referral_only = *referral_only;
                entry.version += 1;
            }
            Event::SlotsPublished {
                doctor,
                specialty,
                slots,
            } => {
                for slot in slots {
                    self.data.slots.insert(
                        slot.id.clone(),
                        Slot {
                            doctor: doctor.clone(),
                            specialty: specialty.clone(),
                            start: slot.start,
                            duration_minutes: slot.duration_minutes,
                            booking: None,
                            hold: None,
                        },
                    );
                }
                if let Some(s) = self.data.specialties.get_mut(specialty) {
                    s.version += 1;
                }
            }
            Event::SlotBooked {
                booking,
                slot,
                patient,
                at,
                booked_by,
                ..
            } => {
                let slot_state = self.data.slots.get_mut(slot).expect("booked slot exists");
                slot_state.booking = Some(*booking);
                slot_state.hold = None;
                self.held_slots.remove(slot);
                let specialty = slot_state.specialty.clone();
                self.data.bookings.push(Booking {
                    number: *booking,
                    slot: slot.clone(),
                    specialty: specialty.clone(),
                    patient: *patient,
                    status: BookingStatus::Active,
                    booked_at: *at,
                    booked_by: booked_by.as_str().into(),
                    version: 1,
                });
                let p = self.data.patients.entry(*patient).or_default();
                p.active_bookings.insert(specialty.clone(), *booking);
                if let Some(s) = self.data.specialties.get_mut(&specialty) {
                    s.waiting.retain(|w| w.patient != *patient);
                }
            }
            Event::BookingCancelled { booking, at } => {
                self.close_booking(*booking, BookingStatus::Cancelled, *at);
            }
            Event::NoShowRecorded { booking, at } => {
                self.close_booking(*booking, BookingStatus::NoShow, *at);
            }
            Event::WaitingListJoined {
                specialty,
                patient,
                tier,
                at,
            } => {
                let s = self
                    .data
                    .specialties
                    .get_mut(specialty)
                    .expect("waiting list's specialty exists");
                let entry = WaitingEntry {
                    patient: *patient,
                    tier: *tier,
                    joined_at: *at,
                };
                let index = s
                    .waiting
                    .partition_point(|w| (w.tier, w.joined_at) <= (entry.tier, entry.joined_at));
                s.waiting.insert(index, entry);
                s.version += 1;
            }
            Event::KindergartenSeatsPublished {
                institution,
                intake_year,
                seats,
            } => {
                let idx = self.institution_by_id[institution];
                for group in seats {
                    self.seat_group_mut(idx, group.age_group, *intake_year)
                        .published = group.seats;
                }
                self.data.institutions[idx as usize].version += 1;
            }
            Event::KindergartenRoundCompleted {
                round,
                intake_year,
                intake_date,
                offer_deadline,
                at,
                seats,
                applicants,
                placements,
            } => {
                let scope = RoundScope::Kindergarten {
                    intake_year: *intake_year,
                    intake_date: *intake_date,
                    offer_deadline: *offer_deadline,
                };
                let round_idx = self.insert_round(round, scope, *at, seats, applicants, placements);
                let groups = self.data.rounds[round_idx as usize].seats.clone();
                for p in placements {
                    let group = groups[p.seats as usize];
                    let age_group = group
                        .age_group
                        .expect("kindergarten seats have an age group");
                    self.seat_group_mut(group.institution, age_group, *intake_year)
                        .taken += 1;
                    let placement = self.push_placement(Placement {
                        round: round_idx,
                        application: p.number,
                        institution: group.institution,
                        age_group: Some(age_group),
                        intake_year: *intake_year,
                        deadline: Some(*offer_deadline),
                        status: PlacementStatus::Offered,
                        answered_at: None,
                    });
                    // The round's event is not on the application's stream: no new version.
                    self.change_application_unversioned(
                        p.number,
                        Cause::Round(round_idx as u16),
                        *at,
                        |app| {
                            app.status = ApplicationStatus::Offered;
                            app.placement = Some(placement);
                        },
                    );
                }
            }
            Event::OfferAccepted { number, at } => {
                let app = self
                    .application(*number)
                    .expect("accepted application exists");
                let placement = app
                    .placement
                    .expect("an offered application has a placement");
                let child = app.child;
                let p = &mut self.data.placements[placement as usize];
                p.status = PlacementStatus::Accepted;
                p.answered_at = Some(*at);
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Enrolled;
                });
                self.active_by_child
                    .remove(&(ServiceKind::Kindergarten, child));
                self.enrolled_by_child.insert(child, *number);
            }
            Event::OfferDeclined {
                number,
                desired_start,
                at,
            }
            | Event::OfferExpired {
                number,
                desired_start,
                at,
            } => {
                let status = if matches!(event, Event::OfferDeclined { .. }) {
                    PlacementStatus::Declined
                } else {
                    PlacementStatus::Expired
                };
                self.end_offer(*number, status, *at);
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Active;
                    app.desired_start = *desired_start;
                });
            }
            Event::TransferCompleted { number, at, .. } => {
                let app = self
                    .application(*number)
                    .expect("transferred application exists");
                let placement = app
                    .placement
                    .expect("an enrolled application has a placement");
                let child = app.child;
                let p = &mut self.data.placements[placement as usize];
                p.status = PlacementStatus::Released;
                p.answered_at = Some(*at);
                let (institution, age_group, intake_year) =
                    (p.institution, p.age_group, p.intake_year);
                if let Some(age_group) = age_group {
                    let group = self.seat_group_mut(institution, age_group, intake_year);
                    group.taken = group.taken.saturating_sub(1);
                }
                self.change_application(*number, cause, *at, |app| {
                    app.status = ApplicationStatus::Transferred;
                });
                if self.enrolled_by_child.get(&child) == Some(number) {
                    self.enrolled_by_child.remove(&child);
                }
            }
            Event::SchoolEnrollmentCompleted {
                round,
                campaign,
                stage,
                at,
                seats,
                applicants,
                placements,
            } => {
                let campaign_idx = self.campaign_by_id[campaign];
                let scope = RoundScope::School {
                    campaign: campaign_idx,
                    stage: *stage,
                };
                let round_idx = self.insert_round(round, scope, *at, seats, applicants, placements);
                let groups = self.data.rounds[round_idx as usize].seats.clone();
                let year = self.campaign(campaign_idx).config.year;
                for p in placements {
                    let institution = groups[p.seats as usize].institution;
                    let c = &mut self.data.campaigns[campaign_idx as usize];
                    if let Some(i) = c.school_idx.iter().position(|&s| s == institution) {
                        if c.seats_taken.len() < c.school_idx.len() {
                            c.seats_taken.resize(c.school_idx.len(), 0);
                        }
                        c.seats_taken[i] += 1;
                    }
                    let placement = self.push_placement(Placement {
                        round: round_idx,
                        application: p.number,
                        institution,
                        age_group: None,
                        intake_year: year,
                        deadline: None,
                        status: PlacementStatus::Accepted,
                        answered_at: Some(*at),
                    });
                    self.change_application_unversioned(
                        p.number,
                        Cause::Round(round_idx as u16),
                        *at,
                        |app| {
                            app.status = ApplicationStatus::Enrolled;
                            app.placement = Some(placement);
                        },
                    );
                }
            }
            Event::SlotHeld {
                slot,
                specialty,
                patient,
                until,
                passed_over,
                ..
            } => {
                let s = self.data.slots.get_mut(slot).expect("held slot exists");
                let mut passed = match s.hold.take() {
                    Some(hold) => hold.passed_over,
                    None => Vec::new(),
                };
                passed.extend_from_slice(passed_over);
                s.hold = Some(SlotHold {
                    patient: *patient,
                    until: *until,
                    passed_over: passed,
                });
                self.held_slots.insert(slot.clone());
                if let Some(s) = self.data.specialties.get_mut(specialty) {
                    s.version += 1;
                }
            }
            Event::SlotHoldLapsed {
                slot, specialty, ..
            } => {
                if let Some(s) = self.data.slots.get_mut(slot) {
                    s.hold = None;
                }
                self.held_slots.remove(slot);
                if let Some(s) = self.data.specialties.get_mut(specialty) {
                    s.version += 1;
                }
            }
            Event::PersonalDataErased {
                person,
                applications,
                ..
            } => {
                // Only the personal data goes: no queue, status or version changes.
                for number in applications {
                    let app = &mut self.data.applications[number.0 as usize - 1];
                    app.sealed = None;
                    app.erased = true;
                }
                for campaign in &mut self.data.campaigns {
                    if let Some(draft) = campaign.drafts.get_mut(person) {
                        draft.sealed = None;
                    }
                }
                *self.data.erasures.entry(*person).or_insert(0) += 1;
            }
        }
        self.data.n_events += 1;
    }

    fn insert_round(
        &mut self,
        id: &RoundId,
        scope: RoundScope,
        at: DateTime<Utc>,
        seats: &[crate::rounds::RoundSeats],
        applicants: &[crate::rounds::RoundApplicant],
        placements: &[RoundPlacement],
    ) -> u32 {
        let groups = seats
            .iter()
            .map(|g| RoundSeatGroup {
                institution: self.institution_by_id[&g.institution],
                age_group: g.age_group,
                capacity: g.capacity,
            })
            .collect();
        let round = Round::from_event(id, scope, at, groups, applicants, placements);
        let idx = self.data.rounds.len() as u32;
        self.queues.label_round(self.round_label(&round));
        self.data.rounds.push(round);
        self.round_by_id.insert(id.clone(), idx);
        idx
    }

    /// How explanations name a round: "the round of 1 June 2026 (main-2026)".
    fn round_label(&self, round: &Round) -> RoundLabel {
        let day = match self.config() {
            Some(config) => config.local_date(round.at),
            None => round.at.date_naive(),
        };
        let (what, verb) = if round.is_kindergarten() {
            ("the round", "placed")
        } else {
            ("the enrollment", "enrolled")
        };
        RoundLabel {
            id: round.id.to_string(),
            name: format!("{what} of {} ({})", day.format("%-d %B %Y"), round.id),
            verb,
        }
    }

    fn push_placement(&mut self, placement: Placement) -> u32 {
        self.data.placements.push(placement);
        self.data.placements.len() as u32 - 1
    }

    /// Ends the application's outstanding offer, if it has one, and returns its seat.
    fn end_offer(&mut self, number: ApplicationNumber, status: PlacementStatus, at: DateTime<Utc>) {
        let Some(placement) = self.application(number).and_then(|a| a.placement) else {
            return;
        };
        let p = &mut self.data.placements[placement as usize];
        if p.status != PlacementStatus::Offered {
            return;
        }
        p.status = status;
        p.answered_at = Some(at);
        let (institution, age_group, intake_year) = (p.institution, p.age_group, p.intake_year);
        if let Some(age_group) = age_group {
            let group = self.seat_group_mut(institution, age_group, intake_year);
            group.taken = group.taken.saturating_sub(1);
        }
    }

    fn resolve_institutions(&self, ids: &[InstitutionId]) -> Box<[InstitutionIdx]> {
        ids.iter()
            .map(|id| self.institution_by_id[id])
            .collect::<Vec<_>>()
            .into_boxed_slice()
    }

    fn insert_application(&mut self, app: Application, cause: Cause, at: DateTime<Utc>) {
        debug_assert_eq!(app.number, self.next_application_number());
        self.active_by_child
            .insert((app.service, app.child), app.number);
        let entries = self.queue_entries(&app);
        self.data.applications.push(app);
        for (queue, key) in entries {
            self.queues.join(queue, key, cause, at);
        }
    }

    /// Changes an application and moves it between queue positions as the change requires.
    fn change_application(
        &mut self,
        number: ApplicationNumber,
        cause: Cause,
        at: DateTime<Utc>,
        change: impl FnOnce(&mut Application),
    ) {
        self.change_application_unversioned(number, cause, at, change);
        self.data.applications[number.0 as usize - 1].version += 1;
    }

    /// Like `change_application`, for an event on another stream (a round's).
    fn change_application_unversioned(
        &mut self,
        number: ApplicationNumber,
        cause: Cause,
        at: DateTime<Utc>,
        change: impl FnOnce(&mut Application),
    ) {
        let index = number.0 as usize - 1;
        let before = self.queue_entries(&self.data.applications[index]);
        change(&mut self.data.applications[index]);
        let after = self.queue_entries(&self.data.applications[index]);
        for (queue, key) in &before {
            if !after.contains(&(*queue, *key)) {
                self.queues.leave(*queue, *key, cause, at);
            }
        }
        for (queue, key) in after {
            if !before.contains(&(queue, key)) {
                self.queues.join(queue, key, cause, at);
            }
        }
    }

    fn close_booking(&mut self, number: BookingNumber, status: BookingStatus, at: DateTime<Utc>) {
        let booking = &mut self.data.bookings[number.0 as usize - 1];
        booking.status = status;
        booking.version += 1;
        let (slot, specialty, patient) = (
            booking.slot.clone(),
            booking.specialty.clone(),
            booking.patient,
        );
        if status == BookingStatus::Cancelled {
            if let Some(s) = self.data.slots.get_mut(&slot) {
                s.booking = None;
                s.hold = None;
            }
            self.held_slots.remove(&slot);
        }
        let p = self.data.patients.entry(patient).or_default();
        if p.active_bookings.get(&specialty) == Some(&number) {
            p.active_bookings.remove(&specialty);
        }
        if status == BookingStatus::NoShow {
            p.no_shows.push(at);
        }
    }

    /// SHA-256 over the canonical serialisation of the state: equal for equal logs on any
    /// machine. Derived indexes and projections are not included; they follow from it.
    pub fn state_hash(&self) -> String {
        struct HashWriter(Sha256);
        impl Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut writer = HashWriter(Sha256::new());
        serde_json::to_writer(&mut writer, &self.data).expect("state serialises");
        hex::encode(writer.0.finalize())
    }

    /// Serialises the state for a snapshot.
    pub fn to_snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.data, &self.queues.changes_for_snapshot()))
            .expect("state serialises")
    }

    /// Rebuilds a state (with its indexes and queues) from a snapshot.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, String> {
        let (data, changes): (StateData, _) =
            serde_json::from_slice(bytes).map_err(|e| format!("snapshot: {e}"))?;
        let mut state = State {
            data,
            ..State::default()
        };
        for (i, inst) in state.data.institutions.iter().enumerate() {
            state
                .institution_by_id
                .insert(inst.id.clone(), i as InstitutionIdx);
        }
        for (i, c) in state.data.campaigns.iter_mut().enumerate() {
            c.seats_taken.resize(c.school_idx.len(), 0);
            state
                .campaign_by_id
                .insert(c.config.id.clone(), i as CampaignIdx);
        }
        let mut queues = Queues::default();
        for (i, round) in state.data.rounds.iter().enumerate() {
            state.round_by_id.insert(round.id.clone(), i as u32);
            queues.label_round(state.round_label(round));
        }
        for (id, slot) in &state.data.slots {
            if slot.hold.is_some() {
                state.held_slots.insert(id.clone());
            }
        }
        for app in &state.data.applications {
            if app.status.is_current(app.service) {
                state
                    .active_by_child
                    .insert((app.service, app.child), app.number);
            }
            if app.service == ServiceKind::Kindergarten && app.status == ApplicationStatus::Enrolled
            {
                state.enrolled_by_child.insert(app.child, app.number);
            }
            for (queue, key) in state.queue_entries(app) {
                queues.insert_silently(queue, key);
            }
        }
        queues.restore_changes(changes);
        state.queues = queues;
        Ok(state)
    }

    /// A readable name of a queue, e.g. `kindergarten K1, age 3, intake 2027`.
    pub fn describe_queue(&self, queue: &QueueKey) -> QueueDescription {
        match *queue {
            QueueKey::Kindergarten {
                institution,
                age_group,
                intake_year,
            } => QueueDescription {
                service: ServiceKind::Kindergarten,
                institution: self.institution(institution).id.clone(),
                age_group: Some(age_group),
                intake_year: Some(intake_year),
                campaign: None,
            },
            QueueKey::School {
                campaign,
                institution,
            } => QueueDescription {
                service: ServiceKind::School,
                institution: self.institution(institution).id.clone(),
                age_group: None,
                intake_year: Some(self.campaign(campaign).config.year),
                campaign: Some(self.campaign(campaign).config.id.clone()),
            },
        }
    }
}

/// A queue described with public identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDescription {
    pub service: ServiceKind,
    pub institution: InstitutionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_group: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake_year: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignId>,
}

fn claimed(privileges: &[Privilege]) -> Vec<PrivilegeClaim> {
    privileges
        .iter()
        .map(|p| PrivilegeClaim {
            privilege: p.clone(),
            status: PrivilegeStatus::Claimed,
        })
        .collect()
}

fn set_privilege(app: &mut Application, privilege: &Privilege, status: PrivilegeStatus) {
    match app
        .privileges
        .iter_mut()
        .find(|c| &c.privilege == privilege)
    {
        Some(claim) => claim.status = status,
        None => app.privileges.push(PrivilegeClaim {
            privilege: privilege.clone(),
            status,
        }),
    }
}
