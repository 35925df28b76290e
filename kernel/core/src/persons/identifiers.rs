//! Identifiers that point at a person, and the guardrails that keep junk
//! values and over-eager merges from gluing strangers together.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A typed identifier, e.g. `phone` `+8613800000000`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: String,
    pub value: String,
}

/// Values that clients send when they have no value, never a real identity.
const JUNK: &[&str] = &[
    "",
    "0",
    "-1",
    "null",
    "nil",
    "none",
    "undefined",
    "anonymous",
    "unknown",
    "n/a",
    "na",
    "-",
    "test",
    "guest",
];

/// The most values of one kind a single person may hold.
pub fn max_values(kind: &str) -> usize {
    match kind {
        "phone" => 3,
        "email" => 5,
        "wechat_openid" => 10,
        "wechat_unionid" | "member_no" => 1,
        // A browser's or an app install's random id (the CDP's tracker):
        // one per device a person uses.
        "anonymous_id" => 20,
        _ => 1, // external:<system>
    }
}

/// The identifier kinds the kernel knows, besides `external:<system>`.
pub const KINDS: &[&str] = &[
    "phone",
    "email",
    "wechat_openid",
    "wechat_unionid",
    "member_no",
    "anonymous_id",
];

impl Identifier {
    /// Checks and normalises an identifier given in input field `field`:
    /// a known kind, a value that is not junk, in canonical form.
    pub fn parse(field: &str, kind: &str, value: &str) -> Result<Identifier> {
        let kind = kind.trim();
        let known = KINDS.contains(&kind)
            || kind.strip_prefix("external:").is_some_and(|sys| {
                (1..=32).contains(&sys.len())
                    && sys.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })
            });
        if !known {
            return Err(Error::bad_input(
                format!("{field}.kind"),
                format!(
                    "unknown identifier kind {kind:?}; use one of {} or external:<system>",
                    KINDS.join(", ")
                ),
            ));
        }
        let trimmed = value.trim();
        if JUNK.contains(&trimmed.to_lowercase().as_str()) {
            return Err(Error::bad_input(
                format!("{field}.value"),
                format!("{trimmed:?} is a placeholder, not an identifier"),
            ));
        }
        if trimmed.chars().count() > 256 {
            return Err(Error::bad_input(
                format!("{field}.value"),
                "longer than 256 characters",
            ));
        }
        let value = match kind {
            "email" => {
                crate::identity::operators::normalize_email(&format!("{field}.value"), trimmed)?
            }
            "phone" => normalize_phone(&format!("{field}.value"), trimmed)?,
            _ => trimmed.to_owned(),
        };
        Ok(Identifier {
            kind: kind.to_owned(),
            value,
        })
    }
}

/// `+86 138-0000-0000` → `+8613800000000`; 5 to 20 digits, optional `+`.
fn normalize_phone(field: &str, raw: &str) -> Result<String> {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => {
                return Err(Error::bad_input(
                    field,
                    "a phone number has digits, spaces, dashes and a leading + only",
                ));
            }
        }
    }
    let digits = out.trim_start_matches('+');
    if !(5..=20).contains(&digits.len()) || digits.bytes().all(|b| b == b'0') {
        return Err(Error::bad_input(field, "is not a phone number"));
    }
    Ok(out)
}

/// Refuses a set of identifiers that would give one person more values of
/// a kind than [`max_values`] allows.
pub fn check_limits<'a>(all: impl IntoIterator<Item = &'a Identifier>) -> Result<()> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for id in all {
        *counts.entry(id.kind.as_str()).or_default() += 1;
    }
    for (kind, n) in counts {
        let max = max_values(kind);
        if n > max {
            return Err(Error::Conflict(format!(
                "a person may have at most {max} {kind} identifier(s); this would give one {n}"
            )));
        }
    }
    Ok(())
}
