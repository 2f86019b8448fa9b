//! What the status updates share: which events change an application's status (for the
//! event streams and the webhooks alike), and the signal that the server is stopping.

use chrono::{DateTime, Utc};
use ochered_core::domain::{ApplicationNumber, InstitutionId};
use ochered_core::Event;
use serde::Serialize;
use tokio::sync::watch;

/// One status change of one application, as a parent or the portal sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    pub application: ApplicationNumber,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The kindergarten offered or the school enrolled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub institution: Option<InstitutionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_deadline: Option<DateTime<Utc>>,
}

/// The status changes an event makes, in a stable order (a round makes one per placement),
/// only those of `only` when given.
pub fn status_changes(event: &Event, only: Option<ApplicationNumber>) -> Vec<StatusChange> {
    let one = |number: ApplicationNumber, kind: &'static str| {
        if only.is_some_and(|o| o != number) {
            Vec::new()
        } else {
            vec![StatusChange {
                application: number,
                kind,
                institution: None,
                offer_deadline: None,
            }]
        }
    };
    match event {
        Event::KindergartenApplicationSubmitted { number, .. }
        | Event::SchoolApplicationSubmitted { number, .. } => one(*number, "submitted"),
        Event::KindergartenPreferencesAmended { number, .. } => one(*number, "amended"),
        Event::ApplicationWithdrawn { number, .. } => one(*number, "withdrawn"),
        Event::PrivilegeClaimed { number, .. } => one(*number, "privilege_claimed"),
        Event::PrivilegeConfirmed { number, .. } => one(*number, "privilege_confirmed"),
        Event::PrivilegeRevoked { number, .. } => one(*number, "privilege_revoked"),
        Event::OfferAccepted { number, .. } => one(*number, "accepted"),
        Event::OfferDeclined { number, .. } => one(*number, "declined"),
        Event::OfferExpired { number, .. } => one(*number, "expired"),
        Event::TransferCompleted { number, .. } => one(*number, "transferred"),
        Event::KindergartenRoundCompleted {
            seats,
            placements,
            offer_deadline,
            ..
        } => placements
            .iter()
            .filter(|p| only.is_none_or(|o| o == p.number))
            .map(|p| StatusChange {
                application: p.number,
                kind: "offered",
                institution: seats.get(p.seats as usize).map(|s| s.institution.clone()),
                offer_deadline: Some(*offer_deadline),
            })
            .collect(),
        Event::SchoolEnrollmentCompleted {
            seats, placements, ..
        } => placements
            .iter()
            .filter(|p| only.is_none_or(|o| o == p.number))
            .map(|p| StatusChange {
                application: p.number,
                kind: "enrolled",
                institution: seats.get(p.seats as usize).map(|s| s.institution.clone()),
                offer_deadline: None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

/// Tells long-lived responses (event streams) that the server is stopping, so the graceful
/// shutdown does not wait for them for ever.
#[derive(Clone)]
pub struct Stopping(pub watch::Receiver<bool>);

/// Resolves when `stop` says the server is stopping (never when there is no signal).
pub async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|v| *v).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochered_core::rounds::{RoundPlacement, RoundSeats};
    use ochered_core::Event;

    #[test]
    fn rounds_make_one_change_per_placement_and_filter_by_application() {
        let event = Event::KindergartenRoundCompleted {
            round: ochered_core::domain::RoundId::parse("r1").unwrap(),
            intake_year: 2027,
            intake_date: chrono::NaiveDate::from_ymd_opt(2027, 9, 1).unwrap(),
            offer_deadline: Utc::now(),
            at: Utc::now(),
            seats: vec![RoundSeats {
                institution: InstitutionId::parse("K1").unwrap(),
                age_group: Some(3),
                capacity: 2,
            }],
            applicants: vec![],
            calendar_override: None,
            placements: vec![
                RoundPlacement {
                    number: ApplicationNumber(4),
                    seats: 0,
                },
                RoundPlacement {
                    number: ApplicationNumber(7),
                    seats: 0,
                },
            ],
        };
        let all = status_changes(&event, None);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|c| c.kind == "offered"));
        let mine = status_changes(&event, Some(ApplicationNumber(7)));
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].institution.as_ref().unwrap().as_str(), "K1");
    }
}
