//! The state's hash and snapshots: what is hashed is [`StateData`]; a snapshot rebuilds the
//! derived indexes and queue projections from it.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::queues::Queues;

use super::{ApplicationStatus, CampaignIdx, InstitutionIdx, ServiceKind, State, StateData};

impl State {
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
        serde_json::to_vec(&(
            &self.data,
            &self.queues.changes_for_snapshot(),
            &self.histories,
        ))
        .expect("state serialises")
    }

    /// Rebuilds a state (with its indexes, queues and histories) from a snapshot. A snapshot
    /// written before histories were kept is refused (the caller replays the whole log).
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, String> {
        let (data, changes, histories): (StateData, _, _) =
            serde_json::from_slice(bytes).map_err(|e| format!("snapshot: {e}"))?;
        let mut state = State {
            data,
            histories,
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
            let end = slot.start + chrono::Duration::minutes(i64::from(slot.duration_minutes));
            let by_start = state
                .slots_by_doctor
                .entry(slot.doctor.clone())
                .or_default();
            super::clinic::insert_by_start(by_start, slot.start, end, id);
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
}
