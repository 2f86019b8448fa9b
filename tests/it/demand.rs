//! Institutions with districts (the API and the CSV import), and the demand report by
//! district × age group × intake year against a known data set: a district short of seats,
//! one with seats to spare, kindergartens without a district; before and after a round; as
//! JSON, CSV and XLSX; who may read it; bad input (docs/RULES.md#kindergarten-demand).

use std::io::Read;

use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{
    download, each_backend, kindergarten, parse_csv, spawn_app, token, upload, TestApp, AUTHORITY,
};

const REPORT: &str = "/reports/demand";

fn officer() -> String {
    token(Role::Officer, "officer-1")
}

fn auditor() -> String {
    token(Role::Auditor, "auditor-1")
}

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

/// The counts of a report row or district total, in the order of the files' columns after
/// the key: first choice, any choice, published, taken, free, shortage, surplus.
fn counts(row: &Value) -> [u64; 7] {
    [
        "applications_first_choice",
        "applications_any_choice",
        "seats_published",
        "seats_taken",
        "seats_free",
        "shortage",
        "surplus",
    ]
    .map(|k| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}")))
}

/// The row of a district (`None`: no district) and age group for intake year 2027.
fn row<'a>(report: &'a Value, district: Option<&str>, age_group: u64) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["district"].as_str() == district
                && r["age_group"] == age_group
                && r["intake_year"] == 2027
        })
        .unwrap_or_else(|| panic!("no row {district:?}, age {age_group} in {report}"))
}

fn district<'a>(report: &'a Value, name: Option<&str>) -> &'a Value {
    report["districts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["district"].as_str() == name && d["intake_year"] == 2027)
        .unwrap_or_else(|| panic!("no district {name:?} in {report}"))
}

/// The data set on top of `set_up_authority` (whose K1–K3 have no district):
/// - `Central`: K11 and K12 (through the API), one seat each for age 3 in 2027;
/// - `River`: K21 (through the CSV import, with an address), five seats for age 3;
/// - eight waiting applications for intake 2027 (age 3 unless said): four list K11 then K21,
///   one K12, one K21 then K12, one K1 then K11, and one child of age 4 lists K21.
async fn set_up_districts(app: &TestApp) {
    app.set_up_authority().await;
    for id in ["K11", "K12"] {
        let a = app
            .post(
                &officer(),
                "/institutions",
                json!({"id": id, "kind": "kindergarten", "name": format!("{id} name"), "district": "Central"}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let csv = "id,kind,name,district,address\r\nK21,kindergarten,Riverside kindergarten,River,\"1 Quay street, River\"\r\n";
    let a = upload(app, &officer(), "institutions.csv", csv, None).await;
    assert_eq!(
        (a.status, &a.body["created"]),
        (201, &json!(1)),
        "{}",
        a.body
    );
    for (institution, seats) in [("K11", 1), ("K12", 1), ("K21", 5)] {
        let a = app
            .post(
                &officer(),
                "/kindergarten/seats",
                json!({"institution": institution, "intake_year": 2027, "seats": [{"age_group": 3, "seats": seats}]}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let mut applications: Vec<Value> = Vec::new();
    for n in 1..=4 {
        applications.push(kindergarten(&format!("II-DM 00000{n}"), &["K11", "K21"]));
    }
    applications.push(kindergarten("II-DM 000005", &["K12"]));
    applications.push(kindergarten("II-DM 000006", &["K21", "K12"]));
    applications.push(kindergarten("II-DM 000007", &["K1", "K11"]));
    let mut older = kindergarten("II-DM 000008", &["K21"]);
    older["birth_date"] = json!("2023-03-10");
    applications.push(older);
    for (n, body) in applications.into_iter().enumerate() {
        let a = app
            .post(&parent(n as u32 + 1), "/kindergarten/applications", body)
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demand_report_counts_applications_against_seats_by_district() {
    each_backend(demand_report).await;
}

async fn demand_report(app: TestApp) {
    set_up_districts(&app).await;

    // Institutions list their district and address.
    let listed = app.get(None, "/institutions").await;
    let find = |id: &str| {
        listed.body["institutions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("K11")["district"], "Central");
    assert_eq!(find("K21")["district"], "River");
    assert_eq!(find("K21")["address"], "1 Quay street, River");
    assert!(find("K1").get("district").is_none_or(Value::is_null));

    let report = app.get(Some(&officer()), REPORT).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let r = &report.body;
    assert_eq!(r["authority"], AUTHORITY);
    assert_eq!(
        r["as_of_events"].as_u64().unwrap(),
        app.head_seq().await as u64
    );
    // Central: five first choices (four K11, one K12) against two free seats: short by 3;
    // seven applications list one of its kindergartens.
    assert_eq!(counts(row(r, Some("Central"), 3)), [5, 7, 2, 0, 2, 3, 0]);
    // River, age 3: one first choice, five listing it, five seats: 4 to spare.
    assert_eq!(counts(row(r, Some("River"), 3)), [1, 5, 5, 0, 5, 0, 4]);
    // River, age 4: one child and no seats for the age: short by 1, which the spare seats
    // of age 3 do not make up for.
    assert_eq!(counts(row(r, Some("River"), 4)), [1, 1, 0, 0, 0, 1, 0]);
    assert_eq!(counts(row(r, None, 3)), [1, 1, 0, 0, 0, 1, 0]);
    assert_eq!(r["rows"].as_array().unwrap().len(), 4, "{r}");
    // Order: intake year, named districts alphabetically, the unnamed one last, age group.
    let keys: Vec<(Value, Value)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["district"].clone(), x["age_group"].clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (json!("Central"), json!(3)),
            (json!("River"), json!(3)),
            (json!("River"), json!(4)),
            (Value::Null, json!(3)),
        ]
    );
    assert_eq!(counts(district(r, Some("Central"))), [5, 7, 2, 0, 2, 3, 0]);
    assert_eq!(counts(district(r, Some("River"))), [2, 6, 5, 0, 5, 1, 4]);
    // Each waiting application counts once by first choice.
    let first: u64 = r["districts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["applications_first_choice"].as_u64().unwrap())
        .sum();
    assert_eq!(first, 8);

    // Auditors read the same counts; another intake year has none.
    let audited = app.get(Some(&auditor()), REPORT).await;
    assert_eq!(audited.body["rows"], r["rows"]);
    let other = app
        .get(Some(&officer()), &format!("{REPORT}?intake_year=2028"))
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.body["intake_year"], 2028);
    assert_eq!(other.body["rows"], json!([]));

    // As CSV: the same rows.
    let (status, headers, bytes) = download(&app, &officer(), &format!("{REPORT}.csv")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/csv; charset=utf-8; header=present"
    );
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{AUTHORITY}-demand.csv\"")
    );
    let (header, rows) = parse_csv(&bytes);
    assert_eq!(
        header,
        [
            "district",
            "intake_year",
            "age_group",
            "applications_first_choice",
            "applications_any_choice",
            "seats_published",
            "seats_taken",
            "seats_free",
            "shortage",
            "surplus"
        ]
    );
    assert_eq!(rows.len(), 4);
    for (line, json_row) in rows.iter().zip(r["rows"].as_array().unwrap()) {
        assert_eq!(line[0], json_row["district"].as_str().unwrap_or(""));
        assert_eq!(line[1], "2027");
        assert_eq!(line[2], json_row["age_group"].to_string());
        let numbers: Vec<u64> = line[3..].iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(numbers, counts(json_row));
    }
    let (status, headers, _) =
        download(&app, &auditor(), &format!("{REPORT}.csv?intake_year=2027")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{AUTHORITY}-demand-2027.csv\"")
    );

    // As XLSX: the table on the sheet `demand`, what it is on `about`.
    let (status, headers, xlsx) = download(&app, &auditor(), &format!("{REPORT}.xlsx")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).unwrap();
    let mut part = |name: &str| {
        let mut text = String::new();
        zip.by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let workbook = part("xl/workbook.xml");
    assert!(workbook.contains(r#"name="demand""#), "{workbook}");
    assert!(workbook.contains(r#"name="about""#), "{workbook}");
    let strings = part("xl/sharedStrings.xml");
    for s in ["Central", "River", "applications_first_choice", "shortage"] {
        assert!(strings.contains(s), "{s} missing from {strings}");
    }
    let sheet = part("xl/worksheets/sheet1.xml");
    // Row 2 is Central, age 3: its shortage (column I) is 3.
    assert!(sheet.contains(r#"<c r="I2"><v>3</v></c>"#), "{sheet}");

    // After a round the offers hold seats: K11 and K12 offer theirs, K21 four of five; the
    // child of age 4 and the one who listed K1 first still wait.
    let round = app
        .post(
            &officer(),
            "/kindergarten/rounds",
            json!({"round": "main-2027", "intake_year": 2027}),
        )
        .await;
    assert_eq!(round.status, 201, "{}", round.body);
    let after = app.get(Some(&officer()), REPORT).await.body;
    assert_eq!(
        counts(row(&after, Some("Central"), 3)),
        [0, 1, 2, 2, 0, 0, 0]
    );
    assert_eq!(counts(row(&after, Some("River"), 3)), [0, 0, 5, 4, 1, 0, 1]);
    assert_eq!(counts(row(&after, Some("River"), 4)), [1, 1, 0, 0, 0, 1, 0]);
    assert_eq!(counts(row(&after, None, 3)), [1, 1, 0, 0, 0, 1, 0]);
    // Taken seats are the API's own count of them.
    let seats = app.get(None, "/kindergarten/seats?intake_year=2027").await;
    let taken: u64 = seats.body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["taken"].as_u64().unwrap())
        .sum();
    let taken_report: u64 = after["districts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["seats_taken"].as_u64().unwrap())
        .sum();
    assert_eq!(taken_report, taken);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_and_auditors_read_the_demand_report_others_do_not() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    for path in [REPORT, "/reports/demand.csv", "/reports/demand.xlsx"] {
        for role in [
            Role::Parent,
            Role::Officer,
            Role::Registrar,
            Role::Auditor,
            Role::Admin,
        ] {
            let who = token(role, &format!("{}-x", role.as_str()));
            let (status, ..) = download(&app, &who, path).await;
            let allowed = matches!(role, Role::Officer | Role::Auditor | Role::Admin);
            assert_eq!(
                status,
                if allowed { 200 } else { 403 },
                "{path} as {}",
                role.as_str()
            );
        }
        let anonymous = app.get(None, path).await;
        assert_eq!(anonymous.status, 401, "{path} without a token");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_districts_and_report_queries_are_refused_naming_the_field() {
    let app = spawn_app().await;
    app.set_up_authority().await;
    let head = app.head_seq().await;

    // Registering: the district and the address are checked, nothing is written.
    let long = "D".repeat(101);
    for (district, address, field) in [
        (json!(""), Value::Null, "district"),
        (json!(" Central"), Value::Null, "district"),
        (json!(long), Value::Null, "district"),
        (json!(7), Value::Null, "district"),
        (json!("Central"), json!(""), "address"),
    ] {
        let a = app
            .post(
                &officer(),
                "/institutions",
                json!({"id": "K40", "kind": "kindergarten", "name": "n", "district": district, "address": address}),
            )
            .await;
        assert_eq!((a.status, a.field()), (422, Some(field)), "{}", a.body);
    }
    // The CSV import names the row and column.
    let csv = "id,kind,name,district\r\nK41,kindergarten,Good,North\r\nK42,kindergarten,Bad, \r\nK43,kindergarten,Bad,\"two\nlines\"\r\n";
    let a = upload(&app, &officer(), "institutions.csv", csv, None).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.field(), Some("row 4, district"), "{}", a.body);
    assert_eq!(a.body["errors_total"], 1, "{}", a.body);
    assert_eq!(app.head_seq().await, head, "nothing written");
    // An empty district cell registers none; the file's district decides whether an
    // existing institution matches.
    let csv = "id,kind,name,district\r\nK44,kindergarten,No district,\r\nK1,kindergarten,K1 name,North\r\n";
    let a = upload(&app, &officer(), "institutions.csv", csv, None).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["results"][1]["status"], "exists");
    assert_eq!(a.body["results"][1]["matches"], false);
    let listed = app.get(None, "/institutions").await;
    let k44 = listed.body["institutions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "K44")
        .cloned()
        .unwrap();
    assert!(k44.get("district").is_none_or(Value::is_null), "{k44}");

    // The report's query.
    for (query, field) in [
        ("?intake_year=1999", "intake_year"),
        ("?intake_year=2201", "intake_year"),
        ("?intake_year=soon", "intake_year"),
        ("?year=2027", "year"),
    ] {
        for path in [REPORT, "/reports/demand.csv", "/reports/demand.xlsx"] {
            let a = app.get(Some(&officer()), &format!("{path}{query}")).await;
            assert_eq!(
                (a.status, a.field()),
                (422, Some(field)),
                "{path}{query}: {}",
                a.body
            );
        }
    }
    let missing = app
        .send(
            app.client
                .get(format!(
                    "{}/api/v1/authorities/nowhere/reports/demand",
                    app.base
                ))
                .bearer_auth(officer()),
        )
        .await;
    assert_eq!((missing.status, missing.field()), (404, Some("authority")));
    app.stop().await;
}
