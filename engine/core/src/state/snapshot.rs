//! The state's hash and snapshots: what is hashed is [`StateData`]; a snapshot rebuilds the
//! derived indexes and queue projections from it.
//!
//! # The snapshot's binary layout (state section, version 1)
//!
//! A snapshot is a byte stream written and read in order, never held whole: the caller
//! ([`SnapshotSink`], [`SnapshotSource`]) cuts it into pieces (the writer stores pieces of at
//! most 16 MiB) and hashes it. The few structured values that are not hot are *items*:
//! a `u32` little-endian length, then the value in the caller's [`ItemCodec`] (the writer
//! uses the store's deterministic CBOR, RFC 8949 §4.2.1). Everything else is hand-written:
//!
//! - `uvar`: an unsigned LEB128 integer (7 bits a byte, low first); `svar`: a signed one,
//!   zigzag-mapped (`(n << 1) ^ (n >> 63)`) then `uvar`;
//! - a time: `svar` seconds since 1970-01-01T00:00:00Z and `uvar` nanoseconds; a date:
//!   `svar` days since 0001-01-01 (day 1 is that date, `NaiveDate::num_days_from_ce`).
//!
//! In this order:
//!
//! 1. the head, one item: every field of [`StateData`] but the collections below;
//! 2. slots, bookings, patients and placements: each a `uvar` count and one item per entry
//!    (a slot and a patient as `[key, value]`), in the state's order;
//! 3. applications: a `uvar` count, then each application: `uvar` number, a flags byte
//!    (1 `any_other`, 2 `from_draft`, 4 `erased`, 8 has a campaign, 16 has a placement,
//!    32 has sealed data, 64 has privileges), three code bytes (service: 0 kindergarten,
//!    1 school; status: 0 active, 1 offered, 2 enrolled, 3 transferred, 4 withdrawn;
//!    channel: 0 portal, 1 service centre, 2 API), the campaign and the placement as `uvar`
//!    when flagged, the child's 32-byte key, the birth date, the registration time, the
//!    desired start, the preferences (`uvar` count, `uvar` each), the privileges and the
//!    sealed data as items when flagged, `submitted_by` (`uvar` length, UTF-8), `uvar`
//!    version;
//! 4. histories: a `uvar` count of submission positions and each as `uvar`; then a `uvar`
//!    count of applications with later steps, each as `uvar` number and an item (its steps),
//!    in order of number;
//! 5. the queues' change logs: a `uvar` count of queues, in queue order; each an item (its
//!    key), a `uvar` count of changes, and each change: `svar` time in microseconds minus
//!    the previous change's (0 before the first), the tier byte, `svar` tie-break minus the
//!    previous change's, `uvar` application number, a byte (128 when joined, plus the cause:
//!    0 submitted, 1 preferences amended, 2 withdrawn, 3–5 privilege claimed, confirmed,
//!    revoked, 6 round, 7 offer declined, 8 offer expired, 9 other) and, for a round, its
//!    index as `uvar`.
//!
//! The queues' members and every index are not stored: [`State::read_snapshot`] rebuilds them
//! from the applications. The hash of the whole stream is the caller's (the writer keeps a
//! SHA-256 of it beside the pieces and refuses a stream that does not match).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{AuthorityConfig, BirthDate, Channel, PersonKey, SlotId, Specialty};
use crate::ordering::SortKey;
use crate::queues::{Cause, Change, QueueChange, QueueKey, Queues};
use crate::rounds::Round;

pub use super::snapshot_index::{SnapshotIndexer, SnapshotTail};

use super::{
    Application, ApplicationNumber, ApplicationStatus, Applications, Booking, Campaign,
    CampaignIdx, HistoryStep, Institution, InstitutionIdx, Patient, Placement, SeatGroup,
    ServiceKind, Slot, SpecialtyState, State, StateData,
};

/// Where a snapshot's bytes go, in order.
pub trait SnapshotSink {
    fn put(&mut self, bytes: &[u8]);
}

/// Where a snapshot's bytes come from, in order.
pub trait SnapshotSource {
    /// The next `n` bytes of the stream; an error if it ends before.
    fn take(&mut self, n: usize) -> Result<&[u8], String>;
}

/// How the snapshot's items (the structured values that are not hot) are encoded.
pub trait ItemCodec {
    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>);
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String>;
}

/// The head item: every field of [`StateData`] that is not written entry by entry.
#[derive(Serialize)]
struct HeadRef<'a> {
    config: &'a Option<AuthorityConfig>,
    config_version: u32,
    institutions: &'a [Institution],
    campaigns: &'a [Campaign],
    specialties: &'a std::collections::BTreeMap<Specialty, SpecialtyState>,
    kindergarten_seats: &'a [SeatGroup],
    rounds: &'a [Round],
    n_events: u64,
    erasures: &'a std::collections::BTreeMap<PersonKey, u32>,
}

#[derive(Deserialize)]
struct Head {
    config: Option<AuthorityConfig>,
    config_version: u32,
    institutions: Vec<Institution>,
    campaigns: Vec<Campaign>,
    specialties: std::collections::BTreeMap<Specialty, SpecialtyState>,
    kindergarten_seats: Vec<SeatGroup>,
    rounds: Vec<Round>,
    n_events: u64,
    erasures: std::collections::BTreeMap<PersonKey, u32>,
}

/// Writes the layout's primitives to a sink.
pub struct Encoder<'a, S, C> {
    pub sink: &'a mut S,
    pub codec: &'a C,
    scratch: Vec<u8>,
}

impl<'a, S: SnapshotSink, C: ItemCodec> Encoder<'a, S, C> {
    pub fn new(sink: &'a mut S, codec: &'a C) -> Self {
        Encoder {
            sink,
            codec,
            scratch: Vec::new(),
        }
    }
    pub fn uvar(&mut self, mut n: u64) {
        let mut buf = [0u8; 10];
        let mut i = 0;
        while n >= 0x80 {
            buf[i] = (n as u8) | 0x80;
            n >>= 7;
            i += 1;
        }
        buf[i] = n as u8;
        self.sink.put(&buf[..=i]);
    }
    pub fn svar(&mut self, n: i64) {
        self.uvar(((n << 1) ^ (n >> 63)) as u64);
    }
    pub fn byte(&mut self, b: u8) {
        self.sink.put(&[b]);
    }
    pub fn item<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.scratch.clear();
        self.codec.encode(value, &mut self.scratch);
        self.sink.put(&(self.scratch.len() as u32).to_le_bytes());
        self.sink.put(&self.scratch);
    }
    fn time(&mut self, t: &DateTime<Utc>) {
        self.svar(t.timestamp());
        self.uvar(u64::from(t.timestamp_subsec_nanos()));
    }
    fn date(&mut self, d: NaiveDate) {
        self.svar(i64::from(d.num_days_from_ce()));
    }
}

/// Reads the layout's primitives from a source.
pub struct Decoder<'a, R, C> {
    pub source: &'a mut R,
    pub codec: &'a C,
}

impl<'a, R: SnapshotSource, C: ItemCodec> Decoder<'a, R, C> {
    pub fn new(source: &'a mut R, codec: &'a C) -> Self {
        Decoder { source, codec }
    }
    pub fn uvar(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.source.take(1)?[0];
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err("snapshot: an integer is too long".into())
    }
    pub fn svar(&mut self) -> Result<i64, String> {
        let n = self.uvar()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }
    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.uvar()?).map_err(|_| "snapshot: a number is out of range".into())
    }
    fn count(&mut self) -> Result<usize, String> {
        usize::try_from(self.uvar()?).map_err(|_| "snapshot: a count is out of range".into())
    }
    pub fn byte(&mut self) -> Result<u8, String> {
        Ok(self.source.take(1)?[0])
    }
    pub fn item<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let len = u32::from_le_bytes(self.source.take(4)?.try_into().expect("4 bytes"));
        let bytes = self.source.take(len as usize)?;
        self.codec.decode(bytes)
    }
    fn time(&mut self) -> Result<DateTime<Utc>, String> {
        let secs = self.svar()?;
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| "snapshot: a time is out of range".into())
    }
    fn date(&mut self) -> Result<NaiveDate, String> {
        let days = i32::try_from(self.svar()?).map_err(|_| "snapshot: a date is out of range")?;
        NaiveDate::from_num_days_from_ce_opt(days)
            .ok_or_else(|| "snapshot: a date is out of range".into())
    }
    /// A sequence written by [`Encoder`]: a count and one item each.
    fn items<T: DeserializeOwned>(&mut self) -> Result<Vec<T>, String> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            out.push(self.item()?);
        }
        Ok(out)
    }
}

fn service_code(s: ServiceKind) -> u8 {
    match s {
        ServiceKind::Kindergarten => 0,
        ServiceKind::School => 1,
    }
}

fn service_of(code: u8) -> Result<ServiceKind, String> {
    Ok(match code {
        0 => ServiceKind::Kindergarten,
        1 => ServiceKind::School,
        _ => return Err(format!("snapshot: unknown service {code}")),
    })
}

fn status_code(s: ApplicationStatus) -> u8 {
    match s {
        ApplicationStatus::Active => 0,
        ApplicationStatus::Offered => 1,
        ApplicationStatus::Enrolled => 2,
        ApplicationStatus::Transferred => 3,
        ApplicationStatus::Withdrawn => 4,
    }
}

fn status_of(code: u8) -> Result<ApplicationStatus, String> {
    Ok(match code {
        0 => ApplicationStatus::Active,
        1 => ApplicationStatus::Offered,
        2 => ApplicationStatus::Enrolled,
        3 => ApplicationStatus::Transferred,
        4 => ApplicationStatus::Withdrawn,
        _ => return Err(format!("snapshot: unknown status {code}")),
    })
}

fn channel_code(c: Channel) -> u8 {
    match c {
        Channel::Portal => 0,
        Channel::ServiceCentre => 1,
        Channel::Api => 2,
    }
}

fn channel_of(code: u8) -> Result<Channel, String> {
    Ok(match code {
        0 => Channel::Portal,
        1 => Channel::ServiceCentre,
        2 => Channel::Api,
        _ => return Err(format!("snapshot: unknown channel {code}")),
    })
}

const JOINED: u8 = 0x80;

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

    /// Writes the state's snapshot section (the layout in the module documentation).
    pub fn write_snapshot<S: SnapshotSink, C: ItemCodec>(&self, enc: &mut Encoder<'_, S, C>) {
        let StateData {
            config,
            config_version,
            institutions,
            applications,
            campaigns,
            specialties,
            slots,
            bookings,
            patients,
            kindergarten_seats,
            rounds,
            placements,
            n_events,
            erasures,
        } = &self.data;
        enc.item(&HeadRef {
            config,
            config_version: *config_version,
            institutions,
            campaigns,
            specialties,
            kindergarten_seats,
            rounds,
            n_events: *n_events,
            erasures,
        });
        enc.uvar(slots.len() as u64);
        for entry in slots {
            enc.item(&entry);
        }
        enc.uvar(bookings.len() as u64);
        for b in bookings {
            enc.item(b);
        }
        enc.uvar(patients.len() as u64);
        for entry in patients {
            enc.item(&entry);
        }
        enc.uvar(placements.len() as u64);
        for p in placements {
            enc.item(p);
        }
        enc.uvar(applications.len() as u64);
        for app in applications {
            write_application(enc, app);
        }
        let h = &self.histories;
        enc.uvar(h.submitted.len() as u64);
        for &seq in &h.submitted {
            enc.uvar(seq);
        }
        let mut steps: Vec<_> = h.steps.iter().collect();
        steps.sort_unstable_by_key(|(n, _)| **n);
        enc.uvar(steps.len() as u64);
        for (number, list) in steps {
            enc.uvar(u64::from(number.0));
            enc.item(list);
        }
        let changes = self.queues.changes_for_snapshot();
        enc.uvar(changes.len() as u64);
        for (key, list) in changes {
            enc.item(&key);
            enc.uvar(list.len() as u64);
            let (mut at, mut tie) = (0i64, 0i64);
            for c in list.iter().map(Change::unpack) {
                enc.svar(c.at_micros.wrapping_sub(at));
                enc.byte(c.key.tier);
                enc.svar(c.key.tie_break.wrapping_sub(tie));
                enc.uvar(u64::from(c.key.number.0));
                let (code, round) = c.cause.code();
                enc.byte(code | if c.joined { JOINED } else { 0 });
                if let Some(r) = round {
                    enc.uvar(u64::from(r));
                }
                (at, tie) = (c.at_micros, c.key.tie_break);
            }
        }
    }

    /// Reads what [`State::write_snapshot`] wrote and rebuilds the indexes, queues and
    /// histories from it: [`State::read_snapshot_head`], the applications into a
    /// [`SnapshotIndexer`], [`State::read_snapshot_tail`], then [`SnapshotIndexer::finish`].
    /// A caller with a second thread runs the indexer there, beside the reading
    /// (the writer does).
    pub fn read_snapshot<R: SnapshotSource, C: ItemCodec>(
        dec: &mut Decoder<'_, R, C>,
    ) -> Result<Self, String> {
        let (mut indexer, n) = State::read_snapshot_head(dec)?;
        let mut left = n;
        while left > 0 {
            let batch = read_applications(dec, left.min(APPLICATION_BATCH))?;
            left -= batch.len();
            indexer.add(batch);
        }
        let tail = State::read_snapshot_tail(dec)?;
        indexer.finish(tail)
    }

    /// Reads the snapshot up to its applications: everything before them, and their count.
    /// The applications follow in the stream ([`read_applications`]), then the tail
    /// ([`State::read_snapshot_tail`]).
    pub fn read_snapshot_head<R: SnapshotSource, C: ItemCodec>(
        dec: &mut Decoder<'_, R, C>,
    ) -> Result<(SnapshotIndexer, usize), String> {
        let head: Head = dec.item()?;
        let slots = dec.items::<(SlotId, Slot)>()?.into_iter().collect();
        let bookings: Vec<Booking> = dec.items()?;
        let patients = dec.items::<(PersonKey, Patient)>()?.into_iter().collect();
        let placements: Vec<Placement> = dec.items()?;
        let n = dec.count()?;
        let mut state = State {
            data: StateData {
                config: head.config,
                config_version: head.config_version,
                institutions: head.institutions,
                applications: Applications::new(),
                campaigns: head.campaigns,
                specialties: head.specialties,
                slots,
                bookings,
                patients,
                kindergarten_seats: head.kindergarten_seats,
                rounds: head.rounds,
                placements,
                n_events: head.n_events,
                erasures: head.erasures,
            },
            ..State::default()
        };
        let queues = state.rebuild_head_indexes();
        state
            .active_by_child
            .reserve(&state.data.applications, with_room(n));
        Ok((
            SnapshotIndexer {
                state,
                queues,
                members: BTreeMap::new(),
            },
            n,
        ))
    }

    /// Reads the snapshot's tail, after its applications: the histories and the queues'
    /// change logs ([`State::read_snapshot_histories`], [`HistoryItems::decode`] and
    /// [`State::read_snapshot_changes`] one after the other; a caller with a second thread
    /// decodes the history items there while this one reads the change logs).
    pub fn read_snapshot_tail<R: SnapshotSource, C: ItemCodec>(
        dec: &mut Decoder<'_, R, C>,
    ) -> Result<SnapshotTail, String> {
        let (submitted, items) = State::read_snapshot_histories(dec)?;
        let steps = items.decode(dec.codec)?;
        let changes = State::read_snapshot_changes(dec)?;
        Ok(SnapshotTail::new(submitted, steps, changes))
    }

    /// Reads the first part of the tail: each application's submission position, and the
    /// history items as they are stored (their bytes copied out, not decoded: decoding them
    /// is most of the work, and it needs nothing else from the stream).
    pub fn read_snapshot_histories<R: SnapshotSource, C: ItemCodec>(
        dec: &mut Decoder<'_, R, C>,
    ) -> Result<(SubmittedSeqs, HistoryItems), String> {
        let n = dec.count()?;
        let mut submitted = super::segmented::Segmented::new();
        for _ in 0..n {
            submitted.push(dec.uvar()?);
        }
        let n = dec.count()?;
        let mut items = HistoryItems {
            bytes: Vec::new(),
            entries: Vec::with_capacity(n.min(1 << 20)),
        };
        for _ in 0..n {
            let number = ApplicationNumber(dec.u32()?);
            let len = u32::from_le_bytes(dec.source.take(4)?.try_into().expect("4 bytes"));
            let start = items.bytes.len();
            items
                .bytes
                .extend_from_slice(dec.source.take(len as usize)?);
            items.entries.push((number, start, items.bytes.len()));
        }
        Ok((SubmittedSeqs(submitted), items))
    }

    /// Reads the queues' change logs (after [`State::read_snapshot_histories`]).
    pub fn read_snapshot_changes<R: SnapshotSource, C: ItemCodec>(
        dec: &mut Decoder<'_, R, C>,
    ) -> Result<ChangeLogs, String> {
        let n = dec.count()?;
        let mut changes = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let key: QueueKey = dec.item()?;
            let len = dec.count()?;
            let mut list = Vec::with_capacity(with_room(len));
            let (mut at, mut tie) = (0i64, 0i64);
            for _ in 0..len {
                at = at.wrapping_add(dec.svar()?);
                let tier = dec.byte()?;
                tie = tie.wrapping_add(dec.svar()?);
                let number = ApplicationNumber(dec.u32()?);
                let code = dec.byte()?;
                let cause = Cause::from_code(code & !JOINED, || {
                    u16::try_from(dec.uvar()?).map_err(|_| "a round is out of range".to_string())
                })
                .map_err(|e| format!("snapshot: {e}"))?;
                list.push(Change::pack(QueueChange {
                    at_micros: at,
                    key: SortKey {
                        tier,
                        tie_break: tie,
                        number,
                    },
                    joined: code & JOINED != 0,
                    cause,
                }));
            }
            changes.push((key, list));
        }
        Ok(ChangeLogs(changes))
    }

    /// Rebuilds the indexes that do not depend on the applications, and the queues' round
    /// labels (the applications' indexes and the queues' members are the
    /// [`SnapshotIndexer`]'s).
    fn rebuild_head_indexes(&mut self) -> Queues {
        for (i, inst) in self.data.institutions.iter().enumerate() {
            self.institution_by_id
                .insert(inst.id.clone(), i as InstitutionIdx);
        }
        for (i, c) in self.data.campaigns.iter_mut().enumerate() {
            c.seats_taken.resize(c.school_idx.len(), 0);
            self.campaign_by_id
                .insert(c.config.id.clone(), i as CampaignIdx);
        }
        let mut queues = Queues::default();
        for (i, round) in self.data.rounds.iter().enumerate() {
            self.round_by_id.insert(round.id.clone(), i as u32);
            queues.label_round(self.round_label(round));
        }
        for (id, slot) in &self.data.slots {
            if slot.hold.is_some() {
                self.held_slots.insert(id.clone());
            }
            let end = slot.start + chrono::Duration::minutes(i64::from(slot.duration_minutes));
            let by_start = self.slots_by_doctor.entry(slot.doctor.clone()).or_default();
            super::clinic::insert_by_start(by_start, slot.start, end, id);
        }
        queues
    }
}

/// The capacity to give a collection of `len` items read from a snapshot: the items, an
/// eighth more and a little over, guarded against a corrupt count (at most 2^24 up front).
///
/// The room is for the events after the snapshot (a start folds them next) and for the
/// live log after that. Without it the first application folded after a large snapshot
/// grows a table of millions of entries: a copy of the whole, every page of the new block
/// touched (a 10,000,000-event start spent about a fifth of its CPU there, most of it the
/// kernel zeroing pages, when the applications were one vector too), and the old and new
/// blocks resident at once. Room that is never used is address space, not memory: its
/// pages are not touched. (The applications need none: [`Applications`] grows in segments.)
fn with_room(len: usize) -> usize {
    let len = len.min(1 << 24);
    len + len / 8 + 16
}

/// Each application's submission position, as a snapshot's tail holds them
/// ([`State::read_snapshot_histories`]).
pub struct SubmittedSeqs(super::segmented::Segmented<u64>);

/// The queues' change logs, as a snapshot's tail holds them ([`State::read_snapshot_changes`]).
pub struct ChangeLogs(Vec<(QueueKey, Vec<Change>)>);

/// The history items of a snapshot's tail as stored, not yet decoded
/// ([`State::read_snapshot_histories`]).
pub struct HistoryItems {
    bytes: Vec<u8>,
    /// The application, and where its item lies in `bytes`.
    entries: Vec<(ApplicationNumber, usize, usize)>,
}

impl HistoryItems {
    /// Decodes the items: each application's history steps after its submission.
    pub fn decode<C: ItemCodec>(self, codec: &C) -> Result<HistorySteps, String> {
        let mut steps = HashMap::with_capacity(self.entries.len());
        for (number, start, end) in self.entries {
            let list: Vec<HistoryStep> = codec.decode(&self.bytes[start..end])?;
            steps.insert(number, list);
        }
        Ok(HistorySteps(steps))
    }
}

/// The decoded history steps of a snapshot's tail ([`HistoryItems::decode`]).
pub struct HistorySteps(HashMap<ApplicationNumber, Vec<HistoryStep>>);

impl SnapshotTail {
    /// The tail from its three parts.
    pub fn new(submitted: SubmittedSeqs, steps: HistorySteps, changes: ChangeLogs) -> Self {
        SnapshotTail {
            submitted: submitted.0,
            steps: steps.0,
            changes: changes.0,
        }
    }
}

/// How many applications [`State::read_snapshot`] reads before indexing them.
pub const APPLICATION_BATCH: usize = 1 << 14;

/// Reads the next `n` applications of a snapshot (after [`State::read_snapshot_head`]).
pub fn read_applications<R: SnapshotSource, C: ItemCodec>(
    dec: &mut Decoder<'_, R, C>,
    n: usize,
) -> Result<Vec<Application>, String> {
    let mut batch = Vec::with_capacity(n.min(APPLICATION_BATCH));
    for _ in 0..n {
        batch.push(read_application(dec)?);
    }
    Ok(batch)
}

const ANY_OTHER: u8 = 1;
const FROM_DRAFT: u8 = 2;
const ERASED: u8 = 4;
const HAS_CAMPAIGN: u8 = 8;
const HAS_PLACEMENT: u8 = 16;
const HAS_SEALED: u8 = 32;
const HAS_PRIVILEGES: u8 = 64;

fn write_application<S: SnapshotSink, C: ItemCodec>(
    enc: &mut Encoder<'_, S, C>,
    app: &Application,
) {
    let Application {
        number,
        service,
        campaign,
        child,
        birth_date,
        registered_at,
        preferences,
        desired_start,
        any_other,
        privileges,
        status,
        channel,
        from_draft,
        submitted_by,
        placement,
        version,
        sealed,
        erased,
    } = app;
    let mut flags = 0;
    for (on, bit) in [
        (*any_other, ANY_OTHER),
        (*from_draft, FROM_DRAFT),
        (*erased, ERASED),
        (campaign.is_some(), HAS_CAMPAIGN),
        (placement.is_some(), HAS_PLACEMENT),
        (sealed.is_some(), HAS_SEALED),
        (!privileges.is_empty(), HAS_PRIVILEGES),
    ] {
        if on {
            flags |= bit;
        }
    }
    enc.uvar(u64::from(number.0));
    enc.sink.put(&[
        flags,
        service_code(*service),
        status_code(*status),
        channel_code(*channel),
    ]);
    if let Some(c) = campaign {
        enc.uvar(u64::from(*c));
    }
    if let Some(p) = placement {
        enc.uvar(u64::from(*p));
    }
    enc.sink.put(&child.0);
    enc.date(birth_date.date());
    enc.time(registered_at);
    enc.date(*desired_start);
    enc.uvar(preferences.len() as u64);
    for &p in preferences.iter() {
        enc.uvar(u64::from(p));
    }
    if !privileges.is_empty() {
        enc.item(privileges);
    }
    if let Some(s) = sealed {
        enc.item(s);
    }
    enc.uvar(submitted_by.len() as u64);
    enc.sink.put(submitted_by.as_bytes());
    enc.uvar(u64::from(*version));
}

fn read_application<R: SnapshotSource, C: ItemCodec>(
    dec: &mut Decoder<'_, R, C>,
) -> Result<Application, String> {
    let number = ApplicationNumber(dec.u32()?);
    let codes: [u8; 4] = dec.source.take(4)?.try_into().expect("4 bytes");
    let [flags, service, status, channel] = codes;
    let campaign = if flags & HAS_CAMPAIGN != 0 {
        Some(dec.u32()?)
    } else {
        None
    };
    let placement = if flags & HAS_PLACEMENT != 0 {
        Some(dec.u32()?)
    } else {
        None
    };
    let child = PersonKey(dec.source.take(32)?.try_into().expect("32 bytes"));
    let birth_date = BirthDate::from_event(dec.date()?);
    let registered_at = dec.time()?;
    let desired_start = dec.date()?;
    let n = dec.count()?;
    let mut preferences = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        preferences.push(dec.u32()?);
    }
    let privileges = if flags & HAS_PRIVILEGES != 0 {
        dec.item()?
    } else {
        Vec::new()
    };
    let sealed = if flags & HAS_SEALED != 0 {
        Some(dec.item()?)
    } else {
        None
    };
    let len = dec.count()?;
    let submitted_by = std::str::from_utf8(dec.source.take(len)?)
        .map_err(|_| "snapshot: submitted_by is not UTF-8")?
        .into();
    let version = dec.u32()?;
    Ok(Application {
        number,
        service: service_of(service)?,
        campaign,
        child,
        birth_date,
        registered_at,
        preferences: preferences.into_boxed_slice(),
        desired_start,
        any_other: flags & ANY_OTHER != 0,
        privileges,
        status: status_of(status)?,
        channel: channel_of(channel)?,
        from_draft: flags & FROM_DRAFT != 0,
        submitted_by,
        placement,
        version,
        sealed,
        erased: flags & ERASED != 0,
    })
}

impl SnapshotSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl SnapshotSource for &[u8] {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.len() < n {
            return Err("snapshot: the stream ends early".into());
        }
        let (head, tail) = self.split_at(n);
        *self = tail;
        Ok(head)
    }
}
