//! The OpenAPI document and the Swagger UI, and the officers' files: CSV imports of
//! institutions and seats, CSV and XLSX exports of queues and round results.

use ochered_api::http::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{
    download, each_backend, kindergarten, parse_csv, spawn_app, token, upload, TestApp, AUTHORITY,
};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn officer() -> String {
    token(Role::Officer, "officer-1")
}

fn auditor() -> String {
    token(Role::Auditor, "auditor-1")
}

fn parent(n: u32) -> String {
    token(Role::Parent, &format!("parent-{n}"))
}

/// A concrete path for a documented template: every parameter filled in (`{queue}.csv` →
/// `1.csv`).
fn concrete(template: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}').unwrap();
        path.push_str(&rest[..start]);
        path.push('1');
        rest = &rest[end + 1..];
    }
    path + rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "version {version}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // The document is the router's own: each handler is registered together with its
    // description (api/src/services), so no route goes undescribed. What is described must
    // also be served: a request to every documented operation reaches a handler (here, without
    // a token or a body, it is refused), never the router's fallback nor a 405.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", app.base, concrete(path));
            let method_name =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app.client.request(method_name, &url).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let at = format!("{} {path}", method.to_uppercase());
            assert_ne!(status, 405, "{at}: described but no such method is routed");
            assert!(
                !(status == 404 && body["detail"] == "no such resource"),
                "{at}: described but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 54, "only {operations} operations described");
    let files = "/api/v1/authorities/{authority}/files";

    // What every operation shares.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let param = |name: &str, location: &str| {
                params
                    .iter()
                    .find(|p| p["name"] == name && p["in"] == location)
                    .cloned()
            };
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{') {
                    let name = &name[..name.find('}').unwrap()];
                    assert!(
                        param(name, "path").is_some(),
                        "{at}: no path parameter {name}"
                    );
                }
            }
            let protected = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if method == "post" {
                assert!(
                    param("Idempotency-Key", "header").is_some(),
                    "{at}: no Idempotency-Key"
                );
            }
            if !path.starts_with("/api/v1/") {
                continue;
            }
            let mut problems = vec!["503"];
            if path.contains('{') {
                problems.push("404");
            }
            if protected {
                problems.extend(["401", "403"]);
                let description = op["description"].as_str().unwrap_or("");
                assert!(description.contains("**Roles:**"), "{at}: roles not noted");
            }
            if method == "post" {
                problems.extend(["409", "422"]);
            }
            if !op["requestBody"].is_null() {
                problems.extend(["400", "413", "415"]);
            }
            for status in problems {
                let schema =
                    &op["responses"][status]["content"]["application/problem+json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/Problem",
                    "{at}: no problem+json {status}"
                );
            }
        }
    }

    // Request bodies of a few writes, named and typed.
    let body = |path: &str, media: &str| {
        doc["paths"][path]["post"]["requestBody"]["content"][media]["schema"].clone()
    };
    let a = "/api/v1/authorities/{authority}";
    assert_eq!(
        body(
            &format!("{a}/kindergarten/applications"),
            "application/json"
        )["$ref"],
        "#/components/schemas/KindergartenApplicationRequest"
    );
    assert_eq!(
        body(&format!("{a}/kindergarten/seats"), "application/json")["$ref"],
        "#/components/schemas/SeatsRequest"
    );
    assert_eq!(
        body("/api/v1/authorities", "application/json")["$ref"],
        "#/components/schemas/AuthorityConfig"
    );
    assert!(!body(&format!("{files}/institutions.csv"), "text/csv").is_null());
    let required = doc["components"]["schemas"]["KindergartenApplicationRequest"]["required"]
        .as_array()
        .unwrap()
        .clone();
    for field in ["document", "birth_date", "preferences", "desired_start"] {
        assert!(required.contains(&json!(field)), "{field} not required");
    }
    // The schema check below rejects what does not match.
    let head = json!({"$ref": "#/components/schemas/AuditHead"});
    let good = json!({"authority": "x", "authority_seq": 1, "head_hash": "h", "events": 1});
    assert!(is_valid(&doc, &head, &good));
    for bad in [
        json!({"authority": "x"}),
        json!({"authority": "x", "authority_seq": "1", "head_hash": "h", "events": 1}),
        json!({"authority": "x", "authority_seq": 1, "head_hash": "h", "events": 1, "extra": 1}),
    ] {
        assert!(!is_valid(&doc, &head, &bad), "{bad}");
    }
    let privilege = json!({"$ref": "#/components/schemas/Privilege"});
    assert!(is_valid(
        &doc,
        &privilege,
        &json!({"kind": "extraordinary"})
    ));
    assert!(!is_valid(&doc, &privilege, &json!({"kind": "royal"})));
    // The sample bodies the tests send validate against their schemas.
    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    for (name, sample) in [
        (
            "KindergartenApplicationRequest",
            kindergarten("II-AB 000001", &["K1"]),
        ),
        (
            "AuthorityConfig",
            json!({"id": "city", "name": "Test city", "time_zone": "Asia/Novosibirsk"}),
        ),
        (
            "CampaignConfig",
            json!({
                "id": "school-2027", "year": 2027, "stage1_opens": "2027-01-10",
                "stage2_opens": "2027-02-10", "closes": "2027-09-05",
                "tie_break": {"kind": "lottery", "seed": 7},
                "mode": {"kind": "ranked", "max_choices": 3},
                "schools": [{"institution": "S1", "seats": 2}]
            }),
        ),
        (
            "SeatsRequest",
            json!({"institution": "K1", "intake_year": 2027, "seats": [{"age_group": 3, "seats": 2}]}),
        ),
        (
            "PrivilegeRequest",
            json!({"privilege": {"kind": "sibling", "institution": "K1"}}),
        ),
    ] {
        assert_valid(&doc, &schema(name), &sample, name);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_served_from_local_assets() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/docs/");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in html.split(attribute).skip(1) {
            let url = &part[..part.find('"').unwrap()];
            assert!(
                !url.contains("//"),
                "/docs refers to an outside asset: {url}"
            );
            assets.push(url.trim_start_matches("./").to_owned());
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in &assets {
        let response = app
            .client
            .get(format!("{}/docs/{asset}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/docs/{asset}");
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "/docs/{asset} is empty");
    }
    // The initializer points at our document and at no validator elsewhere.
    let init = app.text("/docs/swagger-initializer.js").await;
    assert!(init.contains("/api/openapi.json"), "{init}");
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );
    assert!(
        init.replace(' ', "").contains("\"validatorUrl\":\"none\""),
        "{init}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn institutions_and_seats_import_from_csv() {
    each_backend(import_files).await;
}

async fn import_files(app: TestApp) {
    app.set_up_authority().await;
    let doc = app.openapi().await;
    let files = "/api/v1/authorities/{authority}/files";

    // A bad file: every bad row named, nothing written.
    let head = app.head_seq().await;
    let bad = "id,kind,name\r\nK20,kindergarten,Good\r\nK21,kindergarden,Bad kind\r\nbad id!,school,X\r\nK20,school,Twice\r\n";
    let answer = upload(&app, &officer(), "institutions.csv", bad, None).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.field(), Some("row 3, kind"), "{}", answer.body);
    let errors: Vec<(u64, String)> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![(3, "kind".into()), (4, "id".into()), (5, "id".into())]
    );
    assert_eq!(answer.body["errors_total"], 3);
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/Problem"}),
        &answer.body,
        "problem",
    );
    assert_eq!(app.head_seq().await, head, "a bad file wrote something");
    let institutions = app.get(None, "/institutions").await.body.to_string();
    assert!(!institutions.contains("K20"));

    // A missing column, a rule's refusal (name too long), wrong roles and media types.
    let answer = upload(
        &app,
        &officer(),
        "institutions.csv",
        "id,name\nK30,x\n",
        None,
    )
    .await;
    assert_eq!((answer.status, answer.field()), (422, Some("row 1, kind")));
    let long = format!("id,kind,name\nK30,school,{}\n", "x".repeat(501));
    let answer = upload(&app, &officer(), "institutions.csv", &long, None).await;
    assert_eq!(
        (answer.status, answer.field()),
        (422, Some("row 2, name")),
        "{}",
        answer.body
    );
    for who in [parent(1), auditor(), token(Role::Registrar, "r")] {
        // Refused before the body is read, even a bad one.
        let answer = upload(&app, &who, "institutions.csv", bad, None).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        let answer = upload(&app, &who, "seats.csv", "nonsense", None).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    let anonymous = app
        .send(
            app.client
                .post(app.url("/files/institutions.csv"))
                .header("content-type", "text/csv")
                .body(bad),
        )
        .await;
    assert_eq!(anonymous.status, 401);
    let json_body = app
        .post(&officer(), "/files/institutions.csv", json!({"id": "K1"}))
        .await;
    assert_eq!(
        (json_body.status, json_body.field()),
        (415, Some("Content-Type"))
    );
    let answer = app
        .send(
            app.client
                .post(app.url("/files/institutions.csv"))
                .bearer_auth(officer())
                .header("content-type", "text/csv")
                .body(vec![b'i', b'd', 0xff, b'\n']),
        )
        .await;
    assert_eq!((answer.status, answer.field()), (422, Some("body")));
    assert_eq!(app.head_seq().await, head);

    // A good file (from Excel: BOM, semicolons, quotes); one row exists already.
    let good = "\u{feff}ID;Kind;Name\r\nK10;kindergarten;\"Детский сад №10; \"\"Солнышко\"\"\"\r\nS10;School;Школа №10\r\nK1;kindergarten;K1 name\r\nS1;school;Another name\r\n";
    let answer = upload(&app, &officer(), "institutions.csv", good, Some("import-1")).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        (
            &answer.body["rows"],
            &answer.body["created"],
            &answer.body["existing"],
            &answer.body["refused"]
        ),
        (&json!(4), &json!(2), &json!(2), &json!(0)),
        "{}",
        answer.body
    );
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results[0]["row"], 2);
    assert_eq!(results[0]["status"], "created");
    assert_eq!(
        (&results[2]["status"], &results[2]["matches"]),
        (&json!("exists"), &json!(true))
    );
    assert_eq!(
        (&results[3]["status"], &results[3]["matches"]),
        (&json!("exists"), &json!(false))
    );
    let response_schema = |path: &str, status: &str| {
        doc["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]
            .clone()
    };
    assert_valid(
        &doc,
        &response_schema(&format!("{files}/institutions.csv"), "201"),
        &answer.body,
        "institutions import",
    );
    let listed = app.get(None, "/institutions").await.body;
    let k10 = listed["institutions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "K10")
        .unwrap();
    assert_eq!(k10["name"], "Детский сад №10; \"Солнышко\"");
    assert_eq!(k10["kind"], "kindergarten");
    // A retry with the same key gets the first answer.
    let head = app.head_seq().await;
    let again = upload(&app, &officer(), "institutions.csv", good, Some("import-1")).await;
    assert_eq!((again.status, &again.body), (201, &answer.body));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(app.head_seq().await, head);
    // Without a key the same file only reports what exists.
    let plain = upload(&app, &officer(), "institutions.csv", good, None).await;
    assert_eq!((plain.status, &plain.body["existing"]), (200, &json!(4)));

    // Seats: rows grouped per institution and intake year.
    let bad_seats = "institution,intake_year,age_group,seats\nK1,2027,3,2\nK1,2027,3,4\nS1,2027,3,1\nK2,1999,3,1\nK2,2027,3,many\nK99,2027,3,1\n";
    let answer = upload(&app, &officer(), "seats.csv", bad_seats, None).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    let errors: Vec<String> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("row {}, {}", e["row"], e["column"].as_str().unwrap()))
        .collect();
    // Rows 3, 5 and 6 are bad on their own; the rules refuse rows 4 (a school) and 7 (no
    // such kindergarten): all reported at once.
    assert_eq!(
        errors,
        [
            "row 3, age_group",
            "row 4, institution",
            "row 5, intake_year",
            "row 6, seats",
            "row 7, institution"
        ]
    );
    assert_eq!(app.head_seq().await, head);
    let answer = upload(
        &app,
        &officer(),
        "seats.csv",
        "institution,intake_year,age_group,seats\nK1,2027,3,2\nS1,2027,3,1\nK99,2027,3,1\n",
        None,
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(
        answer.field(),
        Some("row 3, institution"),
        "{}",
        answer.body
    );
    assert_eq!(answer.body["errors_total"], 2, "{}", answer.body);
    assert_eq!(app.head_seq().await, head);

    let seats =
        "institution,intake_year,age_group,seats\r\nK1,2027,3,2\r\nK2,2027,3,1\r\nK1,2027,4,5\r\n";
    let answer = upload(&app, &officer(), "seats.csv", seats, None).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        (&answer.body["groups"], &answer.body["published"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(answer.body["results"][0]["rows"], json!([2, 4]));
    assert_eq!(
        answer.body["results"][0]["seats"],
        json!([{"age_group": 3, "seats": 2}, {"age_group": 4, "seats": 5}])
    );
    assert_valid(
        &doc,
        &response_schema(&format!("{files}/seats.csv"), "201"),
        &answer.body,
        "seats import",
    );
    assert_eq!(app.head_seq().await, head + 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_rounds_export_as_csv_and_xlsx() {
    each_backend(export_files).await;
}

async fn export_files(app: TestApp) {
    app.set_up_authority().await;
    let doc = app.openapi().await;
    let mut numbers = Vec::new();
    for n in 1..=3u32 {
        let a = app
            .post(
                &parent(n),
                "/kindergarten/applications",
                kindergarten(&format!("II-AB 00020{n}"), &["K1", "K2"]),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert_valid(
            &doc,
            &json!({"$ref": "#/components/schemas/SubmittedResponse"}),
            &a.body,
            "submitted",
        );
        numbers.push(a.body["application"]["number"].as_u64().unwrap());
    }
    let queue = "kindergarten.K1.3.2027";
    let entries = app.get(None, &format!("/queues/{queue}")).await;
    assert_eq!(entries.status, 200, "{}", entries.body);
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/QueueEntries"}),
        &entries.body,
        "queue",
    );

    // The queue as CSV: the same rows as the JSON, in order.
    let (status, headers, bytes) =
        download(&app, &officer(), &format!("/files/queues/{queue}.csv")).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/csv; charset=utf-8; header=present"
    );
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{AUTHORITY}-queue-{queue}.csv\"")
    );
    let (header, rows) = parse_csv(&bytes);
    // Times in the authority's zone, named in the header; officers also get the contacts
    // (none given here).
    assert_eq!(
        header,
        [
            "position",
            "application",
            "tier",
            "registered_at (Asia/Novosibirsk)",
            "child_name",
            "guardian_name",
            "phone",
            "email"
        ]
    );
    assert_eq!(rows.len(), 3);
    for (row, entry) in rows.iter().zip(entries.body["entries"].as_array().unwrap()) {
        assert_eq!(row[0], entry["position"].to_string());
        assert_eq!(row[1], entry["application"].to_string());
        assert_eq!(row[2], entry["tier"].to_string());
        assert!(row[3].ends_with("+07:00"), "{row:?}");
        assert!(row[4..].iter().all(String::is_empty), "{row:?}");
        let at = chrono::DateTime::parse_from_rfc3339(&row[3]).unwrap();
        let json_at =
            chrono::DateTime::parse_from_rfc3339(entry["registered_at"].as_str().unwrap()).unwrap();
        assert_eq!(at, json_at);
    }
    let order: Vec<u64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(order, numbers);

    // As XLSX: a zip holding the workbook's sheets.
    let (status, headers, xlsx) =
        download(&app, &auditor(), &format!("/files/queues/{queue}.xlsx")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], XLSX);
    assert!(headers["content-disposition"].ends_with(".xlsx\""));
    assert_eq!(&xlsx[..4], b"PK\x03\x04", "not a zip");
    assert!(xlsx.len() > 2000, "{} bytes", xlsx.len());
    let names = String::from_utf8_lossy(&xlsx);
    for part in [
        "xl/workbook.xml",
        "xl/worksheets/sheet1.xml",
        "xl/worksheets/sheet2.xml",
        "xl/sharedStrings.xml",
    ] {
        assert!(names.contains(part), "{part} missing from the workbook");
    }

    // Who may, and what is not there.
    for who in [parent(1), token(Role::Registrar, "r")] {
        let (status, ..) = download(&app, &who, &format!("/files/queues/{queue}.csv")).await;
        assert_eq!(status, 403);
    }
    let missing = app
        .get(Some(&officer()), "/files/queues/kindergarten.K9.3.2027.csv")
        .await;
    assert_eq!((missing.status, missing.field()), (404, Some("queue")));
    let pdf = app
        .get(Some(&officer()), &format!("/files/queues/{queue}.pdf"))
        .await;
    assert_eq!(pdf.status, 404);
    let anonymous = app.get(None, &format!("/files/queues/{queue}.csv")).await;
    assert_eq!(anonymous.status, 401);

    // A round, then its results.
    let seats = "institution,intake_year,age_group,seats\nK1,2027,3,2\nK2,2027,3,1\n";
    assert_eq!(
        upload(&app, &officer(), "seats.csv", seats, None)
            .await
            .status,
        201
    );
    let round = app
        .post(
            &officer(),
            "/kindergarten/rounds",
            json!({"round": "main-2027", "intake_year": 2027}),
        )
        .await;
    assert_eq!(round.status, 201, "{}", round.body);
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/RoundResponse"}),
        &round.body,
        "round",
    );
    let results = app.get(Some(&officer()), "/rounds/main-2027").await;
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/RoundView"}),
        &results.body,
        "round view",
    );
    let placements = results.body["placements"].as_array().unwrap().clone();
    assert_eq!(placements.len(), 3);

    let (status, headers, bytes) = download(&app, &officer(), "/files/rounds/main-2027.csv").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{AUTHORITY}-round-main-2027.csv\"")
    );
    let (header, rows) = parse_csv(&bytes);
    assert_eq!(
        header,
        [
            "application",
            "institution",
            "institution_name",
            "age_group",
            "seat_group",
            "status",
            "deadline (Asia/Novosibirsk)",
            "answered_at (Asia/Novosibirsk)",
            "child_name",
            "guardian_name",
            "phone",
            "email"
        ]
    );
    assert_eq!(rows.len(), placements.len());
    for (row, placement) in rows.iter().zip(&placements) {
        assert_eq!(row[0], placement["application"].to_string());
        assert_eq!(row[4], placement["seats"].as_str().unwrap());
        assert_eq!(row[1], row[4].split('/').next().unwrap());
        assert_eq!(row[2], format!("{} name", row[1]));
        assert_eq!(row[3], "3");
        assert_eq!(row[5], "offered");
        assert!(row[6].ends_with("+07:00"), "{row:?}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(&row[6]).is_ok(),
            "{row:?}"
        );
        assert_eq!(row[7], "");
    }
    // Auditors: anonymised, as GET /rounds/{round}.
    let (status, _, bytes) = download(&app, &auditor(), "/files/rounds/main-2027.csv").await;
    assert_eq!(status, 200);
    let (header, rows) = parse_csv(&bytes);
    assert_eq!(
        header,
        [
            "application",
            "institution",
            "institution_name",
            "age_group",
            "seat_group"
        ]
    );
    assert_eq!(rows.len(), 3);
    let auditor_view = app.get(Some(&auditor()), "/rounds/main-2027").await;
    assert!(auditor_view.body["placements"][0].get("status").is_none());
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/RoundView"}),
        &auditor_view.body,
        "auditor round view",
    );
    let (status, headers, xlsx) = download(&app, &officer(), "/files/rounds/main-2027.xlsx").await;
    assert_eq!((status, headers["content-type"].as_str()), (200, XLSX));
    assert_eq!(&xlsx[..4], b"PK\x03\x04");
    let (status, ..) = download(&app, &parent(1), "/files/rounds/main-2027.csv").await;
    assert_eq!(status, 403);
    let missing = app.get(Some(&officer()), "/files/rounds/nope.csv").await;
    assert_eq!((missing.status, missing.field()), (404, Some("round")));

    // Other documented answers, against their schemas.
    let mine = app.get(Some(&parent(1)), "/applications").await;
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/ApplicationsList"}),
        &mine.body,
        "mine",
    );
    for (path, name) in [
        ("", "AuthorityInfo"),
        ("/institutions", "InstitutionsList"),
        ("/campaigns", "CampaignsList"),
        ("/slots", "FreeSlots"),
        ("/queues", "QueuesList"),
        ("/audit/head", "AuditHead"),
    ] {
        let answer = app.get(None, path).await;
        assert_valid(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
            &answer.body,
            name,
        );
    }
    let rounds = app.get(Some(&auditor()), "/rounds").await;
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/RoundsList"}),
        &rounds.body,
        "rounds",
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A small JSON Schema check, enough for the schemas utoipa writes: $ref, allOf, oneOf,
// anyOf, type (or a list of types), enum, properties, required, additionalProperties, items.

fn assert_valid(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut errors = Vec::new();
    check(doc, schema, value, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:#?}\n{value:#}"
    );
}

fn is_valid(doc: &Value, schema: &Value, value: &Value) -> bool {
    let mut errors = Vec::new();
    check(doc, schema, value, "$", &mut errors);
    errors.is_empty()
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "no schema {name}");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Properties of an object schema, through allOf.
fn properties(
    doc: &Value,
    schema: &Value,
    out: &mut serde_json::Map<String, Value>,
    required: &mut Vec<String>,
    open: &mut bool,
) {
    let schema = resolve(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            properties(doc, s, out, required, open);
        }
    }
    if let Some(p) = schema["properties"].as_object() {
        out.extend(p.clone());
    }
    if let Some(r) = schema["required"].as_array() {
        required.extend(r.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    let extra = &schema["additionalProperties"];
    if !extra.is_null() && *extra != json!(false) {
        *open = true;
    }
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if schema.as_object().is_none_or(|o| o.is_empty()) {
        return; // any value
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let ok = options.iter().any(|o| {
                let mut e = Vec::new();
                check(doc, o, value, at, &mut e);
                e.is_empty()
            });
            if !ok {
                errors.push(format!("{at}: matches none of {key}"));
            }
            return;
        }
    }
    if let Some(choices) = schema["enum"].as_array() {
        if !choices.contains(value) {
            errors.push(format!("{at}: {value} not in {choices:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => vec![],
    };
    let is_object = types.contains(&"object")
        || (types.is_empty()
            && (schema.get("properties").is_some() || schema.get("allOf").is_some()));
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        });
        if !fits {
            errors.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if value.is_null() {
        return;
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
    if is_object {
        let Some(object) = value.as_object() else {
            errors.push(format!("{at}: {value} is not an object"));
            return;
        };
        let mut props = serde_json::Map::new();
        let mut required = Vec::new();
        let mut open = false;
        properties(doc, schema, &mut props, &mut required, &mut open);
        // An object schema that names no properties allows any.
        open |= props.is_empty();
        for name in &required {
            if !object.contains_key(name) {
                errors.push(format!("{at}: missing {name}"));
            }
        }
        for (key, v) in object {
            match props.get(key) {
                Some(p) => check(doc, p, v, &format!("{at}.{key}"), errors),
                None if open => {}
                None => errors.push(format!("{at}: undocumented property {key}")),
            }
        }
    }
}
