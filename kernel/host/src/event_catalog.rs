//! The event catalogue: every event type a tenant's log can hold — the
//! kernel's and those of the plugins it enabled — with its producer, its
//! description, the JSON Schema of its payload and who subscribes to it.
//!
//! [`Registry::event_catalog`] serves the GraphQL `eventTypes` query;
//! [`markdown`] writes `docs/events.md` from the kernel's types and the
//! first-party plugins' manifests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use keel_core::TenantId;
use keel_core::events::catalog::kernel_event_types;
use serde_json::Value;

use crate::manifest::{DeliveryMode, Manifest};
use crate::{Registry, Result};

/// Who appends events of a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Producer {
    /// The kernel (`person.*`, `product.*`, `org.*`…).
    Kernel,
    /// A plugin, the only one that may emit it.
    Plugin { name: String, version: String },
    /// Neither the kernel nor a plugin the tenant enabled: a type only
    /// subscribed to, which a key with `events:write` may append unless an
    /// installed plugin owns it.
    Undeclared,
}

/// A plugin that wants events of a type delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub plugin: String,
    pub mode: DeliveryMode,
}

/// One event type of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTypeInfo {
    /// Dotted type, e.g. `code.scanned`.
    pub event_type: String,
    pub producer: Producer,
    /// The schema's top-level `description`, if any.
    pub description: Option<String>,
    /// The payload's JSON Schema; `None` when the producer gives none (a
    /// `wit = "0.1.0"` plugin, or an undeclared type).
    pub schema: Option<Value>,
    /// The plugins that subscribe, by name.
    pub subscribers: Vec<Subscriber>,
}

fn description(schema: Option<&Value>) -> Option<String> {
    schema?.get("description")?.as_str().map(str::to_owned)
}

/// The catalogue of a set of enabled plugins: the kernel's types, each
/// type the plugins emit, and each type they subscribe to, by type.
pub fn catalog(plugins: &[Arc<Manifest>]) -> Vec<EventTypeInfo> {
    let mut types: BTreeMap<String, EventTypeInfo> = BTreeMap::new();
    for k in kernel_event_types() {
        types.insert(
            k.event_type.to_owned(),
            EventTypeInfo {
                event_type: k.event_type.to_owned(),
                producer: Producer::Kernel,
                description: Some(k.description.to_owned()),
                schema: Some(k.schema),
                subscribers: Vec::new(),
            },
        );
    }
    for m in plugins {
        for t in &m.events.emits {
            let schema = m.events.schema(t).cloned();
            types.insert(
                t.clone(),
                EventTypeInfo {
                    event_type: t.clone(),
                    producer: Producer::Plugin {
                        name: m.name.clone(),
                        version: m.version.clone(),
                    },
                    description: description(schema.as_ref()),
                    schema,
                    subscribers: Vec::new(),
                },
            );
        }
    }
    for m in plugins {
        for s in &m.events.subscribes {
            types
                .entry(s.event_type.clone())
                .or_insert_with(|| EventTypeInfo {
                    event_type: s.event_type.clone(),
                    producer: Producer::Undeclared,
                    description: None,
                    schema: None,
                    subscribers: Vec::new(),
                })
                .subscribers
                .push(Subscriber {
                    plugin: m.name.clone(),
                    mode: s.mode,
                });
        }
    }
    let mut all: Vec<EventTypeInfo> = types.into_values().collect();
    for t in &mut all {
        t.subscribers.sort_by(|a, b| a.plugin.cmp(&b.plugin));
    }
    all
}

impl Registry {
    /// The event types `tenant` can see: the kernel's, and those its enabled
    /// plugins emit or subscribe to (never another tenant's plugins').
    pub async fn event_catalog(&self, tenant: &TenantId) -> Result<Vec<EventTypeInfo>> {
        let enabled: Vec<(String, String)> = self
            .list(tenant)
            .await?
            .into_iter()
            .filter(|e| e.disabled_at.is_none())
            .map(|e| (e.name, e.version))
            .collect();
        let manifests: Vec<Arc<Manifest>> = self
            .packages()
            .await?
            .into_iter()
            .filter(|p| {
                enabled
                    .iter()
                    .any(|(n, v)| *n == p.manifest.name && *v == p.manifest.version)
            })
            .map(|p| p.manifest)
            .collect();
        Ok(catalog(&manifests))
    }
}

/// Checks a payload of one of the kernel's types against its schema (what
/// keeps the kernel's payloads and their published schemas in step);
/// `Err` names the first failing JSON pointer, or says the type is not the
/// kernel's.
pub fn check_kernel_payload(event_type: &str, payload: &Value) -> std::result::Result<(), String> {
    let t = keel_core::events::catalog::kernel_event_type(event_type)
        .ok_or_else(|| format!("{event_type} is not an event type of the kernel"))?;
    let validator = crate::event_schemas::compile(event_type, &t.schema)?;
    crate::event_schemas::validate(&validator, event_type, payload)
}

fn mode(m: DeliveryMode) -> &'static str {
    match m {
        DeliveryMode::Sync => "sync",
        DeliveryMode::Async => "async",
    }
}

/// Where a key goes when a schema is written out: the keywords a reader
/// looks for first, then the rest by name.
fn key_rank(k: &str) -> (usize, &str) {
    const FIRST: &[&str] = &[
        "$schema",
        "title",
        "description",
        "type",
        "enum",
        "const",
        "required",
        "properties",
        "items",
        "additionalProperties",
    ];
    (FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len()), k)
}

/// Pretty JSON with schema keywords in reading order (the same text
/// whichever order the map keeps its keys in).
fn pretty(v: &Value, indent: usize, out: &mut String) {
    let pad = |n: usize| "  ".repeat(n);
    match v {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| key_rank(k));
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push_str(": ");
                pretty(&map[k.as_str()], indent + 1, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                pretty(item, indent + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        // Scalars and flat arrays on one line: `["code", "batch"]`.
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(Value::to_string).collect();
            out.push('[');
            out.push_str(&parts.join(", "));
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `docs/events.md`: the kernel's event types and those of `plugins` (the
/// first-party plugins' manifests), each with its producer, subscribers
/// among `plugins`, description and schema.
pub fn markdown(plugins: &[Manifest]) -> String {
    let shared: Vec<Arc<Manifest>> = plugins.iter().cloned().map(Arc::new).collect();
    let types = catalog(&shared);
    let mut md = String::from(
        "# Event types\n\n\
         <!-- Generated from keel_core::events::catalog and the first-party plugins' \
         manifests: `KEEL_BLESS=1 cargo test -p keel-host --test all event_docs`. \
         Do not edit by hand. -->\n\n\
         The kernel's event types and those of the first-party plugins, with the JSON \
         Schema of each payload. The kernel checks every payload a plugin emits against \
         its type's schema and refuses one that does not match, so a subscriber can rely \
         on it; the kernel's own payloads match theirs and may gain properties in a later \
         release (ignore what you do not know). A tenant's own catalogue — the kernel's \
         types and those of the plugins it enabled, with their subscribers — is the \
         GraphQL query `eventTypes`. How a plugin declares its schemas: \
         [the plugin guide](plugin-guide.md#described-events-the-schema-of-each-payload).\n\n\
         | type | producer | subscribers |\n|---|---|---|\n",
    );
    let producer = |p: &Producer| match p {
        Producer::Kernel => "kernel".to_owned(),
        Producer::Plugin { name, .. } => format!("`{name}` plugin"),
        Producer::Undeclared => "undeclared".to_owned(),
    };
    let subscribers = |t: &EventTypeInfo| {
        if t.subscribers.is_empty() {
            "—".to_owned()
        } else {
            t.subscribers
                .iter()
                .map(|s| format!("`{}` ({})", s.plugin, mode(s.mode)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for t in &types {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            t.event_type,
            producer(&t.producer),
            subscribers(t)
        );
    }
    for t in &types {
        let _ = write!(
            md,
            "\n## `{}`\n\nProducer: {}. Subscribers: {}.\n\n",
            t.event_type,
            producer(&t.producer),
            subscribers(t)
        );
        if let Some(d) = &t.description {
            let _ = write!(md, "{d}\n\n");
        }
        match &t.schema {
            Some(s) => {
                let mut json = String::new();
                pretty(s, 0, &mut json);
                let _ = write!(md, "```json\n{json}\n```\n");
            }
            None => md.push_str("No schema: its producer declares none.\n"),
        }
    }
    md
}
