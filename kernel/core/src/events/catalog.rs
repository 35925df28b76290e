//! The kernel's own event types and the JSON Schemas of their payloads.
//!
//! Subscribers code against these schemas (listed by the GraphQL `eventTypes`
//! catalogue and in `docs/events.md`). Each payload the kernel appends for
//! one of these types matches its schema; a payload may gain properties in a
//! later release, so the schemas leave `additionalProperties` open and a
//! subscriber ignores what it does not know.

use serde_json::{Value, json};

/// One of the kernel's event types.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelEventType {
    /// Dotted type, e.g. `person.merged`.
    pub event_type: &'static str,
    /// What happened, in a sentence.
    pub description: &'static str,
    /// JSON Schema (draft 2020-12) of the payload; its top-level
    /// `description` is [`KernelEventType::description`].
    pub schema: Value,
}

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A top-level object schema with the kernel's description.
fn object(description: &str, required: &[&str], properties: Value) -> Value {
    json!({
        "$schema": DRAFT,
        "description": description,
        "type": "object",
        "required": required,
        "properties": properties,
    })
}

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn nullable_string(description: &str) -> Value {
    json!({ "type": ["string", "null"], "description": description })
}

/// A `product.*` type, its schema the catalogue module's own
/// ([`crate::catalog::event_schemas`]) with the kernel's description.
fn product(description: &'static str, event_type: &'static str) -> KernelEventType {
    let mut schema = crate::catalog::event_schemas()
        .into_iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, s)| s)
        .unwrap_or_else(|| object(description, &[], json!({})));
    if let Some(o) = schema.as_object_mut() {
        o.insert("$schema".into(), json!(DRAFT));
        o.insert("description".into(), json!(description));
    }
    KernelEventType {
        event_type,
        description,
        schema,
    }
}

/// A node as `org.*` events carry it.
fn node() -> Value {
    json!({
        "type": "object",
        "description": "The node as it is now.",
        "required": ["id", "kind", "code", "name", "parentId", "status"],
        "properties": {
            "id": string("The node's kernel id (`org_…`)."),
            "kind": {
                "type": "string",
                "enum": ["headquarters", "region", "distributor", "store", "warehouse"],
            },
            "code": string("The brand's code of the node, e.g. `CN-GD`."),
            "name": string("Its name."),
            "parentId": nullable_string("The parent node's id; null for a root."),
            "status": { "type": "string", "enum": ["active", "inactive"] },
            "address": nullable_string("A store's or warehouse's address."),
            "location": {
                "type": ["object", "null"],
                "description": "Where it is (WGS-84).",
                "required": ["lat", "lng"],
                "properties": {
                    "lat": { "type": "number" },
                    "lng": { "type": "number" },
                },
            },
            "attributes": { "type": "object" },
            "externalIds": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["system", "id"],
                    "properties": { "system": { "type": "string" }, "id": { "type": "string" } },
                },
            },
        },
    })
}

fn org_node(description: &'static str, event_type: &'static str) -> KernelEventType {
    let mut properties = json!({
        "node": node(),
        "actor": string("Who changed it: a principal's label."),
    });
    let mut required = vec!["node", "actor"];
    if event_type == "org.node_updated" {
        properties["changed"] = json!({
            "type": "array",
            "description": "The fields that changed (camelCase), e.g. `parentId`.",
            "items": { "type": "string" },
        });
        required.push("changed");
    }
    KernelEventType {
        event_type,
        description,
        schema: object(description, &required, properties),
    }
}

fn org_staff(description: &'static str, event_type: &'static str) -> KernelEventType {
    KernelEventType {
        event_type,
        description,
        schema: object(
            description,
            &["nodeId", "nodeCode", "personId", "role", "actor"],
            json!({
                "nodeId": string("The node's kernel id (`org_…`)."),
                "nodeCode": string("The brand's code of the node."),
                "personId": string("The staff member (also the event's person)."),
                "role": string("e.g. `guide`, `salesperson`, `manager`."),
                "actor": string("Who changed it: a principal's label."),
            }),
        ),
    }
}

const ERASED: &str = "A person was erased (personal-information rights): the kernel deleted their \
     identifiers, emptied their attributes and anonymised their events (which keep their type and \
     time, with no person and the payload {\"erased\": true} whatever their type's schema). Every \
     plugin erases what it holds under these ids: records, copies of identifiers or attributes.";

/// Every event type the kernel appends, by type.
pub fn kernel_event_types() -> Vec<KernelEventType> {
    let merged = "Two persons turned out to be one: the merged person's identifiers, \
                  profile and history now belong to the survivor (the event's person).";
    let mut all = vec![
        KernelEventType {
            event_type: "person.merged",
            description: merged,
            schema: object(
                merged,
                &["survivorId", "mergedId", "reason", "actor", "identifiers"],
                json!({
                    "survivorId": string("The person that remains."),
                    "mergedId": string("The person folded into the survivor; its id now resolves to the survivor."),
                    "reason": string("Why they were merged, as the caller said."),
                    "actor": string("Who merged them: a principal's label."),
                    "identifiers": {
                        "type": "array",
                        "description": "The merged person's identifiers, now the survivor's.",
                        "items": {
                            "type": "object",
                            "required": ["kind", "value"],
                            "properties": {
                                "kind": string("e.g. `phone`, `wechat_openid`, `external:erp`."),
                                "value": string("The normalised value."),
                            },
                        },
                    },
                }),
            ),
        },
        KernelEventType {
            event_type: "person.erased",
            description: ERASED,
            schema: object(
                ERASED,
                &["personId", "erasedIds"],
                json!({
                    "personId": string("The live person erased (also the event's person)."),
                    "erasedIds": {
                        "type": "array",
                        "description": "It and every person merged into it: the ids a plugin may hold records under.",
                        "items": {"type": "string"},
                    },
                }),
            ),
        },
        product(
            "A product (SPU) was added to the catalogue, with its SKUs.",
            "product.created",
        ),
        product(
            "A product or some of its SKUs changed (an upsert that changed nothing emits nothing).",
            "product.updated",
        ),
        org_node("A node joined the organisation tree.", "org.node_created"),
        org_node(
            "A node of the organisation tree changed: its name, status, parent, place, attributes or external ids.",
            "org.node_updated",
        ),
        org_staff(
            "A person was attached to a node of the organisation tree with a role.",
            "org.staff_added",
        ),
        org_staff(
            "A person's role at a node of the organisation tree ended.",
            "org.staff_removed",
        ),
    ];
    all.sort_by_key(|t| t.event_type);
    all
}

/// The kernel's event type `event_type`, if it is one.
pub fn kernel_event_type(event_type: &str) -> Option<KernelEventType> {
    kernel_event_types()
        .into_iter()
        .find(|t| t.event_type == event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_type_is_in_a_kernel_namespace_and_described() {
        let all = kernel_event_types();
        assert!(all.iter().any(|t| t.event_type == "person.merged"));
        for t in &all {
            assert!(super::super::kernel_owns(t.event_type), "{}", t.event_type);
            super::super::validate_type("type", t.event_type).unwrap();
            assert_eq!(t.schema["type"], "object", "{}", t.event_type);
            assert_eq!(t.schema["description"], t.description, "{}", t.event_type);
            for r in t.schema["required"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(
                    t.schema["properties"].get(r).is_some(),
                    "{}: {r} is required but not described",
                    t.event_type
                );
            }
        }
        let mut names: Vec<_> = all.iter().map(|t| t.event_type).collect();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a type is listed twice");
    }
}
