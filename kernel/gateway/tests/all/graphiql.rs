//! GraphiQL is served by the kernel itself: a page under a strict
//! Content-Security-Policy whose scripts and styles all come from the
//! kernel (no CDN), and which a real browser renders without violations.

use std::path::PathBuf;

use reqwest::StatusCode;

use crate::support::TestApp;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The values of every `attr="…"` in `html`.
fn attributes<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// Fails if `text` names another origin or a CDN.
fn assert_no_foreign_urls(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for bad in ["unpkg", "cdn", "http://", "https://", "//", "graphql.org"] {
        // `//` only as a protocol-relative URL in an attribute.
        let hit = if bad == "//" {
            lower.contains("=\"//") || lower.contains("='//")
        } else {
            lower.contains(bad)
        };
        assert!(!hit, "{what} mentions {bad:?}:\n{text}");
    }
}

async fn page(app: &TestApp) -> reqwest::Response {
    app.http
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_page_has_a_strict_csp_and_loads_only_the_kernels_assets() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = page(&app).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(html.contains("<div id=\"graphiql\">"), "{html}");
    assert_no_foreign_urls("the page", &html);

    // No inline script: every <script> has a src and no body.
    let scripts = html.matches("<script").count();
    let srcs = attributes(&html, "src");
    assert_eq!(scripts, srcs.len(), "{html}");
    assert_eq!(
        html.matches("></script>").count(),
        scripts,
        "inline script: {html}"
    );
    assert!(!html.contains("<style"), "{html}");
    assert!(!html.contains(" style="), "{html}");
    // No event handler attributes (` onload=` and the like).
    for (i, _) in html.match_indices(" on") {
        let name: String = html[i + 1..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        assert!(
            !html[i + 1 + name.len()..].starts_with('='),
            "{name}= in {html}"
        );
    }

    let hrefs = attributes(&html, "href");
    let mut stylesheets = 0;
    let mut version = None;
    for url in srcs.iter().chain(&hrefs) {
        if url.starts_with("data:") {
            continue;
        }
        // /graphiql/{version}/{file}, one version for all.
        let parts: Vec<&str> = url.split('/').collect();
        assert!(
            parts.len() == 4 && parts[0].is_empty() && parts[1] == "graphiql",
            "{url}"
        );
        assert_eq!(*version.get_or_insert(parts[2]), parts[2], "{html}");
        let r = app.http.get(app.url(url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let expected = if url.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            assert!(url.ends_with(".css"), "{url}");
            stylesheets += 1;
            "text/css; charset=utf-8"
        };
        assert_eq!(r.headers()["content-type"], expected, "{url}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{url}");
        let body = r.text().await.unwrap();
        assert!(body.len() > 100, "{url}");
        if url.ends_with("graphiql-init.js") || url.ends_with("graphiql-init.css") {
            assert_no_foreign_urls(url, &body);
            assert!(!body.contains("eval(") && !body.contains("Function("));
        }
    }
    // React, ReactDOM, GraphiQL and our bootstrap, in that order.
    let files: Vec<&str> = srcs.iter().map(|s| s.rsplit('/').next().unwrap()).collect();
    assert_eq!(
        files,
        [
            "react.production.min.js",
            "react-dom.production.min.js",
            "graphiql.min.js",
            "graphiql-init.js"
        ]
    );
    assert_eq!(stylesheets, 2, "{html}");
}

#[tokio::test]
async fn unknown_assets_and_other_versions_are_not_found() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let html = page(&app).await.text().await.unwrap();
    let src = attributes(&html, "src")[0].to_owned();
    let version = src.split('/').nth(2).unwrap().to_owned();
    assert_eq!(
        app.http.get(app.url(&src)).send().await.unwrap().status(),
        StatusCode::OK
    );
    for path in [
        format!("/graphiql/{version}/nope.js"),
        format!("/graphiql/{version}/README.md"),
        format!("/graphiql/{version}/LICENSE-react"),
        format!("/graphiql/{version}/..%2F..%2FCargo.toml"),
        format!("/graphiql/{version}/graphiql.min.js.map"),
        format!("/graphiql/{version}/"),
        "/graphiql/0000000000000000/graphiql.min.js".to_owned(),
        "/graphiql/4.1.2/graphiql.min.js".to_owned(),
        "/graphiql/graphiql.min.js".to_owned(),
    ] {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Debian's Chromium; `None` (the test is skipped) only outside CI.
fn chromium() -> Option<PathBuf> {
    let found = keel_testkit::chromium::find_or_install();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the GraphiQL browser test needs Debian's chromium: apt-get install chromium"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
    }
    found
}

/// Loads `url` in headless Chromium: the DOM after its scripts ran (or
/// a screenshot into `shot`), and Chromium's log with the console.
fn render(
    chromium: &std::path::Path,
    url: &str,
    shot: Option<&std::path::Path>,
) -> (String, String) {
    let l = keel_testkit::chromium::load(chromium, url, (1280, 800), shot);
    (l.dom, l.log)
}

/// Opens GraphiQL in Chromium, checks it rendered without a CSP violation
/// or script error, and returns its DOM and the kernel's request counts
/// for `/graphql` (a screenshot too, into `$KEEL_SCREENSHOTS/{shot}`).
async fn open_graphiql(app: &TestApp, chromium: PathBuf, shot: &str) -> (String, Vec<String>) {
    let url = app.url("/graphql");
    let (dom, log) = tokio::task::spawn_blocking({
        let (chromium, url) = (chromium.clone(), url.clone());
        move || render(&chromium, &url, None)
    })
    .await
    .unwrap();
    // Chromium's navigation asks for text/html: GraphiQL rendered.
    assert!(dom.contains("graphiql-container"), "{dom}\n{log}");
    assert!(!dom.contains("Loading GraphiQL"), "{dom}\n{log}");
    assert!(dom.contains("graphiql-editor"), "{dom}\n{log}");
    for bad in [
        "Refused to",
        "Content Security Policy",
        "violates",
        "Uncaught",
        "is not defined",
        "Failed to load resource",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the browser's log:\n{log}");
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let graphql = metrics
        .lines()
        .filter(|l| l.starts_with("keel_http_requests_total{route=\"/graphql\""))
        .map(str::to_owned)
        .collect();
    if let Some(dir) = std::env::var_os("KEEL_SCREENSHOTS").map(PathBuf::from) {
        std::fs::create_dir_all(&dir).unwrap();
        let shot = dir.join(shot);
        tokio::task::spawn_blocking(move || render(&chromium, &url, Some(&shot)))
            .await
            .unwrap();
    }
    (dom, graphql)
}

/// The number of requests counted by `keel_http_requests_total` lines.
fn total(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// GraphiQL renders in a real browser without a CSP violation, and loads
/// the schema through our fetcher within the default limits (its
/// introspection query is 15 levels deep).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_browser_renders_graphiql_and_loads_the_schema() {
    let Some(chromium) = chromium() else { return };
    let config = keel_gateway::GatewayConfig::default();
    let app = TestApp::start_with(keel_core::Backend::Sqlite, config).await;
    let (dom, graphql) = open_graphiql(&app, chromium, "graphiql.png").await;
    // The page and GraphiQL's introspection, POSTed as JSON.
    assert!(total(&graphql) >= 2, "{graphql:?}");
    assert!(
        graphql.iter().all(|l| l.contains("status=\"200\"")),
        "the introspection succeeded: {graphql:?}"
    );
    assert!(!dom.contains("\"errors\""), "{dom}");
}
