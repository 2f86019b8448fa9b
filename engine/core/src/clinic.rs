//! The clinic waiting list's hold chain: a freed slot is held for the head of the
//! specialty's waiting list (tier, then time of joining) for `clinic_hold_minutes`; when
//! the hold lapses it passes to the next patient on the list, and when the list is
//! exhausted the slot opens to everyone.
//!
//! Who holds a slot at an instant is a pure function of the state and that instant
//! ([`effective_hold`]): after the recorded hold ends at `until`, the k-th next patient on
//! the list holds it during `[until + (k-1)·hold, until + k·hold)`. Booking decisions use
//! it directly, so they do not depend on when the shell last sent `ExpireSlotHolds`; that
//! command only records the passing of holds as events (so that patients can be told).

use chrono::{DateTime, Duration, Utc};

use crate::domain::{AuthorityConfig, PersonKey, SlotId};
use crate::event::Event;
use crate::state::{Slot, State};

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

fn hold_duration(config: &AuthorityConfig) -> Duration {
    Duration::minutes(i64::from(config.clinic_hold_minutes))
}

/// Who holds `slot` at `now`.
pub fn effective_hold(
    state: &State,
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
    let step = hold_duration(config);
    let mut passed_over = vec![hold.patient];
    if step <= Duration::zero() {
        return Hold::Lapsed { passed_over };
    }
    let waiting = state
        .specialty(&slot.specialty)
        .map(|s| s.waiting.as_slice())
        .unwrap_or_default();
    let mut window_end = hold.until + step;
    for entry in waiting {
        if entry.patient == hold.patient || hold.passed_over.contains(&entry.patient) {
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

/// The hold that follows a cancellation of a booking on `slot_id`, if the waiting list has
/// somebody and the slot is still ahead.
pub(crate) fn hold_after_cancellation(
    state: &State,
    config: &AuthorityConfig,
    slot_id: &SlotId,
    now: DateTime<Utc>,
) -> Option<Event> {
    let slot = state.slot(slot_id)?;
    if slot.start <= now || config.clinic_hold_minutes == 0 {
        return None;
    }
    let head = state.specialty(&slot.specialty)?.waiting.first()?;
    Some(Event::SlotHeld {
        slot: slot_id.clone(),
        specialty: slot.specialty.clone(),
        patient: head.patient,
        until: now + hold_duration(config),
        passed_over: Vec::new(),
        at: now,
    })
}

/// Decides `ExpireSlotHolds`: records the passing of every lapsed hold.
pub(crate) fn expire_slot_holds(
    state: &State,
    config: &AuthorityConfig,
    now: DateTime<Utc>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (id, slot) in state.held_slots() {
        let Some(hold) = &slot.hold else { continue };
        if now < hold.until {
            continue;
        }
        // A slot that has started cannot be booked any more: its hold simply ends.
        let effective = if slot.start <= now {
            Hold::Lapsed {
                passed_over: vec![hold.patient],
            }
        } else {
            effective_hold(state, config, slot, now)
        };
        match effective {
            Hold::Open => {}
            Hold::HeldFor {
                patient,
                until,
                passed_over,
            } => events.push(Event::SlotHeld {
                slot: id.clone(),
                specialty: slot.specialty.clone(),
                patient,
                until,
                passed_over,
                at: now,
            }),
            Hold::Lapsed { passed_over } => events.push(Event::SlotHoldLapsed {
                slot: id.clone(),
                specialty: slot.specialty.clone(),
                passed_over,
                at: now,
            }),
        }
    }
    events
}
