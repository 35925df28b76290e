//! `GET /t/{tenant-slug}/p/{plugin}/{*path}`: a tenant's public web pages,
//! rendered by a plugin's `[pages]` operation, without a credential and
//! rate-limited per client address like the tenant's public GraphQL.
//!
//! The operation gets `{"path": "<rest of the path, percent-decoded, no
//! leading slash>", "query": {<query parameters>}}` and answers
//! `{"status": 200..599, "html": "<document>"}`, or `{"status": …,
//! "script": "<JavaScript>"}` for a script the brand's own pages load
//! (such as the CDP's tracker): served as `text/javascript`, cacheable for
//! five minutes and loadable from any origin. Every response — the
//! plugin's page or one of the gateway's small error pages — carries a
//! strict Content-Security-Policy: inline scripts and styles only, no
//! third-party anything, no framing. Error pages never show a plugin's or
//! the kernel's internals; server errors show the request id.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use keel_core::Error;
use keel_host::CallContext;
use serde_json::{Value, json};

use crate::AppState;
use crate::errors::EdgeError;
use crate::http::request_id;

/// The Content-Security-Policy of every page.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML response with the pages' security headers.
fn html(status: StatusCode, document: String) -> Response {
    let mut res = (status, document).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A small error page that says what happened in general terms only.
pub(crate) fn error_page(status: StatusCode, request_id: &str) -> Response {
    let text = match status.as_u16() {
        404 => "page not found",
        429 => "too many requests",
        500..=599 => "something went wrong",
        _ => "this request cannot be answered",
    };
    let detail = if status.is_server_error() {
        format!("<p>request id: <code>{}</code></p>", escape(request_id))
    } else {
        String::new()
    };
    html(
        status,
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{text}</title></head>\
             <body><h1>{text}</h1>{detail}</body></html>\n"
        ),
    )
}

/// What a page operation answered.
#[derive(Debug, PartialEq)]
enum Body {
    Html(String),
    Script(String),
}

/// Checks a page operation's output: `{"status": 200..599, "html": "…"}`
/// or `{"status": …, "script": "…"}`, never both.
fn parse_page(out: &str) -> Option<(StatusCode, Body)> {
    let v: Value = serde_json::from_str(out).ok()?;
    let status = v.get("status")?.as_u64()?;
    let body = match (v.get("html"), v.get("script")) {
        (Some(h), None) => Body::Html(h.as_str()?.to_owned()),
        (None, Some(s)) => Body::Script(s.as_str()?.to_owned()),
        _ => return None,
    };
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (200..=599).contains(s))?;
    Some((StatusCode::from_u16(status).ok()?, body))
}

/// A script response: JavaScript that pages of any origin may load, never
/// sniffed as anything else, cached briefly — by shared caches only when
/// no consumer session asked (the operation sees who is signed in).
fn script(status: StatusCode, source: String, session: bool) -> Response {
    let mut res = (status, source).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if session {
            "private, no-store"
        } else {
            "public, max-age=300"
        }),
    );
    h.insert(header::VARY, HeaderValue::from_static("Cookie"));
    res
}

/// `GET /t/{tenant}/p/{plugin}`, `…/{plugin}/` and `…/{plugin}/{*path}`.
pub(crate) async fn page(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let rid = request_id(&headers);
    let (Ok(Path(mut params)), Ok(Query(query))) = (path, query) else {
        return error_page(StatusCode::BAD_REQUEST, &rid);
    };
    let slug = params.remove("tenant").unwrap_or_default();
    let plugin = params.remove("plugin").unwrap_or_default();
    let rest = params.remove("path").unwrap_or_default();
    let tenant = match keel_core::tenants::get_by_slug(&app.services.db, &slug).await {
        Ok(t) => t,
        Err(Error::NotFound(_)) => return error_page(StatusCode::NOT_FOUND, &rid),
        Err(e) => {
            tracing::error!(error = ?e, "looking up a tenant by slug");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, &rid);
        }
    };
    tracing::Span::current().record("tenant", tenant.id.as_str());
    let client = app.trusted_proxies.client_ip(addr, &headers);
    if !app.public_limiter.check(client, tenant.id.as_str(), 1) {
        return error_page(StatusCode::TOO_MANY_REQUESTS, &rid);
    }
    let plugins = match app.services.plugins.enabled(&tenant.id).await {
        Ok(set) => set,
        Err(e) => return error_page(EdgeError::from(e).status(), &rid),
    };
    let Some((act, operation)) = plugins.get(&plugin).and_then(|a| {
        a.manifest
            .pages
            .as_ref()
            .map(|p| (a.clone(), p.operation.clone()))
    }) else {
        return error_page(StatusCode::NOT_FOUND, &rid);
    };
    let input = json!({
        "path": rest.trim_start_matches('/'),
        "query": query,
    });
    if crate::admission::check_json(&input).is_err() {
        return error_page(StatusCode::BAD_REQUEST, &rid);
    }
    let consumer = crate::consumers::session_of(&app, &headers, &tenant.id).await;
    let session = consumer.is_some();
    let ctx = CallContext {
        caller: consumer.map(|c| c.caller()),
        // A consumer writes no master data, through any plugin.
        caller_rights: Some(keel_host::CallerRights::default()),
        client_address: Some(client.to_string()),
        request_id: rid.clone(),
        plugins: Some(plugins.clone()),
        ..CallContext::default()
    };
    let host = app.services.plugins.host();
    match host
        .call_operation(&act, &operation, &input.to_string(), ctx)
        .await
    {
        Ok(out) => match parse_page(&out) {
            Some((status, Body::Html(document))) => html(status, document),
            Some((status, Body::Script(source))) => script(status, source, session),
            None => {
                tracing::warn!(%plugin, %operation, "a page operation answered something that is not a page");
                error_page(StatusCode::BAD_GATEWAY, &rid)
            }
        },
        Err(e) => {
            let e = EdgeError::from(e);
            tracing::info!(%plugin, code = e.code(), message = %e.message(), "a page operation failed");
            error_page(e.status(), &rid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_status_from_200_to_599_and_an_html_string_make_a_page() {
        for (out, ok) in [
            (r#"{"status": 200, "html": "<p>hi</p>"}"#, true),
            (r#"{"status": 404, "html": ""}"#, true),
            (r#"{"status": 599, "html": "x"}"#, true),
            (r#"{"status": 199, "html": "x"}"#, false),
            (r#"{"status": 600, "html": "x"}"#, false),
            (r#"{"status": 70000, "html": "x"}"#, false),
            (r#"{"status": "200", "html": "x"}"#, false),
            (r#"{"status": 200, "html": 1}"#, false),
            (r#"{"status": 200}"#, false),
            ("<p>hi</p>", false),
            (r#"{"status": 200, "script": "x()"}"#, true),
            (r#"{"status": 200, "script": 1}"#, false),
            (r#"{"status": 200, "html": "x", "script": "x()"}"#, false),
        ] {
            assert_eq!(parse_page(out).is_some(), ok, "{out}");
        }
        assert_eq!(
            parse_page(r#"{"status": 200, "script": "x()"}"#).map(|(_, b)| b),
            Some(Body::Script("x()".into()))
        );
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
