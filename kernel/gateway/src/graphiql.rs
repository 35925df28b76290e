//! GraphiQL for a browser's `GET /graphql`, served entirely by the kernel.
//!
//! The page is our own small HTML; its scripts and styles are pinned,
//! vendored builds embedded in the binary (`assets/graphiql/`, see its
//! README for the packages, versions, licenses and SHA-256s) and served at
//! `/graphiql/{version}/{file}`, where `{version}` is a hash of all of
//! them: those URLs never change content, so they are cached for a year.
//! Nothing is loaded from a CDN, and the page's Content-Security-Policy
//! allows scripts from this origin only — no inline script, no eval.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};

/// The page's Content-Security-Policy. Styles may be inline because
/// GraphiQL's dialogs and menus (Radix, react-remove-scroll) insert
/// `<style>` elements at run time; its fonts and icons are `data:` URLs
/// inside its stylesheet.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Everything the page loads, in the order it loads it.
static ASSETS: &[Asset] = &[
    Asset {
        name: "graphiql.min.css",
        content_type: CSS,
        bytes: include_bytes!("../assets/graphiql/graphiql.min.css"),
    },
    Asset {
        name: "graphiql-init.css",
        content_type: CSS,
        bytes: include_bytes!("../assets/graphiql/graphiql-init.css"),
    },
    Asset {
        name: "react.production.min.js",
        content_type: JS,
        bytes: include_bytes!("../assets/graphiql/react.production.min.js"),
    },
    Asset {
        name: "react-dom.production.min.js",
        content_type: JS,
        bytes: include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    },
    Asset {
        name: "graphiql.min.js",
        content_type: JS,
        bytes: include_bytes!("../assets/graphiql/graphiql.min.js"),
    },
    Asset {
        name: "graphiql-init.js",
        content_type: JS,
        bytes: include_bytes!("../assets/graphiql/graphiql-init.js"),
    },
];

/// The assets' version in their URLs: a 64-bit FNV-1a hash of every
/// file's name and bytes, so any change to any of them changes every URL.
/// (A cache key, not an integrity check: the files are in the binary.)
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for asset in ASSETS {
        for &b in asset
            .name
            .as_bytes()
            .iter()
            .chain([0u8].iter())
            .chain(asset.bytes)
        {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
});

/// The page, with the URLs of the current assets.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    let url = |name: &str| format!("/graphiql/{}/{name}", *VERSION);
    let mut styles = String::new();
    let mut scripts = String::new();
    for asset in ASSETS {
        if asset.content_type == CSS {
            styles.push_str(&format!(
                "    <link rel=\"stylesheet\" href=\"{}\">\n",
                url(asset.name)
            ));
        } else {
            scripts.push_str(&format!(
                "    <script src=\"{}\"></script>\n",
                url(asset.name)
            ));
        }
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Keel GraphQL</title>
    <link rel="icon" href="data:,">
{styles}  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <noscript>GraphiQL needs JavaScript.</noscript>
{scripts}  </body>
</html>
"#
    )
});

/// `GET /graphql` for a browser: the GraphiQL page, under a strict
/// Content-Security-Policy, never framed, revalidated on every visit (its
/// asset URLs change with the assets).
pub(crate) fn page() -> Response {
    let mut res = PAGE.as_str().into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // `GET /graphql` answers JSON to other clients.
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    res
}

/// `GET /graphiql/{version}/{file}`: an embedded asset of the current
/// version, cached for good; 404 for any other file or version.
pub(crate) async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|a| a.name == file);
    let Some(asset) = found.filter(|_| version == *VERSION) else {
        let mut res = (StatusCode::NOT_FOUND, "not found\n").into_response();
        res.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return res;
    };
    let mut res = asset.bytes.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Only this origin's pages may load them.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}
