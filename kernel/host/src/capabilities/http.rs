//! `keel:plugin/http`: outbound requests to hosts the tenant allowed.

use crate::bindings::WitError;
use crate::bindings::keel::plugin::http::{Host, Request, Response};
use crate::manifest::Capability;
use crate::state::State;

/// Largest response body handed to a plugin.
const MAX_RESPONSE: usize = 4 << 20;

impl Host for State {
    async fn fetch(&mut self, request: Request) -> wasmtime::Result<Result<Response, WitError>> {
        if let Err(e) = self.require(Capability::Http) {
            return Ok(Err(e));
        }
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return Ok(Err(WitError::InvalidInput(format!(
                    "url: {:?} is not an http(s) URL",
                    request.url
                ))));
            }
        };
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return Ok(Err(WitError::InvalidInput("url: has no host".into()))),
        };
        let allowed = &self.activation.grants.http_hosts;
        let bare = url.host_str().unwrap_or_default();
        if !allowed.iter().any(|a| a == &host || a == bare) {
            return Ok(Err(WitError::Denied(format!(
                "the tenant did not allow the plugin {} to reach {host}",
                self.namespace()
            ))));
        }
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return Ok(Err(WitError::InvalidInput(format!(
                    "method: {:?}",
                    request.method
                ))));
            }
        };
        let mut req = self.http.request(method, url);
        for (k, v) in &request.headers {
            req = req.header(k, v);
        }
        if let Some(body) = request.body {
            req = req.body(body);
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(WitError::Refused(crate::bindings::Refusal {
                    code: "UPSTREAM_UNREACHABLE".into(),
                    message: format!("{host}: {}", e.without_url()),
                })));
            }
        };
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = match res.bytes().await {
            Ok(b) if b.len() <= MAX_RESPONSE => b.to_vec(),
            Ok(_) => {
                return Ok(Err(WitError::InvalidInput(format!(
                    "the response from {host} is over {MAX_RESPONSE} bytes"
                ))));
            }
            Err(e) => {
                return Ok(Err(WitError::Refused(crate::bindings::Refusal {
                    code: "UPSTREAM_UNREACHABLE".into(),
                    message: format!("{host}: {}", e.without_url()),
                })));
            }
        };
        Ok(Ok(Response {
            status,
            headers,
            body,
        }))
    }
}
