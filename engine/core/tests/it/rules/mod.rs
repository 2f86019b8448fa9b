//! The rules of each service as given/when/then cases: given these events, when this command
//! at this time, then these events or this rejection. No database, no clock. One module per
//! service, as in the core's `decide` and `state`; the fixtures they share are here.

mod applications;
mod authority;
mod clinic;
mod kindergarten;
mod school;

use chrono::{DateTime, NaiveDate, Utc};
use ochered_core::command::{Command, KindergartenForm};
use ochered_core::domain::{
    ApplicationNumber, AuthorityConfig, AuthorityId, Channel, DocumentNumber, InstitutionId,
    InstitutionKind, PersonKey, RoundId, Specialty,
};
use ochered_core::state::ApplicationStatus;
use ochered_core::{decide, Event, Rejection, State};

pub fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn inst(id: &str) -> InstitutionId {
    InstitutionId::parse(id).unwrap()
}

pub fn child(n: u32) -> PersonKey {
    PersonKey::derive(
        b"test-secret",
        &DocumentNumber::parse(&format!("IV-AB {n:06}")).unwrap(),
    )
}

pub fn config(tz: chrono_tz::Tz) -> AuthorityConfig {
    AuthorityConfig::with_defaults(AuthorityId::parse("test-city").unwrap(), "Test city", tz)
}

/// An authority in Moscow time with kindergartens K1..K4, schools S1..S3, a therapist
/// specialty open to self-booking and a referral-only cardiology.
pub fn authority() -> Vec<Event> {
    authority_in(chrono_tz::Europe::Moscow)
}

pub fn authority_in(tz: chrono_tz::Tz) -> Vec<Event> {
    let mut events = vec![Event::AuthorityConfigured { config: config(tz) }];
    for (id, kind) in [
        ("K1", InstitutionKind::Kindergarten),
        ("K2", InstitutionKind::Kindergarten),
        ("K3", InstitutionKind::Kindergarten),
        ("K4", InstitutionKind::Kindergarten),
        ("S1", InstitutionKind::School),
        ("S2", InstitutionKind::School),
        ("S3", InstitutionKind::School),
        ("P1", InstitutionKind::Clinic),
    ] {
        events.push(Event::InstitutionRegistered {
            id: inst(id),
            kind,
            name: format!("Institution {id}"),
            district: None,
            address: None,
        });
    }
    events.push(Event::SpecialtyConfigured {
        specialty: Specialty::parse("therapist").unwrap(),
        referral_only: false,
    });
    events.push(Event::SpecialtyConfigured {
        specialty: Specialty::parse("cardiology").unwrap(),
        referral_only: true,
    });
    events
}

pub fn kg_form(n: u32, prefs: &[&str]) -> KindergartenForm {
    KindergartenForm {
        child: child(n),
        birth_date: date(2023, 3, 10),
        preferences: prefs.iter().map(|p| inst(p)).collect(),
        desired_start: date(2026, 9, 1),
        any_other: false,
        privileges: Vec::new(),
        channel: Channel::Portal,
        submitted_by: format!("parent-{n}"),
        sealed: None,
    }
}

pub fn submit_kg(n: u32, prefs: &[&str]) -> Command {
    Command::SubmitKindergartenApplication {
        form: kg_form(n, prefs),
    }
}

pub struct Scenario {
    pub state: State,
}

pub fn given(events: impl IntoIterator<Item = Event>) -> Scenario {
    let mut state = State::new();
    for e in events {
        state.apply(&e);
    }
    Scenario { state }
}

impl Scenario {
    /// Decides a command that must be accepted, folds its events, and returns them.
    pub fn accept(&mut self, command: Command, now: DateTime<Utc>) -> Vec<Event> {
        let events = decide(&self.state, &command, now)
            .unwrap_or_else(|r| panic!("{} was rejected: {r:?}", command.name()));
        for e in &events {
            self.state.apply(e);
        }
        events
    }

    pub fn when(&self, command: Command, now: DateTime<Utc>) -> Result<Vec<Event>, Rejection> {
        decide(&self.state, &command, now)
    }
}

pub fn then_rejected(result: Result<Vec<Event>, Rejection>, expected: Rejection) {
    match result {
        Ok(events) => panic!("expected {expected:?}, got events {events:?}"),
        Err(r) => assert_eq!(r, expected),
    }
}

pub fn then_invalid(result: Result<Vec<Event>, Rejection>, field: &str) {
    match result {
        Err(Rejection::InvalidField { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected an invalid {field}, got {other:?}"),
    }
}

pub const NOW: &str = "2026-02-01T09:00:00Z";

pub fn positions_of(state: &State, n: u32) -> Vec<(String, usize)> {
    let app = state.application(ApplicationNumber(n)).unwrap();
    state
        .queue_entries(app)
        .into_iter()
        .map(|(q, k)| {
            (
                state.describe_queue(&q).institution.to_string(),
                state.queues.position(&q, &k).unwrap(),
            )
        })
        .collect()
}

pub fn status_of(s: &Scenario, n: u32) -> ApplicationStatus {
    s.state.application(ApplicationNumber(n)).unwrap().status
}

pub fn round_id(id: &str) -> RoundId {
    RoundId::parse(id).unwrap()
}
