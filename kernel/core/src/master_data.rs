//! What the product catalogue and the organisation tree share: the patch
//! of an upsert's optional field, an object's ids in other systems, and the
//! rule every one-line text of master data follows.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// An optional field of an upsert: left out (keep what is stored), `null`
/// (clear it) or a value (replace it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Left out: the stored value stays (a new object gets the default).
    #[default]
    Keep,
    /// `null`: cleared.
    Clear,
    /// Replaced by this.
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(d)?.map_or(Patch::Clear, Patch::Set))
    }
}

impl<T> Patch<T> {
    /// The patch with its value checked or converted by `f`.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> Result<U>) -> Result<Patch<U>> {
        Ok(match self {
            Patch::Keep => Patch::Keep,
            Patch::Clear => Patch::Clear,
            Patch::Set(v) => Patch::Set(f(v)?),
        })
    }

    /// The value after the patch, given the stored one.
    pub(crate) fn apply(self, stored: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => stored,
            Patch::Clear => None,
            Patch::Set(v) => Some(v),
        }
    }
}

/// An object's id in another system, e.g. `{system: "kingdee", id:
/// "MAT-0001"}`: a product's, a SKU's or an organisation node's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalId {
    /// Lower case: `a-z`, `0-9`, `_`, `-`, `.`, starting with a letter or
    /// digit.
    pub system: String,
    pub id: String,
}

impl std::fmt::Display for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:?}", self.system, self.id)
    }
}

/// The most external ids of one object.
pub const MAX_EXTERNAL_IDS: usize = 20;
const MAX_SYSTEM_CHARS: usize = 64;
const MAX_EXTERNAL_ID_CHARS: usize = 200;

/// Checks one external id: `system` is 1-64 characters of `a-z`, `0-9`,
/// `_`, `-` and `.` starting with a letter or digit (upper case is
/// lowered); `id` is one-line text of up to 200 characters.
pub(crate) fn check_external_id(field: &str, e: &ExternalId) -> Result<ExternalId> {
    let system = e.system.trim().to_ascii_lowercase();
    let ok = (1..=MAX_SYSTEM_CHARS).contains(&system.len())
        && system.as_bytes()[0].is_ascii_alphanumeric()
        && system
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if !ok {
        return Err(Error::bad_input(
            format!("{field}.system"),
            format!(
                "must be 1-{MAX_SYSTEM_CHARS} characters of a-z, 0-9, _, - and ., e.g. kingdee"
            ),
        ));
    }
    Ok(ExternalId {
        system,
        id: check_text(&format!("{field}.id"), &e.id, MAX_EXTERNAL_ID_CHARS)?,
    })
}

/// Checks a one-line text of master data: trimmed, not empty, at most
/// `max` characters, no control characters.
pub(crate) fn check_text(field: &str, raw: &str, max: usize) -> Result<String> {
    // Cheap bound first, so a 10 MB string is not walked character by character.
    if raw.len() > max * 4 + 64 || raw.trim().chars().count() > max {
        return Err(Error::bad_input(
            field,
            format!("is {} bytes long; at most {max} characters", raw.len()),
        ));
    }
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::bad_input(field, "must not be empty"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::bad_input(
            field,
            format!("contains the control character U+{:04X}", u32::from(c)),
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(system: &str, id: &str) -> ExternalId {
        ExternalId {
            system: system.into(),
            id: id.into(),
        }
    }

    #[test]
    fn systems_are_lowered_and_checked() {
        assert_eq!(
            check_external_id("e", &id(" Kingdee ", "MAT-1")).unwrap(),
            id("kingdee", "MAT-1")
        );
        for bad in ["", "-erp", "a b", "sap\u{0}", &"x".repeat(65)] {
            let e = check_external_id("e", &id(bad, "1")).unwrap_err();
            assert!(
                matches!(e, Error::BadInput { ref field, .. } if field == "e.system"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn ids_are_one_line_texts() {
        for bad in ["", "  ", "a\nb", &"x".repeat(201)] {
            let e = check_external_id("e", &id("sap", bad)).unwrap_err();
            assert!(
                matches!(e, Error::BadInput { ref field, .. } if field == "e.id"),
                "{bad:?}: {e}"
            );
        }
        let huge = "x".repeat(10 << 20);
        assert!(check_text("f", &huge, 200).is_err());
    }

    #[test]
    fn a_patch_applies_to_the_stored_value() {
        assert_eq!(Patch::Keep.apply(Some(1)), Some(1));
        assert_eq!(Patch::<i32>::Clear.apply(Some(1)), None);
        assert_eq!(Patch::Set(2).apply(Some(1)), Some(2));
        let p: Patch<String> = serde_json::from_str("null").unwrap();
        assert_eq!(p, Patch::Clear);
    }
}
