//! `GET /files/{plugin}/{name}?input=<JSON object>`: a file that a plugin
//! builds chunk by chunk with one of its operations (a manifest
//! `[[downloads]]` entry).
//!
//! The gateway calls the download's operation once per chunk — an ordinary
//! plugin call: one instance, one transaction — with the client's input
//! plus `"after"` (`null`, then the previous chunk's `next`). Each call
//! answers `{"data": "<text>", "next": "<cursor>" | null, "total": <n> |
//! null}`; `next: null` ends the file. A chunk may also say `"then":
//! "<cursor>"`, the `next` that the chunk at its `next` will answer: the
//! gateway then fetches two chunks at once (on two cores, while half the
//! process's cores are not already busy with such second fetches), and
//! checks that each chunk's `next` is the cursor announced for it. The
//! first chunk is fetched before any header is sent, so its failure is an
//! ordinary JSON error with its status; later chunks are streamed as they
//! come, fetched ahead of the client (the file is never held whole: at most
//! four chunks), and a failure among them aborts the transfer, so the
//! client sees a truncated body, never a complete-looking file.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt as _;
use keel_core::authz::Action;
use keel_host::{Access, Activation, CallContext, Host, TenantPlugins};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::AppState;
use crate::errors::EdgeError;
use crate::http::{json_error, request_id, require_principal};

/// One chunk of a file, as the download's operation returned it.
#[derive(Debug)]
struct Chunk {
    data: String,
    next: Option<String>,
    /// The cursor after `next`, when the plugin knows it.
    then: Option<String>,
    total: Option<u64>,
}

/// How many chunks are fetched at once when the plugin announces `then`.
const AHEAD: usize = 2;

/// Second fetches running in the whole process, at most half its cores: a
/// plugin call computes on its worker thread until its next host call, so
/// downloads must not take every worker from other requests.
static SECOND_FETCHES: LazyLock<Arc<tokio::sync::Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(tokio::sync::Semaphore::new((cores / 2).max(1)))
});

/// Checks a chunk's JSON. `after` is the cursor the call was given: a
/// `next` equal to it would never end.
fn parse_chunk(out: &str, after: Option<&str>) -> Result<Chunk, &'static str> {
    let v: Value = serde_json::from_str(out).map_err(|_| "it is not JSON")?;
    let obj = v.as_object().ok_or("it is not a JSON object")?;
    let data = obj
        .get("data")
        .and_then(Value::as_str)
        .ok_or("it has no string `data`")?
        .to_owned();
    let next = match obj.get("next") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) => None,
        _ => return Err("its `next` is not a string or null"),
    };
    if next.is_some() && next.as_deref() == after {
        return Err("its `next` repeats the cursor it was given");
    }
    let then = match obj.get("then") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        _ => return Err("its `then` is not a string or null"),
    };
    if then.is_some() && (next.is_none() || then == next || then.as_deref() == after) {
        return Err("its `then` is not a new cursor after its `next`");
    }
    let total = match obj.get("total") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.as_u64()
                .ok_or("its `total` is not a non-negative integer or null")?,
        ),
    };
    Ok(Chunk {
        data,
        next,
        then,
        total,
    })
}

/// What fetching chunks needs; it moves into the response body's stream.
struct Fetcher {
    host: Host,
    act: Arc<Activation>,
    plugins: Arc<TenantPlugins>,
    operation: String,
    input: Map<String, Value>,
    caller: String,
    /// The org node the caller is limited to, for the plugin to enforce.
    scope: Option<String>,
    /// What the caller may write in the kernel's master data.
    caller_rights: keel_host::CallerRights,
    client: String,
    request_id: String,
    /// When the whole transfer must be over (`download_timeout`).
    deadline: Instant,
}

impl Fetcher {
    async fn fetch(&self, after: Option<&str>) -> Result<Chunk, EdgeError> {
        let mut input = self.input.clone();
        input.insert(
            "after".into(),
            after.map_or(Value::Null, |a| Value::String(a.to_owned())),
        );
        let ctx = CallContext {
            caller: Some(self.caller.clone()),
            scope: self.scope.clone(),
            caller_rights: Some(self.caller_rights),
            client_address: Some(self.client.clone()),
            request_id: self.request_id.clone(),
            plugins: Some(self.plugins.clone()),
            ..CallContext::default()
        };
        let input = Value::Object(input).to_string();
        let call = self
            .host
            .call_operation(&self.act, &self.operation, &input, ctx);
        let timed_out = || EdgeError::new("PLUGIN_TIMEOUT", "the download ran past its time limit");
        // A call that finishes in one poll never lets `timeout_at` look at
        // the clock: check it first.
        if Instant::now() >= self.deadline {
            return Err(timed_out());
        }
        let out = match tokio::time::timeout_at(self.deadline, call).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(timed_out()),
        };
        parse_chunk(&out, after).map_err(|why| self.malformed(why))
    }

    fn malformed(&self, why: &str) -> EdgeError {
        let plugin = &self.act.manifest.name;
        tracing::warn!(%plugin, operation = %self.operation, why, "malformed download chunk");
        EdgeError::new(
            "PLUGIN_INVALID_OUTPUT",
            format!(
                "the plugin {plugin} answered a chunk of a download with a value that is not a chunk: {why}"
            ),
        )
    }
}

/// `GET /files/{plugin}/{name}`.
pub(crate) async fn download(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let rid = request_id(&headers);
    let fail = |e: EdgeError| json_error(e.status(), e.code(), &e.message(), &rid);
    let principal = match require_principal(&app, &headers).await {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let (Ok(Path((plugin, name))), Ok(Query(params))) = (path, query) else {
        return fail(EdgeError::new(
            "BAD_USER_INPUT",
            "the URL cannot be decoded",
        ));
    };
    // The tenant is the credential's; a platform key has none.
    let Some(tenant) = principal.tenant.clone() else {
        return fail(EdgeError::new(
            "FORBIDDEN",
            "a platform administrator is not a member of any tenant; use a tenant's key",
        ));
    };
    let plugins = match app.services.plugins.enabled(&tenant).await {
        Ok(set) => set,
        Err(e) => return fail(e.into()),
    };
    let Some((act, download)) = plugins
        .get(&plugin)
        .and_then(|a| a.manifest.download(&name).map(|d| (a.clone(), d.clone())))
    else {
        return fail(EdgeError::new(
            "NOT_FOUND",
            format!("no download {name:?} of an enabled plugin {plugin:?}"),
        ));
    };
    let action = match download.access {
        Access::Read => Action::Read,
        Access::Write => Action::Write,
    };
    if let Err(e) = app
        .services
        .authz
        .tenant(&principal, &format!("plugin.{plugin}"), action)
        .await
    {
        return fail(e.into());
    }
    if let Err(e) = crate::errors::admits_scope(&act, principal.org_scope.as_deref()) {
        return fail(e);
    }
    let input = match params
        .get("input")
        .map(|s| serde_json::from_str::<Value>(s))
    {
        None => Map::new(),
        Some(Ok(Value::Object(m))) => m,
        Some(_) => {
            return fail(EdgeError::new(
                "BAD_USER_INPUT",
                "`input` must be a JSON object",
            ));
        }
    };
    if let Err(why) = crate::admission::check_json(&Value::Object(input.clone())) {
        return fail(EdgeError::new("BAD_USER_INPUT", why));
    }
    let caller_rights = app.services.caller_rights(Some(&principal), &act).await;
    let fetcher = Fetcher {
        host: app.services.plugins.host().clone(),
        act,
        plugins,
        operation: download.operation.clone(),
        input,
        caller: principal.label(),
        scope: principal.org_scope.clone(),
        caller_rights,
        client: app.trusted_proxies.client_ip(addr, &headers).to_string(),
        request_id: rid.clone(),
        deadline: Instant::now() + app.download_timeout,
    };
    let first = match fetcher.fetch(None).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (data, total) = (first.data, first.total);
    let ahead = first.next.map(|next| (next, first.then));
    let mut res = Response::new(Body::from_stream(body(fetcher, data, ahead)));
    let h = res.headers_mut();
    let content_type = HeaderValue::from_str(&download.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", download.file_name))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(total) = total {
        h.insert("x-keel-total", HeaderValue::from(total));
    }
    *res.status_mut() = StatusCode::OK;
    res
}

/// A chunk's bytes and whether it ends the file, or why the file broke off.
type Piece = Result<(Bytes, bool), std::io::Error>;

/// The body: the first chunk's data, then each next chunk. A task fetches
/// the chunks ahead of the client, in the request's span: the plugin builds
/// chunk n + 1 while chunk n is on its way, and n + 2 as well when the
/// plugin announced its cursor (`then`), each fetch on its own task, so on
/// its own core when there is one. The task waits for room in a channel of
/// one before it takes a fetched chunk, so a download holds at most four
/// chunks: one being sent, one in the channel, two being fetched. A client
/// that has gone stops it at once (its fetches are aborted); a client that
/// stops reading stops it at the download's deadline. A failure — a chunk's
/// error, the deadline, or the task ending early for any other reason —
/// ends the stream with an error, which aborts the transfer (no final
/// chunk), and is logged with the request id.
fn body(
    fetcher: Fetcher,
    first: String,
    ahead: Option<(String, Option<String>)>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(1);
    let last = ahead.is_none();
    if let Some((next, then)) = ahead {
        let mut cursors = VecDeque::from([next]);
        cursors.extend(then);
        let task = fetch_ahead(Arc::new(fetcher), cursors, tx);
        tokio::spawn(task.instrument(tracing::Span::current()));
    }
    let rest = futures::stream::unfold((rx, last), |(mut rx, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(Ok((bytes, last))) => Some((Ok(bytes), (rx, last))),
            Some(Err(e)) => Some((Err(e), (rx, true))),
            // The task ended before the last chunk without saying why.
            None => Some((
                Err(std::io::Error::other(
                    "the download ended before its last chunk",
                )),
                (rx, true),
            )),
        }
    });
    futures::stream::once(async move { Ok(Bytes::from(first)) }).chain(rest)
}

/// A chunk being fetched on its own task, aborted if the download ends
/// first.
struct Fetching(tokio::task::JoinHandle<Result<Chunk, EdgeError>>);

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts fetching the known `cursors` not yet being fetched: the next
/// chunk always, the one after it too when a second fetch is free in the
/// process ([`SECOND_FETCHES`]).
fn fill(f: &Arc<Fetcher>, cursors: &VecDeque<String>, fetching: &mut VecDeque<Fetching>) {
    while fetching.len() < AHEAD.min(cursors.len()) {
        let second = if fetching.is_empty() {
            None
        } else {
            match SECOND_FETCHES.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return,
            }
        };
        let (f, after) = (f.clone(), cursors[fetching.len()].clone());
        let task = async move {
            let chunk = f.fetch(Some(&after)).await;
            drop(second);
            chunk
        };
        fetching.push_back(Fetching(tokio::spawn(
            task.instrument(tracing::Span::current()),
        )));
    }
}

/// Takes a fetched chunk into the file: its `next` must be the cursor
/// announced for the chunk after it, if one was; its cursors join the
/// ones still to fetch. `cursors` holds the chunk after this one, if it
/// was announced (a `then` reaches one chunk past the `next`, so never
/// more).
fn follow(f: &Fetcher, chunk: &Chunk, cursors: &mut VecDeque<String>) -> Result<(), EdgeError> {
    debug_assert!(cursors.len() <= 1);
    match (&chunk.next, cursors.front()) {
        (Some(next), Some(announced)) if next != announced => {
            return Err(f.malformed("its `next` is not the `then` the chunk before announced"));
        }
        (None, Some(_)) => {
            return Err(f.malformed("it ends the file where the chunk before announced another"));
        }
        (Some(next), None) => cursors.push_back(next.clone()),
        _ => {}
    }
    cursors.extend(chunk.then.clone());
    Ok(())
}

/// Fetches the chunks at `cursors` and after, into `tx`, until the last
/// one, a failure, or the client going away.
async fn fetch_ahead(
    f: Arc<Fetcher>,
    mut cursors: VecDeque<String>,
    tx: tokio::sync::mpsc::Sender<Piece>,
) {
    let mut fetching = VecDeque::new();
    loop {
        fill(&f, &cursors, &mut fetching);
        let permit = match tokio::time::timeout_at(f.deadline, tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return, // the client went away
            Err(_) => {
                tracing::warn!(
                    request_id = %f.request_id,
                    plugin = %f.act.manifest.name,
                    "download aborted: the client did not read it within its time limit"
                );
                return;
            }
        };
        let Some(mut head) = fetching.pop_front() else {
            return;
        };
        cursors.pop_front();
        let chunk = tokio::select! {
            biased;
            () = tx.closed() => return,
            done = &mut head.0 => done.unwrap_or_else(|e| {
                Err(EdgeError::Kernel(keel_core::Error::Internal(
                    anyhow::anyhow!("fetching a download's chunk: {e}"),
                )))
            }),
        };
        let piece = match chunk.and_then(|c| follow(&f, &c, &mut cursors).map(|()| c)) {
            Ok(c) => {
                // The next fetches start before this chunk is sent.
                fill(&f, &cursors, &mut fetching);
                Ok((Bytes::from(c.data), c.next.is_none()))
            }
            Err(e) => {
                fetching.clear();
                let message = e.message();
                tracing::warn!(
                    request_id = %f.request_id,
                    plugin = %f.act.manifest.name,
                    code = e.code(),
                    message = %message,
                    "download aborted mid-stream"
                );
                Err(std::io::Error::other(format!("{}: {message}", e.code())))
            }
        };
        let done = !matches!(piece, Ok((_, false)));
        permit.send(piece);
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_must_have_string_data_and_a_next_that_moves_on() {
        for (out, after, ok) in [
            (r#"{"data": "a\n", "next": "1", "total": 3}"#, None, true),
            (r#"{"data": "", "next": null}"#, Some("1"), true),
            (r#"{"data": "a", "next": null, "total": null}"#, None, true),
            (r#"{"data": "a", "next": "1"}"#, Some("1"), false),
            (r#"{"data": 1, "next": null}"#, None, false),
            (r#"{"data": "a"}"#, None, false),
            (r#"{"data": "a", "next": 2}"#, None, false),
            (r#"{"data": "a", "next": null, "total": -1}"#, None, false),
            (
                r#"{"data": "a", "next": "2", "then": "3"}"#,
                Some("1"),
                true,
            ),
            (
                r#"{"data": "a", "next": "2", "then": null}"#,
                Some("1"),
                true,
            ),
            (
                r#"{"data": "a", "next": null, "then": "3"}"#,
                Some("1"),
                false,
            ),
            (
                r#"{"data": "a", "next": "2", "then": "2"}"#,
                Some("1"),
                false,
            ),
            (
                r#"{"data": "a", "next": "2", "then": "1"}"#,
                Some("1"),
                false,
            ),
            (r#"{"data": "a", "next": "2", "then": 3}"#, Some("1"), false),
            (r#"["data"]"#, None, false),
            ("not json", None, false),
        ] {
            assert_eq!(parse_chunk(out, after).is_ok(), ok, "{out} after {after:?}");
        }
    }
}
