//! What a parent follows of an application over the API: the offer named (kindergarten id and
//! name, round, deadline in UTC and in the authority's time zone), the history step by step
//! from its events, the submission's place in the hash chain, and the list of the parent's
//! own applications with the child's name; who may see them.

use chrono::{DateTime, FixedOffset, SubsecRound, Utc};
use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{each_backend, kindergarten, spawn_app, token, TestApp};

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

fn officer() -> String {
    token(Role::Officer, "officer-1")
}

fn types(view: &Value) -> Vec<&str> {
    view["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history in {view}"))
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect()
}

/// A local RFC 3339 time with the offset of Asia/Novosibirsk (+07:00, no daylight saving)
/// naming the same instant as `utc`.
fn assert_local(local: &Value, utc: &Value) {
    let local = local
        .as_str()
        .unwrap_or_else(|| panic!("no local time: {local}"));
    assert!(
        local.ends_with("+07:00"),
        "{local} is in the authority's zone"
    );
    let local: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(local).unwrap();
    let utc: DateTime<Utc> = utc.as_str().unwrap().parse().unwrap();
    assert_eq!(local.with_timezone(&Utc), utc.trunc_subsecs(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_is_named_and_the_history_follows_every_event() {
    each_backend(async |app: TestApp| {
        app.set_up_authority().await;
        let mut body = kindergarten("II-AB 000301", &["K2", "K1"]);
        body["privileges"] = json!([{"kind": "first_priority"}]);
        body["contact"] = json!({"child_name": "Анна Иванова", "guardian_name": "Ольга Иванова", "phone": "+7 913 123-45-67"});
        let first = app.post(&parent(1), "/kindergarten/applications", body).await;
        assert_eq!(first.status, 201, "{}: {}", app.backend, first.body);
        let submitted_seq = first.body["events"][0]["authority_seq"].as_u64().unwrap();
        assert_eq!(first.body["application"]["chain_position"], submitted_seq);
        let second = app
            .post(&parent(2), "/kindergarten/applications", kindergarten("II-AB 000302", &["K1"]))
            .await;
        assert_eq!(second.status, 201, "{}", second.body);

        let amend = json!({"preferences": ["K1", "K2"], "desired_start": "2027-09-01"});
        assert_eq!(app.post(&parent(1), "/applications/1/preferences", amend).await.status, 200);
        let confirm = json!({"privilege": {"kind": "first_priority"}});
        assert_eq!(app.post(&officer(), "/applications/1/privileges/confirm", confirm).await.status, 200);

        // Before any round: no offer, and the history so far.
        let before = app.get(Some(&parent(1)), "/applications/1").await;
        assert_eq!(before.status, 200, "{}", before.body);
        assert!(before.body.get("offer").is_none(), "{}", before.body);
        assert_eq!(types(&before.body), ["submitted", "privilege_claimed", "amended", "privilege_confirmed"]);
        let history = before.body["history"].as_array().unwrap();
        assert_eq!(history[0]["chain_position"], submitted_seq);
        assert_eq!(history[1]["chain_position"], submitted_seq, "the claim came with the submission");
        assert_eq!(history[2]["preferences"][0], json!({"id": "K1", "name": "K1 name"}));
        assert_eq!(history[3]["privilege"]["kind"], "first_priority");
        assert_eq!(before.body["time_zone"], "Asia/Novosibirsk");
        assert_local(&before.body["registered_at_local"], &before.body["registered_at"]);
        assert_eq!(before.body["child_name"], "Анна Иванова");

        // Two seats at K1, one round: both children get an offer there.
        let seats = json!({"institution": "K1", "intake_year": 2027, "seats": [{"age_group": 3, "seats": 2}]});
        assert_eq!(app.post(&officer(), "/kindergarten/seats", seats).await.status, 201);
        let round = app
            .post(&officer(), "/kindergarten/rounds", json!({"round": "main-2027", "intake_year": 2027}))
            .await;
        assert_eq!(round.status, 201, "{}", round.body);
        assert_eq!(round.body["round"]["placed"], 2, "{}", round.body);
        let offered = app.get(Some(&parent(1)), "/applications/1").await;
        let offer = &offered.body["offer"];
        assert_eq!(offered.body["status"], "offered", "{}", offered.body);
        assert_eq!(offer["status"], "offered");
        assert_eq!(offer["institution"], json!({"id": "K1", "name": "K1 name"}));
        assert_eq!(offer["round"], "main-2027");
        assert_eq!(offer["intake_year"], 2027);
        assert_eq!(offer["age_group"], 3);
        assert!(offer["deadline"].is_string(), "{offer}");
        assert_local(&offer["deadline_local"], &offer["deadline"]);
        assert_local(&offer["offered_at_local"], &offer["offered_at"]);
        let last = offered.body["history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["type"], "offered");
        assert_eq!(last["offer"]["institution"]["name"], "K1 name");
        assert_eq!(last["offer"]["deadline"], offer["deadline"]);
        let round_seq = app.head_seq().await as u64;
        assert_eq!(last["chain_position"], round_seq, "the round is the last event");

        let accepted = app.post(&parent(1), "/applications/1/offer/accept", json!({})).await;
        assert_eq!(accepted.status, 200, "{}", accepted.body);
        let enrolled = app.get(Some(&parent(1)), "/applications/1").await;
        assert_eq!(
            types(&enrolled.body),
            ["submitted", "privilege_claimed", "amended", "privilege_confirmed", "offered", "accepted"]
        );
        assert_eq!(enrolled.body["offer"]["status"], "accepted");
        assert_eq!(
            enrolled.body["history"][5]["chain_position"],
            accepted.body["events"][0]["authority_seq"]
        );

        // The second child declines, so it queues again from the next 1 September; then the
        // family withdraws the application with a reason.
        assert_eq!(app.post(&parent(2), "/applications/2/offer/decline", json!({})).await.status, 200);
        let withdraw = json!({"reason": "moved away"});
        assert_eq!(app.post(&parent(2), "/applications/2/withdraw", withdraw).await.status, 200);
        let other = app.get(Some(&parent(2)), "/applications/2").await;
        assert_eq!(types(&other.body), ["submitted", "offered", "declined", "withdrawn"]);
        let history = other.body["history"].as_array().unwrap();
        assert_eq!(history[1]["offer"]["round"], "main-2027");
        assert_eq!(history[1]["offer"]["institution"]["id"], "K1");
        assert_eq!(history[1]["offer"]["status"], "declined", "the place's status now");
        assert_eq!(history[2]["desired_start"], "2028-09-01");
        assert_eq!(history[3]["reason"], "moved away");
        assert!(other.body.get("child_name").is_none(), "no contact was given");
        for step in history {
            assert_local(&step["at_local"], &step["at"]);
        }
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_list_only_their_own_applications_with_the_childs_name() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let mut body = kindergarten("II-AB 000311", &["K1"]);
    body["contact"] = json!({"child_name": "Пётр Петров", "guardian_name": "Пётр Петров-старший", "email": "p@example.org"});
    assert_eq!(
        app.post(&parent(1), "/kindergarten/applications", body)
            .await
            .status,
        201
    );
    let school = json!({"campaign": "school-2027", "document": "II-AB 000312", "birth_date": "2020-06-01", "schools": ["S1"]});
    assert_eq!(
        app.post(&parent(1), "/school/applications", school)
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            &parent(2),
            "/kindergarten/applications",
            kindergarten("II-AB 000313", &["K2"])
        )
        .await
        .status,
        201
    );

    let mine = app.get(Some(&parent(1)), "/applications").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let list = mine.body["applications"].as_array().unwrap();
    let numbers: Vec<u64> = list.iter().map(|a| a["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2], "only parent-1's");
    assert_eq!(list[0]["child_name"], "Пётр Петров");
    assert!(
        list[1].get("child_name").is_none(),
        "no contact given: {}",
        list[1]
    );
    assert!(
        list[0].get("history").is_none(),
        "the list leaves the history to the detail"
    );
    assert!(
        list[0].get("contact").is_none(),
        "the list carries no contact"
    );
    assert_eq!(
        list[0]["chain_position"].as_u64().map(|p| p > 0),
        Some(true)
    );
    let theirs = app.get(Some(&parent(2)), "/applications").await;
    let numbers: Vec<u64> = theirs.body["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3]);
    assert_eq!(
        app.get(Some(&parent(3)), "/applications").await.body["applications"],
        json!([])
    );

    // Someone else's application looks missing; other roles are refused; both as problems.
    for (who, status) in [
        (parent(2), 404),
        (token(Role::Auditor, "aud"), 403),
        (token(Role::Registrar, "reg"), 403),
    ] {
        let answer = app
            .send(app.client.get(app.url("/applications/1")).bearer_auth(&who))
            .await;
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        assert!(answer.body.get("history").is_none());
    }
    for who in [officer(), token(Role::Auditor, "aud")] {
        assert_eq!(
            app.get(Some(&who), "/applications").await.status,
            403,
            "only parents list"
        );
    }
    assert_eq!(
        app.get(Some(&officer()), "/applications/1").await.body["child_name"],
        "Пётр Петров"
    );
    let missing = app.get(Some(&parent(1)), "/applications/99").await;
    assert_eq!(missing.status, 404);
    let elsewhere = app
        .send(
            app.client
                .get(format!(
                    "{}/api/v1/authorities/nowhere/applications/1",
                    app.base
                ))
                .bearer_auth(parent(1)),
        )
        .await;
    assert_eq!(
        (elsewhere.status, elsewhere.field()),
        (404, Some("authority"))
    );
    app.stop().await;
}
