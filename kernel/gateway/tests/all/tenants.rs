use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{ADMIN_TOKEN, TestApp, code, field, ok};

const CREATE: &str = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id slug name } adminKey } }";
const VIEWER: &str = "{ viewer { tenant { id slug name } roles scopes kind principal } }";

on_both_backends! {
    async fn a_platform_admin_creates_a_tenant_whose_admin_key_acts_in_it(kind) {
        let app = TestApp::start(kind).await;
        let r = app.gql(Some(ADMIN_TOKEN), CREATE, json!({"i": {"slug": "acme-beer", "name": "Acme Beer"}})).await;
        let p = &ok(&r)["createTenant"];
        assert_eq!(p["tenant"]["slug"], "acme-beer");
        assert_eq!(p["tenant"]["name"], "Acme Beer");
        let key = p["adminKey"].as_str().unwrap();
        assert!(key.starts_with("keel_ak_"));
        let v = app.gql(Some(key), VIEWER, json!({})).await;
        let v = &ok(&v)["viewer"];
        assert_eq!(v["tenant"]["id"], p["tenant"]["id"]);
        assert_eq!(v["roles"], json!(["owner"]));
        assert_eq!(v["kind"], "API_KEY");
    }

    async fn a_duplicate_slug_is_a_conflict_and_creates_nothing(kind) {
        let app = TestApp::start(kind).await;
        app.tenant("acme").await;
        let r = app.gql(Some(ADMIN_TOKEN), CREATE, json!({"i": {"slug": "acme", "name": "Other"}})).await;
        assert_eq!(code(&r), "CONFLICT");
        let list = app.gql(Some(ADMIN_TOKEN), "{ tenants { slug name } }", json!({})).await;
        assert_eq!(ok(&list)["tenants"], json!([{"slug": "acme", "name": "Brand acme"}]));
    }

    async fn a_malformed_slug_or_name_is_bad_input_naming_the_field(kind) {
        let app = TestApp::start(kind).await;
        for (slug, name, f) in [
            ("Acme", "x", "slug"),
            ("a", "x", "slug"),
            ("-acme", "x", "slug"),
            ("acme_beer", "x", "slug"),
            ("acme", "  ", "name"),
        ] {
            let r = app.gql(Some(ADMIN_TOKEN), CREATE, json!({"i": {"slug": slug, "name": name}})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{slug}");
            assert_eq!(field(&r), f, "{slug}");
        }
        let list = app.gql(Some(ADMIN_TOKEN), "{ tenants { slug } }", json!({})).await;
        assert_eq!(ok(&list)["tenants"], json!([]));
    }

    async fn only_a_platform_admin_creates_or_lists_tenants(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let r = app.gql(Some(&owner), CREATE, json!({"i": {"slug": "evil", "name": "x"}})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = app.gql(None, CREATE, json!({"i": {"slug": "evil", "name": "x"}})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
        let r = app.gql(Some(&owner), "{ tenants { slug } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
    }

    async fn a_platform_admin_is_not_silently_a_member_of_any_tenant(kind) {
        let app = TestApp::start(kind).await;
        app.tenant("acme").await;
        let v = app.gql(Some(ADMIN_TOKEN), VIEWER, json!({})).await;
        let v = &ok(&v)["viewer"];
        assert_eq!(v["tenant"], json!(null));
        assert_eq!(v["kind"], "PLATFORM_KEY");
        for q in ["{ apiKeys { id } }", "{ operators { id } }", "{ events { edges { cursor } } }", "{ counter(key: \"k\") { value } }"] {
            let r = app.gql(Some(ADMIN_TOKEN), q, json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{q}");
        }
    }
}
