//! The officer's desk: search by document, name and number, the privilege worklist, the
//! round preview and the exports with names (officers) and without (auditors). Every
//! endpoint: the happy path, 403 for the other roles, and bad input as a 422 naming the field.

use std::io::Read;

use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{download, each_backend, kindergarten, parse_csv, token, TestApp};

const ANNA_DOCUMENT: &str = "II-AB 000301";
const ANNA: &str = "Анна Иванова";
const GUARDIAN: &str = "Ольга Иванова";
const PHONE: &str = "+7 913 123-45-67";

fn officer() -> String {
    token(Role::Officer, "officer-1")
}

/// Tokens of every role that is not an officer or admin: each gets 403 at the desk.
fn others() -> Vec<(&'static str, String)> {
    vec![
        ("parent", token(Role::Parent, "parent-1")),
        ("auditor", token(Role::Auditor, "auditor-1")),
        ("registrar", token(Role::Registrar, "registrar-1")),
    ]
}

/// Two applications to K1: Anna's with a contact and a claimed privilege (parent-1), and one
/// without a contact (parent-2); seats for one child of each; answers the numbers.
async fn set_up(app: &TestApp) -> (u64, u64) {
    app.set_up_authority().await;
    let mut anna = kindergarten(ANNA_DOCUMENT, &["K1", "K2"]);
    anna["contact"] = json!({"child_name": ANNA, "guardian_name": GUARDIAN, "phone": PHONE});
    anna["privileges"] = json!([{"kind": "first_priority"}]);
    let a = app
        .post(
            &token(Role::Parent, "parent-1"),
            "/kindergarten/applications",
            anna,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let b = app
        .post(
            &token(Role::Parent, "parent-2"),
            "/kindergarten/applications",
            kindergarten("II-AB 000302", &["K1"]),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    let seats = app
        .post(
            &officer(),
            "/kindergarten/seats",
            json!({"institution": "K1", "intake_year": 2027, "seats": [{"age_group": 3, "seats": 2}]}),
        )
        .await;
    assert_eq!(seats.status, 201, "{}", seats.body);
    (
        a.body["application"]["number"].as_u64().unwrap(),
        b.body["application"]["number"].as_u64().unwrap(),
    )
}

fn numbers(body: &Value) -> Vec<u64> {
    body["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["number"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_find_applications_by_document_name_and_number() {
    each_backend(search).await;
}

async fn search(app: TestApp) {
    let (anna, other) = set_up(&app).await;
    let officer = officer();

    // By document: the child's applications, with the name the family gave; the spelling of
    // the document does not matter.
    let found = app
        .get(Some(&officer), "/officer/search?document=ii-ab%20000301")
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["by"], "document");
    assert_eq!(numbers(&found.body), [anna]);
    assert_eq!(found.body["applications"][0]["child_name"], ANNA);
    assert_eq!(found.body["truncated"], false);
    let unknown = app
        .get(Some(&officer), "/officer/search?document=II-AB%20999999")
        .await;
    assert_eq!((unknown.status, numbers(&unknown.body)), (200, vec![]));

    // By a part of the child's or the guardian's name, in any case, ё as е.
    for name in ["анна", "ИВАНОВА", "ольга", "Анна%20Ив"] {
        let found = app
            .get(Some(&officer), &format!("/officer/search?name={name}"))
            .await;
        assert_eq!(found.status, 200, "{}", found.body);
        assert_eq!(numbers(&found.body), [anna], "{name}");
    }
    let nobody = app.get(Some(&officer), "/officer/search?name=Пётр").await;
    assert_eq!(numbers(&nobody.body), Vec::<u64>::new());

    // By number: the one without a contact has no name.
    let found = app
        .get(Some(&officer), &format!("/officer/search?number={other}"))
        .await;
    assert_eq!(numbers(&found.body), [other]);
    assert!(found.body["applications"][0].get("child_name").is_none());
    let missing = app.get(Some(&officer), "/officer/search?number=999").await;
    assert_eq!((missing.status, numbers(&missing.body)), (200, vec![]));

    // Bad input: 422 naming the field.
    for (query, field) in [
        ("", "document"),
        ("?document=II-AB%20000301&name=Анна", "name"),
        ("?name=Анна&number=1", "number"),
        ("?name=a", "name"),
        ("?number=x", "number"),
        ("?number=0", "number"),
        ("?document=%21%21", "document"),
        ("?page=2", "page"),
    ] {
        let bad = app
            .get(Some(&officer), &format!("/officer/search{query}"))
            .await;
        assert_eq!(
            (bad.status, bad.field()),
            (422, Some(field)),
            "{query}: {}",
            bad.body
        );
    }

    // Other roles never search (auditors never see a name); no token is 401.
    for (role, who) in others() {
        let refused = app.get(Some(&who), "/officer/search?name=анна").await;
        assert_eq!(refused.status, 403, "{role}");
    }
    assert_eq!(app.get(None, "/officer/search?name=анна").await.status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privilege_worklist_lists_claims_until_an_officer_decides() {
    each_backend(worklist).await;
}

async fn worklist(app: TestApp) {
    let (anna, other) = set_up(&app).await;
    let officer = officer();
    // The second family claims a privilege later.
    let claimed = app
        .post(
            &token(Role::Parent, "parent-2"),
            &format!("/applications/{other}/privileges"),
            json!({"privilege": {"kind": "extraordinary"}}),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.body);

    let list = app.get(Some(&officer), "/officer/privileges").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["total"], 2);
    let items = list.body["items"].as_array().unwrap();
    // Oldest registration first, with what waits and the child's name where given.
    assert_eq!(items[0]["application"]["number"], anna);
    assert_eq!(items[0]["application"]["child_name"], ANNA);
    assert_eq!(items[0]["waiting"], json!([{"kind": "first_priority"}]));
    assert_eq!(items[1]["application"]["number"], other);
    assert_eq!(items[1]["waiting"], json!([{"kind": "extraordinary"}]));

    // Confirming one and revoking the other empties the list.
    let confirm = app
        .post(
            &officer,
            &format!("/applications/{anna}/privileges/confirm"),
            json!({"privilege": {"kind": "first_priority"}}),
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let list = app.get(Some(&officer), "/officer/privileges").await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["application"]["number"], other);
    let revoke = app
        .post(
            &officer,
            &format!("/applications/{other}/privileges/revoke"),
            json!({"privilege": {"kind": "extraordinary"}, "reason": "no document"}),
        )
        .await;
    assert_eq!(revoke.status, 200, "{}", revoke.body);
    let list = app.get(Some(&officer), "/officer/privileges").await;
    assert_eq!(
        (
            list.body["total"].as_u64(),
            list.body["items"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    for (role, who) in others() {
        assert_eq!(
            app.get(Some(&who), "/officer/privileges").await.status,
            403,
            "{role}"
        );
    }
    let nowhere = app
        .client
        .get(format!(
            "{}/api/v1/authorities/nowhere/officer/privileges",
            app.base
        ))
        .bearer_auth(&officer);
    let nowhere = app.send(nowhere).await;
    assert_eq!((nowhere.status, nowhere.field()), (404, Some("authority")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_preview_gives_what_the_round_gives_and_records_nothing() {
    each_backend(preview).await;
}

async fn preview(app: TestApp) {
    let (anna, other) = set_up(&app).await;
    let officer = officer();
    let body = json!({"round": "main-2027", "intake_year": 2027});
    let head = app.head_seq().await;

    let preview = app
        .post(&officer, "/kindergarten/rounds/preview", body.clone())
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(preview.body["authority_seq"].is_null(), "{}", preview.body);
    let round = &preview.body["round"];
    assert_eq!(round["placed"], 2);
    assert_eq!(round["applicants"], 2);
    assert_eq!(round["placements"][0]["status"], "offered");
    // Nothing recorded: the chain, the round list, the seats and the applications are as before.
    assert_eq!(app.head_seq().await, head);
    assert_eq!(
        app.get(Some(&officer), "/rounds/main-2027").await.status,
        404
    );
    let seats = app.get(None, "/kindergarten/seats?intake_year=2027").await;
    assert_eq!(seats.body["seats"][0]["taken"], 0, "{}", seats.body);
    let mine = app
        .get(Some(&officer), &format!("/applications/{anna}"))
        .await;
    assert_eq!(mine.body["status"], "active");

    // The run gives exactly what the preview showed.
    let run = app
        .post(&officer, "/kindergarten/rounds", body.clone())
        .await;
    assert_eq!(run.status, 201, "{}", run.body);
    for key in ["placed", "applicants", "seats"] {
        assert_eq!(run.body["round"][key], round[key], "{key}");
    }
    // The offers' deadline counts from the moment of the run.
    for key in ["service", "intake_year", "intake_date"] {
        assert_eq!(
            run.body["round"]["scope"][key], round["scope"][key],
            "{key}"
        );
    }
    let placed = |v: &Value| -> Vec<(Value, Value)> {
        v["placements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["application"].clone(), p["seats"].clone()))
            .collect()
    };
    assert_eq!(placed(&run.body["round"]), placed(round));
    assert!(placed(round).contains(&(json!(other), json!("K1/3"))));

    // The same id again is refused as the run would be.
    let again = app
        .post(&officer, "/kindergarten/rounds/preview", body.clone())
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    // Bad input names the field.
    for (bad, field) in [
        (json!({"round": "r2", "intake_year": "x"}), "intake_year"),
        (json!({"round": "bad id!", "intake_year": 2027}), "round"),
        (json!({"intake_year": 2027}), "round"),
        (
            json!({"round": "r2", "intake_year": 2027, "extra": 1}),
            "extra",
        ),
    ] {
        let refused = app
            .post(&officer, "/kindergarten/rounds/preview", bad.clone())
            .await;
        assert_eq!(
            (refused.status, refused.field()),
            (422, Some(field)),
            "{bad}: {}",
            refused.body
        );
    }
    for (role, who) in others() {
        let refused = app
            .post(
                &who,
                "/kindergarten/rounds/preview",
                json!({"round": "r3", "intake_year": 2027}),
            )
            .await;
        assert_eq!(refused.status, 403, "{role}");
    }
    assert_eq!(app.head_seq().await, head + 1, "only the run was recorded");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_exports_carry_names_and_auditors_never() {
    each_backend(exports).await;
}

/// The text of a workbook's shared strings and first sheet.
fn xlsx_text(bytes: Vec<u8>) -> String {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    for name in [
        "xl/sharedStrings.xml",
        "xl/worksheets/sheet1.xml",
        "xl/worksheets/sheet2.xml",
    ] {
        zip.by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    }
    text
}

async fn exports(app: TestApp) {
    let (anna, _) = set_up(&app).await;
    let officer = officer();
    let auditor = token(Role::Auditor, "auditor-1");
    // The queue file, while the children wait: the officer's carries the name.
    let queue = "/files/queues/kindergarten.K1.3.2027.csv";
    let (status, _, bytes) = download(&app, &officer, queue).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains(ANNA) && text.contains("registered_at (Asia/Novosibirsk)"),
        "{text}"
    );
    for file in [queue, "/files/queues/kindergarten.K1.3.2027.xlsx"] {
        let (status, _, bytes) = download(&app, &auditor, file).await;
        assert_eq!(status, 200, "{file}");
        let text = if file.ends_with(".xlsx") {
            xlsx_text(bytes)
        } else {
            String::from_utf8(bytes).unwrap()
        };
        assert!(text.contains("Asia/Novosibirsk"), "{file}");
        // The whole number: a short piece of it can turn up in a time's serial number.
        for secret in [ANNA, GUARDIAN, PHONE, "child_name", "phone"] {
            assert!(!text.contains(secret), "{file} shows {secret}: {text}");
        }
    }
    let run = app
        .post(
            &officer,
            "/kindergarten/rounds",
            json!({"round": "main-2027", "intake_year": 2027}),
        )
        .await;
    assert_eq!(run.status, 201, "{}", run.body);

    // The officer's round file: the kindergarten's name next to its id, local times, and
    // the family's contact.
    let (status, _, bytes) = download(&app, &officer, "/files/rounds/main-2027.csv").await;
    assert_eq!(status, 200);
    let (header, rows) = parse_csv(&bytes);
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    let row = rows
        .iter()
        .find(|r| r[0] == anna.to_string())
        .expect("Anna placed");
    assert_eq!(row[col("institution_name")], "K1 name");
    assert_eq!(row[col("child_name")], ANNA);
    assert_eq!(row[col("guardian_name")], GUARDIAN);
    assert_eq!(row[col("phone")], PHONE);
    assert!(
        row[col("deadline (Asia/Novosibirsk)")].ends_with("+07:00"),
        "{row:?}"
    );
    let (_, _, xlsx) = download(&app, &officer, "/files/rounds/main-2027.xlsx").await;
    let text = xlsx_text(xlsx);
    assert!(
        text.contains(ANNA) && text.contains("K1 name") && text.contains("Asia/Novosibirsk"),
        "{text}"
    );

    // The auditor's files: no name, contact or answer anywhere, in either format.
    for file in [
        "/files/rounds/main-2027.csv",
        "/files/rounds/main-2027.xlsx",
    ] {
        let (status, _, bytes) = download(&app, &auditor, file).await;
        assert_eq!(status, 200, "{file}");
        let text = if file.ends_with(".xlsx") {
            xlsx_text(bytes)
        } else {
            String::from_utf8(bytes).unwrap()
        };
        assert!(text.contains("K1 name"), "{file}: {text}");
        for secret in [ANNA, GUARDIAN, PHONE, "child_name", "phone", "offered"] {
            assert!(!text.contains(secret), "{file} shows {secret}: {text}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_ask_for_age_exceptions_and_officers_decide_them_from_the_worklist() {
    each_backend(age_exceptions).await;
}

/// Too young on 1 September 2027 (75 months): needs the `earlier` exception.
const YOUNG: &str = "2021-06-01";
const YOUNG_DOCUMENT: &str = "II-AB 000401";
/// Too old (97 months): needs `later`.
const OLD_DOCUMENT: &str = "II-AB 000402";

fn ask(document: &str, birth_date: &str, category: &str) -> Value {
    json!({"campaign": "school-2027", "document": document, "birth_date": birth_date, "category": category})
}

/// Posts each body, expects its status with a problem naming its field, and checks that
/// none of them wrote anything.
async fn refused_and_nothing_written<const N: usize>(
    app: &TestApp,
    token: &str,
    path: &str,
    cases: [(Value, u16, &str); N],
) {
    let head = app.head_seq().await;
    for (body, status, field) in cases {
        let bad = app.post(token, path, body.clone()).await;
        assert_eq!(
            (bad.status, bad.field()),
            (status, Some(field)),
            "{body}: {}",
            bad.body
        );
    }
    assert_eq!(app.head_seq().await, head);
}

async fn age_exceptions(app: TestApp) {
    app.set_up_authority().await;
    let officer = officer();
    let parent = token(Role::Parent, "parent-1");
    let requests = "/school/age-exception-requests";

    // Bad input names the field and writes nothing.
    let cases = [
        (ask(YOUNG_DOCUMENT, YOUNG, "later"), 422, "category"),
        (
            ask(YOUNG_DOCUMENT, "2020-12-01", "earlier"),
            422,
            "birth_date",
        ),
        (
            ask(YOUNG_DOCUMENT, "2021-02-30", "earlier"),
            422,
            "birth_date",
        ),
        (ask(YOUNG_DOCUMENT, YOUNG, "sooner"), 422, "category"),
        (ask("!!", YOUNG, "earlier"), 422, "document"),
        (
            json!({"campaign": "school-1999", "document": YOUNG_DOCUMENT, "birth_date": YOUNG, "category": "earlier"}),
            404,
            "campaign",
        ),
        (
            json!({"campaign": "school-2027", "document": YOUNG_DOCUMENT, "birth_date": YOUNG}),
            422,
            "category",
        ),
    ];
    refused_and_nothing_written(&app, &parent, requests, cases).await;

    // Without an exception the child cannot apply.
    let apply = json!({"campaign": "school-2027", "document": YOUNG_DOCUMENT, "birth_date": YOUNG, "schools": ["S1"]});
    let refused = app
        .post(&parent, "/school/applications", apply.clone())
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["code"], "age_out_of_range");

    // Two families ask; asking twice is refused.
    let asked = app
        .post(&parent, requests, ask(YOUNG_DOCUMENT, YOUNG, "earlier"))
        .await;
    assert_eq!(asked.status, 201, "{}", asked.body);
    let again = app
        .post(&parent, requests, ask(YOUNG_DOCUMENT, YOUNG, "earlier"))
        .await;
    assert_eq!(
        (again.status, again.field(), again.body["code"].as_str()),
        (
            409,
            Some("document"),
            Some("age_exception_already_requested")
        ),
        "{}",
        again.body
    );
    let parent2 = token(Role::Parent, "parent-2");
    let asked = app
        .post(&parent2, requests, ask(OLD_DOCUMENT, "2019-08-01", "later"))
        .await;
    assert_eq!(asked.status, 201, "{}", asked.body);

    // Each parent sees only their own request.
    let mine = app.get(Some(&parent), requests).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let mine = mine.body["requests"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (
            &mine[0]["status"],
            &mine[0]["category"],
            &mine[0]["age_months"]
        ),
        (&json!("pending"), &json!("earlier"), &json!(75))
    );

    // The officer's worklist: both, oldest first.
    let list = app.get(Some(&officer), "/officer/age-exceptions").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["total"], 2);
    let young_key = list.body["items"][0]["child"].as_str().unwrap().to_owned();
    let old_key = list.body["items"][1]["child"].as_str().unwrap().to_owned();
    assert_eq!(young_key, mine[0]["child"]);
    assert_eq!(list.body["items"][1]["category"], "later");

    // Bad decisions name the field and write nothing.
    let decide = "/officer/age-exceptions/decide";
    let cases = [
        (
            json!({"campaign": "school-2027", "child": young_key, "decision": "refuse"}),
            422,
            "reason",
        ),
        (
            json!({"campaign": "school-2027", "child": young_key, "decision": "refuse", "reason": ""}),
            422,
            "reason",
        ),
        (
            json!({"campaign": "school-2027", "child": young_key, "decision": "grant", "reason": "x"}),
            422,
            "reason",
        ),
        (
            json!({"campaign": "school-2027", "child": young_key, "decision": "maybe"}),
            422,
            "decision",
        ),
        (
            json!({"campaign": "school-2027", "child": "abc", "decision": "grant"}),
            422,
            "child",
        ),
        (
            json!({"campaign": "school-2027", "child": "00".repeat(32), "decision": "grant"}),
            404,
            "child",
        ),
        (
            json!({"campaign": "school-1999", "child": young_key, "decision": "grant"}),
            404,
            "campaign",
        ),
    ];
    refused_and_nothing_written(&app, &officer, decide, cases).await;

    // Granting one lets the child apply; refusing the other tells the family why. Deciding
    // twice is refused.
    let granted = app
        .post(
            &officer,
            decide,
            json!({"campaign": "school-2027", "child": young_key, "decision": "grant"}),
        )
        .await;
    assert_eq!(granted.status, 200, "{}", granted.body);
    let twice = app
        .post(
            &officer,
            decide,
            json!({"campaign": "school-2027", "child": young_key, "decision": "grant"}),
        )
        .await;
    assert_eq!(
        (twice.status, twice.field()),
        (409, Some("decision")),
        "{}",
        twice.body
    );
    let refused = app
        .post(
            &officer,
            decide,
            json!({"campaign": "school-2027", "child": old_key, "decision": "refuse", "reason": "no medical grounds"}),
        )
        .await;
    assert_eq!(refused.status, 200, "{}", refused.body);
    let list = app.get(Some(&officer), "/officer/age-exceptions").await;
    assert_eq!(list.body["total"], 0, "{}", list.body);
    let mine = app.get(Some(&parent2), requests).await;
    assert_eq!(
        (
            &mine.body["requests"][0]["status"],
            &mine.body["requests"][0]["reason"]
        ),
        (&json!("refused"), &json!("no medical grounds"))
    );
    let applied = app.post(&parent, "/school/applications", apply).await;
    assert_eq!(applied.status, 201, "{}", applied.body);

    // Only parents ask and see their requests; only officers list and decide.
    for (role, who) in [
        ("officer", officer.clone()),
        ("auditor", token(Role::Auditor, "auditor-1")),
        ("registrar", token(Role::Registrar, "registrar-1")),
    ] {
        assert_eq!(app.get(Some(&who), requests).await.status, 403, "{role}");
        let asked = app
            .post(&who, requests, ask(OLD_DOCUMENT, "2019-08-01", "later"))
            .await;
        assert_eq!(asked.status, 403, "{role}");
    }
    for (role, who) in others() {
        assert_eq!(
            app.get(Some(&who), "/officer/age-exceptions").await.status,
            403,
            "{role}"
        );
        let decided = app
            .post(
                &who,
                decide,
                json!({"campaign": "school-2027", "child": old_key, "decision": "grant"}),
            )
            .await;
        assert_eq!(decided.status, 403, "{role}");
    }
    app.stop().await;
}
