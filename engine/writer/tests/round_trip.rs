//! Round trip of an allocation round through the log: run rounds through the writer into a
//! real store, replay the log into a fresh state, export each round's instance, solve it as
//! `ochered allocate` does, and compare with the placements the rounds committed.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use ochered_core::allocation::{solve_instance_json, AllocationResult};
use ochered_core::command::Command;
use ochered_core::domain::{ApplicationNumber, RoundId};
use ochered_core::Event;
use ochered_store::testing::Harness;
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{load_state, Clock, Outcome, RequestMeta, Writer, WriterConfig};

const AUTHORITY: &str = "round-trip";

async fn submit(writer: &Writer, command: Command) -> Vec<Event> {
    let reply = writer
        .submit(command, RequestMeta::default())
        .await
        .unwrap();
    match reply.outcome {
        Outcome::Accepted { events } => events.into_iter().map(|e| e.event).collect(),
        Outcome::Rejected { rejection } => panic!("rejected: {rejection:?}"),
    }
}

/// The placements of a round event in the result format, by application number.
fn committed_assignment(events: &[Event]) -> AllocationResult {
    match events {
        [Event::KindergartenRoundCompleted {
            seats,
            applicants,
            placements,
            ..
        }] => {
            let mut assignments: std::collections::BTreeMap<String, Option<String>> = applicants
                .iter()
                .map(|a| (a.number.to_string(), None))
                .collect();
            for p in placements {
                assignments.insert(
                    p.number.to_string(),
                    Some(seats[p.seats as usize].instance_id()),
                );
            }
            AllocationResult { assignments }
        }
        other => panic!("expected one round event, got {other:?}"),
    }
}

#[tokio::test]
async fn rounds_exported_from_the_log_solve_to_their_committed_placements() {
    let harness = Harness::sqlite().await;
    let now = Arc::new(Mutex::new(
        Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap(),
    ));
    let clock_now = now.clone();
    let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
    let config = WriterConfig {
        clock,
        ..WriterConfig::default()
    };
    let (writer, _) = Writer::start(harness.store.clone(), AUTHORITY, config)
        .await
        .unwrap();
    let shape = DemoShape::default();
    let slots_from: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    for command in demo::setup_commands(AUTHORITY, &shape, slots_from) {
        submit(&writer, command).await;
    }
    for command in demo::kindergarten_seat_commands(&shape, 2027) {
        submit(&writer, command).await;
    }
    let today = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
    for n in 1..=400u64 {
        let mut rng = SeededRng::new(n);
        submit(
            &writer,
            demo::kindergarten_application(&mut rng, n, &shape, today),
        )
        .await;
    }

    // Main round, some answers, then a top-up round over the seats that came back.
    *now.lock().unwrap() = Utc.with_ymd_and_hms(2026, 6, 1, 7, 0, 0).unwrap();
    let main = submit(
        &writer,
        Command::RunKindergartenRound {
            round: RoundId::parse("main-2027").unwrap(),
            intake_year: 2027,
            intake_date: None,
            calendar_override: None,
        },
    )
    .await;
    let main_committed = committed_assignment(&main);
    let placed: Vec<ApplicationNumber> = match &main[0] {
        Event::KindergartenRoundCompleted { placements, .. } => {
            placements.iter().map(|p| p.number).collect()
        }
        _ => unreachable!(),
    };
    assert!(
        placed.len() > 50,
        "the round placed {} children",
        placed.len()
    );
    *now.lock().unwrap() += Duration::days(2);
    for (i, number) in placed.iter().enumerate() {
        let command = match i % 3 {
            0 => Command::AcceptOffer {
                application: *number,
            },
            1 => Command::DeclineOffer {
                application: *number,
            },
            _ => continue,
        };
        submit(&writer, command).await;
    }
    *now.lock().unwrap() += Duration::days(20);
    let expired = submit(&writer, Command::ExpireOffers {}).await;
    assert!(!expired.is_empty());
    // A top-up round runs a full interval of the round calendar after the main round.
    *now.lock().unwrap() += Duration::days(8);
    let top_up = submit(
        &writer,
        Command::RunKindergartenRound {
            round: RoundId::parse("top-up-2027").unwrap(),
            intake_year: 2027,
            intake_date: None,
            calendar_override: None,
        },
    )
    .await;
    let top_up_committed = committed_assignment(&top_up);

    // A fresh replay of the log exports both instances; solving them gives the placements.
    let (state, _) = load_state(harness.store.as_ref(), AUTHORITY).await.unwrap();
    for (id, committed) in [
        ("main-2027", &main_committed),
        ("top-up-2027", &top_up_committed),
    ] {
        let idx = state.round_idx(&RoundId::parse(id).unwrap()).unwrap();
        let round = &state.rounds()[idx as usize];
        let instance_json = serde_json::to_string_pretty(&state.round_instance(round)).unwrap();
        let result_json = solve_instance_json(&instance_json).unwrap();
        let result: AllocationResult = serde_json::from_str(&result_json).unwrap();
        assert_eq!(&result, committed, "round {id}");
        assert_eq!(&state.round_assignment(round), committed, "round {id}");
    }
    writer_state_matches(&writer, &state);
}

fn writer_state_matches(writer: &Writer, replayed: &ochered_core::State) {
    assert_eq!(writer.read(|s| s.state_hash()), replayed.state_hash());
}
