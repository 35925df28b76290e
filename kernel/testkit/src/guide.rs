//! The code blocks of `docs/plugin-guide.md`, for the tests that compile or
//! run them.
//!
//! Every fenced block of the guide is preceded by a comment that says how
//! CI exercises it:
//!
//! - `<!-- check: quote PATH -->`: the block is a quote of `PATH` (relative
//!   to the repository), a file CI compiles or runs. Its lines, trimmed,
//!   appear in the file in the same order and next to each other; a line
//!   `// …` or `# …` skips lines of the file, and a trailing comment after
//!   two spaces (`  // …`, `  # …`) is the guide's note, not part of the
//!   quote.
//! - `<!-- check: manifest -->`: a part of `keel-plugin.toml`, accepted by
//!   the kernel's manifest parser after a minimal manifest's first lines.
//! - `<!-- check: json -->`: a JSON document.
//! - `<!-- check: run NAME -->`: a test fetches it with [`block`] and runs
//!   it (a shell script, a GraphQL document, a file, a listing).
//!
//! `kernel/cli/tests/guide.rs` checks the first three kinds and that a test
//! asks for each `run` block.

use std::path::PathBuf;

/// One fenced block of the guide.
#[derive(Debug, Clone)]
pub struct Block {
    /// The fence's info string: `rust`, `sh`, …
    pub lang: String,
    /// The check comment's words after `check:`.
    pub check: Vec<String>,
    /// The block's text, every line ending with a newline.
    pub text: String,
    /// 1-based line of the opening fence.
    pub line: usize,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// The guide's blocks, in order. A block without a check comment has an
/// empty `check`.
pub fn blocks() -> Vec<Block> {
    let path = repo().join("docs/plugin-guide.md");
    let text = std::fs::read_to_string(&path).expect("docs/plugin-guide.md");
    parse(&text)
}

/// The blocks of a Markdown text.
pub fn parse(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut check: Vec<String> = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.trim_end() == "```" {
                out.push(open.take().expect("open block"));
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
            continue;
        }
        if let Some(info) = line.strip_prefix("```") {
            open = Some(Block {
                lang: info.trim().to_owned(),
                check: std::mem::take(&mut check),
                text: String::new(),
                line: i + 1,
            });
        } else if let Some(words) = line
            .trim()
            .strip_prefix("<!-- check:")
            .and_then(|rest| rest.strip_suffix("-->"))
        {
            check = words.split_whitespace().map(str::to_owned).collect();
        } else if !line.trim().is_empty() {
            check.clear();
        }
    }
    assert!(open.is_none(), "a block of the guide is never closed");
    out
}

/// The text of the block marked `<!-- check: run NAME -->`.
///
/// # Panics
///
/// When no block, or more than one, has that name.
pub fn block(name: &str) -> String {
    let found: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.check.len() == 2 && b.check[0] == "run" && b.check[1] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "docs/plugin-guide.md has one block marked `check: run {name}`"
    );
    found.into_iter().next().expect("one block").text
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_check_comment_belongs_to_the_next_block_only() {
        let md = "<!-- check: run a -->\n```sh\necho a\n```\n\n```text\nx\n```\n\
                  <!-- check: json -->\nprose\n```json\n{}\n```\n";
        let b = parse(md);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].check, ["run", "a"]);
        assert_eq!((b[0].lang.as_str(), b[0].text.as_str()), ("sh", "echo a\n"));
        assert!(b[1].check.is_empty());
        assert!(b[2].check.is_empty(), "prose between comment and block");
        assert_eq!(b[2].line, 11);
    }
}
