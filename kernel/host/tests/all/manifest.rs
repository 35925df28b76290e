//! The manifest: its committed JSON Schema, and what validation refuses.

use keel_host::manifest::{Capability, Grants, Manifest};

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
            if !edit.is_empty() && l.starts_with(&prefix) {
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
