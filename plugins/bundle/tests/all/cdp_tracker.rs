//! The CDP's browser tracker: a brand's page on another origin loads
//! `tracker.js` from Keel in headless Chromium and its events reach the
//! anonymous person's profile through the public `cdpCollect`; a
//! signed-in consumer's events count for them; everything a browser (or
//! anybody posting as one) may get wrong is refused, counted, and changes
//! nothing else.

use std::net::SocketAddr;

use keel_core::Backend;
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::{CDP_GRANTS, person_id};
use crate::support::{Brand, Kernel, code, ok};

const COLLECT: &str = "mutation($a: String!, $e: [CdpCollectEvent!]!) { cdpCollect(anonymousId: $a, events: $e) \
    { accepted duplicates rejected { index message } } }";
const TIMELINE: &str = "query($p: String!) { cdpProfile(personId: $p) { events timeline { events { type source properties } } } }";

/// Serves `html` at `/` from `listener`, a loopback port of its own:
/// another origin than the kernel's.
fn brand_site(listener: tokio::net::TcpListener, html: String) {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// An attribute's value in a dumped DOM, unescaped.
fn attribute(dom: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + dom[start..].find('"')?;
    Some(
        dom[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

async fn collect(
    k: &Kernel,
    b: &Brand,
    consumer: Option<&str>,
    anonymous: &str,
    events: Value,
) -> Value {
    k.public_as(
        &b.slug,
        consumer,
        COLLECT,
        json!({"a": anonymous, "e": events}),
    )
    .await
}

fn event(id: &str, kind: &str, properties: Value) -> Value {
    json!({"messageId": id, "type": kind, "occurredAt": chrono::Utc::now().to_rfc3339(), "properties": properties})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_brand_page_on_another_origin_tracks_through_chromium() {
    // The brand's site, on an origin the operator lists.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site: SocketAddr = listener.local_addr().unwrap();
    let config = keel_gateway::GatewayConfig {
        public_origins: vec![format!("http://{site}")],
        ..keel_gateway::GatewayConfig::default()
    };
    let k = Kernel::start_with(Backend::Sqlite, config).await;
    let b = k.brand("acme", json!({})).await;
    k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
    let script = k.url("/t/acme/p/cdp/tracker.js");
    let r = k.http.get(&script).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["cross-origin-resource-policy"], "cross-origin");
    let r = k
        .http
        .get(k.url("/t/acme/p/cdp/other.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    brand_site(
        listener,
        format!(
            r#"<!doctype html><html><head><meta charset="utf-8"></head><body>
<script src="{script}"></script>
<script>
keelTracker.track("page.viewed", {{path: "/home", title: "首页"}});
keelTracker.track("product.viewed", {{sku: "WINE-750"}});
keelTracker.track("order.paid", {{total: 9999}});
keelTracker.track("product.viewed", {{sku: "X", phone: "13800000000"}});
keelTracker.flush().then(function (r) {{
  document.body.setAttribute("data-anonymous", keelTracker.anonymousId);
  document.body.setAttribute("data-report", JSON.stringify(r));
}}, function (e) {{ document.body.setAttribute("data-error", String(e)); }});
</script></body></html>"#
        ),
    );
    let url = format!("http://{site}/");
    let dom = tokio::task::spawn_blocking(move || crate::page::render(&url, None))
        .await
        .unwrap();
    assert_eq!(attribute(&dom, "data-error"), None, "{dom}");
    let report: Value =
        serde_json::from_str(&attribute(&dom, "data-report").expect("the flush answered")).unwrap();
    assert_eq!(report["accepted"], 2, "{report}");
    let refused: Vec<(i64, String)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap(),
                r["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 2, "{report}");
    assert_eq!(refused[0].0, 2);
    assert!(
        refused[0]
            .1
            .contains("not one this brand takes from browsers"),
        "{report}"
    );
    assert_eq!(refused[1].0, 3);
    assert!(refused[1].1.contains("properties.phone"), "{report}");

    let anonymous = attribute(&dom, "data-anonymous").unwrap();
    assert_eq!(anonymous.len(), 22, "16 random bytes: {anonymous}");
    let person = person_id(&k, &b, "anonymous_id", &anonymous).await;
    let r = k.gql(&b.owner, TIMELINE, json!({"p": person})).await;
    let p = &ok(&r)["cdpProfile"];
    assert_eq!(p["events"], 2);
    let got: Vec<(&str, &str)> = p["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(got, [("page.viewed", "web"), ("product.viewed", "web")]);
    let r = k
        .gql(&b.owner, "{ cdpTracker { rejected events } }", json!({}))
        .await;
    assert_eq!(ok(&r)["cdpTracker"]["rejected"], 2);
}

on_both_backends! {
    async fn what_a_browser_sends_wrong_is_refused_and_counted(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        // A brand that lists code.scanned still cannot take it from browsers.
        k.enable(&b, "cdp", CDP_GRANTS, json!({"tracker_events": ["page.viewed", "code.scanned"]}), &[]).await;
        let anon = "AAAAAAAAAAAAAAAAAAAAAA";
        let ok_event = event("e-00000001", "page.viewed", json!({"path": "/"}));

        // Whole calls refused: nothing taken in, nothing counted.
        for (a, events, says) in [
            ("short", json!([ok_event]), "anonymousId"),
            ("AAAAAAAAAAAAAAAA\u{0}AAAAA", json!([ok_event]), "NUL"),
            ("AAAAAAAAAAAAAAAA.AAAAA", json!([ok_event]), "anonymousId"),
            (anon, json!([]), "events: 1 to 20"),
            // A browser never names its person.
            (anon, json!([{"messageId": "e-00000009", "type": "page.viewed", "occurredAt": chrono::Utc::now().to_rfc3339(), "personId": "someone"}]), "personId"),
            (anon, Value::Array((0..21).map(|i| event(&format!("e-{i:08}"), "page.viewed", json!({}))).collect()), "got 21"),
        ] {
            let r = collect(&k, &b, None, a, events).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(says), "{says}: {r}");
        }
        // Bad events, one call: each refused by index, the good one taken.
        let huge = "x".repeat(5000);
        let r = collect(&k, &b, None, anon, json!([
            ok_event,
            event("e-00000002", "code.scanned", json!({})),
            event("e-00000003", "order.paid", json!({"total": 1})),
            event("e-00000004", "cdp.consent_changed", json!({})),
            event("e-00000005", "page.viewed", json!({"Email": "a@b.c"})),
            event("e-00000006", "page.viewed", json!({"blob": huge})),
            event("bad.id-0007", "page.viewed", json!({})),
            {"messageId": "e-00000008", "type": "page.viewed", "occurredAt": "2030-01-01T00:00:00Z"},
            event("e-00000010", "page.viewed", json!([1, 2])),
            {"messageId": "e-00000011", "type": "page.viewed", "occurredAt": (chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339()},
            event("e-00000012", "page.viewed", json!({"form": [{"user": {"Mobile": "13800000000"}}]})),
        ])).await;
        let report = &ok(&r)["cdpCollect"];
        assert_eq!(report["accepted"], 1, "{report}");
        let indexes: Vec<i64> = report["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_i64().unwrap()).collect();
        assert_eq!(indexes, (1..11).collect::<Vec<_>>(), "{report}");
        for (i, says) in [(1, "not one this brand"), (4, "properties.Email"), (5, "4096 bytes"), (6, "messageId"), (7, "occurredAt"), (8, "properties"),
                          (9, "at most a week ago"), (10, "properties.form[0].user.Mobile")] {
            let m = report["rejected"][i - 1]["message"].as_str().unwrap();
            assert!(m.contains(says), "{i}: {says}: {m}");
        }
        // The same event again counts once; another browser's same id is its own.
        let r = collect(&k, &b, None, anon, json!([ok_event])).await;
        assert_eq!(ok(&r)["cdpCollect"]["duplicates"], 1);
        let other = "BBBBBBBBBBBBBBBBBBBBBB";
        let r = collect(&k, &b, None, other, json!([ok_event])).await;
        assert_eq!(ok(&r)["cdpCollect"]["accepted"], 1, "another browser's ids are not this one's");
        let r = k.gql(&b.owner, "{ cdpTracker { rejected events } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTracker"], json!({"rejected": 10, "events": ["page.viewed", "code.scanned"]}));
        let person = person_id(&k, &b, "anonymous_id", anon).await;
        let r = k.gql(&b.owner, TIMELINE, json!({"p": person})).await;
        assert_eq!(ok(&r)["cdpProfile"]["events"], 1, "only the good event, once");

        // A signed-in consumer's events are theirs; the browser's id is not
        // linked to them (whoever learned it could post as them).
        let fresh = "CCCCCCCCCCCCCCCCCCCCCC";
        let r = collect(&k, &b, Some("o-alice"), fresh, json!([event("e-00000011", "page.viewed", json!({}))])).await;
        assert_eq!(ok(&r)["cdpCollect"]["accepted"], 1);
        let r = collect(&k, &b, Some("o-alice"), anon, json!([event("e-00000012", "page.viewed", json!({}))])).await;
        assert_eq!(ok(&r)["cdpCollect"]["accepted"], 1);
        let alice = person_id(&k, &b, "wechat_openid", "o-alice").await;
        let r = k.gql(&b.owner, "query($v: String!) { personByIdentifier(kind: \"anonymous_id\", value: $v) { id } }", json!({"v": fresh})).await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
        assert_eq!(person_id(&k, &b, "anonymous_id", anon).await, person);
        let r = k.gql(&b.owner, TIMELINE, json!({"p": alice})).await;
        assert_eq!(ok(&r)["cdpProfile"]["events"], 2);
        let r = k.gql(&b.owner, TIMELINE, json!({"p": person})).await;
        assert_eq!(ok(&r)["cdpProfile"]["events"], 1, "the anonymous person gained nothing");
        // A browser id the brand linked to a member is no way to post as
        // them without their session.
        let linked = "DDDDDDDDDDDDDDDDDDDDDD";
        ok(&k.gql(&b.owner, "mutation($r: [CdpIdentifyInput!]!) { cdpIdentify(batchId: \"link\", rows: $r) { accepted } }",
            json!({"r": [{"identifiers": [{"kind": "member_no", "value": "M-1"}, {"kind": "anonymous_id", "value": linked}]}]})).await);
        let r = collect(&k, &b, None, linked, json!([event("e-00000013", "page.viewed", json!({}))])).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        let member = person_id(&k, &b, "member_no", "M-1").await;
        let r = k.gql(&b.owner, TIMELINE, json!({"p": member})).await;
        assert_eq!(ok(&r)["cdpProfile"]["events"], 0);
    }
}
