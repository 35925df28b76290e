//! The harness's loopback HTTP endpoint: what a plugin's `http` capability
//! reaches in its tests. The test scripts answers by method and path and
//! reads back the requests the plugin sent, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Refusal, text};

/// The most requests kept for the test to read; older ones are dropped.
const MAX_KEPT: usize = 1_000;

/// A scripted answer.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Script {
    /// By (method, path): the answers still to give, in order; the last
    /// one is repeated.
    answers: HashMap<(String, String), Vec<Answer>>,
    /// The requests received, oldest first.
    received: Vec<Value>,
}

/// The running endpoint.
#[derive(Debug)]
pub(crate) struct Endpoint {
    addr: std::net::SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Endpoint {
    pub(crate) async fn start() -> anyhow::Result<Endpoint> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let script = shared.clone();
                async move { answer(&script, method, uri, headers, body) }
            },
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the harness's HTTP endpoint stopped");
            }
        });
        Ok(Endpoint { addr, script })
    }

    /// `http://127.0.0.1:PORT`, the host to give a plugin in its config.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, the host the harness grants a plugin that asks
    /// for HTTP to hosts the tenant names (`http_hosts = ["*"]`).
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scripts the answers to `method path` (appended to those not given yet).
    pub(crate) fn respond(&self, req: &Value) -> Result<Value, Refusal> {
        let method = text(req, "method")?.to_ascii_uppercase();
        Method::from_bytes(method.as_bytes())
            .map_err(|_| Refusal::bad(format!("method: {method:?} is not an HTTP method")))?;
        let path = text(req, "path")?;
        if !path.starts_with('/') || path.contains(['?', '#']) {
            return Err(Refusal::bad(format!(
                "path: {path:?} must start with '/' and hold no query (answers are matched \
                 on the path alone)"
            )));
        }
        let status = req.get("status").and_then(Value::as_u64).unwrap_or(200);
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| Refusal::bad(format!("status: {status} is not an HTTP status")))?;
        let mut headers = Vec::new();
        if let Some(h) = req.get("headers") {
            let h = h
                .as_object()
                .ok_or_else(|| Refusal::bad("headers: must be an object of strings"))?;
            for (k, v) in h {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| Refusal::bad(format!("headers: {k:?} is not a header name")))?;
                let value = v
                    .as_str()
                    .and_then(|v| HeaderValue::from_str(v).ok())
                    .ok_or_else(|| Refusal::bad(format!("headers.{k}: not a header value")))?;
                headers.push((name, value));
            }
        }
        let body = match req.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(v) => {
                if !headers
                    .iter()
                    .any(|(k, _)| k == axum::http::header::CONTENT_TYPE)
                {
                    headers.push((
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ));
                }
                serde_json::to_vec(v).map_err(|e| Refusal::bad(e.to_string()))?
            }
        };
        let answer = Answer {
            status,
            headers,
            body,
        };
        self.lock()
            .answers
            .entry((method, path.to_owned()))
            .or_default()
            .push(answer);
        Ok(Value::Null)
    }

    /// The requests received so far, oldest first; with `"clear": true`
    /// they are forgotten after this answer.
    pub(crate) fn requests(&self, req: &Value) -> Value {
        let mut script = self.lock();
        let received = if req.get("clear").and_then(Value::as_bool) == Some(true) {
            std::mem::take(&mut script.received)
        } else {
            script.received.clone()
        };
        Value::Array(received)
    }
}

fn answer(
    script: &Mutex<Script>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut script = script.lock().unwrap_or_else(|e| e.into_inner());
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    if script.received.len() >= MAX_KEPT {
        script.received.remove(0);
    }
    script.received.push(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }));
    let key = (method.as_str().to_owned(), uri.path().to_owned());
    let Some(queue) = script.answers.get_mut(&key) else {
        let text = format!(
            "the test scripted no answer to {} {} (harness `respond`)",
            key.0, key.1
        );
        return (StatusCode::NOT_FOUND, text).into_response();
    };
    let next = if queue.len() > 1 {
        queue.remove(0)
    } else {
        queue[0].clone()
    };
    let mut res = (next.status, next.body).into_response();
    for (k, v) in next.headers {
        res.headers_mut().insert(k, v);
    }
    res
}
