//! `keel import members`: a CSV of members (a CRM or e-commerce export)
//! into the `cdp` plugin of a running kernel, through its `cdpIdentify`
//! batches.
//!
//! - **Columns**: a header named after an identifier kind (`phone`,
//!   `email`, `wechat_openid`, `wechat_unionid`, `member_no`,
//!   `external:<system>`) is an identifier; `tags` holds tags separated by
//!   `;`; every other column is a profile attribute (text). Empty cells are
//!   left out. `--map 手机号=phone` renames a header first.
//! - **Batches** of at most 500 rows and 512 KiB, each sent once as
//!   `cdpIdentify(batchId: "import-{file digest}-{n}")`: the kernel keeps
//!   each batch's report under its id, so a rerun of the same file after a
//!   failure skips what was taken and resumes; a changed file is a new
//!   import.
//! - **Bad rows** are reported by the plugin and written, with the reason,
//!   to `<file>.rejected.csv`; the good ones are taken. A progress bar over
//!   the file's bytes runs on a terminal.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// `keel import members` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The kernel's base URL.
    #[arg(long, env = "KEEL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API key or operator session token of the tenant (write rights on
    /// the cdp plugin). Prefer the environment variable to the flag.
    #[arg(long, env = "KEEL_API_KEY", hide_env_values = true)]
    key: String,
    /// Renames a column before it is read: `手机号=phone` (repeatable).
    #[arg(long = "map", value_name = "HEADER=NAME")]
    map: Vec<String>,
    /// The CSV file (UTF-8, with a header line).
    file: PathBuf,
}

/// Rows per batch, and the most bytes of JSON one batch carries.
const ROWS: usize = 500;
const BYTES: usize = 512 * 1024;
/// Identifier kinds a column may be named after (plus `external:…`).
const KINDS: [&str; 5] = [
    "phone",
    "email",
    "wechat_openid",
    "wechat_unionid",
    "member_no",
];

const IDENTIFY: &str = "mutation($b: String!, $r: [CdpIdentifyInput!]!) { \
    cdpIdentify(batchId: $b, rows: $r, mode: BEST_EFFORT) { accepted duplicates rejected { index message } } }";

/// What one column feeds.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Identifier(String),
    Tags,
    Attribute(String),
}

fn columns(headers: &csv::StringRecord, map: &[String]) -> Result<Vec<Column>> {
    let mut renames = Vec::new();
    for m in map {
        let (from, to) = m
            .split_once('=')
            .with_context(|| format!("--map {m:?}: expected HEADER=NAME"))?;
        renames.push((from.trim(), to.trim()));
    }
    let mut out = Vec::new();
    for h in headers {
        let h = h.trim().trim_start_matches('\u{feff}');
        let name = renames
            .iter()
            .find(|(from, _)| *from == h)
            .map_or(h, |(_, to)| *to);
        if name.is_empty() {
            bail!("the header has an empty column name");
        }
        out.push(if KINDS.contains(&name) || name.starts_with("external:") {
            Column::Identifier(name.to_owned())
        } else if name == "tags" {
            Column::Tags
        } else {
            Column::Attribute(name.to_owned())
        });
    }
    if !out.iter().any(|c| matches!(c, Column::Identifier(_))) {
        bail!(
            "no identifier column: name one phone, email, wechat_openid, wechat_unionid, member_no or external:<system> (or --map a header to one)"
        );
    }
    Ok(out)
}

/// One CSV row as a `CdpIdentifyInput`.
fn row(columns: &[Column], record: &csv::StringRecord) -> Value {
    let mut identifiers = Vec::new();
    let mut attributes = Map::new();
    let mut tags = Vec::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        match column {
            Column::Identifier(kind) => identifiers.push(json!({"kind": kind, "value": cell})),
            Column::Tags => tags.extend(
                cell.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            ),
            Column::Attribute(name) => {
                attributes.insert(name.clone(), Value::String(cell.to_owned()));
            }
        }
    }
    let mut out = json!({"identifiers": identifiers});
    if !attributes.is_empty() {
        out["attributes"] = Value::Object(attributes);
    }
    if !tags.is_empty() {
        out["tags"] = json!(tags);
    }
    out
}

/// The totals of an import.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

struct Batch {
    rows: Vec<Value>,
    records: Vec<csv::StringRecord>,
    bytes: usize,
}

pub async fn run(args: ImportArgs) -> Result<()> {
    let t = import(&args).await?;
    eprintln!(
        "{} rows: {} taken, {} already taken, {} rejected{}",
        t.rows,
        t.accepted,
        t.duplicates,
        t.rejected,
        if t.rejected > 0 {
            format!(" (see {})", rejected_path(&args.file).display())
        } else {
            String::new()
        }
    );
    Ok(())
}

fn rejected_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".rejected.csv");
    PathBuf::from(name)
}

async fn import(args: &ImportArgs) -> Result<Totals> {
    let mut bytes = Vec::new();
    std::fs::File::open(&args.file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", args.file.display()))?;
    let digest = Sha256::digest(&bytes);
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    let headers = reader.headers().context("reading the CSV header")?.clone();
    let columns = columns(&headers, &args.map)?;
    let bar = progress(bytes.len() as u64);
    let client = reqwest::Client::new();
    let endpoint = format!("{}/graphql", args.url.trim_end_matches('/'));
    let rejected_file = rejected_path(&args.file);
    let mut rejected: Option<csv::Writer<std::fs::File>> = None;
    let mut totals = Totals::default();
    let mut batch = Batch {
        rows: Vec::new(),
        records: Vec::new(),
        bytes: 0,
    };
    let mut n = 0;
    let mut records = reader.records();
    loop {
        let next = records.next().transpose().context("reading a CSV row")?;
        let r = next.as_ref().map(|record| row(&columns, record));
        let size = r.as_ref().map_or(0, |r| r.to_string().len());
        let full = batch.rows.len() == ROWS || batch.bytes + size > BYTES;
        if !batch.rows.is_empty() && (next.is_none() || full) {
            send(
                &client,
                &endpoint,
                &args.key,
                &format!("import-{id}-{n}"),
                &mut batch,
                &headers,
                &rejected_file,
                &mut rejected,
                &mut totals,
            )
            .await?;
            n += 1;
        }
        let (Some(record), Some(r)) = (next, r) else {
            break;
        };
        bar.set_position(record.position().map_or(0, |p| p.byte()));
        batch.rows.push(r);
        batch.records.push(record);
        batch.bytes += size;
    }
    bar.finish_and_clear();
    if let Some(mut w) = rejected {
        w.flush()?;
    } else if rejected_file.exists() {
        // A clean rerun: the rejections of an earlier run are stale.
        std::fs::remove_file(&rejected_file).ok();
    }
    Ok(totals)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site, the import's state"
)]
async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    batch_id: &str,
    batch: &mut Batch,
    headers: &csv::StringRecord,
    rejected_file: &Path,
    rejected: &mut Option<csv::Writer<std::fs::File>>,
    totals: &mut Totals,
) -> Result<()> {
    let res = client
        .post(endpoint)
        .bearer_auth(key)
        .json(&json!({"query": IDENTIFY, "variables": {"b": batch_id, "r": batch.rows}}))
        .send()
        .await
        .with_context(|| format!("sending batch {batch_id} to {endpoint}"))?;
    let status = res.status();
    let body: Value = res.json().await.with_context(|| {
        format!("batch {batch_id}: the server answered HTTP {status} without JSON")
    })?;
    if let Some(e) = body["errors"].get(0) {
        bail!(
            "batch {batch_id} refused: {} ({}); rows before it were taken, rerun the same file to resume",
            e["message"].as_str().unwrap_or("no message"),
            e["extensions"]["code"].as_str().unwrap_or("no code")
        );
    }
    let report = &body["data"]["cdpIdentify"];
    totals.rows += batch.rows.len() as u64;
    totals.accepted += report["accepted"].as_u64().unwrap_or(0);
    totals.duplicates += report["duplicates"].as_u64().unwrap_or(0);
    for r in report["rejected"].as_array().into_iter().flatten() {
        let i = r["index"].as_u64().unwrap_or(0) as usize;
        let Some(record) = batch.records.get(i) else {
            continue;
        };
        totals.rejected += 1;
        if rejected.is_none() {
            let mut w = csv::Writer::from_path(rejected_file)
                .with_context(|| format!("writing {}", rejected_file.display()))?;
            let mut h: Vec<&str> = headers.iter().collect();
            h.push("error");
            w.write_record(&h)?;
            *rejected = Some(w);
        }
        let mut out: Vec<&str> = record.iter().collect();
        let message = r["message"].as_str().unwrap_or_default();
        out.push(message);
        if let Some(w) = rejected.as_mut() {
            w.write_record(&out)?;
        }
    }
    batch.rows.clear();
    batch.records.clear();
    batch.bytes = 0;
    Ok(())
}

fn progress(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_name_identifiers_tags_and_attributes() {
        let h = csv::StringRecord::from(vec!["\u{feff}手机号", "member_no", "tags", "城市"]);
        let map = vec!["手机号=phone".to_owned()];
        let cols = columns(&h, &map).unwrap();
        assert_eq!(
            cols,
            [
                Column::Identifier("phone".into()),
                Column::Identifier("member_no".into()),
                Column::Tags,
                Column::Attribute("城市".into()),
            ]
        );
        let r = row(
            &cols,
            &csv::StringRecord::from(vec!["+8613800000001", "", "vip; new", "深圳"]),
        );
        assert_eq!(
            r,
            json!({"identifiers": [{"kind": "phone", "value": "+8613800000001"}],
                   "attributes": {"城市": "深圳"}, "tags": ["vip", "new"]})
        );
        let none = csv::StringRecord::from(vec!["name", "city"]);
        assert!(
            columns(&none, &[])
                .unwrap_err()
                .to_string()
                .contains("no identifier column")
        );
        assert!(columns(&h, &["nope".into()]).is_err());
    }
}
