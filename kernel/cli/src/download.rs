//! `keel download`: fetches a plugin's file (`GET /files/{plugin}/{name}`)
//! from a running kernel into a local file, streaming: the body goes to
//! `<file>.part` as it arrives and is renamed only once it is complete, so
//! a failed or cut-short transfer leaves no file behind.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// `keel download` arguments.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The kernel's base URL.
    #[arg(long, env = "KEEL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API key or operator session token of the tenant. Prefer the
    /// environment variable to the flag.
    #[arg(long, env = "KEEL_API_KEY", hide_env_values = true)]
    key: String,
    /// The plugin that serves the file.
    plugin: String,
    /// The download's name (its manifest's `[[downloads]] name`).
    name: String,
    /// The download's input, a JSON object.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Where to write the file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// The message of a JSON error response (`errors[0]`), with its code.
fn error_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().map(|v| &v["errors"][0]);
    match (
        first.and_then(|e| e["message"].as_str()),
        first.and_then(|e| e["extensions"]["code"].as_str()),
    ) {
        (Some(message), Some(code)) => format!("{message} ({code}, HTTP {status})"),
        (Some(message), None) => format!("{message} (HTTP {status})"),
        _ => format!("the server answered HTTP {status}"),
    }
}

fn progress(total_lines: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total_lines {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} lines, {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {bytes} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        }
    }
}

/// What a finished transfer wrote.
struct Written {
    bytes: u64,
    lines: u64,
}

/// Streams the body into `part`, chunk by chunk.
async fn write_body(mut res: reqwest::Response, part: &Path, bar: &ProgressBar) -> Result<Written> {
    let file =
        std::fs::File::create(part).with_context(|| format!("creating {}", part.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut w = Written { bytes: 0, lines: 0 };
    while let Some(chunk) = res
        .chunk()
        .await
        .context("the transfer was cut short; the file is incomplete")?
    {
        out.write_all(&chunk)
            .with_context(|| format!("writing {}", part.display()))?;
        let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
        w.bytes += chunk.len() as u64;
        w.lines += lines;
        if bar.length().is_some() {
            bar.set_message(HumanBytes(w.bytes).to_string());
            bar.inc(lines);
        } else {
            bar.set_position(w.bytes);
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", part.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", part.display()))?;
    Ok(w)
}

/// Runs `keel download`.
pub async fn run(args: DownloadArgs) -> Result<()> {
    let started = Instant::now();
    let url = format!(
        "{}/files/{}/{}",
        args.url.trim_end_matches('/'),
        args.plugin,
        args.name
    );
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let res = client
        .get(&url)
        .query(&[("input", args.input.as_str())])
        .bearer_auth(&args.key)
        .send()
        .await
        .with_context(|| format!("requesting {url}"))?;
    let status = res.status();
    if !status.is_success() {
        let body = res.bytes().await.unwrap_or_default();
        bail!("{}", error_message(status, &body));
    }
    // The file's rows, plus its header line.
    let total_lines = res
        .headers()
        .get("x-keel-total")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n + 1);
    let mut part = args.output.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let bar = progress(total_lines);
    let written = write_body(res, &part, &bar).await;
    bar.finish_and_clear();
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&part, &args.output) {
        let _ = std::fs::remove_file(&part);
        return Err(e)
            .with_context(|| format!("moving {} to {}", part.display(), args.output.display()));
    }
    println!(
        "{}: {} bytes, {} lines in {:.2} s",
        args.output.display(),
        written.bytes,
        written.lines,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
