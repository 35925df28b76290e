#![doc = include_str!("../README.md")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Keel release this client came with: the harness of another release
/// is used all the same, with a warning.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A kernel for a plugin's tests: `keel plugin harness`, a process of the
/// `keel` binary (`KEEL_BIN`, else `keel` on `PATH`; `keel plugin test`
/// sets `KEEL_BIN` to itself). It runs the kernel `keel serve` runs, on a
/// throwaway SQLite database with one tenant, and stops when this is
/// dropped.
///
/// Operations and [`Harness::plugin`] return the kernel's refusals as
/// [`CallError`]s, since tests assert on them. The fixtures and readers
/// (`person`, `emit`, `events`, …) panic with the harness's message when
/// it refuses, as a failed assertion does.
pub struct Harness {
    io: Mutex<Io>,
    http: String,
}

struct Io {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// A plugin enabled in the harness.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
    pub version: String,
}

/// A refusal: of an operation (the plugin's own `Error`, a limit, an
/// output that does not match its GraphQL type) or of the harness itself
/// (a build that failed, a manifest that does not validate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// As GraphQL clients see it in `extensions.code`, e.g.
    /// `BAD_USER_INPUT`, `NOT_FOUND`, `PLUGIN_INVALID_OUTPUT`; `HARNESS`
    /// for a build or start-up failure.
    pub code: String,
    pub message: String,
    /// The input field at fault, when the refusal names one.
    pub field: Option<String>,
}

impl CallError {
    pub fn code(&self) -> &str {
        &self.code
    }

    fn harness(message: impl Into<String>) -> CallError {
        CallError {
            code: "HARNESS".into(),
            message: message.into(),
            field: None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Starts a harness process of `KEEL_BIN`, else of `keel` on `PATH`,
    /// and waits until its kernel is ready.
    pub fn start() -> Result<Harness, CallError> {
        let bin = std::env::var_os("KEEL_BIN").unwrap_or_else(|| "keel".into());
        Harness::start_with(bin)
    }

    /// Starts a harness process of the `keel` binary at `bin`.
    pub fn start_with(bin: impl AsRef<std::ffi::OsStr>) -> Result<Harness, CallError> {
        let bin = bin.as_ref();
        let mut child = Command::new(bin)
            .args(["plugin", "harness"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                CallError::harness(format!(
                    "could not start `{} plugin harness` ({e}): run the tests with \
                     `keel plugin test`, put `keel` on PATH, or set KEEL_BIN to the keel binary",
                    bin.to_string_lossy()
                ))
            })?;
        // The harness's log lines reach the test's output (captured with
        // it: a spawned thread inherits the test's capture).
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[keel] {line}");
                }
            });
        }
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut io = Io {
            child,
            stdin,
            stdout,
        };
        let ready = io.read()?;
        let ready = ready
            .get("ready")
            .ok_or_else(|| CallError::harness(format!("the harness did not start: {ready}")))?;
        let keel = ready["keel"].as_str().unwrap_or("?");
        if keel != VERSION {
            eprintln!(
                "warning: this plugin's keel-plugin-test came with Keel {VERSION}, the harness \
                 is Keel {keel}: `keel plugin sdk` refreshes the plugin's copy of the SDK"
            );
        }
        Ok(Harness {
            http: ready["http"].as_str().unwrap_or_default().to_owned(),
            io: Mutex::new(io),
        })
    }

    /// Sends one request and returns its answer.
    pub fn request(&self, request: Value) -> Result<Value, CallError> {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        io.write(&request)?;
        let answer = io.read()?;
        if let Some(ok) = answer.get("ok") {
            return Ok(ok.clone());
        }
        let e = &answer["error"];
        Err(CallError {
            code: e["code"].as_str().unwrap_or("HARNESS").to_owned(),
            message: e["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| answer.to_string()),
            field: e["field"].as_str().map(str::to_owned),
        })
    }

    fn fixture(&self, request: Value) -> Value {
        let op = request["op"].clone();
        self.request(request)
            .unwrap_or_else(|e| panic!("the harness refused {op}: {e}"))
    }

    /// Builds the plugin crate in `dir` (with its `keel-plugin.toml`),
    /// installs it, and enables it with everything its manifest requests
    /// and `config`, checked as `enablePlugin` checks. A plugin asking for
    /// HTTP to hosts the tenant names (`http_hosts = ["*"]`) is granted
    /// [`Harness::http_url`]'s host. The same plugin again is enabled anew
    /// with the new config, its data kept; changed code needs a new
    /// version in the manifest (an installed version never changes:
    /// `CONFLICT`).
    pub fn plugin(&self, dir: impl AsRef<Path>, config: Value) -> Result<Plugin, CallError> {
        let dir = dir.as_ref().to_string_lossy();
        let out = self.request(json!({"op": "plugin", "dir": dir, "config": config}))?;
        Ok(Plugin {
            name: out["name"].as_str().unwrap_or_default().to_owned(),
            version: out["version"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Calls an operation as the tenant's operator (an owner key), with
    /// the gateway's checks: an answer that does not match the type the
    /// plugin's SDL declares is `PLUGIN_INVALID_OUTPUT`.
    pub fn call(&self, plugin: &Plugin, operation: &str, input: Value) -> Result<Value, CallError> {
        self.request(json!({
            "op": "call", "plugin": plugin.name, "operation": operation, "input": input,
        }))
    }

    /// Calls an operation as an anonymous client: only operations the
    /// manifest lists as public answer.
    pub fn call_public(
        &self,
        plugin: &Plugin,
        operation: &str,
        input: Value,
    ) -> Result<Value, CallError> {
        self.request(json!({
            "op": "call", "plugin": plugin.name, "operation": operation, "input": input,
            "as": "public",
        }))
    }

    /// The tenant's events of `event_type`, oldest first (up to 100), as
    /// GraphQL shows them: `id`, `type`, `personId`, `payload`,
    /// `producer`, `occurredAt`.
    pub fn events(&self, event_type: &str) -> Vec<Value> {
        match self.fixture(json!({"op": "events", "type": event_type})) {
            Value::Array(events) => events,
            _ => Vec::new(),
        }
    }

    /// A counter of the plugin (0 when never written).
    pub fn counter(&self, plugin: &Plugin, key: &str) -> i64 {
        self.fixture(json!({"op": "counter", "plugin": plugin.name, "key": key}))
            .as_i64()
            .unwrap_or(0)
    }

    /// A record of the plugin, if any.
    pub fn record(&self, plugin: &Plugin, collection: &str, key: &str) -> Option<Value> {
        let r = self.fixture(json!({
            "op": "record", "plugin": plugin.name, "collection": collection, "key": key,
        }));
        (!r.is_null()).then_some(r)
    }

    /// Runs the handlers of the events due to async subscribers, once;
    /// returns how many deliveries were handled. In the harness a handler
    /// has one attempt: one that fails is a dead letter at once.
    pub fn deliver_events(&self) -> usize {
        self.fixture(json!({"op": "deliver"}))["handled"]
            .as_u64()
            .unwrap_or(0) as usize
    }

    /// Deliveries whose handler failed: `eventType`, `subscriber`, `error`.
    pub fn dead_letters(&self) -> Vec<Value> {
        match self.fixture(json!({"op": "dead_letters"})) {
            Value::Array(d) => d,
            _ => Vec::new(),
        }
    }

    /// The id of the person behind `identifiers` (`(kind, value)`), made
    /// if new, with `attributes` (a JSON object, or `null`) merged into
    /// the profile.
    pub fn person(&self, identifiers: &[(&str, &str)], attributes: Value) -> String {
        let ids: Vec<Value> = identifiers
            .iter()
            .map(|(kind, value)| json!({"kind": kind, "value": value}))
            .collect();
        let out =
            self.fixture(json!({"op": "person", "identifiers": ids, "attributes": attributes}));
        out["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Appends an event as `producer` would have emitted it (another
    /// plugin's name, e.g. `rewards`) and queues it for async subscribers:
    /// [`Harness::deliver_events`] then runs their handlers. Returns the
    /// event.
    pub fn emit(
        &self,
        producer: &str,
        event_type: &str,
        person: Option<&str>,
        payload: Value,
    ) -> Value {
        self.fixture(json!({
            "op": "emit", "producer": producer, "type": event_type, "person": person,
            "payload": payload,
        }))
    }

    /// Fixes the wall clock plugins read (RFC 3339, e.g.
    /// `2026-12-31T23:59:00+08:00`).
    pub fn set_clock(&self, at: &str) {
        self.fixture(json!({"op": "clock", "at": at}));
    }

    /// Gives plugins the system's clock again.
    pub fn reset_clock(&self) {
        self.fixture(json!({"op": "clock", "at": null}));
    }

    /// Calls the plugin makes to `plugin`'s `operation` answer `output`
    /// from now on, without that plugin enabled: the caller's side of the
    /// call is checked as in production (declared in `[[calls]]`, its
    /// input a JSON object), and [`Harness::stubbed_calls`] shows it.
    pub fn stub_call(&self, plugin: &str, operation: &str, output: Value) {
        self.fixture(json!({
            "op": "stub", "plugin": plugin, "operation": operation, "output": output,
        }));
    }

    /// Calls to `plugin`'s `operation` fail with `code` (`NOT_FOUND`, …,
    /// or the callee's own, e.g. `INSUFFICIENT_POINTS`) and `message`.
    pub fn stub_error(&self, plugin: &str, operation: &str, code: &str, message: &str) {
        self.fixture(json!({
            "op": "stub", "plugin": plugin, "operation": operation,
            "error": {"code": code, "message": message},
        }));
    }

    /// The calls stubs answered, oldest first: `plugin`, `operation`,
    /// `input`, `caller`.
    pub fn stubbed_calls(&self) -> Vec<Value> {
        match self.fixture(json!({"op": "stubbed_calls"})) {
            Value::Array(calls) => calls,
            _ => Vec::new(),
        }
    }

    /// `http://127.0.0.1:PORT`: the harness's HTTP endpoint, to give a
    /// plugin as the address of the service it calls.
    pub fn http_url(&self) -> &str {
        &self.http
    }

    /// Scripts the endpoint's answer to `method path`: `body` is sent as
    /// JSON, or as is when a string. Answers scripted for the same route
    /// are given in order, the last one repeated.
    pub fn respond(&self, method: &str, path: &str, status: u16, body: Value) {
        self.fixture(json!({
            "op": "respond", "method": method, "path": path, "status": status, "body": body,
        }));
    }

    /// The requests the endpoint received, oldest first: `method`, `path`,
    /// `query`, `headers`, `body` (text).
    pub fn http_requests(&self) -> Vec<Value> {
        match self.fixture(json!({"op": "requests"})) {
            Value::Array(r) => r,
            _ => Vec::new(),
        }
    }
}

impl Io {
    fn write(&mut self, request: &Value) -> Result<(), CallError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| CallError::harness("the harness is closed"))?;
        let mut line =
            serde_json::to_vec(request).map_err(|e| CallError::harness(e.to_string()))?;
        line.push(b'\n');
        stdin
            .write_all(&line)
            .and_then(|()| stdin.flush())
            .map_err(|e| CallError::harness(format!("the harness stopped: {e}")))
    }

    fn read(&mut self) -> Result<Value, CallError> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => {
                let status = self.child.wait().ok();
                Err(CallError::harness(format!(
                    "the harness exited ({}); its log is above",
                    status.map_or("unknown status".into(), |s| s.to_string())
                )))
            }
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| CallError::harness(format!("the harness said {line:?}: {e}"))),
            Err(e) => Err(CallError::harness(format!("reading the harness: {e}"))),
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        let io = self;
        // Closing stdin stops the harness, which removes its folder.
        drop(io.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = io.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = io.child.kill();
        let _ = io.child.wait();
    }
}
