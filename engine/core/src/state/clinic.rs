//! Clinic appointments in the state: specialties with their waiting lists, slots, bookings,
//! patients' no-shows, and the hold chain of freed slots.
//!
//! The hold chain: a freed slot is held for the head of the specialty's waiting list (tier,
//! then time of joining) for `clinic_hold_minutes`; when the hold lapses it passes to the
//! next patient on the list, and when the list is exhausted the slot opens to everyone
//! (docs/RULES.md#clinic-waiting-list). Who holds a slot at an instant is a pure function of
//! the state and that instant ([`State::effective_hold`]): after the recorded hold ends at
//! `until`, the k-th next patient on the list holds it during `[until + (k-1)·hold,
//! until + k·hold)`. Booking decisions use it directly, so they do not depend on when the
//! shell last sent `ExpireSlotHolds`; that command only records the passing of holds as
//! events (so that patients can be told), and a hold it announces runs its full length from
//! the announcement. Patients whose no-shows block booking are skipped.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{AuthorityConfig, BookingNumber, DoctorId, PersonKey, SlotId, Specialty};
use crate::event::Event;

use super::State;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// One doctor's slots by start: `start -> (end, id)`.
pub(super) type SlotsByStart = BTreeMap<DateTime<Utc>, (DateTime<Utc>, SlotId)>;

/// Who may book a slot at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Nobody holds it: it is open to everyone.
    Open,
    /// Held for `patient` until `until`. `passed_over` lists the holders since the recorded
    /// hold whose holds have lapsed (the recorded holder first).
    HeldFor {
        patient: PersonKey,
        until: DateTime<Utc>,
        passed_over: Vec<PersonKey>,
    },
    /// The recorded hold lapsed and nobody is left on the list.
    Lapsed { passed_over: Vec<PersonKey> },
}

impl State {
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

    /// The doctor's slot with the latest start before `end`, as `(id, end)`: the only one
    /// that can overlap a slot ending at `end`, since a doctor's slots do not overlap.
    pub fn doctor_slot_starting_before(
        &self,
        doctor: &DoctorId,
        end: DateTime<Utc>,
    ) -> Option<(&SlotId, DateTime<Utc>)> {
        let slots = self.slots_by_doctor.get(doctor)?;
        slots
            .range(..end)
            .next_back()
            .map(|(_, (slot_end, id))| (id, *slot_end))
    }

    /// Whether a patient's no-shows block booking at `at` (docs/RULES.md#clinic-no-shows):
    /// the number of no-shows that count and the instant the block ends.
    pub fn self_booking_blocked(
        &self,
        config: &AuthorityConfig,
        patient: &PersonKey,
        at: DateTime<Utc>,
    ) -> Option<(u32, DateTime<Utc>)> {
        let p = self.patient(patient)?;
        let window = Duration::days(config.no_show_window_days as i64);
        let recent: Vec<_> = p.no_shows.iter().filter(|t| **t > at - window).collect();
        let count = config.no_show_block_count as usize;
        if count == 0 || recent.len() < count {
            return None;
        }
        let oldest_counted = recent[recent.len() - count];
        Some((recent.len() as u32, *oldest_counted + window))
    }

    /// The slots anyone may book at `now`, of one specialty or of all, earliest first (then
    /// by id): not started, not booked and not held for a waiting-list patient
    /// (docs/RULES.md#clinic-booking).
    pub fn free_slots(
        &self,
        config: &AuthorityConfig,
        specialty: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<(&SlotId, &Slot)> {
        let mut free: Vec<(&SlotId, &Slot)> = self
            .data
            .slots
            .iter()
            .filter(|(_, slot)| slot.booking.is_none() && slot.start > now)
            .filter(|(_, slot)| specialty.is_none_or(|sp| slot.specialty.as_str() == sp))
            .filter(|(_, slot)| {
                !matches!(self.effective_hold(config, slot, now), Hold::HeldFor { .. })
            })
            .collect();
        free.sort_by(|a, b| (a.1.start, a.0).cmp(&(b.1.start, b.0)));
        free
    }

    /// Who holds `slot` at `now` (see the module documentation).
    pub fn effective_hold(
        &self,
        config: &AuthorityConfig,
        slot: &Slot,
        now: DateTime<Utc>,
    ) -> Hold {
        let Some(hold) = &slot.hold else {
            return Hold::Open;
        };
        if now < hold.until {
            return Hold::HeldFor {
                patient: hold.patient,
                until: hold.until,
                passed_over: Vec::new(),
            };
        }
        let step = config.clinic_hold();
        let mut passed_over = vec![hold.patient];
        if step <= Duration::zero() {
            return Hold::Lapsed { passed_over };
        }
        let waiting = self
            .specialty(&slot.specialty)
            .map(|s| s.waiting.as_slice())
            .unwrap_or_default();
        let mut window_end = hold.until + step;
        for entry in waiting {
            if entry.patient == hold.patient || hold.passed_over.contains(&entry.patient) {
                continue;
            }
            // A patient whose no-shows block booking could not use the slot: the chain skips
            // them.
            if self
                .self_booking_blocked(config, &entry.patient, window_end - step)
                .is_some()
            {
                continue;
            }
            if now < window_end {
                return Hold::HeldFor {
                    patient: entry.patient,
                    until: window_end,
                    passed_over,
                };
            }
            passed_over.push(entry.patient);
            window_end += step;
        }
        Hold::Lapsed { passed_over }
    }

    /// Folds the clinic events, in the order of [`Event`].
    pub(super) fn apply_clinic(&mut self, event: &Event) {
        match event {
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
                let by_start = self.slots_by_doctor.entry(doctor.clone()).or_default();
                for slot in slots {
                    let end = slot.start + Duration::minutes(i64::from(slot.duration_minutes));
                    insert_by_start(by_start, slot.start, end, &slot.id);
                }
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
            Event::NoShowRecorded { booking, at } => {
                self.close_booking(*booking, BookingStatus::NoShow, *at);
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
            Event::WaitingListLeft {
                specialty, patient, ..
            } => {
                if let Some(s) = self.data.specialties.get_mut(specialty) {
                    s.waiting.retain(|w| w.patient != *patient);
                    s.version += 1;
                }
            }
            other => unreachable!("{} is not a clinic event", other.type_name()),
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
}

/// Records a doctor's slot in the index by start. Two slots of a log written before overlaps
/// were refused may share a start; the longer one is kept, which is the one that matters for
/// finding overlaps.
pub(super) fn insert_by_start(
    by_start: &mut SlotsByStart,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    id: &SlotId,
) {
    let entry = by_start.entry(start).or_insert_with(|| (end, id.clone()));
    if end > entry.0 {
        *entry = (end, id.clone());
    }
}
