//! `keel plugin harness`: the kernel a plugin's tests drive, in a process
//! of its own, so that a plugin's `cargo test` compiles only the plugin and
//! a thin client (`keel-plugin-test`) and never the host; a client in
//! another language speaks the same protocol.
//!
//! The kernel is assembled as `keel serve` assembles it
//! (`keel_gateway::Kernel`) on SQLite in a temporary folder, with one tenant
//! (`test`): plugins are installed and enabled with production's checks
//! (manifest, grants, config schema, the merge of their GraphQL with the
//! kernel's) and called with its argument coercion, output checks and
//! limits. It adds what tests need and `keel serve` never has: persons
//! made on request, events injected as if another plugin had emitted them,
//! a wall clock the test sets, scripted answers to calls to other plugins,
//! and a loopback HTTP endpoint that answers what the test scripts.
//!
//! The protocol is JSON lines on stdin and stdout: one request object per
//! line (`{"op": "call", …}`), one answer per line, in order: `{"ok": …}`
//! or `{"error": {"code", "message", "field"}}`; blank lines are ignored.
//! The first line the harness writes is `{"ready": {…}}`. It exits when
//! stdin closes, and its temporary folder goes with it. Logs go to stderr.
//! `docs/plugin-guide.md` (section 4) lists every request.

mod cache;
mod endpoint;
mod ops;

use std::path::PathBuf;

use anyhow::Context as _;
use keel_core::{Db, DbOptions, TenantId, tenants};
use keel_gateway::{Kernel, KernelConfig};
use keel_host::clock::SetClock;
use keel_host::stubs::CallStubs;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

/// The longest request line: a plugin's input is at most 1 MiB of JSON
/// (the host's default), so 16 MiB leaves room for fixtures and escapes.
const MAX_LINE: u64 = 16 << 20;

/// The harness's state: the kernel, its one tenant, the clock plugins read
/// and the scripted HTTP endpoint.
pub(crate) struct Harness {
    kernel: Kernel,
    tenant: TenantId,
    clock: SetClock,
    stubs: CallStubs,
    endpoint: endpoint::Endpoint,
    /// Where plugin crates are built (`KEEL_PLUGIN_TARGET_DIR`, else each
    /// crate's own `target/`).
    target_dir: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// A refused request: what the client sees as `error`.
#[derive(Debug)]
pub(crate) struct Refusal {
    code: String,
    message: String,
    field: Option<String>,
}

impl Refusal {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            code: code.into(),
            message: message.into(),
            field: None,
        }
    }

    /// A request that is not well formed.
    pub(crate) fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new("BAD_REQUEST", message)
    }

    fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message, "field": self.field})
    }
}

impl From<keel_host::PluginError> for Refusal {
    fn from(e: keel_host::PluginError) -> Refusal {
        Refusal {
            code: e.code().to_owned(),
            field: e.field().map(str::to_owned),
            message: e.to_string(),
        }
    }
}

impl From<keel_core::Error> for Refusal {
    fn from(e: keel_core::Error) -> Refusal {
        let field = match &e {
            keel_core::Error::BadInput { field, .. } => Some(field.clone()),
            _ => None,
        };
        Refusal {
            code: e.code().to_owned(),
            field,
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Refusal {
        // `{:#}`: the whole chain, e.g. the compiler's errors of a build.
        Refusal::new("HARNESS", format!("{e:#}"))
    }
}

impl Harness {
    async fn start() -> anyhow::Result<Harness> {
        let dir = tempfile::tempdir().context("creating the harness's folder")?;
        let url = format!("sqlite://{}", dir.path().join("keel.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await?
            .with_sealer(keel_core::sealing::Sealer::random());
        db.migrate().await?;
        // Compiled plugins are shared with earlier harnesses: a cache the
        // harness cannot open costs only compile time.
        let cache = match cache::open() {
            Ok((cache, key)) => {
                keel_core::settings::secret_or(&db, "plugin-cache-mac-key", &key).await?;
                cache
            }
            Err(e) => {
                tracing::warn!("compiling every plugin anew: {e:#}");
                dir.path().join("cache")
            }
        };
        let mut tx = db.begin().await?;
        let tenant = tenants::create(&mut tx, "test", "Test tenant").await?.id;
        tx.commit().await?;
        let clock = SetClock::default();
        let mut config = KernelConfig::new(cache);
        config.host.wall_clock = Some(clock.clone());
        let stubs = CallStubs::default();
        config.host.call_stubs = Some(stubs.clone());
        // Deliveries happen when the test asks (`deliver`), and a failing
        // handler becomes a dead letter at once, with its error, instead
        // of being retried minutes later.
        config.background_jobs = false;
        config.dispatcher.max_attempts = 1;
        let kernel = Kernel::assemble(db, config).await?;
        let endpoint = endpoint::Endpoint::start().await?;
        Ok(Harness {
            kernel,
            tenant,
            clock,
            stubs,
            endpoint,
            target_dir: crate::project::target_dir_from_env(),
            _dir: dir,
        })
    }

    fn ready(&self) -> Value {
        json!({"ready": {
            "keel": env!("CARGO_PKG_VERSION"),
            "wit": keel_contract::CURRENT,
            "tenant": "test",
            "http": self.endpoint.base_url(),
        }})
    }
}

/// Runs the harness until stdin closes.
pub async fn run() -> anyhow::Result<()> {
    let harness = Harness::start().await?;
    let mut out = tokio::io::stdout();
    write_line(&mut out, &harness.ready()).await?;
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    loop {
        let mut line = Vec::new();
        let n = (&mut input)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .await
            .context("reading a request")?;
        if n == 0 {
            return Ok(());
        }
        // A line is whole when it ends with its newline (or with the end
        // of the input); one cut at the limit is refused and skipped.
        let whole = line.last() == Some(&b'\n') || (line.len() as u64) <= MAX_LINE;
        let answer = if !whole {
            // The rest of the oversized line is skipped, so the next
            // request still starts on a line of its own.
            skip_line(&mut input).await?;
            Err(Refusal::bad(format!(
                "a request line is over {MAX_LINE} bytes"
            )))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            match serde_json::from_slice::<Value>(&line) {
                Ok(request) => harness.handle(request).await,
                Err(e) => Err(Refusal::bad(format!("a request is not JSON: {e}"))),
            }
        };
        let answer = match answer {
            Ok(v) => json!({ "ok": v }),
            Err(r) => json!({ "error": r.to_json() }),
        };
        write_line(&mut out, &answer).await?;
    }
}

/// A request's string field `name`.
pub(crate) fn text<'a>(req: &'a Value, name: &str) -> Result<&'a str, Refusal> {
    req.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::bad(format!("{name}: a string is required")))
}

async fn skip_line(input: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> anyhow::Result<()> {
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            input.consume(i + 1);
            return Ok(());
        }
        let n = buf.len();
        input.consume(n);
    }
}

async fn write_line(out: &mut tokio::io::Stdout, v: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec(v)?;
    text.push(b'\n');
    out.write_all(&text).await?;
    out.flush().await?;
    Ok(())
}
