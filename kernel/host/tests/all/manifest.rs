//! The manifest: its committed JSON Schema, and what validation refuses.

use keel_host::manifest::{Access, Capability, Grants, Manifest};

use crate::support::PROBE_MANIFEST;

#[test]
fn committed_manifest_schema_matches_the_types() {
    let actual = serde_json::to_string_pretty(&Manifest::json_schema()).unwrap() + "\n";
    keel_testkit::assert_committed(
        "schemas/manifest.schema.json",
        &actual,
        "KEEL_BLESS=1 cargo test -p keel-host --test all manifest",
    );
}

/// Validates the probe's manifest with one top-level line replaced (or added).
fn check(edit: &str, expected: Result<(), &str>) {
    let key = edit.split(" = ").next().unwrap_or("");
    let prefix = format!("{key} = ");
    let mut replaced = false;
    let mut lines: Vec<String> = PROBE_MANIFEST
        .lines()
        .map(|l| {
            // Only the first match: top-level keys come before the tables.
            if !edit.is_empty() && !replaced && l.starts_with(&prefix) {
                replaced = true;
                edit.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !replaced && !edit.is_empty() {
        lines.insert(0, edit.to_owned());
    }
    match (Manifest::from_toml(&lines.join("\n")), expected) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err(needle)) => assert!(e.contains(needle), "{edit}: {e} lacks {needle:?}"),
        (got, want) => panic!("{edit}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn manifest_validation_table() {
    check("", Ok(()));
    check("name = \"Probe\"", Err("name"));
    check("name = \"p\"", Err("name"));
    check("version = \"one\"", Err("version"));
    check("version = \"1.2.3-beta.1\"", Ok(()));
    check("wit = \"9.0.0\"", Err("keel:plugin@9.0.0"));
    check("color = \"blue\"", Err("unknown field"));
    check("config_schema = \"not a schema\"", Err("config_schema"));
}

/// Validates the probe's manifest with the first occurrence of `from`
/// replaced by `to`.
fn check_replaced(from: &str, to: &str, expected: Result<(), &str>) {
    assert!(
        PROBE_MANIFEST.contains(from),
        "the probe's manifest lacks {from:?}"
    );
    let text = PROBE_MANIFEST.replacen(from, to, 1);
    match (Manifest::from_toml(&text), expected) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err(needle)) => assert!(e.contains(needle), "{to}: {e} lacks {needle:?}"),
        (got, want) => panic!("{to}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn download_and_page_validation_table() {
    let name = "name = \"lines\"";
    check_replaced(name, "name = \"print-file\"", Ok(()));
    check_replaced(name, "name = \"Lines\"", Err("downloads: \"Lines\""));
    check_replaced(name, "name = \"l\"", Err("2-40 characters"));
    check_replaced(
        name,
        &format!("name = \"{}\"", "x".repeat(41)),
        Err("downloads"),
    );
    check_replaced(name, "name = \"lines_csv\"", Err("downloads"));
    check_replaced(name, "name = \"lines-for-writers\"", Err("declared twice"));
    let op = "operation = \"lines\"";
    check_replaced(op, "operation = \"printFileChunk\"", Ok(()));
    check_replaced(op, "operation = \"\"", Err("downloads.lines.operation"));
    check_replaced(
        op,
        "operation = \"print file\"",
        Err("downloads.lines.operation"),
    );
    let ct = "content_type = \"text/csv; charset=utf-8\"";
    check_replaced(ct, "content_type = \"application/vnd.ms-excel\"", Ok(()));
    check_replaced(
        ct,
        "content_type = \"csv\"",
        Err("downloads.lines.content_type"),
    );
    check_replaced(
        ct,
        "content_type = \"text/csv\\r\\nX-Evil: 1\"",
        Err("content_type"),
    );
    check_replaced(ct, "content_type = \"\"", Err("content_type"));
    let file = "file_name = \"lines.csv\"";
    check_replaced(file, "file_name = \"codes_2026-11.csv\"", Ok(()));
    check_replaced(
        file,
        "file_name = \"../etc/passwd\"",
        Err("downloads.lines.file_name"),
    );
    check_replaced(file, "file_name = \"a b.csv\"", Err("file_name"));
    check_replaced(file, "file_name = \"\\\"x.csv\"", Err("file_name"));
    check_replaced(file, "file_name = \"..\"", Err("file_name"));
    check_replaced(file, "file_name = \"\"", Err("file_name"));
    check_replaced(
        file,
        &format!("file_name = \"{}\"", "x".repeat(101)),
        Err("file_name"),
    );
    let access = "access = \"write\"";
    check_replaced(access, "access = \"read\"", Ok(()));
    check_replaced(access, "access = \"admin\"", Err("unknown variant"));
    check_replaced(access, "color = \"blue\"", Err("unknown field"));
    let page = "operation = \"page\"";
    check_replaced(page, "operation = \"render-page\"", Ok(()));
    check_replaced(page, "operation = \"\"", Err("pages.operation"));
    check_replaced(page, "path = \"/\"", Err("unknown field"));
}

#[test]
fn downloads_default_to_read_access_and_pages_to_none() {
    let m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
    assert_eq!(m.download("lines").unwrap().access, Access::Read);
    assert_eq!(
        m.download("lines-for-writers").unwrap().access,
        Access::Write
    );
    assert_eq!(m.pages.as_ref().unwrap().operation, "page");
    let end = PROBE_MANIFEST.find("[[downloads]]").unwrap();
    let bare = Manifest::from_toml(&PROBE_MANIFEST[..end]).unwrap();
    assert!(bare.downloads.is_empty() && bare.pages.is_none());
}

#[test]
fn grants_beyond_the_request_are_refused() {
    let mut m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
    let ok = Grants::all_requested(&m);
    assert!(ok.check_within(&m).is_ok());
    m.capabilities.capabilities.remove(&Capability::Secrets);
    let err = ok.check_within(&m).unwrap_err();
    assert!(err.contains("secrets"), "{err}");
    let mut hosts = Grants::all_requested(&m);
    hosts.http_hosts.push("evil.example".into());
    assert!(hosts.check_within(&m).unwrap_err().contains("evil.example"));
}
