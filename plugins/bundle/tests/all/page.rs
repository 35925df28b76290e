//! The consumer page, as a phone's browser shows it: headless Chromium
//! opens the printed URL, runs the page's script and renders the verdict.

use std::path::PathBuf;
use std::process::Command;

use keel_core::Backend;
use serde_json::json;

use crate::codes::{activate, code_of, setup};
use crate::support::{Kernel, ok};

/// Debian's Chromium; installed with apt-get when missing and we may.
fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    assert!(
        root,
        "the consumer-page test needs Debian's chromium: apt-get install chromium"
    );
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "apt-get install chromium failed");
    PathBuf::from("/usr/bin/chromium")
}

/// The page's DOM after its script ran (and a screenshot next to it).
pub fn render(url: &str, shot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=390,844",
        "--virtual-time-budget=15000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match shot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
