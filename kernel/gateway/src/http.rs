//! HTTP endpoints: GraphQL over HTTP, health, readiness and metrics.
//!
//! `POST /graphql` and `GET /graphql` follow the GraphQL-over-HTTP
//! specification: JSON requests; `application/graphql-response+json`
//! (with 4xx for requests that fail before execution) or
//! `application/json` (always 200) responses, by the `Accept` header.
//! A browser's `GET /graphql` gets GraphiQL. Mutations are refused over GET.

use std::net::{IpAddr, SocketAddr};

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_core::identity::{self, Principal};
use keel_core::{Error, TenantId};
use serde::Deserialize;
use tracing::Span;

use crate::AppState;
use crate::admission::{self, Shape};
use crate::errors::{ensure_codes, request_error};
use crate::graphql::RequestInfo;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// The response media type a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    GraphqlResponse,
    Json,
}

/// The format the client accepts, or the 406 response to send.
fn negotiate(headers: &HeaderMap) -> Result<Format, Box<Response>> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    if types.contains(&GRAPHQL_RESPONSE_JSON) {
        Ok(Format::GraphqlResponse)
    } else if types
        .iter()
        .any(|t| *t == JSON || *t == "*/*" || *t == "application/*")
    {
        Ok(Format::Json)
    } else {
        Err(Box::new(error_response(
            Format::Json,
            StatusCode::NOT_ACCEPTABLE,
            "BAD_USER_INPUT",
            "accept application/graphql-response+json or application/json",
        )))
    }
}

fn error_response(format: Format, status: StatusCode, code: &str, message: &str) -> Response {
    let body = async_graphql::Response::from_errors(vec![request_error(code, message)]);
    json_response(format, status, &body)
}

/// True for a response to a request that failed before execution (parse,
/// validation, limits): no data and no error with a path.
fn is_request_error(body: &async_graphql::Response) -> bool {
    body.data == async_graphql::Value::Null
        && !body.errors.is_empty()
        && body.errors.iter().all(|e| e.path.is_empty())
}

fn json_response(format: Format, status: StatusCode, body: &async_graphql::Response) -> Response {
    let mut value = serde_json::to_value(body).unwrap_or_else(|_| serde_json::json!({}));
    // A request that failed before execution has no `data` entry at all
    // (the GraphQL spec's "Response Format"), not `"data": null`.
    if is_request_error(body)
        && let Some(m) = value.as_object_mut()
    {
        m.remove("data");
    }
    let bytes = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
    let ct = match format {
        Format::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
        Format::Json => JSON,
    };
    let mut res = (status, bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    res
}

/// A JSON GraphQL request body, or the 400 response to send.
fn parse_body(format: Format, body: &[u8]) -> Result<async_graphql::Request, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error_response(
            format,
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            &format!("the body is not a GraphQL request: {e}"),
        ))
    })
}

/// Refuses a body that is not `application/json`: a web page can post a
/// form or `text/plain` across origins without a preflight, so anything
/// else could be a visitor's browser made to call the API.
fn require_json(format: Format, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(JSON));
    if is_json {
        Ok(())
    } else {
        Err(Box::new(error_response(
            format,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_USER_INPUT",
            "send the request as Content-Type: application/json",
        )))
    }
}

/// Measures the request before any work (see [`crate::admission`]), or
/// answers why it is refused.
fn admit(
    app: &AppState,
    format: Format,
    request: &mut async_graphql::Request,
) -> Result<Option<Shape>, Box<Response>> {
    admission::admit(request, app.admission).map_err(|why| {
        app.metrics.graphql_error("BAD_USER_INPUT");
        let status = match format {
            Format::GraphqlResponse => StatusCode::BAD_REQUEST,
            Format::Json => StatusCode::OK,
        };
        Box::new(error_response(format, status, "BAD_USER_INPUT", &why))
    })
}

/// `POST /graphql`.
pub(crate) async fn graphql_post(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = match negotiate(&headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = require_json(format, &headers) {
        return *r;
    }
    let mut request = match parse_body(format, &body) {
        Ok(r) => r,
        Err(res) => return *res,
    };
    let shape = match admit(&app, format, &mut request) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let client = app.trusted_proxies.client_ip(addr, &headers);
    execute(&app, request, shape, &headers, client, format, None).await
}

/// Cross-origin access to a tenant's public GraphQL from the `origins`
/// the operator lists (`public_origins`; `*` for any), so that the
/// brand's own pages (the CDP's tracker on the brand's H5 site) may call
/// it: `POST` with a JSON body, and never with credentials — the answer
/// carries no `Access-Control-Allow-Credentials`, so a browser sends no
/// cookie cross-site and another site cannot act as a signed-in consumer.
/// No origin is listed by default: then no other origin's page may call.
pub(crate) fn public_cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(86_400))
}

/// `POST /t/{tenant}/graphql`: a tenant's public plugin operations (a
/// consumer's scan, say), without a credential, rate-limited per client
/// address. The tenant comes from the URL; credentials are ignored.
pub(crate) async fn public_post(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    axum::extract::Path(slug): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = match negotiate(&headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = require_json(format, &headers) {
        return *r;
    }
    let tenant = match keel_core::tenants::get_by_slug(&app.services.db, &slug).await {
        Ok(t) => t,
        Err(Error::NotFound(_)) => {
            return error_response(format, StatusCode::NOT_FOUND, "NOT_FOUND", "no such tenant");
        }
        Err(e) => {
            tracing::error!(error = ?e, "looking up a tenant by slug");
            return error_response(
                format,
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            );
        }
    };
    let mut request = match parse_body(format, &body) {
        Ok(r) => r,
        Err(res) => return *res,
    };
    let shape = match admit(&app, format, &mut request) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    // Every operation the request runs is a call against the limits, so
    // that aliases cannot multiply one request into a thousand calls.
    let calls = shape.as_ref().map_or(1, Shape::operations).max(1);
    if calls > u64::from(app.public_operations_per_request) {
        app.metrics.graphql_error("BAD_USER_INPUT");
        return error_response(
            format,
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            &format!(
                "a public request may run at most {} operations; this one runs {calls}",
                app.public_operations_per_request
            ),
        );
    }
    let client = app.trusted_proxies.client_ip(addr, &headers);
    if !app
        .public_limiter
        .check(client, tenant.id.as_str(), calls as u32)
    {
        app.metrics.graphql_error("RATE_LIMITED");
        return error_response(
            format,
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests; slow down",
        );
    }
    let mut headers = headers;
    headers.remove(header::AUTHORIZATION);
    execute(
        &app,
        request,
        shape,
        &headers,
        client,
        format,
        Some(tenant.id),
    )
    .await
}

/// Query parameters of `GET /graphql`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// `GET /graphql`: a query in the URL, or GraphiQL for a browser.
pub(crate) async fn graphql_get(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<GetParams>,
) -> Response {
    let Some(query) = params.query else {
        let wants_html = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if wants_html {
            return crate::graphiql::page();
        }
        return error_response(
            Format::Json,
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "missing the `query` parameter",
        );
    };
    let format = match negotiate(&headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut request = async_graphql::Request::new(query);
    if let Some(op) = params.operation_name {
        request = request.operation_name(op);
    }
    for (name, raw) in [
        ("variables", &params.variables),
        ("extensions", &params.extensions),
    ] {
        let Some(raw) = raw else { continue };
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) if name == "variables" => {
                request = request.variables(async_graphql::Variables::from_json(v));
            }
            Ok(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    if let Ok(v) = async_graphql::Value::from_json(v) {
                        request.extensions.insert(k, v);
                    }
                }
            }
            _ => {
                return error_response(
                    format,
                    StatusCode::BAD_REQUEST,
                    "BAD_USER_INPUT",
                    &format!("the `{name}` parameter is not a JSON object"),
                );
            }
        }
    }
    let shape = match admit(&app, format, &mut request) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if shape
        .as_ref()
        .is_some_and(|s| s.operation == Some(OperationType::Mutation))
    {
        let mut res = error_response(
            format,
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_USER_INPUT",
            "mutations must be sent with POST",
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    let client = app.trusted_proxies.client_ip(addr, &headers);
    execute(&app, request, shape, &headers, client, format, None).await
}

/// The response to a credential that did not authenticate: 401 with
/// `WWW-Authenticate`, or 500 when the database failed (logged here).
fn auth_failure(app: &AppState, format: Format, e: &Error) -> Response {
    let (status, message) = match e {
        Error::Internal(cause) => {
            tracing::error!(error = ?cause, "authenticating a request");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            )
        }
        other => (StatusCode::UNAUTHORIZED, other.to_string()),
    };
    app.metrics.graphql_error(e.code());
    let mut res = error_response(format, status, e.code(), &message);
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

/// Names the caller (and its tenant) in the request's tracing span.
pub(crate) fn record_principal(p: &Principal) {
    let span = Span::current();
    span.record("principal", p.label());
    if let Some(t) = &p.tenant {
        span.record("tenant", t.as_str());
    }
}

/// The caller of a request outside GraphQL (a download): a bearer
/// credential is required; its absence or failure is the JSON error
/// response to send.
pub(crate) async fn require_principal(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, Box<Response>> {
    match principal_of(app, headers).await {
        Ok(Some(p)) => {
            record_principal(&p);
            Ok(p)
        }
        Ok(None) => Err(Box::new(auth_failure(
            app,
            Format::Json,
            &Error::Unauthenticated(
                "send an API key or session token as `Authorization: Bearer …`".into(),
            ),
        ))),
        Err(e) => Err(Box::new(auth_failure(app, Format::Json, &e))),
    }
}

/// A JSON error response (`{"errors": [{"message", "extensions": {"code"}}]}`)
/// for routes outside GraphQL. An `INTERNAL` error carries the request id.
pub(crate) fn json_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response {
    let mut e = request_error(code, message);
    if code == "INTERNAL" {
        e.extensions
            .get_or_insert_with(Default::default)
            .set("requestId", request_id);
    }
    json_response(
        Format::Json,
        status,
        &async_graphql::Response::from_errors(vec![e]),
    )
}

/// Stops a request that runs past `limit`: its future is dropped, and the
/// client gets `503` with a `TIMEOUT` error (an error page for a plugin's
/// page), so that it knows the server was busy. Not `408`, which says the
/// client was too slow to send and which browsers may resend on their own.
pub(crate) async fn time_limit(
    State(limit): State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let rid = request_id(req.headers());
    let page = is_page(req.uri().path());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                ?limit,
                "a request ran past the request timeout and was stopped"
            );
            if page {
                return crate::pages::error_page(StatusCode::SERVICE_UNAVAILABLE, &rid);
            }
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "TIMEOUT",
                &format!(
                    "the request did not finish within {} s and was stopped; retry later",
                    limit.as_secs_f64()
                ),
                &rid,
            )
        }
    }
}

/// `/t/{tenant}/p/…`: a plugin's page, answered in HTML.
fn is_page(path: &str) -> bool {
    let mut parts = path.split('/').skip(1);
    parts.next() == Some("t") && parts.nth(1) == Some("p")
}

/// The request id set by the gateway's request-id layer.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn principal_of(app: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::Unauthenticated("use `Authorization: Bearer <key or session token>`".into())
        })?;
    identity::authenticate(&app.services.db, token)
        .await
        .map(Some)
}

async fn execute(
    app: &AppState,
    request: async_graphql::Request,
    shape: Option<Shape>,
    headers: &HeaderMap,
    client: IpAddr,
    format: Format,
    public_tenant: Option<TenantId>,
) -> Response {
    let request_id = request_id(headers);
    let principal = match principal_of(app, headers).await {
        Ok(p) => p,
        Err(e) => return auth_failure(app, format, &e),
    };
    if let Some(p) = &principal {
        record_principal(p);
    }
    let tenant = public_tenant
        .clone()
        .or_else(|| principal.as_ref().and_then(|p| p.tenant.clone()));
    let needs_tenant_schema = public_tenant.is_some()
        || shape
            .as_ref()
            .is_some_and(|s| app.tenant_schemas.needs_tenant_schema(s));
    let mut tenant_schema = None;
    if let (Some(t), true) = (&tenant, needs_tenant_schema) {
        match app.services.plugins.enabled(t).await {
            Ok(set) if !set.plugins.is_empty() => match app.tenant_schemas.schema(t.as_str(), &set)
            {
                Ok(schema) => tenant_schema = Some((schema, set)),
                Err(e) => {
                    tracing::error!(tenant = %t, error = %e, "building the tenant's schema");
                    return error_response(
                        format,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "INTERNAL",
                        "internal error",
                    );
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::error!(tenant = %t, error = ?e, "loading the tenant's plugins");
                return error_response(
                    format,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error",
                );
            }
        }
    }
    let consumer = match &public_tenant {
        Some(t) => crate::consumers::session_of(app, headers, t)
            .await
            .map(|s| s.caller()),
        None => None,
    };
    let null_data = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let request = request.data(RequestInfo {
        principal,
        consumer,
        client_ip: client,
        request_id: request_id.clone(),
        null_data: null_data.clone(),
    });
    let mut response = match tenant_schema {
        Some((schema, set)) => schema.execute(request.data(set)).await,
        None => app.schema.execute(request).await,
    };
    if null_data.load(std::sync::atomic::Ordering::Relaxed) {
        response.data = async_graphql::Value::Null;
        response
            .errors
            .retain(|e| e.message != crate::tenant_schema::NULLED_DATA);
    }
    ensure_codes(&mut response.errors, &request_id);
    for e in &response.errors {
        if let Some(async_graphql::Value::String(code)) =
            e.extensions.as_ref().and_then(|x| x.get("code"))
        {
            app.metrics.graphql_error(code);
        }
    }
    let status = if format == Format::GraphqlResponse && is_request_error(&response) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    json_response(format, status, &response)
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers and is migrated, and the installed
/// plugins are compiled (no warm-up is running), so that no request waits
/// for a compile.
pub(crate) async fn readyz(State(app): State<AppState>) -> Response {
    if app.services.plugins.host().warming_up() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: compiling plugins",
        )
            .into_response();
    }
    if app.services.db.is_ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    let mut res = app.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
