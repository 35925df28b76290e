//! Described events: the JSON Schema of each event type a plugin emits, as
//! its manifest declares it under `[events.schemas."<type>"]`.
//!
//! Installation checks every schema (a JSON Schema its meta-schema accepts,
//! at most [`MAX_SCHEMA_BYTES`], describing an object, nothing fetched from
//! elsewhere); from contract 0.2.0 on, every type in `emits` must have one.
//! The validators are compiled once per manifest and kept with it
//! ([`CompiledSchemas`]); `events.emit` checks each payload against its
//! type's validator before anything is written, and refuses a payload that
//! fails with `invalid-input`, naming the type and the first failing JSON
//! pointer.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use crate::bindings::WitError;
use crate::manifest::{EventDecl, Manifest};

/// The largest schema of one event type, serialised.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// How much of a validation message an error carries.
const MAX_MESSAGE_CHARS: usize = 300;

/// Validators by event type.
type Validators = BTreeMap<String, Validator>;

/// The compiled validators of a manifest's event schemas: built at the
/// first use (an emit, or the warm-up of an installed package) and kept
/// with the manifest, so
/// that a package shared by every activation compiles them once.
///
/// A clone starts empty (it compiles again on first use), and two cells
/// always compare equal: what they hold derives from the schemas beside
/// them.
#[derive(Default)]
pub struct CompiledSchemas(OnceLock<Result<Arc<Validators>, String>>);

impl Clone for CompiledSchemas {
    fn clone(&self) -> Self {
        CompiledSchemas::default()
    }
}

impl PartialEq for CompiledSchemas {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchemas")
            .field("compiled", &self.0.get().is_some())
            .finish()
    }
}

/// `events.schemas."<type>"`, the manifest path of a type's schema.
fn path(event_type: &str) -> String {
    format!("events.schemas.{event_type:?}")
}

fn shorten(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut s: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    s.push('…');
    s
}

/// Checks one type's schema and compiles it. Patterns run on the `regex`
/// engine (linear time, no look-around), and no `$ref` is fetched: a
/// schema is self-contained.
pub(crate) fn compile(event_type: &str, schema: &Value) -> Result<Validator, String> {
    let at = path(event_type);
    if !schema.is_object() {
        return Err(format!("{at}: must be a JSON Schema object"));
    }
    let size = serde_json::to_string(schema).map_or(usize::MAX, |s| s.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(format!(
            "{at}: is {size} bytes; the limit is {MAX_SCHEMA_BYTES}"
        ));
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!(
            "{at}: must say `type = \"object\"` at the top: an event's payload is a JSON object"
        ));
    }
    jsonschema::options()
        .offline()
        .with_pattern_options(PatternOptions::regex())
        .build(schema)
        .map_err(|e| {
            let within = e.instance_path().as_str();
            let within = if within.is_empty() {
                String::new()
            } else {
                format!(" (at {within})")
            };
            shorten(format!("{at}: not a valid JSON Schema{within}: {e}"))
        })
}

fn compile_all(events: &EventDecl) -> Result<Validators, String> {
    events
        .schemas
        .iter()
        .map(|(t, s)| Ok((t.clone(), compile(t, s)?)))
        .collect()
}

/// Checks the manifest's event schemas against `emits` and the contract
/// `wit`. (What it compiles is not kept: the fields are public, and the
/// validators a manifest keeps are those of the schemas it has at first use.)
pub(crate) fn check_declaration(events: &EventDecl, wit: &str) -> Result<(), String> {
    if let Some(t) = events.schemas.keys().find(|t| !events.emits.contains(t)) {
        return Err(format!(
            "{}: {t} is not in events.emits; a plugin describes only the types it emits",
            path(t)
        ));
    }
    if wit != keel_contract::WIT_0_1_0
        && let Some(t) = events
            .emits
            .iter()
            .find(|t| !events.schemas.contains_key(*t))
    {
        return Err(format!(
            "events.schemas: {t} has no schema; a keel:plugin@{wit} plugin describes the payload \
             of every type it emits with a JSON Schema under [events.schemas.{t:?}]"
        ));
    }
    compile_all(events).map(|_| ())
}

impl EventDecl {
    /// The JSON Schema of `event_type`'s payload, if the manifest gives one.
    pub fn schema(&self, event_type: &str) -> Option<&Value> {
        self.schemas.get(event_type)
    }

    /// The compiled validators, compiled on first use.
    fn validators(&self) -> Result<&Arc<Validators>, &String> {
        self.compiled
            .0
            .get_or_init(|| compile_all(self).map(Arc::new))
            .as_ref()
    }

    /// Compiles the validators now if they are not yet, so that no call
    /// compiles them (an installed package's, when it is warmed up).
    pub(crate) fn prepare(&self) -> Result<(), String> {
        self.validators().map(|_| ()).map_err(Clone::clone)
    }
}

impl Manifest {
    /// Checks a payload of `event_type` against the type's schema: `Ok` when
    /// it matches or the manifest gives the type no schema (contract 0.1.0);
    /// otherwise the type, the first failing JSON pointer and why.
    pub fn check_event_payload(&self, event_type: &str, payload: &Value) -> Result<(), String> {
        let validators = self.events.validators().map_err(|e| {
            tracing::warn!(plugin = %self.name, error = %e, "an event schema does not compile");
            format!("the plugin {}'s {e}", self.name)
        })?;
        let Some(validator) = validators.get(event_type) else {
            return Ok(());
        };
        validate(validator, event_type, payload)
    }
}

/// `payload` against `event_type`'s validator: the type, the first failing
/// JSON pointer and why.
pub(crate) fn validate(
    validator: &Validator,
    event_type: &str,
    payload: &Value,
) -> Result<(), String> {
    validator.validate(payload).map_err(|e| {
        shorten(format!(
            "payload: {event_type} does not match its schema at {:?}: {e}",
            e.instance_path().as_str()
        ))
    })
}

/// The host side of `events.emit`: the payload against its type's schema,
/// before anything is written.
pub(crate) fn check_payload(
    manifest: &Manifest,
    event_type: &str,
    payload: &Value,
) -> Result<(), WitError> {
    manifest
        .check_event_payload(event_type, payload)
        .map_err(WitError::InvalidInput)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decl(emits: &[&str], schemas: Value) -> EventDecl {
        EventDecl {
            emits: emits.iter().map(|s| (*s).to_owned()).collect(),
            schemas: serde_json::from_value(schemas).unwrap(),
            ..EventDecl::default()
        }
    }

    fn scanned() -> Value {
        json!({"type": "object", "required": ["code"], "properties": {
            "code": {"type": "string", "pattern": "^B[0-9]+/[0-9]+$"},
            "location": {"type": "object", "properties": {"lat": {"type": "number"}}},
        }})
    }

    #[test]
    fn schemas_are_checked_against_emits_and_the_contract() {
        let ok = decl(&["code.scanned"], json!({"code.scanned": scanned()}));
        check_declaration(&ok, "0.2.0").unwrap();
        check_declaration(&decl(&["code.scanned"], json!({})), "0.1.0").unwrap();
        let e = check_declaration(&decl(&["code.scanned"], json!({})), "0.2.0").unwrap_err();
        assert!(e.contains("code.scanned has no schema"), "{e}");
        let e = check_declaration(
            &decl(&["code.scanned"], json!({"code.other": scanned()})),
            "0.1.0",
        )
        .unwrap_err();
        assert!(
            e.contains("\"code.other\"") && e.contains("not in events.emits"),
            "{e}"
        );
    }

    #[test]
    fn bad_schemas_are_refused_naming_the_type() {
        let cases = [
            (json!("a string"), "must be a JSON Schema object"),
            (json!({"type": "array"}), "type = \"object\""),
            (json!({"properties": {}}), "type = \"object\""),
            (
                json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
                "not a valid JSON Schema",
            ),
            (
                json!({"type": "object", "minProperties": -1}),
                "not a valid JSON Schema",
            ),
            (
                json!({"type": "object", "properties": {"a": {"pattern": "(?<=x)y"}}}),
                "not a valid JSON Schema",
            ),
            (
                json!({"type": "object", "$ref": "https://example.com/s.json"}),
                "not a valid JSON Schema",
            ),
            (
                json!({"type": "object", "description": "x".repeat(MAX_SCHEMA_BYTES)}),
                "the limit is",
            ),
        ];
        for (schema, needle) in cases {
            let d = decl(&["a.b"], json!({ "a.b": schema }));
            let e = check_declaration(&d, "0.1.0").unwrap_err();
            assert!(e.starts_with("events.schemas.\"a.b\": "), "{e}");
            assert!(e.contains(needle), "{e} lacks {needle:?}");
        }
    }

    #[test]
    fn payloads_are_checked_naming_the_type_and_the_first_failing_pointer() {
        let mut m = Manifest::from_toml(
            r#"
name = "probe"
version = "0.1.0"
publisher = "t"
description = "t"
wit = "0.1.0"
[events]
emits = ["code.scanned", "code.free"]
"#,
        )
        .unwrap();
        m.events.schemas.insert("code.scanned".into(), scanned());
        m.check_event_payload("code.scanned", &json!({"code": "B1/2"}))
            .unwrap();
        m.check_event_payload("code.free", &json!({"anything": 1}))
            .unwrap();
        let e = m
            .check_event_payload(
                "code.scanned",
                &json!({"code": "B1/2", "location": {"lat": "north"}}),
            )
            .unwrap_err();
        assert!(
            e.contains("code.scanned") && e.contains("\"/location/lat\""),
            "{e}"
        );
        let e = m
            .check_event_payload("code.scanned", &json!({}))
            .unwrap_err();
        assert!(e.contains("at \"\"") && e.contains("code"), "{e}");
        // A clone compiles its own validators, from its own schemas.
        let mut other = m.clone();
        other.events.schemas.clear();
        other
            .check_event_payload("code.scanned", &json!({}))
            .unwrap();
    }
}
