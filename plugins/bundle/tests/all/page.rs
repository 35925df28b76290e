//! The consumer page, as a phone's browser shows it: headless Chromium
//! opens the printed URL, runs the page's script and renders the verdict.

use std::path::PathBuf;

use keel_core::Backend;
use serde_json::json;

use crate::codes::{activate, code_of, setup};
use crate::support::{Kernel, ok};

/// The page's DOM after its script ran (or a screenshot), at a phone's
/// size, in Debian's Chromium (installed when missing and we may).
pub fn render(url: &str, shot: Option<&std::path::Path>) -> String {
    let chromium = keel_testkit::chromium::find_or_install()
        .expect("the consumer-page test needs Debian's chromium: apt-get install chromium");
    keel_testkit::chromium::load(&chromium, url, (390, 844), shot).dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_printed_url_opens_a_page_that_says_the_verdict() {
    let k = Kernel::start(Backend::Sqlite).await;
    let b = k.brand("acme", json!({})).await;
    let s = setup(&k, &b, 10).await;
    ok(&activate(&k, &b, &s.units).await);
    let (_, url) = code_of(&k, &b, &s.units, 1).await;
    let (_, inactive) = code_of(&k, &b, &s.cases, 1).await;

    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || render(&url, None)
    })
    .await
    .unwrap();
    assert!(dom.contains("data-verdict=\"GENUINE\""), "{dom}");
    assert!(
        dom.contains("Genuine product") && dom.contains("Red Wine 750ml"),
        "{dom}"
    );
    assert!(dom.contains("L2611"), "the lot is shown: {dom}");

    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || render(&url, None)
    })
    .await
    .unwrap();
    assert!(
        dom.contains("data-verdict=\"GENUINE_SCANNED_BEFORE\""),
        "{dom}"
    );
    assert!(dom.contains("scanned 1 time before"), "{dom}");

    let dom = tokio::task::spawn_blocking(move || render(&inactive, None))
        .await
        .unwrap();
    assert!(dom.contains("data-verdict=\"NOT_ACTIVATED\""), "{dom}");

    let forged = k.url("/t/acme/p/codes/c/23456789ABCDEFGHJKMNPQRSTUVWXYZ");
    let dom = tokio::task::spawn_blocking(move || render(&forged, None))
        .await
        .unwrap();
    assert!(
        dom.contains("data-verdict=\"MALFORMED\"") || dom.contains("data-verdict=\"MISTYPED\""),
        "{dom}"
    );

    // The page opened twice counted two scans.
    let r = k
        .gql(
            &b.owner,
            "query($c: String!) { traceCode(code: $c) { scanCount } }",
            json!({"c": code_of(&k, &b, &s.units, 1).await.0}),
        )
        .await;
    assert_eq!(ok(&r)["traceCode"]["scanCount"], 2);
    // A screenshot for people to look at, when asked for.
    if let Some(dir) = std::env::var_os("KEEL_SCREENSHOTS").map(PathBuf::from) {
        std::fs::create_dir_all(&dir).unwrap();
        let shot = dir.join("scan-page.png");
        tokio::task::spawn_blocking(move || render(&url, Some(&shot)))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_that_are_not_scans_are_not_found() {
    let k = Kernel::start(Backend::Sqlite).await;
    k.brand("acme", json!({})).await;
    let r = k
        .http
        .get(k.url("/t/acme/p/codes/nothing/here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("Page not found"));
    let r = k
        .http
        .get(k.url("/t/nobody/p/codes/c/ABC"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// The consumer signs in with WeChat (a local fake of its endpoints) and
/// lands on the page, which scans and claims as them: the prize is theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_the_prize_the_scan_won() {
    use crate::rewards::{campaign, running};
    let wechat = keel_testkit::wechat::FakeWechat::start().await;
    wechat.signs_in_as("o-page");
    let config = keel_gateway::GatewayConfig {
        consumer_auth: keel_gateway::ConsumerAuthConfig {
            wechat_authorize_base: wechat.url.clone(),
            wechat_api_base: wechat.url.clone(),
            // Plain HTTP on loopback.
            secure_cookies: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let k = Kernel::start_with(Backend::Sqlite, config).await;
    let b = k.brand("acme", json!({})).await;
    k.enable_rewards(&b, json!({}), &[]).await;
    let s = setup(&k, &b, 10).await;
    ok(&activate(&k, &b, &s.units).await);
    let prizes =
        json!([{"id": "pts", "name": "50 points", "kind": "POINTS", "points": 50, "weight": 1}]);
    running(
        &k,
        &b,
        campaign(json!({"first_scan": true}), prizes, json!({})),
    )
    .await;
    let (_, printed) = code_of(&k, &b, &s.units, 2).await;
    let page = printed.trim_start_matches(&k.url(""));
    let url = k.url(&format!("/t/acme/auth/wechat?next={page}"));
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || render(&url, None)
    })
    .await
    .unwrap();
    assert!(dom.contains("data-outcome=\"WON\""), "{dom}");
    assert!(
        dom.contains("Congratulations") && dom.contains("50 points"),
        "{dom}"
    );
    assert!(dom.contains("data-signed-in=\"true\""), "{dom}");
    // The points are in the signed-in consumer's wallet.
    let r = k
        .gql(
            &b.owner,
            "{ personByIdentifier(kind: \"wechat_openid\", value: \"o-page\") { id } }",
            json!({}),
        )
        .await;
    let person = ok(&r)["personByIdentifier"]["id"].clone();
    let r = k
        .gql(
            &b.owner,
            "query($p: String!) { pointsWallet(personId: $p) { balance } }",
            json!({"p": person}),
        )
        .await;
    assert_eq!(ok(&r)["pointsWallet"]["balance"], 50, "{r}");
    if let Some(dir) = std::env::var_os("KEEL_SCREENSHOTS").map(PathBuf::from) {
        std::fs::create_dir_all(&dir).unwrap();
        let shot = dir.join("scan-page-won.png");
        // A second visit: scanned before, and the claim already made.
        tokio::task::spawn_blocking(move || render(&url, Some(&shot)))
            .await
            .unwrap();
    }
}
