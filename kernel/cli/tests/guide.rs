//! Every code block of `docs/plugin-guide.md` is compiled or run in CI.
//!
//! Each block carries a `<!-- check: … -->` comment (`keel_testkit::guide`
//! explains the kinds). Here: a quote must still be in the file it quotes
//! (a file CI builds and tests), a manifest part must be accepted by the
//! kernel's manifest parser, a JSON block must parse, and each `run` block
//! must be asked for by a test that runs it.

use keel_host::Manifest;
use keel_testkit::guide::{self, Block};

/// The folders of files CI compiles or runs (the examples' and the
/// first-party plugins' tests, the SDKs' builds).
const COMPILED: [&str; 3] = ["examples/", "plugins/", "sdk/"];

/// The tests that may run a guide block.
const RUNNERS: [&str; 2] = ["kernel/cli/tests", "kernel/gateway/tests/all"];

/// A minimal manifest's first lines, before a manifest block.
const MANIFEST_HEAD: &str = "name = \"guide\"\nversion = \"0.1.0\"\npublisher = \"Keel\"\n\
                             description = \"the guide's manifest parts\"\nwit = \"0.2.0\"\n";

/// The block's lines without the guide's trailing notes, trimmed, in runs
/// separated by elision lines (`// …`, `# …`); blank lines dropped.
fn quoted_runs(text: &str) -> Vec<Vec<String>> {
    let mut runs = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim();
        if line == "// …" || line == "# …" {
            runs.push(Vec::new());
            continue;
        }
        let line = ["  // ", "  # "]
            .iter()
            .filter_map(|note| line.find(note))
            .min()
            .map_or(line, |at| line[..at].trim_end());
        if !line.is_empty() {
            runs.last_mut().expect("a run").push(line.to_owned());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// `Ok` when every run of the quote is in `source` (trimmed, blank lines
/// dropped), one after the other and each on consecutive lines; otherwise
/// the first run that is not.
fn check_quote(quote: &str, source: &str) -> Result<(), String> {
    let lines: Vec<&str> = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut from = 0;
    for run in quoted_runs(quote) {
        let found = (from..lines.len()).find(|&i| {
            lines.len() - i >= run.len() && run.iter().zip(&lines[i..]).all(|(a, b)| a == b)
        });
        match found {
            Some(i) => from = i + run.len(),
            None => return Err(run.join("\n")),
        }
    }
    Ok(())
}

fn check(block: &Block) -> Result<(), String> {
    let words: Vec<&str> = block.check.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["quote", path] => {
            if !COMPILED.iter().any(|root| path.starts_with(root)) || path.contains("..") {
                return Err(format!("{path} is not in a folder CI builds: {COMPILED:?}"));
            }
            if quoted_runs(&block.text).is_empty() {
                return Err("an empty quote".into());
            }
            let source = std::fs::read_to_string(guide::repo().join(path))
                .map_err(|e| format!("{path}: {e}"))?;
            check_quote(&block.text, &source)
                .map_err(|run| format!("these lines are not in {path} (in this order):\n{run}"))
        }
        ["manifest"] => Manifest::from_toml(&format!("{MANIFEST_HEAD}{}", block.text))
            .map(|_| ())
            .map_err(|e| format!("the manifest parser refuses it: {e}")),
        ["json"] => serde_json::from_str::<serde_json::Value>(&block.text)
            .map(|_| ())
            .map_err(|e| format!("not JSON: {e}")),
        ["run", name] => {
            // `guide::block("NAME")`, or `listed_in_the_guide(dir, "NAME")`.
            let quoted = format!("\"{name}\")");
            let asks = |text: &str| {
                text.lines().any(|l| {
                    l.contains(&quoted)
                        && (l.contains("guide::block(") || l.contains("listed_in_the_guide("))
                })
            };
            let runners = RUNNERS.iter().flat_map(|dir| {
                std::fs::read_dir(guide::repo().join(dir))
                    .unwrap_or_else(|e| panic!("{dir}: {e}"))
                    .map(|e| e.expect("a test file").path())
            });
            let asking: Vec<_> = runners
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| asks(&t)))
                .collect();
            if asking.is_empty() {
                Err(format!(
                    "no test in {RUNNERS:?} asks for the block {name:?}"
                ))
            } else {
                Ok(())
            }
        }
        [] => Err("no `<!-- check: … -->` comment before it".into()),
        other => Err(format!("unknown check {other:?}")),
    }
}

#[test]
fn every_block_of_the_guide_is_compiled_or_run() {
    let blocks = guide::blocks();
    assert!(blocks.len() >= 20, "the guide's blocks: {}", blocks.len());
    let failures: Vec<String> = blocks
        .iter()
        .filter_map(|b| {
            check(b)
                .err()
                .map(|why| format!("docs/plugin-guide.md:{} ({}): {why}", b.line, b.lang))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Every fence is one the checks see: none indented or of tildes.
    let text = std::fs::read_to_string(guide::repo().join("docs/plugin-guide.md")).unwrap();
    let fences = text
        .lines()
        .filter(|l| l.trim_start().starts_with("```") || l.trim_start().starts_with("~~~"))
        .count();
    assert_eq!(
        fences,
        2 * blocks.len(),
        "a fence that is indented or of tildes"
    );
    // Each run name belongs to one block.
    let mut names: Vec<&str> = blocks
        .iter()
        .filter(|b| b.check.first().is_some_and(|k| k == "run"))
        .map(|b| b.check[1].as_str())
        .collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a run name used twice: {names:?}");
}

#[test]
fn a_quote_that_drifted_from_its_source_is_caught() {
    let source = "fn a() {\n    let x = 1;\n\n    let y = 2;\n}\nfn b() {}\n";
    assert_eq!(check_quote("let x = 1;\nlet y = 2;\n", source), Ok(()));
    assert_eq!(
        check_quote("fn a() {\n// …\nfn b() {}  // a note\n", source),
        Ok(())
    );
    assert_eq!(
        check_quote("let x = 1;\nlet y = 3;\n", source),
        Err("let x = 1;\nlet y = 3;".into()),
        "a changed line"
    );
    assert!(
        check_quote("let y = 2;\n// …\nlet x = 1;\n", source).is_err(),
        "out of order"
    );
    assert!(
        check_quote("fn a() {\nlet y = 2;\n", source).is_err(),
        "a line skipped without `// …`"
    );
    assert!(
        check(&Block {
            lang: "rust".into(),
            check: vec!["quote".into(), "../etc/passwd".into()],
            text: String::new(),
            line: 1,
        })
        .is_err()
    );
    assert!(
        check(&Block {
            lang: "toml".into(),
            check: vec!["manifest".into()],
            text: "[resources]\nmemory_mib = \"lots\"\n".into(),
            line: 1,
        })
        .is_err(),
        "a manifest part the parser refuses"
    );
}

#[test]
fn no_example_of_the_rust_sdks_docs_is_left_uncompiled() {
    // `plugins.rs` compiles the SDK's doc examples; `ignore` would skip one.
    let src = guide::repo().join("sdk/keel-sdk/src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !text.contains("```ignore") && !text.contains("```rust,ignore"),
            "{} has an example no compiler sees: use no_run",
            path.display()
        );
    }
}
