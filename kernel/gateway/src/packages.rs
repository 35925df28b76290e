//! `POST /packages`: installs a plugin package on the platform over HTTP,
//! for a platform administrator (`keel plugin dev` uses it; `keel plugin
//! install` does the same from a shell on the kernel's machine).
//!
//! The body is `multipart/form-data` with two parts: `manifest`, the
//! package's `keel-plugin.toml`, and `component`, its WebAssembly
//! component. The package is checked as every install checks it (the
//! manifest, its limits, event ownership, the component compiled, its
//! contract version against the manifest's) before anything is stored;
//! the same name, version and component again changes nothing (200),
//! other content under a taken version is a `CONFLICT`. Installing makes
//! a package available to every tenant, so a tenant's key is refused:
//! enabling it is each tenant's own step (`enablePlugin`).
//!
//! ```sh
//! curl -H "Authorization: Bearer $KEEL_ADMIN_TOKEN" \
//!   -F manifest=@keel-plugin.toml -F component=@plugin.wasm \
//!   http://127.0.0.1:8080/packages
//! ```

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use keel_core::authz::{Action, objects};
use keel_host::Manifest;
use serde_json::json;

use crate::AppState;
use crate::errors::EdgeError;
use crate::http::{json_error, request_id, require_principal};

/// The largest manifest accepted (a manifest with a large SDL and schemas
/// is a few tens of KiB).
const MAX_MANIFEST: usize = 256 << 10;

/// `POST /packages`.
pub(crate) async fn upload(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Multipart, MultipartRejection>,
) -> Response {
    let rid = request_id(&headers);
    let fail = |e: EdgeError| closing(json_error(e.status(), e.code(), &e.message(), &rid));
    let principal = match require_principal(&app, &headers).await {
        Ok(p) => p,
        Err(res) => return closing(*res),
    };
    if let Err(e) = app
        .services
        .authz
        .platform(&principal, objects::PACKAGES, Action::Write)
        .await
    {
        return fail(EdgeError::new(
            "FORBIDDEN",
            format!(
                "{e}: installing a package makes it available to every tenant, so only a \
                 platform administrator's key (KEEL_ADMIN_TOKEN) may; a tenant enables an \
                 installed package with enablePlugin"
            ),
        ));
    }
    let (manifest, component) = match parts(body).await {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let manifest = match Manifest::from_toml(&manifest) {
        Ok(m) => m,
        Err(e) => {
            return fail(keel_core::Error::bad_input("manifest", e).into());
        }
    };
    let registry = &app.services.plugins;
    let existed = registry
        .package(&manifest.name, Some(&manifest.version))
        .await
        .is_ok();
    match registry.install(manifest, &component).await {
        Ok(p) => {
            tracing::info!(
                plugin = %p.manifest.name,
                version = %p.manifest.version,
                hash = %p.hash,
                by = %principal.label(),
                "package installed over HTTP"
            );
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let body = json!({
                "name": p.manifest.name,
                "version": p.manifest.version,
                "hash": p.hash,
                "installed": !existed,
            });
            (status, axum::Json(body)).into_response()
        }
        Err(e) => fail(e.into()),
    }
}

/// A refusal answered before the body was read whole: the connection is
/// closed after it (and says so), so that a client never sends its next
/// request on a connection the server is about to drop with the unread
/// rest of a package in it.
fn closing(mut res: Response) -> Response {
    res.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    res
}

/// The body's `manifest` (text) and `component` (bytes), each once.
async fn parts(
    body: Result<Multipart, MultipartRejection>,
) -> Result<(String, axum::body::Bytes), EdgeError> {
    let bad = |m: String| EdgeError::new("BAD_USER_INPUT", m);
    let mut body = body.map_err(|e| {
        bad(format!(
            "the body must be multipart/form-data with the parts manifest and component: {e}"
        ))
    })?;
    let (mut manifest, mut component) = (None, None);
    loop {
        let field = match body.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(too_large_or(e, bad)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "manifest" if manifest.is_none() => {
                // Read chunk by chunk: a manifest over its limit is refused
                // without being held whole.
                let mut bytes = Vec::new();
                let mut field = field;
                while let Some(chunk) = field.chunk().await.map_err(|e| too_large_or(e, bad))? {
                    if bytes.len() + chunk.len() > MAX_MANIFEST {
                        return Err(bad(format!("manifest: over {MAX_MANIFEST} bytes")));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let text =
                    String::from_utf8(bytes).map_err(|_| bad("manifest: not UTF-8 text".into()))?;
                manifest = Some(text);
            }
            "component" if component.is_none() => {
                let bytes = field.bytes().await.map_err(|e| too_large_or(e, bad))?;
                component = Some(bytes);
            }
            "manifest" | "component" => return Err(bad(format!("{name}: given twice"))),
            other => {
                return Err(bad(format!(
                    "{other:?}: unknown part; the parts are manifest and component"
                )));
            }
        }
    }
    match (manifest, component) {
        (Some(m), Some(c)) => Ok((m, c)),
        (None, _) => Err(bad(
            "manifest: missing (the package's keel-plugin.toml)".into()
        )),
        (_, None) => Err(bad(
            "component: missing (the plugin's .wasm component)".into()
        )),
    }
}

/// A body over the route's limit is `PAYLOAD_TOO_LARGE` (413); any other
/// malformed multipart body is bad input.
fn too_large_or(
    e: axum::extract::multipart::MultipartError,
    bad: impl Fn(String) -> EdgeError,
) -> EdgeError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        EdgeError::new(
            "PAYLOAD_TOO_LARGE",
            format!("the package is over the kernel's limit: {}", e.body_text()),
        )
    } else {
        bad(format!("the multipart body: {}", e.body_text()))
    }
}
