//! A plugin operation called without GraphQL text, checked as its root
//! field in the tenant's schema checks it: the path of `keel plugin
//! harness`, which plugins' tests drive.
//!
//! The input is a JSON object of the field's arguments. When the plugin's
//! SDL declares the operation as a Query or Mutation field, the arguments
//! go through async-graphql's own coercion, in a schema of that one field
//! with the plugin's input types and enums: an unknown argument, a missing
//! required one or a value of the wrong type is `BAD_USER_INPUT`, defaults
//! are filled in, and the plugin receives what a GraphQL client's call
//! would give it. The answer then gets the same output checks. An
//! operation only offered to other plugins, or run by a schedule or a
//! subscription, has no GraphQL field: its input goes as given and its
//! output must only be JSON.

use std::sync::Arc;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, Object, Scalar, Schema, TypeRef};
use async_graphql::parser::types::{FieldDefinition, OperationType};
use async_graphql::{Request, Value, Variables};
use keel_host::manifest::Manifest;
use keel_host::{CallContext, PluginError};

use crate::graphql::Services;
use crate::tenant_schema::{
    INVALID_OUTPUT, KERNEL_SDL, Owner, Plan, SHARED_SCALARS, checked_output, input_type,
    input_value, plan,
};

/// Runs `operation` of `plugin` for `tenant`: the arguments coerced as
/// above, the call in the host (one instance, one transaction, the
/// tenant's enabled set as `ctx.plugins`), then the output checks — JSON,
/// and a value of the field's type. No authorization: the call runs as the
/// caller in `ctx`.
pub(crate) async fn call_operation(
    services: &Services,
    tenant: &keel_core::TenantId,
    plugin: &str,
    operation: &str,
    input: serde_json::Value,
    mut ctx: CallContext,
) -> keel_host::Result<serde_json::Value> {
    let set = services.plugins.enabled(tenant).await?;
    let act = set
        .get(plugin)
        .cloned()
        .ok_or_else(|| returned("NOT_FOUND", format!("the plugin {plugin} is not enabled")))?;
    let manifests: Vec<Arc<Manifest>> = set.plugins.iter().map(|a| a.manifest.clone()).collect();
    let plan = plan(&KERNEL_SDL, &manifests).map_err(|e| {
        PluginError::Internal(anyhow::anyhow!("the tenant's plugins do not merge: {e}"))
    })?;
    let owner = Owner::Plugin(plugin.to_owned());
    let field = [
        (OperationType::Query, &plan.query),
        (OperationType::Mutation, &plan.mutation),
    ]
    .into_iter()
    .find_map(|(root, fields)| {
        fields
            .iter()
            .find(|(o, f)| *o == owner && f.name.node == operation)
            .map(|(_, f)| (root, f))
    });
    let input = match field {
        Some((root, f)) => coerce(&plan, &owner, root, f, input)
            .await
            .map_err(|e| match e {
                Coercion::Refused(message) => returned("BAD_USER_INPUT", message),
                Coercion::Schema(message) => PluginError::Internal(anyhow::anyhow!(
                    "the arguments of {plugin}.{operation}: {message}"
                )),
            })?,
        None => input,
    };
    ctx.plugins = Some(set);
    let out = services
        .plugins
        .host()
        .call_operation(&act, operation, &input.to_string(), ctx)
        .await?;
    let ret = field.map(|(_, f)| &f.ty.node);
    checked_output(plugin, operation, &out, ret, &plan.types)
        .map_err(|message| returned(INVALID_OUTPUT, message))
}

fn returned(code: &str, message: String) -> PluginError {
    PluginError::Returned {
        code: code.into(),
        message,
        field: None,
    }
}

/// Why arguments were not coerced.
enum Coercion {
    /// What a GraphQL client would be told (`BAD_USER_INPUT`).
    Refused(String),
    /// The one-field schema could not be built: the kernel's fault.
    Schema(String),
}

/// `input` as the arguments of `f` (a root field of `owner` under `root`)
/// after GraphQL's coercion, or the first error a client would get.
async fn coerce(
    plan: &Plan,
    owner: &Owner,
    root: OperationType,
    f: &FieldDefinition,
    input: serde_json::Value,
) -> Result<serde_json::Value, Coercion> {
    let root_name = match root {
        OperationType::Mutation => "Mutation",
        _ => "Query",
    };
    let op = f.name.node.as_str();
    let serde_json::Value::Object(given) = input else {
        return Err(Coercion::Refused(format!(
            "the arguments of {root_name}.{op} must be a JSON object"
        )));
    };
    let mut declared = Vec::new();
    let mut passed = Vec::new();
    for (name, _) in &given {
        let Some(a) = f
            .arguments
            .iter()
            .find(|a| a.node.name.node == name.as_str())
        else {
            return Err(Coercion::Refused(format!(
                "Unknown argument \"{name}\" on field \"{root_name}.{op}\""
            )));
        };
        declared.push(format!("${name}: {}", a.node.ty.node));
        passed.push(format!("{name}: ${name}"));
    }
    let mut document = String::from("query");
    if !declared.is_empty() {
        document.push_str(&format!("({})", declared.join(", ")));
    }
    document.push_str(&format!(" {{ {op}"));
    if !passed.is_empty() {
        document.push_str(&format!("({})", passed.join(", ")));
    }
    document.push_str(" }");

    let response = one_field_schema(plan, owner, f)
        .map_err(Coercion::Schema)?
        .execute(Request::new(document).variables(Variables::from_json(given.into())))
        .await;
    if let Some(e) = response.errors.first() {
        return Err(Coercion::Refused(e.message.clone()));
    }
    let data = response
        .data
        .into_json()
        .map_err(|e| Coercion::Schema(format!("the coerced arguments: {e}")))?;
    Ok(data.get(op).cloned().unwrap_or_default())
}

/// A schema whose one query field has `f`'s arguments and answers them, as
/// coerced, as JSON; with the plugin's input objects and enums and the
/// shared scalars, registered as the tenant's schema registers them.
fn one_field_schema(plan: &Plan, owner: &Owner, f: &FieldDefinition) -> Result<Schema, String> {
    let mut field = Field::new(f.name.node.to_string(), TypeRef::named("JSON"), |ctx| {
        let args = ctx
            .args
            .iter()
            .map(|(name, value)| (async_graphql::Name::new(name), value.as_value().clone()))
            .collect();
        FieldFuture::Value(Some(FieldValue::value(Value::Object(args))))
    });
    for a in &f.arguments {
        field = field.argument(input_value(&a.node));
    }
    let mut b = Schema::build("Query", None, None).register(Object::new("Query").field(field));
    for name in SHARED_SCALARS {
        b = b.register(Scalar::new(*name));
    }
    for (name, (o, def)) in &plan.types {
        if o == owner
            && let Some(ty) = input_type(name, def)
        {
            b = b.register(ty);
        }
    }
    b.finish()
        .map_err(|e| format!("the arguments of {}: {e}", f.name.node))
}
