//! `POST /packages`: installing a plugin package over HTTP, for a platform
//! administrator only, with every install check, and nothing stored when
//! a package is refused.

use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::plugins::probe_wasm;
use crate::support::{ADMIN_TOKEN, TestApp, ok};

fn manifest(name: &str, description: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\npublisher = \"Keel tests\"\n\
         description = \"{description}\"\nwit = \"0.2.0\"\n\
         [capabilities]\ncapabilities = [\"records\"]\n"
    )
}

fn package(manifest: &str, component: Vec<u8>) -> Form {
    Form::new()
        .text("manifest", manifest.to_owned())
        .part("component", Part::bytes(component).file_name("plugin.wasm"))
}

/// The answer's status and body, and whether it closes the connection.
async fn upload(app: &TestApp, token: Option<&str>, form: Form) -> (StatusCode, Value, bool) {
    let mut req = app.http.post(app.url("/packages")).multipart(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let closes = res
        .headers()
        .get(reqwest::header::CONNECTION)
        .is_some_and(|v| v == "close");
    (status, res.json().await.unwrap_or(Value::Null), closes)
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

fn error_message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or("")
}

async fn packages(app: &TestApp, key: &str) -> Vec<String> {
    let r = app
        .gql(Some(key), "{ pluginPackages { name version } }", json!({}))
        .await;
    ok(&r)["pluginPackages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect()
}

on_both_backends! {
    async fn only_a_platform_administrator_installs_a_package_and_a_tenant_enables_it(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let text = manifest("uploaded", "first");

        // Refused before the body is read: the connection is closed after
        // the answer, so the client's next request never lands on it.
        let (status, body, closes) = upload(&app, None, package(&text, probe_wasm())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(closes);
        let (status, body, closes) = upload(&app, Some(&owner), package(&text, probe_wasm())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(closes);
        assert!(error_message(&body).contains("platform administrator"), "{body}");
        assert!(!packages(&app, &owner).await.contains(&"uploaded 0.1.0".to_owned()));

        let (status, body, _) = upload(&app, Some(ADMIN_TOKEN), package(&text, probe_wasm())).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["name"], "uploaded");
        assert_eq!(body["installed"], true);
        // The same package again changes nothing.
        let (status, again, _) = upload(&app, Some(ADMIN_TOKEN), package(&text, probe_wasm())).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["installed"], false);
        assert_eq!(again["hash"], body["hash"]);
        // Other content under the same version is a conflict.
        let other = manifest("uploaded", "second");
        let (status, body, _) = upload(&app, Some(ADMIN_TOKEN), package(&other, probe_wasm())).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        assert!(packages(&app, &owner).await.contains(&"uploaded 0.1.0".to_owned()));
        let r = app.gql(Some(&owner),
            "mutation { enablePlugin(input: {name: \"uploaded\", capabilities: [\"records\"]}) { name version enabled } }",
            json!({})).await;
        assert_eq!(ok(&r)["enablePlugin"]["enabled"], true, "{r}");
    }

    async fn a_malformed_package_is_refused_with_its_reason_and_installs_nothing(kind) {
        let config = keel_gateway::GatewayConfig {
            max_package_bytes: 64 << 10,
            ..Default::default()
        };
        let app = TestApp::start_with(kind, config).await;
        let (_, owner) = app.tenant("acme").await;
        let text = manifest("broken", "d");
        let cases: Vec<(Form, StatusCode, &str)> = vec![
            (Form::new().text("manifest", text.clone()), StatusCode::BAD_REQUEST, "component: missing"),
            (Form::new().part("component", Part::bytes(vec![0u8; 10])), StatusCode::BAD_REQUEST, "manifest: missing"),
            (package(&text, vec![1]).text("icon", "x"), StatusCode::BAD_REQUEST, "unknown part"),
            (package(&text, vec![1]).text("manifest", text.clone()), StatusCode::BAD_REQUEST, "given twice"),
            (package("name = ", vec![1]), StatusCode::BAD_REQUEST, "TOML"),
            // A NUL byte, written as TOML's escape: the TOML parses, the name does not pass.
            (package(&manifest("bad\\u0000name", "d"), vec![1]), StatusCode::BAD_REQUEST, "name"),
            (package(&text, b"not a component".to_vec()), StatusCode::BAD_REQUEST, ""),
            (package(&text, vec![0u8; 100 << 10]), StatusCode::PAYLOAD_TOO_LARGE, "limit"),
        ];
        for (i, (form, status, needle)) in cases.into_iter().enumerate() {
            let (got, body, _) = upload(&app, Some(ADMIN_TOKEN), form).await;
            assert_eq!(got, status, "case {i}: {body}");
            assert!(error_message(&body).contains(needle), "case {i}: {body}");
            assert!(!error_code(&body).is_empty(), "case {i}: {body}");
        }
        // Not multipart at all.
        let res = app.http.post(app.url("/packages")).bearer_auth(ADMIN_TOKEN)
            .json(&json!({"manifest": text})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let listed = packages(&app, &owner).await;
        assert!(listed.iter().all(|p| !p.starts_with("broken")), "{listed:?}");
    }
}
