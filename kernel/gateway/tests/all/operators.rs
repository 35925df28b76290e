use keel_core::Backend;
use keel_gateway::GatewayConfig;
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{TestApp, code, field, ok};

const CREATE: &str =
    "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id email roles active } }";
const LOGIN: &str =
    "mutation($i: LoginInput!) { login(input: $i) { token expiresAt operator { id email } } }";
const PASSWORD: &str = "correct horse battery";

async fn operator(app: &TestApp, owner: &str, email: &str, roles: &[&str]) -> String {
    let r = app
        .gql(
            Some(owner),
            CREATE,
            json!({"i": {"email": email, "password": PASSWORD, "roles": roles}}),
        )
        .await;
    ok(&r)["createOperator"]["id"].as_str().unwrap().to_owned()
}

async fn login(app: &TestApp, tenant: &str, email: &str, password: &str) -> Value {
    app.gql(
        None,
        LOGIN,
        json!({"i": {"tenant": tenant, "email": email, "password": password}}),
    )
    .await
}

fn token(r: &Value) -> String {
    ok(r)["login"]["token"].as_str().unwrap().to_owned()
}

on_both_backends! {
    async fn an_operator_logs_in_and_acts_with_their_roles(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let id = operator(&app, &owner, "Ann@Acme.example", &["analyst"]).await;
        let r = login(&app, "acme", "ann@acme.example", PASSWORD).await;
        let t = token(&r);
        assert!(t.starts_with("keel_os_"));
        assert_eq!(ok(&r)["login"]["operator"]["email"], "ann@acme.example");
        let v = app.gql(Some(&t), "{ viewer { roles kind principal tenant { slug } } }", json!({})).await;
        let v = &ok(&v)["viewer"];
        assert_eq!(v["kind"], "OPERATOR");
        assert_eq!(v["roles"], json!(["analyst"]));
        assert_eq!(v["principal"], format!("operator:{id}"));
        assert_eq!(v["tenant"]["slug"], "acme");
        // An analyst reads but does not write.
        let r = app.gql(Some(&t), "mutation { appendEvent(input: {type: \"a.b\", payload: {}}) { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        // Logging out ends the session.
        let r = app.gql(Some(&t), "mutation { logout }", json!({})).await;
        assert_eq!(ok(&r)["logout"], true);
        let r = app.gql(Some(&t), "{ viewer { roles } }", json!({})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
    }

    async fn every_failed_login_looks_the_same(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        operator(&app, &owner, "ann@acme.example", &["admin"]).await;
        let wrong_password = login(&app, "acme", "ann@acme.example", "not the password").await;
        let unknown_email = login(&app, "acme", "bob@acme.example", PASSWORD).await;
        let unknown_tenant = login(&app, "nope", "ann@acme.example", PASSWORD).await;
        for r in [&wrong_password, &unknown_email, &unknown_tenant] {
            assert_eq!(code(r), "UNAUTHENTICATED");
            assert_eq!(r["errors"][0]["message"], wrong_password["errors"][0]["message"]);
        }
    }

    async fn bad_operator_input_is_refused_naming_the_field(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        for (input, f) in [
            (json!({"email": "not-an-email", "password": PASSWORD, "roles": ["admin"]}), "email"),
            (json!({"email": "a@b.example", "password": "short", "roles": ["admin"]}), "password"),
            (json!({"email": "a@b.example", "password": PASSWORD, "roles": ["boss"]}), "roles"),
        ] {
            let r = app.gql(Some(&owner), CREATE, json!({"i": input})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{input}");
            assert_eq!(field(&r), f);
        }
        operator(&app, &owner, "a@b.example", &["admin"]).await;
        let r = app.gql(Some(&owner), CREATE, json!({"i": {"email": "A@B.example", "password": PASSWORD, "roles": ["admin"]}})).await;
        assert_eq!(code(&r), "CONFLICT");
        let list = app.gql(Some(&owner), "{ operators { email } }", json!({})).await;
        assert_eq!(ok(&list)["operators"], json!([{"email": "a@b.example"}]));
    }

    async fn changing_a_password_checks_the_old_one_and_ends_other_sessions(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        operator(&app, &owner, "ann@acme.example", &["marketer"]).await;
        let s1 = token(&login(&app, "acme", "ann@acme.example", PASSWORD).await);
        let s2 = token(&login(&app, "acme", "ann@acme.example", PASSWORD).await);
        let change = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) }";
        let r = app.gql(Some(&s1), change, json!({"i": {"currentPassword": "wrong wrong wrong", "newPassword": "a brand new password"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert_eq!(field(&r), "currentPassword");
        let r = app.gql(Some(&s1), change, json!({"i": {"currentPassword": PASSWORD, "newPassword": "short"}})).await;
        assert_eq!(field(&r), "newPassword");
        let r = app.gql(Some(&s1), change, json!({"i": {"currentPassword": PASSWORD, "newPassword": "a brand new password"}})).await;
        assert_eq!(ok(&r)["changePassword"], true);
        ok(&app.gql(Some(&s1), "{ viewer { roles } }", json!({})).await);
        assert_eq!(code(&app.gql(Some(&s2), "{ viewer { roles } }", json!({})).await), "UNAUTHENTICATED");
        assert_eq!(code(&login(&app, "acme", "ann@acme.example", PASSWORD).await), "UNAUTHENTICATED");
        token(&login(&app, "acme", "ann@acme.example", "a brand new password").await);
        // An API key has no password to change.
        let r = app.gql(Some(&owner), change, json!({"i": {"currentPassword": PASSWORD, "newPassword": "a brand new password"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
    }

    async fn a_deactivated_operator_loses_sessions_and_cannot_log_in(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let id = operator(&app, &owner, "ann@acme.example", &["marketer"]).await;
        let s = token(&login(&app, "acme", "ann@acme.example", PASSWORD).await);
        let deactivate = "mutation($id: ID!) { deactivateOperator(id: $id) { active deactivatedAt } }";
        let r = app.gql(Some(&owner), deactivate, json!({"id": id})).await;
        assert_eq!(ok(&r)["deactivateOperator"]["active"], false);
        assert_eq!(code(&app.gql(Some(&s), "{ viewer { roles } }", json!({})).await), "UNAUTHENTICATED");
        assert_eq!(code(&login(&app, "acme", "ann@acme.example", PASSWORD).await), "UNAUTHENTICATED");
        let again = app.gql(Some(&owner), deactivate, json!({"id": id})).await;
        assert_eq!(code(&again), "CONFLICT");
    }

    async fn the_last_owner_credential_can_be_neither_deactivated_nor_revoked(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner_key) = app.tenant("acme").await;
        let op = operator(&app, &owner_key, "one@acme.example", &["owner"]).await;
        let session = token(&login(&app, "acme", "one@acme.example", PASSWORD).await);
        let keys = app.gql(Some(&session), "{ apiKeys { id } }", json!({})).await;
        let key_id = ok(&keys)["apiKeys"][0]["id"].clone();
        // Two owner credentials: the key may go.
        let revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }";
        ok(&app.gql(Some(&session), revoke, json!({"id": key_id})).await);
        // Now the operator is the last owner.
        let deactivate = "mutation($id: ID!) { deactivateOperator(id: $id) { active } }";
        let r = app.gql(Some(&session), deactivate, json!({"id": op})).await;
        assert_eq!(code(&r), "CONFLICT");
        ok(&app.gql(Some(&session), "{ viewer { roles } }", json!({})).await);
        // A second owner operator lets the first one go.
        operator(&app, &session, "two@acme.example", &["owner"]).await;
        let r = app.gql(Some(&session), deactivate, json!({"id": op})).await;
        assert_eq!(ok(&r)["deactivateOperator"]["active"], false);
    }

    async fn the_last_owner_key_cannot_be_revoked(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner_key) = app.tenant("acme").await;
        let keys = app.gql(Some(&owner_key), "{ apiKeys { id } }", json!({})).await;
        let key_id = ok(&keys)["apiKeys"][0]["id"].clone();
        let r = app.gql(Some(&owner_key), "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", json!({"id": key_id})).await;
        assert_eq!(code(&r), "CONFLICT");
        ok(&app.gql(Some(&owner_key), "{ viewer { roles } }", json!({})).await);
    }
}

#[tokio::test]
async fn repeated_login_attempts_are_rate_limited() {
    let config = GatewayConfig {
        logins_per_account_address_per_minute: 5,
        ..GatewayConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await;
    let (_, owner) = app.tenant("acme").await;
    operator(&app, &owner, "ann@acme.example", &["admin"]).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = login(&app, "acme", "ann@acme.example", "wrong password!!").await;
        codes.push(code(&r).to_owned());
    }
    assert!(
        codes[..2].iter().all(|c| c == "UNAUTHENTICATED"),
        "{codes:?}"
    );
    assert_eq!(codes.last().unwrap(), "RATE_LIMITED", "{codes:?}");
    // Even the right password is refused while the account is limited.
    let r = login(&app, "acme", "ann@acme.example", PASSWORD).await;
    assert_eq!(code(&r), "RATE_LIMITED");
    // Another account is not affected.
    operator(&app, &owner, "bob@acme.example", &["admin"]).await;
    token(&login(&app, "acme", "bob@acme.example", PASSWORD).await);
}
