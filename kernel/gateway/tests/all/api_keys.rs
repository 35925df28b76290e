use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, code, field, ok};

const CREATE: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id name roles scopes secretPrefix revokedAt } secret } }";
const LIST: &str = "{ apiKeys { id name roles secretPrefix lastUsedAt revokedAt createdBy } }";
const REVOKE: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }";

on_both_backends! {
    async fn a_created_key_works_is_listed_without_its_secret_and_stops_working_when_revoked(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let r = app.gql(Some(&owner), CREATE, json!({"i": {"name": "erp", "roles": ["analyst"]}})).await;
        let p = &ok(&r)["createApiKey"];
        let secret = p["secret"].as_str().unwrap().to_owned();
        let id = p["apiKey"]["id"].as_str().unwrap().to_owned();
        assert!(secret.starts_with(p["apiKey"]["secretPrefix"].as_str().unwrap()));
        let v = app.gql(Some(&secret), "{ viewer { roles } }", json!({})).await;
        assert_eq!(ok(&v)["viewer"]["roles"], json!(["analyst"]));

        let list = app.gql(Some(&owner), LIST, json!({})).await;
        let text = list.to_string();
        assert!(!text.contains(&secret), "the list must not contain secrets");
        let keys = ok(&list)["apiKeys"].as_array().unwrap().clone();
        let listed = keys.iter().find(|k| k["id"] == id).unwrap();
        assert_eq!(listed["name"], "erp");
        assert!(listed["lastUsedAt"].is_string(), "used once: {listed}");
        assert!(listed["createdBy"].as_str().unwrap().starts_with("key:"));

        let r = app.gql(Some(&owner), REVOKE, json!({"id": id})).await;
        assert!(ok(&r)["revokeApiKey"]["revokedAt"].is_string());
        let res = app.http.post(app.url("/graphql")).bearer_auth(&secret)
            .json(&json!({"query": "{ viewer { roles } }"})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(code(&body), "UNAUTHENTICATED");
        // Revoking again is harmless.
        let again = app.gql(Some(&owner), REVOKE, json!({"id": id})).await;
        assert_eq!(ok(&again)["revokeApiKey"]["revokedAt"], ok(&r)["revokeApiKey"]["revokedAt"]);
    }

    async fn bad_key_input_is_refused_naming_the_field_and_creates_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let cases = [
            (json!({"name": "", "roles": ["admin"]}), "name"),
            (json!({"name": "k", "roles": []}), "roles"),
            (json!({"name": "k", "roles": ["root"]}), "roles"),
            (json!({"name": "k", "roles": ["integration"]}), "scopes"),
            (json!({"name": "k", "roles": ["integration"], "scopes": ["everything"]}), "scopes"),
            (json!({"name": "k", "roles": ["integration"], "scopes": ["events:delete"]}), "scopes"),
        ];
        for (input, f) in cases {
            let r = app.gql(Some(&owner), CREATE, json!({"i": input})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{input}");
            assert_eq!(field(&r), f, "{input}");
        }
        let list = app.gql(Some(&owner), LIST, json!({})).await;
        assert_eq!(ok(&list)["apiKeys"].as_array().unwrap().len(), 1, "only the owner key");
    }

    async fn an_admin_can_neither_grant_nor_revoke_the_owner_role(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let admin = app.key(&owner, &["admin"], &[]).await;
        let r = app.gql(Some(&admin), CREATE, json!({"i": {"name": "x", "roles": ["owner"]}})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let list = app.gql(Some(&owner), LIST, json!({})).await;
        let owner_id = ok(&list)["apiKeys"].as_array().unwrap().iter()
            .find(|k| k["roles"] == json!(["owner"])).unwrap()["id"].clone();
        let r = app.gql(Some(&admin), REVOKE, json!({"id": owner_id})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let v = app.gql(Some(&owner), "{ viewer { roles } }", json!({})).await;
        assert_eq!(ok(&v)["viewer"]["roles"], json!(["owner"]), "the owner key still works");
        // An admin may create lesser keys.
        let r = app.gql(Some(&admin), CREATE, json!({"i": {"name": "x", "roles": ["marketer"]}})).await;
        ok(&r);
    }

    async fn revoking_an_unknown_key_is_not_found(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let r = app.gql(Some(&owner), REVOKE, json!({"id": "00000000-0000-0000-0000-000000000000"})).await;
        assert_eq!(code(&r), "NOT_FOUND");
    }

    async fn an_integration_key_is_limited_to_its_scopes(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let erp = app.key(&owner, &["integration"], &["events:read"]).await;
        let r = app.gql(Some(&erp), "{ events { edges { cursor } } }", json!({})).await;
        ok(&r);
        let r = app.gql(Some(&erp), "mutation { appendEvent(input: {type: \"order.paid\", payload: {}}) { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = app.gql(Some(&erp), "{ personByIdentifier(kind: \"phone\", value: \"13800000000\") { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let v = app.gql(Some(&erp), "{ viewer { scopes } }", json!({})).await;
        assert_eq!(ok(&v)["viewer"]["scopes"], json!(["events:read"]));
    }

    async fn a_scoped_key_cannot_create_a_less_limited_key_or_an_operator(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let limited = app.key(&owner, &["admin"], &["apikeys:write", "operators:write", "events:read"]).await;
        for scopes in [json!([]), json!(["events:write"]), json!(["persons:read"]), json!(["events:*"])] {
            let r = app.gql(Some(&limited), CREATE, json!({"i": {"name": "x", "roles": ["admin"], "scopes": scopes}})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{scopes}");
        }
        let r = app.gql(Some(&limited), CREATE, json!({"i": {"name": "x", "roles": ["analyst"], "scopes": ["events:read"]}})).await;
        let secret = ok(&r)["createApiKey"]["secret"].as_str().unwrap().to_owned();
        let r = app.gql(Some(&secret), "{ personByIdentifier(kind: \"phone\", value: \"13800000000\") { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = app.gql(Some(&limited), "mutation { createOperator(input: {email: \"a@b.example\", password: \"a long password\", roles: [\"admin\"]}) { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let list = app.gql(Some(&owner), "{ operators { id } }", json!({})).await;
        assert_eq!(ok(&list)["operators"], json!([]));
    }
}
