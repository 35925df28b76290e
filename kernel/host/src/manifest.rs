//! The plugin manifest (`keel-plugin.toml`) and the grants a tenant gives.
//!
//! The manifest's JSON Schema, generated from these types with schemars, is
//! committed as `schemas/manifest.schema.json` and checked for drift.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SUPPORTED_WIT_VERSIONS;

/// What a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique name: 2-40 characters of a-z, 0-9 and '-'. Also the namespace
    /// of its records and counters.
    pub name: String,
    /// Semantic version, e.g. `1.2.0`.
    pub version: String,
    pub publisher: String,
    pub description: String,
    /// The `keel:plugin` WIT version the component was built against.
    pub wit: String,
    /// Path of the component, relative to the manifest (directory packages).
    #[serde(default)]
    pub component: Option<String>,
    /// The collections whose records the plugin owns.
    #[serde(default)]
    pub collections: Vec<Collection>,
    #[serde(default)]
    pub events: EventDecl,
    #[serde(default)]
    pub graphql: GraphqlDecl,
    /// Files the plugin serves at `GET /files/{plugin}/{name}`, built chunk
    /// by chunk by one of its operations.
    #[serde(default)]
    pub downloads: Vec<Download>,
    /// Public HTML pages at `GET /t/{tenant-slug}/p/{plugin}/{*path}`.
    #[serde(default)]
    pub pages: Option<Pages>,
    /// Jobs the kernel runs on a cron schedule, in each tenant's time zone
    /// (`[[schedules]]`).
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// JSON Schema of the tenant's configuration of this plugin.
    #[serde(default)]
    pub config_schema: Option<serde_json::Value>,
    /// What the plugin asks to be granted.
    #[serde(default)]
    pub capabilities: Requested,
    /// Operations of other plugins it calls (`[[calls]]`, contract 0.2);
    /// each must be granted by the tenant. See `calls`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<crate::calls::PluginCall>,
    /// Operations it offers to other plugins (`[offers]`, contract 0.2);
    /// not on GraphQL unless its SDL also has them.
    #[serde(default, skip_serializing_if = "crate::calls::Offers::is_empty")]
    pub offers: crate::calls::Offers,
    /// Larger limits than the kernel's defaults (`[resources]`), granted
    /// only within the operator's maximums (`HostConfig::max_memory_bytes`,
    /// `HostConfig::max_deadline`); installing a package that asks for more
    /// is refused.
    #[serde(default, skip_serializing_if = "Resources::is_default")]
    pub resources: Resources,
    /// The plugin enforces its callers' org scope itself (contract 0.2: it
    /// reads `call-context.scope`, e.g. with the SDK's `scope` helpers).
    /// A credential limited to an org node may call only the plugins that
    /// say so: the kernel refuses it the others, which would act on the
    /// whole tenant for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enforces_org_scope: bool,
}

/// What one invocation of the plugin may use, when it needs more than the
/// kernel's defaults (a Python component needs well over 64 MiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Linear memory of one instance, in MiB (1-4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// How long one call may run, in milliseconds (1-600000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u32>,
}

impl Resources {
    /// The most memory a manifest may ask for at all.
    pub const MAX_MEMORY_MIB: u32 = 4096;
    /// The longest deadline a manifest may ask for at all.
    pub const MAX_DEADLINE_MS: u32 = 600_000;

    pub fn is_default(&self) -> bool {
        *self == Resources::default()
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(m) = self.memory_mib
            && !(1..=Self::MAX_MEMORY_MIB).contains(&m)
        {
            return Err(format!(
                "resources.memory_mib: {m} must be 1-{}",
                Self::MAX_MEMORY_MIB
            ));
        }
        if let Some(d) = self.deadline_ms
            && !(1..=Self::MAX_DEADLINE_MS).contains(&d)
        {
            return Err(format!(
                "resources.deadline_ms: {d} must be 1-{}",
                Self::MAX_DEADLINE_MS
            ));
        }
        Ok(())
    }
}

/// A collection of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    pub name: String,
    /// Top-level fields that `records.query` can filter on.
    #[serde(default)]
    pub indexed: Vec<String>,
}

/// Events emitted and subscribed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDecl {
    /// Types the plugin may emit.
    #[serde(default)]
    pub emits: Vec<String>,
    /// The JSON Schema of each emitted type's payload, by type:
    /// `[events.schemas."code.scanned"]` with `type = "object"` at the top.
    /// Every emitted payload must match it. Optional for `wit = "0.1.0"`;
    /// from 0.2.0 on, every type in `emits` has one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(
        with = "std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>"
    )]
    pub schemas: std::collections::BTreeMap<String, serde_json::Value>,
    /// Types the plugin wants delivered.
    #[serde(default)]
    pub subscribes: Vec<Subscription>,
    /// The schemas' validators, compiled once and kept with the manifest.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) compiled: crate::event_schemas::CompiledSchemas,
}

/// A subscription to an event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(rename = "type")]
    pub event_type: String,
    /// `sync`: inside the emitting transaction (its failure fails the emitter);
    /// `async`: after commit, through the outbox, at least once.
    #[serde(default)]
    pub mode: DeliveryMode,
}

/// How an event reaches a subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    Sync,
    #[default]
    Async,
}

/// The GraphQL the plugin adds to its tenants' schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphqlDecl {
    /// SDL: types, and `extend type Query` / `extend type Mutation` fields.
    /// Each root field is an operation of the plugin, by field name.
    #[serde(default)]
    pub sdl: String,
    /// Operations callable without a credential (always rate-limited).
    #[serde(default)]
    pub public: Vec<String>,
}

/// A file the plugin serves, built by calling `operation` once per chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Download {
    /// The URL segment: 2-40 characters of a-z, 0-9 and '-', unique in the
    /// plugin.
    pub name: String,
    /// The operation that returns each chunk (it need not be in the SDL).
    pub operation: String,
    /// The response's `Content-Type`, e.g. `text/csv; charset=utf-8`.
    pub content_type: String,
    /// The file name suggested to the client: 1-100 characters of A-Z, a-z,
    /// 0-9, '.', '_' and '-'.
    pub file_name: String,
    /// The action a caller needs on the object `plugin.<name>`.
    #[serde(default)]
    pub access: Access,
}

/// What a caller must be allowed to do to the plugin to download a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Read,
    Write,
}

/// The plugin's public pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pages {
    /// The operation that renders a page (it need not be in the SDL).
    pub operation: String,
}

/// A job the kernel runs at each tick of a cron expression, in the
/// tenant's time zone, once across every kernel process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// 2-40 characters of a-z, 0-9 and '-', unique in the plugin.
    pub name: String,
    /// Five fields, `minute hour day-of-month month day-of-week`, in the
    /// POSIX/Vixie dialect (`*`, lists, ranges, steps, names such as `MON`
    /// and `JAN`, plus `L`, `W` and `#`), or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`. No seconds field.
    pub cron: String,
    /// The operation called at each tick (it need not be in the SDL).
    pub operation: String,
    /// Attempts before a failing run becomes a dead letter: 1-10, default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// A capability a plugin may be granted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Records of its own collections.
    Records,
    /// Emitting events it declares.
    Events,
    /// Resolving and reading persons.
    PersonsRead,
    /// Writing person profile attributes.
    PersonsWrite,
    /// Counters with limits (its own keys).
    Counters,
    /// Secrets the tenant stored for it.
    Secrets,
    /// Outbound HTTP to allowed hosts.
    Http,
    /// Reading the kernel's product catalogue (contract 0.2).
    CatalogRead,
    /// Upserting products and SKUs (contract 0.2).
    CatalogWrite,
    /// Reading the organisation tree and its staff (contract 0.2).
    OrgRead,
    /// Upserting org nodes (contract 0.2).
    OrgWrite,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Records => "records",
            Capability::Events => "events",
            Capability::PersonsRead => "persons-read",
            Capability::PersonsWrite => "persons-write",
            Capability::Counters => "counters",
            Capability::Secrets => "secrets",
            Capability::Http => "http",
            Capability::CatalogRead => "catalog-read",
            Capability::CatalogWrite => "catalog-write",
            Capability::OrgRead => "org-read",
            Capability::OrgWrite => "org-write",
        }
    }

    /// The first `keel:plugin` version that has this capability: a
    /// manifest for an older version cannot ask for it.
    pub fn since(self) -> &'static str {
        match self {
            Capability::Records
            | Capability::Events
            | Capability::PersonsRead
            | Capability::PersonsWrite
            | Capability::Counters
            | Capability::Secrets
            | Capability::Http => keel_contract::WIT_0_1_0,
            Capability::CatalogRead
            | Capability::CatalogWrite
            | Capability::OrgRead
            | Capability::OrgWrite => keel_contract::WIT_0_2_0,
        }
    }
}

/// What a plugin asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requested {
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    /// Hosts it may want to reach over HTTP (the tenant grants a subset);
    /// `"*"` for a connector whose hosts each tenant chooses (the tenant
    /// still names every host it allows).
    #[serde(default)]
    pub http_hosts: Vec<String>,
}

/// What a tenant granted a plugin: never more than it requested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    #[serde(default)]
    pub http_hosts: Vec<String>,
    /// Calls to other plugins' operations, each declared in `[[calls]]`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub calls: BTreeSet<crate::calls::PluginCall>,
}

impl Grants {
    /// Everything the manifest requested.
    pub fn all_requested(m: &Manifest) -> Grants {
        Grants {
            capabilities: m.capabilities.capabilities.clone(),
            http_hosts: m
                .capabilities
                .http_hosts
                .iter()
                .filter(|h| *h != "*")
                .cloned()
                .collect(),
            calls: m.calls.iter().cloned().collect(),
        }
    }

    pub fn has(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }

    /// Refuses grants beyond what `m` requested, naming the first excess.
    pub fn check_within(&self, m: &Manifest) -> Result<(), String> {
        if let Some(c) = self
            .capabilities
            .iter()
            .find(|c| !m.capabilities.capabilities.contains(c))
        {
            return Err(format!(
                "grants: {} requests no capability {}",
                m.name,
                c.as_str()
            ));
        }
        if self.http_hosts.iter().any(|h| h == "*" || h.is_empty()) {
            return Err("grants: name each HTTP host; '*' is not a host".into());
        }
        if let Some(h) = self.http_hosts.iter().find(|h| {
            !m.capabilities
                .http_hosts
                .iter()
                .any(|r| r == "*" || r == *h)
        }) {
            return Err(format!("grants: {} requests no HTTP access to {h}", m.name));
        }
        if !self.http_hosts.is_empty() && !self.has(Capability::Http) {
            return Err("grants: HTTP hosts need the http capability".into());
        }
        crate::calls::check_grants(&self.calls, m)?;
        Ok(())
    }
}

pub(crate) fn is_name(s: &str, max: usize) -> bool {
    (2..=max).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(crate) fn is_operation(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_file_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && s.bytes().any(|b| b != b'.')
}

/// A media type with optional parameters, safe as a header value.
fn is_content_type(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    s.len() <= 200
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence
            .split_once('/')
            .is_some_and(|(t, sub)| token(t) && token(sub))
}

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl Manifest {
    /// Parses `keel-plugin.toml` text and validates it.
    pub fn from_toml(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| format!("keel-plugin.toml: {e}"))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks everything that can be checked without the component.
    pub fn validate(&self) -> Result<(), String> {
        if !is_name(&self.name, 40) || self.name.contains('_') {
            return Err(format!(
                "name: {:?} must be 2-40 characters of a-z, 0-9 and '-'",
                self.name
            ));
        }
        if !is_semver(&self.version) {
            return Err(format!(
                "version: {:?} is not a semantic version like 1.0.0",
                self.version
            ));
        }
        if !SUPPORTED_WIT_VERSIONS.contains(&self.wit.as_str()) {
            return Err(format!(
                "wit: the plugin is built for keel:plugin@{}, this kernel supports keel:plugin@{}",
                self.wit,
                SUPPORTED_WIT_VERSIONS.join(", @")
            ));
        }
        if let Some(c) = self.capabilities.capabilities.iter().find(|c| {
            let position = |v| SUPPORTED_WIT_VERSIONS.iter().position(|s| *s == v);
            position(c.since()) > position(self.wit.as_str())
        }) {
            return Err(format!(
                "capabilities: {} does not exist in keel:plugin@{}; it needs keel:plugin@{} or later",
                c.as_str(),
                self.wit,
                c.since()
            ));
        }
        if self.enforces_org_scope && self.wit == "0.1.0" {
            return Err(
                "enforces_org_scope: a keel:plugin@0.1.0 component never sees its caller's scope; build it for @0.2.0"
                    .into(),
            );
        }
        let mut seen = BTreeSet::new();
        for c in &self.collections {
            if !is_name(&c.name, 63) || c.name.contains('-') {
                return Err(format!(
                    "collections: {:?} must be a-z, 0-9 and '_'",
                    c.name
                ));
            }
            if !seen.insert(&c.name) {
                return Err(format!("collections: {:?} is declared twice", c.name));
            }
            if let Some(f) = c.indexed.iter().find(|f| f.is_empty() || f.len() > 64) {
                return Err(format!(
                    "collections.{}.indexed: {f:?} is not a field name",
                    c.name
                ));
            }
        }
        for t in self
            .events
            .emits
            .iter()
            .chain(self.events.subscribes.iter().map(|s| &s.event_type))
        {
            keel_core::events::validate_type("events", t).map_err(|e| e.to_string())?;
        }
        crate::event_schemas::check_declaration(&self.events, &self.wit)?;
        if self.config_schema.as_ref().is_some_and(|s| !s.is_object()) {
            return Err("config_schema: must be a JSON Schema object".into());
        }
        crate::schedules::validate(&self.schedules)?;
        crate::calls::validate(self)?;
        self.resources.validate()?;
        self.validate_files_and_pages()
    }

    fn validate_files_and_pages(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for d in &self.downloads {
            if !is_name(&d.name, 40) || d.name.contains('_') {
                return Err(format!(
                    "downloads: {:?} must be 2-40 characters of a-z, 0-9 and '-'",
                    d.name
                ));
            }
            if !seen.insert(&d.name) {
                return Err(format!("downloads: {:?} is declared twice", d.name));
            }
            if !is_operation(&d.operation) {
                return Err(format!(
                    "downloads.{}.operation: {:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
                    d.name, d.operation
                ));
            }
            if !is_content_type(&d.content_type) {
                return Err(format!(
                    "downloads.{}.content_type: {:?} is not a media type like text/csv; charset=utf-8",
                    d.name, d.content_type
                ));
            }
            if !is_file_name(&d.file_name) {
                return Err(format!(
                    "downloads.{}.file_name: {:?} must be 1-100 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
                    d.name, d.file_name
                ));
            }
        }
        if let Some(p) = &self.pages
            && !is_operation(&p.operation)
        {
            return Err(format!(
                "pages.operation: {:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
                p.operation
            ));
        }
        Ok(())
    }

    /// The download named `name`, if declared.
    pub fn download(&self, name: &str) -> Option<&Download> {
        self.downloads.iter().find(|d| d.name == name)
    }

    /// The collection named `name`, if declared.
    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.iter().find(|c| c.name == name)
    }

    /// The manifest's JSON Schema.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Manifest)).unwrap_or_default()
    }
}
