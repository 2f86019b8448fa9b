//! The authority as a whole: its configuration, its institutions, the events on its log,
//! and personal data with its erasure (docs/RULES.md#authority, #privacy-erasure).

use super::*;

#[test]
fn nothing_is_accepted_before_the_authority_is_configured() {
    let s = given([]);
    then_rejected(
        s.when(submit_kg(1, &["K1"]), t(NOW)),
        Rejection::AuthorityNotConfigured,
    );
}

#[test]
fn authority_is_configured_once() {
    let s = given(authority());
    then_rejected(
        s.when(
            Command::ConfigureAuthority {
                config: config(chrono_tz::Europe::Moscow),
            },
            t(NOW),
        ),
        Rejection::AuthorityAlreadyConfigured,
    );
}

#[test]
fn institution_ids_are_unique() {
    let s = given(authority());
    then_rejected(
        s.when(
            Command::RegisterInstitution {
                id: inst("K1"),
                kind: InstitutionKind::Kindergarten,
                name: "again".into(),
                district: None,
                address: None,
            },
            t(NOW),
        ),
        Rejection::InstitutionExists { id: "K1".into() },
    );
}

fn register(district: Option<&str>, address: Option<&str>) -> Command {
    Command::RegisterInstitution {
        id: inst("K9"),
        kind: InstitutionKind::Kindergarten,
        name: "Kindergarten 9".into(),
        district: district.map(str::to_owned),
        address: address.map(str::to_owned),
    }
}

#[test]
fn institutions_may_carry_a_district_and_an_address() {
    let mut s = given(authority());
    let events = s.accept(register(Some("Central"), Some("1 Main street")), t(NOW));
    assert!(matches!(
        &events[..],
        [Event::InstitutionRegistered { district: Some(d), address: Some(a), .. }]
            if d == "Central" && a == "1 Main street"
    ));
    let idx = s.state.institution_idx(&inst("K9")).unwrap();
    assert_eq!(
        s.state.institution(idx).district.as_deref(),
        Some("Central")
    );
    assert_eq!(
        s.state.institution(idx).address.as_deref(),
        Some("1 Main street")
    );
    // Both are optional.
    let s = given(authority());
    assert!(s.when(register(None, None), t(NOW)).is_ok());
}

#[test]
fn a_district_is_one_bounded_line_and_an_address_is_text() {
    let s = given(authority());
    let long = "D".repeat(ochered_core::decide::DISTRICT_MAX_CHARS + 1);
    for bad in [
        "",
        "  ",
        " Central",
        "Central ",
        "North\nSouth",
        long.as_str(),
    ] {
        then_invalid(s.when(register(Some(bad), None), t(NOW)), "district");
    }
    let longest = "D".repeat(ochered_core::decide::DISTRICT_MAX_CHARS);
    assert!(s.when(register(Some(&longest), None), t(NOW)).is_ok());
    for bad in ["", "a\u{0}b"] {
        then_invalid(s.when(register(None, Some(bad)), t(NOW)), "address");
    }
    // A bad district is reported even for an id already registered.
    then_invalid(
        s.when(
            Command::RegisterInstitution {
                id: inst("K1"),
                kind: InstitutionKind::Kindergarten,
                name: "again".into(),
                district: Some(String::new()),
                address: None,
            },
            t(NOW),
        ),
        "district",
    );
}

/// Events registered before institutions had districts: they decode (every schema version)
/// with none, and an event without a district encodes exactly as it did, so the stored bytes
/// (which the chain hashes) and the state hash of such logs are unchanged.
#[test]
fn an_institution_registered_before_districts_decodes_and_encodes_as_before() {
    let old_v1 = r#"{"id":"K1","kind":"kindergarten","name":"Kindergarten 1"}"#;
    let old_v3 = r#"{"type":"InstitutionRegistered","id":"K1","kind":"kindergarten","name":"Kindergarten 1"}"#;
    for (version, text) in [(1, old_v1), (2, old_v1), (3, old_v3)] {
        let event = ochered_core::upcast::decode("InstitutionRegistered", version, text).unwrap();
        assert_eq!(
            event,
            Event::InstitutionRegistered {
                id: inst("K1"),
                kind: InstitutionKind::Kindergarten,
                name: "Kindergarten 1".into(),
                district: None,
                address: None,
            },
            "schema version {version}"
        );
        assert_eq!(event.to_payload(), old_v3, "re-encoded as stored");
    }
    let state_before = given(authority()).state.state_hash();
    let mut replayed = State::new();
    for event in authority() {
        let text = event.to_payload();
        assert!(
            !text.contains("district") && !text.contains("address"),
            "{text}"
        );
        replayed.apply(
            &ochered_core::upcast::decode(event.type_name(), ochered_core::SCHEMA_VERSION, &text)
                .unwrap(),
        );
    }
    assert_eq!(replayed.state_hash(), state_before);
    assert!(!serde_json::to_string(&replayed.data)
        .unwrap()
        .contains("district"));
}

#[test]
fn upcasting_fills_fields_added_later() {
    let v1 = r#"{"number":1,"child":"0000000000000000000000000000000000000000000000000000000000000000","birth_date":"2023-03-10","preferences":["K1"],"desired_start":"2026-09-01","privileges":[],"registered_at":"2026-02-01T09:00:00Z","channel":"portal","submitted_by":"p"}"#;
    let event = ochered_core::upcast::decode("KindergartenApplicationSubmitted", 1, v1).unwrap();
    assert!(matches!(
        event,
        Event::KindergartenApplicationSubmitted {
            any_other: false,
            ..
        }
    ));
    assert!(ochered_core::upcast::decode("KindergartenApplicationSubmitted", 2, v1).is_err());
    assert!(ochered_core::upcast::decode("KindergartenApplicationSubmitted", 99, v1).is_err());
}

#[test]
fn events_round_trip_through_their_payload() {
    for event in authority() {
        let text = event.to_payload();
        let back =
            ochered_core::upcast::decode(event.type_name(), ochered_core::SCHEMA_VERSION, &text)
                .unwrap();
        assert_eq!(back, event);
    }
}

fn sealed(tag: u8) -> ochered_core::command::Sealed {
    ochered_core::command::Sealed {
        nonce: format!("{tag:02x}").repeat(24),
        ciphertext: format!("{tag:02x}").repeat(40),
    }
}

#[test]
fn sealed_personal_data_is_carried_into_the_event_and_the_state() {
    let mut s = given(authority());
    let form = KindergartenForm {
        sealed: Some(sealed(0xab)),
        ..kg_form(1, &["K1"])
    };
    let events = s.accept(Command::SubmitKindergartenApplication { form }, t(NOW));
    match &events[0] {
        Event::KindergartenApplicationSubmitted { sealed: got, .. } => {
            assert_eq!(got.as_ref(), Some(&sealed(0xab)));
        }
        other => panic!("unexpected {other:?}"),
    }
    let app = s.state.application(ApplicationNumber(1)).unwrap();
    assert_eq!(app.sealed.as_deref(), Some(&sealed(0xab)));
    assert!(!app.erased);
}

#[test]
fn malformed_sealed_values_are_refused() {
    let s = given(authority());
    let mut bad_nonce = sealed(1);
    bad_nonce.nonce.truncate(10);
    let mut bad_text = sealed(1);
    bad_text.ciphertext = "XYZ".repeat(20);
    let mut huge = sealed(1);
    huge.ciphertext = "00".repeat(ochered_core::command::SEALED_CIPHERTEXT_HEX_MAX);
    for (value, field) in [
        (bad_nonce, "sealed.nonce"),
        (bad_text, "sealed.ciphertext"),
        (huge, "sealed.ciphertext"),
    ] {
        let form = KindergartenForm {
            sealed: Some(value),
            ..kg_form(1, &["K1"])
        };
        then_invalid(
            s.when(Command::SubmitKindergartenApplication { form }, t(NOW)),
            field,
        );
    }
}

/// Every application's position in each of its queues.
fn all_positions(state: &State) -> Vec<Vec<Option<usize>>> {
    state
        .applications()
        .iter()
        .map(|a| {
            state
                .queue_entries(a)
                .into_iter()
                .map(|(q, k)| state.queues.position(&q, &k))
                .collect()
        })
        .collect()
}

#[test]
fn erasure_forgets_personal_data_and_moves_no_queue() {
    let mut s = given(authority());
    for n in 1..=3 {
        let form = KindergartenForm {
            sealed: Some(sealed(n as u8)),
            ..kg_form(n, &["K1", "K2"])
        };
        s.accept(Command::SubmitKindergartenApplication { form }, t(NOW));
    }
    let before = all_positions(&s.state);
    let erase = Command::RecordPersonalDataErasure { person: child(2) };
    let events = s.accept(erase.clone(), t(NOW));
    assert_eq!(
        events,
        vec![Event::PersonalDataErased {
            person: child(2),
            applications: vec![ApplicationNumber(2)],
            at: t(NOW),
        }]
    );
    let app = s.state.application(ApplicationNumber(2)).unwrap();
    assert_eq!((app.sealed.as_ref(), app.erased), (None, true));
    assert_eq!(
        s.state
            .application(ApplicationNumber(1))
            .unwrap()
            .sealed
            .as_deref(),
        Some(&sealed(1))
    );
    let after = all_positions(&s.state);
    assert_eq!(before, after);
    // Twice is a no-op; a person never seen is unknown.
    assert_eq!(s.when(erase, t(NOW)), Ok(vec![]));
    then_rejected(
        s.when(
            Command::RecordPersonalDataErasure { person: child(99) },
            t(NOW),
        ),
        Rejection::UnknownPerson,
    );
}
