//! One GraphQL schema per tenant: the kernel's types and operations plus
//! the SDL of every plugin the tenant enabled.
//!
//! The schema is built with async-graphql's dynamic API from SDL: the
//! kernel's own SDL (generated from its code) and each plugin's. Kernel root
//! fields forward their selection to the kernel's compiled schema, with the
//! same caller; plugin root fields call the plugin's operation with their
//! arguments as JSON and check its output against the declared type. A
//! tenant's schema is cached per version of its plugin set. Requests that
//! touch only kernel fields skip this and run on the compiled schema.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_graphql::Value;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object,
    ResolverContext, Scalar, Schema, TypeRef,
};
use async_graphql::parser::types::{
    BaseType, FieldDefinition, InputValueDefinition, OperationType, ServiceDocument, Type,
    TypeDefinition, TypeKind, TypeSystemDefinition,
};
use keel_core::authz::Action;
use keel_host::manifest::Manifest;
use keel_host::{CallContext, TenantPlugins};

use crate::errors::gql_error;
use crate::graphql::{KernelSchema, QueryLimits, RequestInfo, Services, services};

const BUILTIN_SCALARS: &[&str] = &["String", "Int", "Float", "Boolean", "ID"];
/// Scalars of the kernel that plugin SDL may use.
pub(crate) const SHARED_SCALARS: &[&str] = &["JSON", "DateTime"];

/// Who defined a type or a root field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    Kernel,
    Plugin(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Kernel => f.write_str("the kernel"),
            Owner::Plugin(p) => write!(f, "the plugin {p}"),
        }
    }
}

/// The merged type system of a tenant.
pub(crate) struct Plan {
    pub(crate) types: BTreeMap<String, (Owner, TypeDefinition)>,
    pub(crate) query: Vec<(Owner, FieldDefinition)>,
    pub(crate) mutation: Vec<(Owner, FieldDefinition)>,
    public: HashSet<(String, String)>,
}

fn base_name(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => base_name(inner),
    }
}

fn type_ref(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(n) => TypeRef::Named(n.to_string().into()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    if ty.nullable {
        base
    } else {
        TypeRef::NonNull(Box::new(base))
    }
}

fn parse(sdl: &str, who: &Owner) -> Result<ServiceDocument, String> {
    async_graphql::parser::parse_schema(sdl)
        .map_err(|e| format!("{who}'s GraphQL SDL does not parse: {e}"))
}

/// Merges the kernel's SDL with the plugins', refusing conflicts.
pub(crate) fn plan(kernel: &ServiceDocument, plugins: &[Arc<Manifest>]) -> Result<Plan, String> {
    let mut plan = Plan {
        types: BTreeMap::new(),
        query: Vec::new(),
        mutation: Vec::new(),
        public: HashSet::new(),
    };
    let docs =
        std::iter::once((Owner::Kernel, Ok(kernel.clone()))).chain(plugins.iter().map(|m| {
            let who = Owner::Plugin(m.name.clone());
            // A plugin may serve only files or pages, with no GraphQL.
            let doc = if m.graphql.sdl.trim().is_empty() {
                Ok(ServiceDocument {
                    definitions: Vec::new(),
                })
            } else {
                parse(&m.graphql.sdl, &who)
            };
            (who, doc)
        }));
    for (who, doc) in docs {
        let doc = doc?;
        for def in doc.definitions {
            let TypeSystemDefinition::Type(def) = def else {
                if who != Owner::Kernel {
                    return Err(format!(
                        "{who}'s SDL may define types and extend Query and Mutation, nothing else"
                    ));
                }
                continue;
            };
            let def = def.node;
            let name = def.name.node.to_string();
            if name == "Query" || name == "Mutation" {
                if who != Owner::Kernel && !def.extend {
                    return Err(format!(
                        "{who} must write `extend type {name}`, not define it"
                    ));
                }
                let TypeKind::Object(obj) = def.kind else {
                    return Err(format!("{who}: {name} must be an object type"));
                };
                let fields = if name == "Query" {
                    &mut plan.query
                } else {
                    &mut plan.mutation
                };
                for f in obj.fields {
                    let f = f.node;
                    if let Some((other, _)) =
                        fields.iter().find(|(_, g)| g.name.node == f.name.node)
                    {
                        return Err(format!(
                            "{name}.{} is defined by both {other} and {who}",
                            f.name.node
                        ));
                    }
                    fields.push((who.clone(), f));
                }
                continue;
            }
            if def.extend {
                return Err(format!(
                    "{who} may extend only Query and Mutation, not {name}"
                ));
            }
            if let Some((other, _)) = plan.types.get(&name) {
                return Err(format!(
                    "the type {name} is defined by both {other} and {who}"
                ));
            }
            plan.types.insert(name, (who.clone(), def));
        }
    }
    for m in plugins {
        for op in &m.graphql.public {
            let declared =
                plan.query.iter().chain(plan.mutation.iter()).any(|(o, f)| {
                    *o == Owner::Plugin(m.name.clone()) && f.name.node == op.as_str()
                });
            if !declared {
                return Err(format!(
                    "the plugin {} lists {op} as public but its SDL has no such Query or Mutation field",
                    m.name
                ));
            }
            plan.public.insert((m.name.clone(), op.clone()));
        }
    }
    check_plugin_references(&plan)?;
    Ok(plan)
}

/// Plugin types and fields may use only their own types and the shared
/// scalars: a plugin's JSON output cannot stand in for a kernel object.
fn check_plugin_references(plan: &Plan) -> Result<(), String> {
    let ok = |owner: &Owner, ty: &Type, context: &str| -> Result<(), String> {
        let n = base_name(ty);
        if BUILTIN_SCALARS.contains(&n) || SHARED_SCALARS.contains(&n) {
            return Ok(());
        }
        match plan.types.get(n) {
            Some((o, _)) if o == owner => Ok(()),
            Some((o, _)) => Err(format!("{owner}: {context} uses {n}, a type of {o}")),
            None => Err(format!("{owner}: {context} uses the unknown type {n}")),
        }
    };
    let check_field = |owner: &Owner, f: &FieldDefinition, on: &str| -> Result<(), String> {
        ok(owner, &f.ty.node, &format!("{on}.{}", f.name.node))?;
        for a in &f.arguments {
            ok(
                owner,
                &a.node.ty.node,
                &format!("{on}.{}({})", f.name.node, a.node.name.node),
            )?;
        }
        Ok(())
    };
    for (owner, f) in plan.query.iter().chain(plan.mutation.iter()) {
        if *owner != Owner::Kernel {
            check_field(owner, f, "a root field")?;
        }
    }
    for (name, (owner, def)) in &plan.types {
        if *owner == Owner::Kernel {
            continue;
        }
        match &def.kind {
            TypeKind::Object(o) => o
                .fields
                .iter()
                .try_for_each(|f| check_field(owner, &f.node, name))?,
            TypeKind::InputObject(i) => i.fields.iter().try_for_each(|f| {
                ok(
                    owner,
                    &f.node.ty.node,
                    &format!("{name}.{}", f.node.name.node),
                )
            })?,
            TypeKind::Enum(_) => {}
            TypeKind::Scalar => {
                return Err(format!("{owner}: custom scalar {name}: use String or JSON"));
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                return Err(format!(
                    "{owner}: {name}: interfaces and unions are not supported in plugin SDL"
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn input_value(def: &InputValueDefinition) -> InputValue {
    let mut v = InputValue::new(def.name.node.to_string(), type_ref(&def.ty.node));
    if let Some(d) = &def.default_value {
        v = v.default_value(d.node.clone());
    }
    if let Some(desc) = &def.description {
        v = v.description(desc.node.clone());
    }
    v
}

/// An input object or enum of the SDL as a dynamic type (`None` for the
/// other kinds).
pub(crate) fn input_type(name: &str, def: &TypeDefinition) -> Option<async_graphql::dynamic::Type> {
    let desc = def.description.as_ref().map(|d| d.node.clone());
    match &def.kind {
        TypeKind::InputObject(i) => {
            let mut obj = InputObject::new(name);
            for f in &i.fields {
                obj = obj.field(input_value(&f.node));
            }
            if let Some(d) = desc {
                obj = obj.description(d);
            }
            Some(obj.into())
        }
        TypeKind::Enum(e) => {
            let mut en = Enum::new(name);
            for v in &e.values {
                en = en.item(EnumItem::new(v.node.value.node.to_string()));
            }
            if let Some(d) = desc {
                en = en.description(d);
            }
            Some(en.into())
        }
        _ => None,
    }
}

/// A JSON value as the field value of type `ty`: a list type's value as a
/// list (so that items of object type resolve their own fields), anything
/// else whole — a `JSON` field holding an array or an object stays one
/// scalar value.
fn field_value(v: Value, ty: &Type) -> FieldValue<'static> {
    match (v, &ty.base) {
        (Value::List(items), BaseType::List(inner)) => FieldValue::list(
            items
                .into_iter()
                .map(|x| field_value(x, inner))
                .collect::<Vec<_>>(),
        ),
        (other, _) => FieldValue::value(other),
    }
}

/// The SDL's description of a field, and its `@deprecated(reason: …)`, so
/// that introspection shows a plugin's deprecated operations as deprecated.
fn described(mut field: Field, f: &FieldDefinition) -> Field {
    if let Some(d) = &f.description {
        field = field.description(d.node.clone());
    }
    if let Some(d) = f
        .directives
        .iter()
        .find(|d| d.node.name.node == "deprecated")
    {
        let reason = match d.node.get_argument("reason").map(|r| &r.node) {
            Some(async_graphql::Value::String(r)) => Some(r.as_str()),
            _ => None,
        };
        field = field.deprecation(reason);
    }
    field
}

/// A field of an object type, resolved from the parent's JSON: by response
/// key for kernel objects (forwarded with the same aliases), by field name
/// for plugin objects (the plugin knows no aliases).
fn object_field(f: &FieldDefinition, by_response_key: bool) -> Field {
    let ty = f.ty.node.clone();
    let mut field = Field::new(f.name.node.to_string(), type_ref(&f.ty.node), move |ctx| {
        let key = if by_response_key {
            ctx.field().alias().unwrap_or(ctx.field().name())
        } else {
            ctx.field().name()
        };
        let v = match ctx.parent_value.as_value() {
            Some(Value::Object(m)) => m.get(key).cloned(),
            _ => None,
        };
        FieldFuture::Value(v.filter(|v| *v != Value::Null).map(|v| field_value(v, &ty)))
    });
    for a in &f.arguments {
        field = field.argument(input_value(&a.node));
    }
    described(field, f)
}

/// Renders a selection back into GraphQL text, with variables resolved.
fn render(
    field: &async_graphql::SelectionField<'_>,
    out: &mut String,
) -> async_graphql::ServerResult<()> {
    if let Some(alias) = field.alias() {
        out.push_str(alias);
        out.push_str(": ");
    }
    out.push_str(field.name());
    let args = field.arguments()?;
    if !args.is_empty() {
        out.push('(');
        for (i, (n, v)) in args.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{n}: {v}"));
        }
        out.push(')');
    }
    for d in field.directives()? {
        out.push_str(&format!(" @{}", d.name.node));
        if !d.arguments.is_empty() {
            let args: Vec<String> = d
                .arguments
                .iter()
                .map(|(n, v)| format!("{}: {}", n.node, v.node))
                .collect();
            out.push_str(&format!("({})", args.join(", ")));
        }
    }
    let children: Vec<_> = field.selection_set().collect();
    if !children.is_empty() {
        out.push_str(" { ");
        for c in &children {
            render(c, out)?;
            out.push(' ');
        }
        out.push('}');
    }
    Ok(())
}

/// A kernel root field: run its selection on the compiled kernel schema as
/// the same caller.
fn kernel_root(f: &FieldDefinition, op: &'static str, kernel: Option<KernelSchema>) -> Field {
    let ty = f.ty.node.clone();
    let mut field = Field::new(f.name.node.to_string(), type_ref(&f.ty.node), move |ctx| {
        let kernel = kernel.clone();
        let ty = ty.clone();
        FieldFuture::new(async move {
            let result: async_graphql::Result<Option<FieldValue<'_>>> = async {
                let kernel = kernel.ok_or_else(|| {
                    gql_error("INTERNAL", "a schema built for checking cannot run")
                })?;
                let mut text = String::from(op);
                text.push_str(" { ");
                render(&ctx.field(), &mut text)
                    .map_err(|e| gql_error("BAD_USER_INPUT", e.message))?;
                text.push_str(" }");
                let info = ctx.data::<RequestInfo>()?.clone();
                let response = kernel
                    .execute(async_graphql::Request::new(text).data(info))
                    .await;
                if let Some(e) = response.errors.into_iter().next() {
                    return Err(async_graphql::Error {
                        message: e.message,
                        source: None,
                        extensions: e.extensions,
                    });
                }
                let key = ctx.field().alias().unwrap_or(ctx.field().name()).to_owned();
                let v = match response.data {
                    Value::Object(mut m) => m.shift_remove(key.as_str()),
                    _ => None,
                };
                Ok(v.filter(|v| *v != Value::Null).map(|v| field_value(v, &ty)))
            }
            .await;
            settle(&ctx, ty.nullable, result)
        })
    });
    for a in &f.arguments {
        field = field.argument(input_value(&a.node));
    }
    described(field, f)
}

/// The message of the stand-in error a failed non-null root field leaves
/// for async-graphql, removed again once `data` is nulled.
pub(crate) const NULLED_DATA: &str = "keel: a non-null root field failed";

/// Settles a root field's result as the GraphQL spec says, which
/// async-graphql 7 does not: it leaves a failed field out of its parent.
/// A failed nullable field is `null` with its error at its path; a failed
/// non-null root field makes `data` null (its parent), which the gateway
/// does after execution when the request's flag says so.
fn settle<'a>(
    ctx: &ResolverContext<'_>,
    nullable: bool,
    result: async_graphql::Result<Option<FieldValue<'a>>>,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let Err(e) = result else { return result };
    ctx.add_error(ctx.set_error_path(e.into_server_error(ctx.item.pos)));
    if nullable {
        return Ok(None);
    }
    if let Ok(info) = ctx.data::<RequestInfo>() {
        info.null_data
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Err(async_graphql::Error::new(NULLED_DATA))
}

/// A plugin root field: authorize, call the operation, check the output.
fn plugin_root(
    plugin: String,
    f: &FieldDefinition,
    action: Action,
    public: bool,
    types: Arc<BTreeMap<String, (Owner, TypeDefinition)>>,
) -> Field {
    let op = f.name.node.to_string();
    let ret = f.ty.node.clone();
    let mut field = Field::new(
        op.clone(),
        type_ref(&f.ty.node),
        move |ctx: ResolverContext<'_>| {
            let (plugin, op, ret, types) = (plugin.clone(), op.clone(), ret.clone(), types.clone());
            FieldFuture::new(async move {
                let result: async_graphql::Result<Option<FieldValue<'_>>> = async {
                    let info = ctx.data::<RequestInfo>()?;
                    let set = ctx.data::<Arc<TenantPlugins>>()?;
                    // The caller's label, and the org node it is limited to: the
                    // plugin receives the scope and enforces it on its own data.
                    let (caller, scope) = match &info.principal {
                        Some(p) => {
                            let object = format!("plugin.{plugin}");
                            services(&ctx)
                                .authz
                                .tenant(p, &object, action)
                                .await
                                .map_err(crate::errors::to_gql)?;
                            (Some(p.label()), p.org_scope.clone())
                        }
                        // A public operation runs for the signed-in consumer,
                        // if any: never for whom its arguments name.
                        None if public => (info.consumer.clone(), None),
                        None => {
                            return Err(gql_error(
                                "UNAUTHENTICATED",
                                format!("{op} needs an API key or session token"),
                            ));
                        }
                    };
                    let act = set.get(&plugin).ok_or_else(|| {
                        gql_error("NOT_FOUND", format!("the plugin {plugin} is not enabled"))
                    })?;
                    crate::errors::admits_scope(act, scope.as_deref())?;
                    let mut input = serde_json::Map::new();
                    for (name, value) in ctx.args.iter() {
                        let v = value
                            .as_value()
                            .clone()
                            .into_json()
                            .map_err(|e| gql_error("BAD_USER_INPUT", e.to_string()))?;
                        input.insert(name.to_string(), v);
                    }
                    let caller_rights = Some(
                        services(&ctx)
                            .caller_rights(info.principal.as_ref(), act)
                            .await,
                    );
                    let call = CallContext {
                        caller,
                        scope,
                        caller_rights,
                        client_address: Some(info.client_ip.to_string()),
                        request_id: info.request_id.clone(),
                        plugins: Some(set.clone()),
                        ..CallContext::default()
                    };
                    let host = &services(&ctx).plugins.host();
                    let out = host
                        .call_operation(
                            act,
                            &op,
                            &serde_json::Value::Object(input).to_string(),
                            call,
                        )
                        .await
                        .map_err(crate::errors::plugin_error)?;
                    let json = checked_output(&plugin, &op, &out, Some(&ret), &types)
                        .map_err(|e| gql_error(INVALID_OUTPUT, e))?;
                    let value = Value::from_json(json)
                        .map_err(|e| gql_error(INVALID_OUTPUT, e.to_string()))?;
                    Ok(if value == Value::Null {
                        None
                    } else {
                        Some(field_value(value, &ret))
                    })
                }
                .await;
                settle(&ctx, ret.nullable, result)
            })
        },
    );
    for a in &f.arguments {
        field = field.argument(input_value(&a.node));
    }
    described(field, f)
}

/// The code of a plugin answer that is not JSON or does not match its SDL.
pub(crate) const INVALID_OUTPUT: &str = "PLUGIN_INVALID_OUTPUT";

/// A plugin's answer to `op` as JSON that matches `ret`, the type its SDL
/// declares for the field (when it declares one), or why not: the message
/// of a `PLUGIN_INVALID_OUTPUT`.
pub(crate) fn checked_output(
    plugin: &str,
    op: &str,
    out: &str,
    ret: Option<&Type>,
    types: &BTreeMap<String, (Owner, TypeDefinition)>,
) -> Result<serde_json::Value, String> {
    let json: serde_json::Value = serde_json::from_str(out).map_err(|_| {
        format!("the plugin {plugin} answered {op} with something that is not JSON")
    })?;
    if let Some(ret) = ret {
        check_output(&json, ret, types, op).map_err(|e| {
            tracing::warn!(%plugin, %op, error = %e, "plugin output does not match its SDL");
            format!(
                "the plugin {plugin} answered {op} with a value that does not match its schema: {e}"
            )
        })?;
    }
    Ok(json)
}

/// Checks a plugin's JSON output against a declared type.
fn check_output(
    v: &serde_json::Value,
    ty: &Type,
    types: &BTreeMap<String, (Owner, TypeDefinition)>,
    at: &str,
) -> Result<(), String> {
    use serde_json::Value as J;
    if v.is_null() {
        return if ty.nullable {
            Ok(())
        } else {
            Err(format!("{at}: null for a non-null field"))
        };
    }
    match &ty.base {
        BaseType::List(inner) => match v {
            J::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| check_output(x, inner, types, &format!("{at}[{i}]"))),
            _ => Err(format!("{at}: expected a list")),
        },
        BaseType::Named(n) => {
            let ok = match n.as_str() {
                "String" => v.is_string(),
                "Int" => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                "Float" => v.is_number(),
                "Boolean" => v.is_boolean(),
                "ID" => v.is_string() || v.is_i64() || v.is_u64(),
                "JSON" => true,
                "DateTime" => v
                    .as_str()
                    .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
                other => {
                    return match types.get(other).map(|(_, d)| &d.kind) {
                        Some(TypeKind::Enum(e)) => match v.as_str() {
                            Some(s) if e.values.iter().any(|x| x.node.value.node == s) => Ok(()),
                            _ => Err(format!("{at}: not a value of {other}")),
                        },
                        Some(TypeKind::Object(o)) => {
                            let J::Object(m) = v else {
                                return Err(format!("{at}: expected an object {other}"));
                            };
                            for f in &o.fields {
                                let name = f.node.name.node.as_str();
                                let fv = m.get(name).unwrap_or(&J::Null);
                                check_output(fv, &f.node.ty.node, types, &format!("{at}.{name}"))?;
                            }
                            Ok(())
                        }
                        _ => Err(format!("{at}: {other} is not an output type")),
                    };
                }
            };
            if ok {
                Ok(())
            } else {
                Err(format!("{at}: expected {n}"))
            }
        }
    }
}

/// Builds the dynamic schema for a plugin set (also used to check a set
/// before enabling it, so that what is checked is what will serve).
fn build(
    kernel_sdl: &ServiceDocument,
    kernel: Option<&KernelSchema>,
    services: Option<&Services>,
    plugins: &[Arc<Manifest>],
    limits: QueryLimits,
) -> Result<Schema, String> {
    let plan = plan(kernel_sdl, plugins)?;
    let types = Arc::new(plan.types.clone());
    let mut b = Schema::build("Query", Some("Mutation"), None)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16);
    if let Some(s) = services {
        b = b.data(s.clone());
    }
    for (name, (owner, def)) in &plan.types {
        let desc = def.description.as_ref().map(|d| d.node.clone());
        match &def.kind {
            TypeKind::Scalar => {
                let mut s = Scalar::new(name.clone());
                if let Some(d) = desc {
                    s = s.description(d);
                }
                b = b.register(s);
            }
            TypeKind::Object(o) => {
                let mut obj = Object::new(name.clone());
                for f in &o.fields {
                    obj = obj.field(object_field(&f.node, *owner == Owner::Kernel));
                }
                if let Some(d) = desc {
                    obj = obj.description(d);
                }
                b = b.register(obj);
            }
            TypeKind::InputObject(_) | TypeKind::Enum(_) => {
                if let Some(ty) = input_type(name, def) {
                    b = b.register(ty);
                }
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                return Err(format!("{name}: interfaces and unions are not supported"));
            }
        }
    }
    let mut query = Object::new("Query");
    for (owner, f) in &plan.query {
        query = query.field(match owner {
            Owner::Kernel => kernel_root(f, "query", kernel.cloned()),
            Owner::Plugin(p) => plugin_root(
                p.clone(),
                f,
                Action::Read,
                plan.public.contains(&(p.clone(), f.name.node.to_string())),
                types.clone(),
            ),
        });
    }
    let mut mutation = Object::new("Mutation");
    for (owner, f) in &plan.mutation {
        mutation = mutation.field(match owner {
            Owner::Kernel => kernel_root(f, "mutation", kernel.cloned()),
            Owner::Plugin(p) => plugin_root(
                p.clone(),
                f,
                Action::Write,
                plan.public.contains(&(p.clone(), f.name.node.to_string())),
                types.clone(),
            ),
        });
    }
    b.register(query)
        .register(mutation)
        .finish()
        .map_err(|e| format!("the merged schema is invalid: {e}"))
}

pub(crate) static KERNEL_SDL: std::sync::LazyLock<ServiceDocument> =
    std::sync::LazyLock::new(|| {
        async_graphql::parser::parse_schema(crate::graphql::sdl())
            .unwrap_or_else(|e| unreachable!("the kernel's own SDL parses: {e}"))
    });

/// Refuses a plugin set whose GraphQL does not merge with the kernel's.
pub(crate) fn check_plugin_set(plugins: &[Arc<Manifest>]) -> Result<(), String> {
    build(&KERNEL_SDL, None, None, plugins, QueryLimits::default()).map(|_| ())
}

/// The tenant schemas of one gateway.
pub(crate) struct TenantSchemas {
    kernel_roots: HashSet<String>,
    kernel: KernelSchema,
    services: Services,
    limits: QueryLimits,
    cache: Mutex<HashMap<String, (i64, Schema)>>,
}

impl TenantSchemas {
    pub(crate) fn new(kernel: KernelSchema, services: Services, limits: QueryLimits) -> Self {
        let mut kernel_roots = HashSet::new();
        for def in &KERNEL_SDL.definitions {
            if let TypeSystemDefinition::Type(t) = def
                && let (n @ ("Query" | "Mutation"), TypeKind::Object(o)) =
                    (t.node.name.node.as_str(), &t.node.kind)
            {
                for f in &o.fields {
                    kernel_roots.insert(format!("{n}.{}", f.node.name.node));
                }
            }
        }
        TenantSchemas {
            kernel_roots,
            kernel,
            services,
            limits,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's schema for this version of its plugin set.
    pub(crate) fn schema(&self, tenant: &str, set: &TenantPlugins) -> Result<Schema, String> {
        if let Some((v, s)) = self.cache.lock().ok().and_then(|c| c.get(tenant).cloned())
            && v == set.version
        {
            return Ok(s);
        }
        let manifests: Vec<Arc<Manifest>> =
            set.plugins.iter().map(|a| a.manifest.clone()).collect();
        let schema = build(
            &KERNEL_SDL,
            Some(&self.kernel),
            Some(&self.services),
            &manifests,
            self.limits,
        )?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(tenant.to_owned(), (set.version, schema.clone()));
        }
        Ok(schema)
    }

    /// True when the request names a root field that is not the kernel's
    /// (or asks for introspection), so it needs the tenant's full schema.
    pub(crate) fn needs_tenant_schema(&self, shape: &crate::admission::Shape) -> bool {
        let root = match shape.operation {
            Some(OperationType::Query) => "Query",
            Some(OperationType::Mutation) => "Mutation",
            Some(OperationType::Subscription) | None => return false,
        };
        shape.roots.keys().any(|name| {
            name != "__typename"
                && (name.starts_with("__")
                    || !self.kernel_roots.contains(&format!("{root}.{name}")))
        })
    }
}
