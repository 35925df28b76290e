//! A plugin's JSON output reaches the client as its SDL declares it:
//! `JSON` fields keep objects, arrays, strings, numbers, booleans and null
//! whole, wherever they sit.

use keel_testkit::on_both_backends;
use serde_json::json;

use crate::plugins::{enable, install};
use crate::support::{TestApp, ok};

const SDL: &str = r#"
type Holder { json: JSON, required: JSON!, list: [JSON], nested: Inner, inners: [Inner!] }
type Inner { value: JSON!, name: String! }
extend type Query { call(capability: String!, arg: String): Holder, caller: JSON }
extend type Mutation { put(key: String!, data: JSON!, then: String): JSON }
"#;

on_both_backends! {
    async fn json_outputs_round_trip_every_kind_of_value(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let every = json!([{"a": 1}, [2, [3]], "s", -4, 2.5, true, false, null]);
        let data = json!({
            "json": every,
            "required": {"prizes": [{"type": "POINTS", "points": 10, "weight": 0.1}], "none": null},
            "list": every,
            "nested": {"value": [null, {"deep": [[]]}], "name": "n"},
            "inners": [{"value": "x", "name": "a"}, {"value": {"k": [1]}, "name": "b"}],
        });
        let r = app.gql(Some(&owner), "mutation($d: JSON!) { put(key: \"k\", data: $d) }", json!({"d": data})).await;
        ok(&r);
        let r = app
            .gql(
                Some(&owner),
                "{ call(capability: \"records\", arg: \"items\") { json required list nested { value name } inners { value name } } }",
                json!({}),
            )
            .await;
        assert_eq!(ok(&r)["call"], data, "{r}");
        // Scalars alone as the JSON value, too.
        for scalar in [json!("text"), json!(7), json!(false)] {
            let d = json!({"required": scalar});
            ok(&app.gql(Some(&owner), "mutation($d: JSON!) { put(key: \"k\", data: $d) }", json!({"d": d})).await);
            let r = app.gql(Some(&owner), "{ call(capability: \"records\", arg: \"items\") { required json } }", json!({})).await;
            assert_eq!(ok(&r)["call"], json!({"required": scalar, "json": null}), "{r}");
        }
        // A non-null field the plugin leaves out fails: its nullable parent
        // becomes null, with the error at its path, and the rest stands.
        ok(&app.gql(Some(&owner), "mutation($d: JSON!) { put(key: \"k\", data: $d) }", json!({"d": {"json": 1}})).await);
        let r = app.gql(Some(&owner), "{ call(capability: \"records\", arg: \"items\") { json required } other: caller }", json!({})).await;
        assert_eq!(r["data"]["call"], json!(null), "{r}");
        assert!(r["data"]["other"].is_object(), "{r}");
        assert_eq!(r["errors"][0]["path"], json!(["call"]), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["code"], "PLUGIN_INVALID_OUTPUT", "{r}");
        assert_eq!(r["errors"].as_array().unwrap().len(), 1, "{r}");

        // Declared non-null, the failed root field nulls its parent: `data`.
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", &SDL.replace("arg: String): Holder,", "arg: String): Holder!,")).await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        ok(&app.gql(Some(&owner), "mutation($d: JSON!) { put(key: \"k\", data: $d) }", json!({"d": {"json": 1}})).await);
        let r = app.gql(Some(&owner), "{ call(capability: \"records\", arg: \"items\") { json required } other: caller }", json!({})).await;
        assert_eq!(r["data"], json!(null), "{r}");
        assert_eq!(r["errors"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r["errors"][0]["path"], json!(["call"]), "{r}");
    }
}
