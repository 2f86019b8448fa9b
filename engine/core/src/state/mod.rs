//! The authority's state and [`State::apply`], which folds one event into it and cannot fail.
//!
//! One module per service, each with the state it owns, its read methods, and one table
//! folding its events in the order of [`Event`]: `authority` (settings, institutions and the
//! erasure of personal data), `applications` (what kindergarten and first-grade
//! applications share: records, queues, placements, withdrawal and privileges),
//! `kindergarten`, `school` and `clinic`; `history` keeps each application's steps. `snapshot` hashes and snapshots the whole.

mod applications;
mod authority;
mod child_index;
mod clinic;
mod history;
mod kindergarten;
mod school;
pub mod segmented;
pub mod shards;
mod snapshot;
mod snapshot_index;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplicationNumber, AuthorityConfig, CampaignId, DoctorId, InstitutionId, PersonKey,
    PersonKeyHash, RoundId, SlotId, Specialty,
};
use crate::event::{Event, StreamId};
use crate::queues::{Cause, Queues};
use crate::rounds::Round;

pub use applications::{
    Application, ApplicationStatus, Placement, PlacementStatus, QueueDescription, ServiceKind,
};
pub use authority::Institution;
pub use clinic::{
    Booking, BookingStatus, Hold, Patient, Slot, SlotHold, SpecialtyState, WaitingEntry,
};
pub use history::{Histories, HistoryKind, HistoryStep};
pub use kindergarten::SeatGroup;
pub use school::{AgeRequest, AgeRequestStatus, Campaign};
pub use snapshot::{
    read_applications, ChangeLogs, Decoder, Encoder, HistoryItems, HistorySteps, ItemCodec,
    SnapshotIndexer, SnapshotSink, SnapshotSource, SnapshotTail, SubmittedSeqs, APPLICATION_BATCH,
};

/// Every application, by application number - 1.
pub type Applications = segmented::Segmented<Application>;

/// Index of an institution in [`State::institutions`], in order of registration.
pub type InstitutionIdx = u32;
/// Index of a campaign in [`State::campaigns`], in order of configuration.
pub type CampaignIdx = u32;

/// The part of the state that is hashed and snapshotted. Everything else is derived from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    pub config: Option<AuthorityConfig>,
    pub config_version: u32,
    pub institutions: Vec<Institution>,
    /// In segments, so that growing never copies them ([`segmented`]).
    pub applications: Applications,
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
    /// Each child's current application of a service (`child_index.rs`).
    active_by_child: child_index::ChildIndex,
    /// The enrolled kindergarten application of each child that has one.
    enrolled_by_child: HashMap<PersonKey, ApplicationNumber, PersonKeyHash>,
    round_by_id: HashMap<RoundId, u32>,
    /// Slots with a waiting-list hold.
    held_slots: BTreeSet<SlotId>,
    /// Each doctor's slots by start.
    slots_by_doctor: HashMap<DoctorId, clinic::SlotsByStart>,
    pub queues: Queues,
    /// Each application's history (`history.rs`), folded from its events.
    histories: history::Histories,
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

    /// Folds one event into the state. Events were decided against this state, so every
    /// reference in them resolves; a failure here is a programmer error and panics.
    pub fn apply(&mut self, event: &Event) {
        use Event::*;
        let cause = Cause::of(event);
        match event {
            AuthorityConfigured { .. }
            | InstitutionRegistered { .. }
            | PersonalDataErased { .. } => self.apply_authority(event),
            ApplicationWithdrawn { .. }
            | PrivilegeClaimed { .. }
            | PrivilegeConfirmed { .. }
            | PrivilegeRevoked { .. } => self.apply_applications(event, cause),
            KindergartenApplicationSubmitted { .. }
            | KindergartenPreferencesAmended { .. }
            | KindergartenSeatsPublished { .. }
            | KindergartenRoundCompleted { .. }
            | OfferAccepted { .. }
            | OfferDeclined { .. }
            | OfferExpired { .. }
            | TransferCompleted { .. } => self.apply_kindergarten(event, cause),
            CampaignConfigured { .. }
            | SchoolEnrollmentCompleted { .. }
            | SchoolDraftSaved { .. }
            | SchoolApplicationSubmitted { .. }
            | AgeExceptionGranted { .. }
            | AgeExceptionRequested { .. }
            | AgeExceptionRefused { .. } => self.apply_school(event, cause),
            SpecialtyConfigured { .. }
            | SlotsPublished { .. }
            | SlotBooked { .. }
            | BookingCancelled { .. }
            | WaitingListJoined { .. }
            | NoShowRecorded { .. }
            | SlotHeld { .. }
            | SlotHoldLapsed { .. }
            | WaitingListLeft { .. } => self.apply_clinic(event),
        }
        // Every event of the chain is folded once, in order: this one is at n_events + 1.
        self.record_history(event, self.data.n_events + 1);
        self.data.n_events += 1;
    }
}
