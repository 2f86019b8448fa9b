//! What a parent follows of one application: the place a round gave it (the kindergarten by
//! id and name, the round, the deadline in UTC and in the authority's local time) and its
//! history step by step, from the state's projection of the application's events.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use ochered_core::ordering::Privilege;
use ochered_core::state::{Application, HistoryKind, Placement, PlacementStatus, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::schema;

/// An instant in the authority's local time zone, as RFC 3339 with its offset
/// (`2027-06-16T02:59:59+07:00`); UTC when the authority has no settings.
pub fn local_time(state: &State, at: DateTime<Utc>) -> String {
    match state.config() {
        Some(config) => at
            .with_timezone(&config.time_zone)
            .to_rfc3339_opts(SecondsFormat::Secs, false),
        None => at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// The authority's IANA time zone (`Asia/Novosibirsk`).
pub fn time_zone(state: &State) -> String {
    state
        .config()
        .map_or_else(|| "UTC".to_owned(), |c| c.time_zone.name().to_owned())
}

/// An institution by its id and its name.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstitutionRef {
    #[schema(value_type = schema::Code)]
    pub id: String,
    pub name: String,
}

fn institution_ref(state: &State, idx: u32) -> InstitutionRef {
    let institution = state.institution(idx);
    InstitutionRef {
        id: institution.id.to_string(),
        name: institution.name.clone(),
    }
}

/// Where a placement stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStatusView {
    /// A kindergarten offer waiting for the family's answer.
    Offered,
    /// The child took the place (an accepted offer, or a first-grade enrollment decision).
    Accepted,
    Declined,
    Expired,
    /// The application was withdrawn while the offer was outstanding.
    Withdrawn,
    /// The child left the place for another (a transfer).
    Released,
}

impl From<PlacementStatus> for PlacementStatusView {
    fn from(status: PlacementStatus) -> Self {
        match status {
            PlacementStatus::Offered => Self::Offered,
            PlacementStatus::Accepted => Self::Accepted,
            PlacementStatus::Declined => Self::Declined,
            PlacementStatus::Expired => Self::Expired,
            PlacementStatus::Withdrawn => Self::Withdrawn,
            PlacementStatus::Released => Self::Released,
        }
    }
}

/// The place a round gave an application: a kindergarten offer or a first-grade enrollment.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferView {
    pub status: PlacementStatusView,
    pub institution: InstitutionRef,
    /// The round (or enrollment stage) that gave it.
    #[schema(value_type = schema::Code)]
    pub round: String,
    pub intake_year: i32,
    /// The kindergarten age group; none for schools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_group: Option<u8>,
    pub offered_at: DateTime<Utc>,
    pub offered_at_local: String,
    /// The answer is due by then (UTC); none for school enrollments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The deadline in the authority's time zone, RFC 3339 with its offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
}

fn offer_view(state: &State, placement: &Placement) -> OfferView {
    let round = &state.rounds()[placement.round as usize];
    OfferView {
        status: placement.status.into(),
        institution: institution_ref(state, placement.institution),
        round: round.id.to_string(),
        intake_year: placement.intake_year,
        age_group: placement.age_group,
        offered_at: round.at,
        offered_at_local: local_time(state, round.at),
        deadline: placement.deadline,
        deadline_local: placement.deadline.map(|d| local_time(state, d)),
        answered_at: placement.answered_at,
    }
}

/// The application's latest placement, if a round gave it one.
pub fn latest_offer(state: &State, app: &Application) -> Option<OfferView> {
    app.placement
        .map(|idx| offer_view(state, state.placement(idx)))
}

/// What happened at a step of an application's history.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKindView {
    Submitted,
    /// New ranked kindergartens and desired start (`preferences`, `desired_start`).
    Amended,
    PrivilegeClaimed,
    PrivilegeConfirmed,
    /// With the officer's `reason`.
    PrivilegeRevoked,
    /// A round offered a place (`offer`).
    Offered,
    /// The family accepted the offer: the child is enrolled in the kindergarten.
    Accepted,
    /// The family declined; the application queues again from `desired_start`.
    Declined,
    /// The deadline passed unanswered; the application queues again from `desired_start`.
    Expired,
    /// A first-grade enrollment decision (`offer` names the school).
    Enrolled,
    /// The child left this place for the place of application `to_application`.
    Transferred,
    /// With the given `reason`.
    Withdrawn,
    /// The applicant's personal data was erased on request.
    PersonalDataErased,
}

/// One step of an application's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    #[serde(rename = "type")]
    pub kind: HistoryKindView,
    pub at: DateTime<Utc>,
    /// `at` in the authority's time zone, RFC 3339 with its offset.
    pub at_local: String,
    /// The event's position in the authority's hash chain (`authority_seq`).
    pub chain_position: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privilege: Option<Privilege>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferences: Option<Vec<InstitutionRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_start: Option<NaiveDate>,
    /// The place offered or enrolled in, as it was given (its `status` is the placement's now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_application: Option<u32>,
}

impl HistoryEntry {
    fn new(state: &State, kind: HistoryKindView, at: DateTime<Utc>, seq: u64) -> Self {
        HistoryEntry {
            kind,
            at,
            at_local: local_time(state, at),
            chain_position: seq,
            privilege: None,
            reason: None,
            preferences: None,
            desired_start: None,
            offer: None,
            to_application: None,
        }
    }
}

/// The application's history, oldest first, starting with its submission.
pub fn history(state: &State, app: &Application) -> Vec<HistoryEntry> {
    let histories = state.histories();
    let submitted = histories.submitted_seq(app.number).unwrap_or(0);
    let mut out = vec![HistoryEntry::new(
        state,
        HistoryKindView::Submitted,
        app.registered_at,
        submitted,
    )];
    for step in histories.steps(app.number) {
        use HistoryKindView as V;
        let entry = |kind| HistoryEntry::new(state, kind, step.at, step.seq);
        out.push(match &step.kind {
            HistoryKind::Amended {
                preferences,
                desired_start,
            } => HistoryEntry {
                preferences: Some(
                    preferences
                        .iter()
                        .map(|&i| institution_ref(state, i))
                        .collect(),
                ),
                desired_start: Some(*desired_start),
                ..entry(V::Amended)
            },
            HistoryKind::PrivilegeClaimed(p) => HistoryEntry {
                privilege: Some(p.clone()),
                ..entry(V::PrivilegeClaimed)
            },
            HistoryKind::PrivilegeConfirmed(p) => HistoryEntry {
                privilege: Some(p.clone()),
                ..entry(V::PrivilegeConfirmed)
            },
            HistoryKind::PrivilegeRevoked { privilege, reason } => HistoryEntry {
                privilege: Some(privilege.clone()),
                reason: Some(reason.clone()),
                ..entry(V::PrivilegeRevoked)
            },
            HistoryKind::Offered { placement } => HistoryEntry {
                offer: Some(offer_view(state, state.placement(*placement))),
                ..entry(V::Offered)
            },
            HistoryKind::Enrolled { placement } => HistoryEntry {
                offer: Some(offer_view(state, state.placement(*placement))),
                ..entry(V::Enrolled)
            },
            HistoryKind::Accepted => entry(V::Accepted),
            HistoryKind::Declined { desired_start } => HistoryEntry {
                desired_start: Some(*desired_start),
                ..entry(V::Declined)
            },
            HistoryKind::Expired { desired_start } => HistoryEntry {
                desired_start: Some(*desired_start),
                ..entry(V::Expired)
            },
            HistoryKind::Transferred { to } => HistoryEntry {
                to_application: Some(to.0),
                ..entry(V::Transferred)
            },
            HistoryKind::Withdrawn { reason } => HistoryEntry {
                reason: Some(reason.clone()).filter(|r| !r.is_empty()),
                ..entry(V::Withdrawn)
            },
            HistoryKind::PersonalDataErased => entry(V::PersonalDataErased),
        });
    }
    out
}
