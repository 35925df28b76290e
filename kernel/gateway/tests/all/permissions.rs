//! The permission matrix: every kind of principal against every kernel
//! operation, each row written out by hand from the built-in policy
//! (`20261124000002_builtin_roles.sql` and `authz.rs`), not computed from
//! the code under test.
//!
//! - owner: everything in its tenant, including the `owners` object that
//!   granting or revoking the `owner` role needs;
//! - admin: API keys, operators, persons, events, counters — not `owners`;
//! - marketer: persons, events, counters (read and write);
//! - analyst (key or operator session): persons, events, counters, read only;
//! - integration with scopes `persons:read`, `events:read`: its role allows
//!   persons, events and counters, its scopes cut that to reading persons
//!   and events;
//! - the platform administrator: tenants only; it is no tenant's member;
//! - no credential: nothing at all.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp, ok};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    Admin,
    Marketer,
    Analyst,
    /// An integration key scoped to `persons:read` and `events:read`.
    Integration,
    /// An operator's login session, with the analyst role.
    OperatorAnalyst,
    /// The platform administrator's key.
    Platform,
    /// No `Authorization` header.
    Nobody,
}

/// The columns of [`MATRIX`], in order.
const COLUMNS: [Who; 8] = [
    Who::Owner,
    Who::Admin,
    Who::Marketer,
    Who::Analyst,
    Who::Integration,
    Who::OperatorAnalyst,
    Who::Platform,
    Who::Nobody,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Viewer,
    ApiKeys,
    CreateMarketerKey,
    CreateOwnerKey,
    /// Revokes a fresh marketer key the owner made for this row.
    RevokeApiKey,
    Operators,
    CreateMarketerOperator,
    PersonByIdentifier,
    Person,
    Identify,
    Events,
    AppendEvent,
    Counter,
    AddToCounter,
    Tenants,
    CreateTenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Runs and succeeds.
    Allowed,
    /// Refused with `FORBIDDEN`.
    Forbidden,
    /// Refused with `UNAUTHENTICATED`.
    Unauthenticated,
}

const A: Expect = Expect::Allowed;
const F: Expect = Expect::Forbidden;
const U: Expect = Expect::Unauthenticated;

#[rustfmt::skip]
const MATRIX: &[(Op, [Expect; 8])] = &[
    //                              owner admin marketer analyst integr. op-analyst platform nobody
    (Op::Viewer,                 [A,    A,    A,       A,      A,      A,         A,       U]),
    (Op::ApiKeys,                [A,    A,    F,       F,      F,      F,         F,       U]),
    (Op::CreateMarketerKey,      [A,    A,    F,       F,      F,      F,         F,       U]),
    (Op::CreateOwnerKey,         [A,    F,    F,       F,      F,      F,         F,       U]),
    (Op::RevokeApiKey,           [A,    A,    F,       F,      F,      F,         F,       U]),
    (Op::Operators,              [A,    A,    F,       F,      F,      F,         F,       U]),
    (Op::CreateMarketerOperator, [A,    A,    F,       F,      F,      F,         F,       U]),
    (Op::PersonByIdentifier,     [A,    A,    A,       A,      A,      A,         F,       U]),
    (Op::Person,                 [A,    A,    A,       A,      A,      A,         F,       U]),
    (Op::Identify,               [A,    A,    A,       F,      F,      F,         F,       U]),
    (Op::Events,                 [A,    A,    A,       A,      A,      A,         F,       U]),
    (Op::AppendEvent,            [A,    A,    A,       F,      F,      F,         F,       U]),
    (Op::Counter,                [A,    A,    A,       A,      F,      A,         F,       U]),
    (Op::AddToCounter,           [A,    A,    A,       F,      F,      F,         F,       U]),
    (Op::Tenants,                [F,    F,    F,       F,      F,      F,         A,       U]),
    (Op::CreateTenant,           [F,    F,    F,       F,      F,      F,         A,       U]),
];

const SLUG: &str = "perm";
const PHONE: &str = "+8613800000001";
const OPERATOR_PASSWORD: &str = "correct horse battery staple";

/// The tenant, its principals and what the operations need.
struct World {
    app: TestApp,
    owner: String,
    admin: String,
    marketer: String,
    analyst: String,
    integration: String,
    operator_session: String,
    person_id: String,
    /// Makes names unique across rows.
    n: usize,
}

impl World {
    async fn new(app: TestApp) -> World {
        let (_, owner) = app.tenant(SLUG).await;
        let admin = app.key(&owner, &["admin"], &[]).await;
        let marketer = app.key(&owner, &["marketer"], &[]).await;
        let analyst = app.key(&owner, &["analyst"], &[]).await;
        let integration = app
            .key(&owner, &["integration"], &["persons:read", "events:read"])
            .await;
        let r = app
            .gql(
                Some(&owner),
                "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id roles } }",
                json!({ "i": { "email": "analyst@perm.example", "password": OPERATOR_PASSWORD, "roles": ["analyst"] } }),
            )
            .await;
        assert_eq!(ok(&r)["createOperator"]["roles"], json!(["analyst"]));
        let r = app
            .gql(
                None,
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                json!({ "i": { "tenant": SLUG, "email": "analyst@perm.example", "password": OPERATOR_PASSWORD } }),
            )
            .await;
        let operator_session = ok(&r)["login"]["token"].as_str().unwrap().to_owned();
        let person_id = app.person(&owner, "phone", PHONE).await;
        // Something for the readers to read.
        let r = app
            .gql(
                Some(&owner),
                "mutation($i: AppendEventInput!) { appendEvent(input: $i) { id } }",
                json!({ "i": { "type": "order.paid", "personId": person_id, "payload": { "total": 1 } } }),
            )
            .await;
        ok(&r);
        World {
            app,
            owner,
            admin,
            marketer,
            analyst,
            integration,
            operator_session,
            person_id,
            n: 0,
        }
    }

    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Owner => Some(&self.owner),
            Who::Admin => Some(&self.admin),
            Who::Marketer => Some(&self.marketer),
            Who::Analyst => Some(&self.analyst),
            Who::Integration => Some(&self.integration),
            Who::OperatorAnalyst => Some(&self.operator_session),
            Who::Platform => Some(ADMIN_TOKEN),
            Who::Nobody => None,
        }
    }

    /// The document, its variables and the top-level field it answers in,
    /// after any setup the operation needs.
    async fn request(&mut self, op: Op) -> (&'static str, Value, &'static str) {
        self.n += 1;
        let n = self.n;
        match op {
            Op::Viewer => ("{ viewer { roles kind } }", json!({}), "viewer"),
            Op::ApiKeys => ("{ apiKeys { id } }", json!({}), "apiKeys"),
            Op::CreateMarketerKey => (
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
                json!({ "i": { "name": format!("row {n}"), "roles": ["marketer"] } }),
                "createApiKey",
            ),
            Op::CreateOwnerKey => (
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
                json!({ "i": { "name": format!("row {n}"), "roles": ["owner"] } }),
                "createApiKey",
            ),
            Op::RevokeApiKey => {
                let r = self
                    .app
                    .gql(
                        Some(&self.owner),
                        "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } } }",
                        json!({ "i": { "name": format!("to revoke {n}"), "roles": ["marketer"] } }),
                    )
                    .await;
                let id = ok(&r)["createApiKey"]["apiKey"]["id"].clone();
                (
                    "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }",
                    json!({ "id": id }),
                    "revokeApiKey",
                )
            }
            Op::Operators => ("{ operators { id } }", json!({}), "operators"),
            Op::CreateMarketerOperator => (
                "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id } }",
                json!({ "i": {
                    "email": format!("marketer{n}@perm.example"),
                    "password": OPERATOR_PASSWORD,
                    "roles": ["marketer"],
                } }),
                "createOperator",
            ),
            Op::PersonByIdentifier => (
                "query($k: String!, $v: String!) { personByIdentifier(kind: $k, value: $v) { id } }",
                json!({ "k": "phone", "v": PHONE }),
                "personByIdentifier",
            ),
            Op::Person => (
                "query($id: ID!) { person(id: $id) { id } }",
                json!({ "id": self.person_id }),
                "person",
            ),
            Op::Identify => (
                "mutation($i: IdentifyInput!) { identify(input: $i) { person { id } } }",
                json!({ "i": { "identifiers": [{ "kind": "phone", "value": format!("+86139{n:08}") }] } }),
                "identify",
            ),
            Op::Events => (
                "{ events(first: 10) { edges { node { id } } } }",
                json!({}),
                "events",
            ),
            Op::AppendEvent => (
                "mutation($i: AppendEventInput!) { appendEvent(input: $i) { id } }",
                json!({ "i": { "type": "order.paid", "personId": self.person_id, "payload": { "row": n } } }),
                "appendEvent",
            ),
            Op::Counter => (
                "{ counter(key: \"stock\") { value } }",
                json!({}),
                "counter",
            ),
            Op::AddToCounter => (
                "mutation { addToCounter(input: { key: \"stock\", delta: 1 }) { applied value } }",
                json!({}),
                "addToCounter",
            ),
            Op::Tenants => ("{ tenants { id } }", json!({}), "tenants"),
            Op::CreateTenant => (
                "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }",
                json!({ "i": { "slug": format!("perm-new-{n}"), "name": "New brand" } }),
                "createTenant",
            ),
        }
    }
}

/// What a refused call must leave as it was: the tenant's keys and
/// operators, its events, its counter, its persons, and the tenants.
async fn snapshot(w: &World) -> Value {
    let tenant = w
        .app
        .gql(
            Some(&w.owner),
            "{ apiKeys { id revokedAt } operators { id active } \
               events(first: 100) { edges { node { id } } pageInfo { hasNextPage } } \
               counter(key: \"stock\") { value } }",
            json!({}),
        )
        .await;
    let platform = w
        .app
        .gql(Some(ADMIN_TOKEN), "{ tenants { id } }", json!({}))
        .await;
    json!({ "tenant": ok(&tenant), "tenants": ok(&platform)["tenants"] })
}

/// Runs `op` as `who` and asserts the outcome is `expect`; a refused call
/// changes nothing.
async fn check(w: &mut World, who: Who, op: Op, expect: Expect) {
    let (query, vars, field) = w.request(op).await;
    let before = snapshot(w).await;
    let r = w.app.gql(w.token(who), query, vars.clone()).await;
    let code = r["errors"][0]["extensions"]["code"].as_str();
    let what = format!("{who:?} × {op:?} with {vars}: expected {expect:?}, got {r:#}");
    match expect {
        Expect::Allowed => {
            assert!(r.get("errors").is_none(), "{what}");
            assert!(!r["data"][field].is_null(), "{what}");
            return;
        }
        Expect::Forbidden => assert_eq!(code, Some("FORBIDDEN"), "{what}"),
        Expect::Unauthenticated => assert_eq!(code, Some("UNAUTHENTICATED"), "{what}"),
    }
    assert!(r["data"].is_null() || r["data"][field].is_null(), "{what}");
    assert_eq!(
        snapshot(w).await,
        before,
        "{what}: the refused call changed something"
    );
    if op == Op::Identify {
        let phone = vars["i"]["identifiers"][0]["value"].clone();
        let found = w
            .app
            .gql(
                Some(&w.owner),
                "query($v: String!) { personByIdentifier(kind: \"phone\", value: $v) { id } }",
                json!({ "v": phone }),
            )
            .await;
        assert_eq!(
            found["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{what}: the refused identify created a person: {found:#}"
        );
    }
}

on_both_backends! {
    async fn every_principal_may_do_exactly_what_its_roles_and_scopes_allow(kind) {
        let mut w = World::new(TestApp::start(kind).await).await;
        for (op, row) in MATRIX {
            for (who, expect) in COLUMNS.iter().zip(row) {
                check(&mut w, *who, *op, *expect).await;
            }
        }
    }
}
