//! Requests over the depth or complexity limit are refused before they run.

use keel_core::Backend;
use serde_json::json;

use crate::support::{TestApp, code};

#[tokio::test]
async fn a_query_over_the_depth_limit_is_refused_before_it_runs() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (_, owner) = app.tenant("acme").await;
    // Build a deep selection: __schema { types { fields { type { ofType { ofType ... } } } } }
    let mut deep = String::from("name");
    for _ in 0..14 {
        deep = format!("ofType {{ {deep} }}");
    }
    let query = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
    let r = app.gql(Some(&owner), &query, json!({})).await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    assert!(r["data"].is_null(), "nothing ran: {r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{r}"
    );
}

#[tokio::test]
async fn a_query_over_the_complexity_limit_is_refused_before_it_runs() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (_, owner) = app.tenant("acme").await;
    // Each page of 100 events × 10 fields costs 1000; three cost 3000 > 2000.
    let page = "events(first: 100) { edges { node { id type payload recordedAt occurredAt producer idempotencyKey personId } } }";
    let query = format!("{{ a: {page} b: {page} c: {page} }}");
    let r = app.gql(Some(&owner), &query, json!({})).await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    assert!(r["data"].is_null());
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("complex"),
        "{r}"
    );
}

#[tokio::test]
async fn a_negative_page_size_cannot_cancel_the_cost_of_other_fields() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (_, owner) = app.tenant("acme").await;
    // Without a floor, `first: -N` costs a huge number that wraps the sum
    // and pays for the three expensive pages beside it.
    let page = "events(first: 100) { edges { node { id type payload recordedAt occurredAt producer idempotencyKey personId } } }";
    let negatives = [
        "events(first: -1) { edges { node { id } } }",
        "orgNodes(first: -2147483648) { edges { node { code } } }",
        "products(first: -100) { edges { node { code } } }",
        "person(id: \"p\") { events(first: -7) { edges { node { id } } } }",
    ];
    for negative in negatives {
        let query = format!("{{ n: {negative} a: {page} b: {page} c: {page} }}");
        let r = app.gql(Some(&owner), &query, json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{negative}: {r}");
        assert!(r["data"].is_null(), "nothing ran: {r}");
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("complex"),
            "{negative}: {r}"
        );
    }
}
