use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{TestApp, code, field, ok};

const ADD: &str = "mutation($i: AddToCounterInput!) { addToCounter(input: $i) { applied value } }";

on_both_backends! {
    async fn concurrent_adds_over_http_never_pass_the_limit(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let requests = (0..200).map(|_| app.gql(Some(&owner), ADD, json!({"i": {"key": "prizes", "delta": 1, "min": 0, "max": 50}})));
        let results = futures::future::join_all(requests).await;
        let applied = results.iter().filter(|r| ok(r)["addToCounter"]["applied"] == true).count();
        assert_eq!(applied, 50);
        let r = app.gql(Some(&owner), "{ counter(key: \"prizes\") { value } }", json!({})).await;
        assert_eq!(ok(&r)["counter"]["value"], 50);
    }

    async fn an_add_past_the_limit_reports_the_unchanged_value(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let r = app.gql(Some(&owner), ADD, json!({"i": {"key": "budget", "delta": 800, "max": 1000}})).await;
        assert_eq!(ok(&r)["addToCounter"], json!({"applied": true, "value": 800}));
        let r = app.gql(Some(&owner), ADD, json!({"i": {"key": "budget", "delta": 300, "max": 1000}})).await;
        assert_eq!(ok(&r)["addToCounter"], json!({"applied": false, "value": 800}));
        let r = app.gql(Some(&owner), ADD, json!({"i": {"key": "budget", "delta": 1, "min": 5, "max": 1}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert_eq!(field(&r), "min");
    }
}
