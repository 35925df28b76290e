//! Plugins over GraphQL: the installed packages, and enabling, upgrading,
//! disabling and configuring them per tenant.

use async_graphql::{Context, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_host::manifest::{Capability, Grants};
use keel_host::registry;
use serde_json::Value;

use super::{authorize, services, to_time};
use crate::errors::{gql_error, plugin_error};

/// An installed plugin package.
#[derive(SimpleObject)]
pub(crate) struct PluginPackage {
    name: String,
    version: String,
    publisher: String,
    description: String,
    /// The `keel:plugin` WIT version it was built for.
    wit: String,
    /// Capabilities it asks for.
    capabilities: Vec<String>,
    /// Hosts it may want to reach.
    http_hosts: Vec<String>,
    /// The GraphQL it adds.
    sdl: String,
    /// Operations callable without a credential.
    public_operations: Vec<String>,
    /// Operations of other plugins it calls (`plugin.operation`), each
    /// granted by the tenant at enable time.
    calls: Vec<String>,
    /// Operations it offers to other plugins of the tenant (not on
    /// GraphQL unless its SDL has them too).
    offers: Vec<String>,
    /// JSON Schema of its configuration.
    config_schema: Option<Json<Value>>,
    installed_at: DateTime<Utc>,
}

impl From<registry::Package> for PluginPackage {
    fn from(p: registry::Package) -> Self {
        let m = &p.manifest;
        PluginPackage {
            name: m.name.clone(),
            version: m.version.clone(),
            publisher: m.publisher.clone(),
            description: m.description.clone(),
            wit: m.wit.clone(),
            capabilities: m
                .capabilities
                .capabilities
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            http_hosts: m.capabilities.http_hosts.clone(),
            sdl: m.graphql.sdl.clone(),
            public_operations: m.graphql.public.clone(),
            calls: m.calls.iter().map(ToString::to_string).collect(),
            offers: m.offers.operations.clone(),
            config_schema: m.config_schema.clone().map(Json),
            installed_at: to_time(p.installed_at),
        }
    }
}

/// A plugin as this tenant enabled it.
#[derive(SimpleObject)]
pub(crate) struct TenantPlugin {
    name: String,
    version: String,
    enabled: bool,
    capabilities: Vec<String>,
    http_hosts: Vec<String>,
    /// Calls to other plugins' operations granted (`plugin.operation`).
    calls: Vec<String>,
    config: Json<Value>,
    enabled_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl From<registry::Enabled> for TenantPlugin {
    fn from(e: registry::Enabled) -> Self {
        TenantPlugin {
            name: e.name,
            version: e.version,
            enabled: e.disabled_at.is_none(),
            capabilities: e
                .grants
                .capabilities
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            http_hosts: e.grants.http_hosts,
            calls: e.grants.calls.iter().map(ToString::to_string).collect(),
            config: Json(e.config),
            enabled_at: to_time(e.enabled_at),
            disabled_at: e.disabled_at.map(to_time),
        }
    }
}

#[derive(InputObject)]
pub(crate) struct EnablePluginInput {
    name: String,
    /// Default: the newest installed version.
    version: Option<String>,
    /// Capabilities granted: records, events, persons-read, persons-write,
    /// counters, secrets, http. Never more than the plugin requests.
    capabilities: Vec<String>,
    /// Hosts the plugin may reach over HTTP (needs the http capability).
    #[graphql(default)]
    http_hosts: Vec<String>,
    /// Calls to other plugins' operations granted, as `plugin.operation`
    /// (e.g. `rewards.spendPoints`). Never more than the plugin declares.
    #[graphql(default)]
    calls: Vec<String>,
    /// Configuration, valid against the plugin's config schema.
    #[graphql(default_with = "Json(Value::Object(Default::default()))")]
    config: Json<Value>,
}

fn parse_capabilities(
    list: &[String],
) -> async_graphql::Result<std::collections::BTreeSet<Capability>> {
    list.iter()
        .map(|c| {
            serde_json::from_value::<Capability>(Value::String(c.clone())).map_err(|_| {
                let mut e = gql_error(
                    "BAD_USER_INPUT",
                    format!("grants: {c:?} is not a capability"),
                );
                if let Some(x) = e.extensions.as_mut() {
                    x.set("field", "capabilities");
                }
                e
            })
        })
        .collect()
}

fn parse_calls(
    list: &[String],
) -> async_graphql::Result<std::collections::BTreeSet<keel_host::PluginCall>> {
    list.iter()
        .map(|c| {
            c.parse::<keel_host::PluginCall>().map_err(|e| {
                let mut err = gql_error("BAD_USER_INPUT", format!("grants: calls: {e}"));
                if let Some(x) = err.extensions.as_mut() {
                    x.set("field", "calls");
                }
                err
            })
        })
        .collect()
}

fn check(set: &[std::sync::Arc<keel_host::Manifest>]) -> Result<(), String> {
    crate::tenant_schema::check_plugin_set(set)
}

/// An event a plugin failed to handle after every retry.
#[derive(SimpleObject)]
pub(crate) struct DeadLetter {
    id: async_graphql::ID,
    event_id: async_graphql::ID,
    event_type: String,
    /// The plugin that failed to handle it.
    subscriber: String,
    attempts: i64,
    last_error: Option<String>,
    dead_at: DateTime<Utc>,
}

#[derive(Default)]
pub(crate) struct PluginQuery;

#[Object]
impl PluginQuery {
    /// Plugin packages installed on this platform, ready to enable.
    async fn plugin_packages(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PluginPackage>> {
        authorize(ctx, objects::PLUGINS, Action::Read).await?;
        let list = services(ctx)
            .plugins
            .packages()
            .await
            .map_err(plugin_error)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The plugins this tenant enabled (and disabled ones, with their data kept).
    async fn plugins(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TenantPlugin>> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Read).await?;
        let list = services(ctx)
            .plugins
            .list(&tenant)
            .await
            .map_err(plugin_error)?;
        Ok(list.into_iter().map(Into::into).collect())
    }
    /// Events a plugin failed to handle after every retry, newest first.
    async fn dead_letters(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DeadLetter>> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Read).await?;
        let list = keel_host::outbox::dead_letters(&services(ctx).db, &tenant)
            .await
            .map_err(plugin_error)?;
        Ok(list
            .into_iter()
            .map(|d| DeadLetter {
                id: d.id.into(),
                event_id: d.event_id.into(),
                event_type: d.event_type,
                subscriber: d.subscriber,
                attempts: d.attempts,
                last_error: d.last_error,
                dead_at: to_time(d.dead_at),
            })
            .collect())
    }
}

#[derive(Default)]
pub(crate) struct PluginMutation;

#[Object]
impl PluginMutation {
    /// Enables an installed plugin with grants and a config. Refused,
    /// changing nothing, if the grants exceed what it requests, the config
    /// fails its schema, its GraphQL clashes with what the tenant has, or
    /// the plugin itself refuses the config.
    async fn enable_plugin(
        &self,
        ctx: &Context<'_>,
        input: EnablePluginInput,
    ) -> async_graphql::Result<TenantPlugin> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Write).await?;
        let grants = Grants {
            capabilities: parse_capabilities(&input.capabilities)?,
            http_hosts: input.http_hosts,
            calls: parse_calls(&input.calls)?,
        };
        let enabled = services(ctx)
            .plugins
            .enable(
                &tenant,
                &input.name,
                input.version.as_deref(),
                grants,
                input.config.0,
                &check,
            )
            .await
            .map_err(plugin_error)?;
        Ok(enabled.into())
    }

    /// Moves an enabled plugin to another installed version, keeping its
    /// config. Its grants stay as they are unless `capabilities` is given:
    /// then `capabilities`, `httpHosts` and `calls` replace them (a new
    /// version that asks for more), checked like `enablePlugin`'s.
    async fn upgrade_plugin(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: String,
        capabilities: Option<Vec<String>>,
        #[graphql(default)] http_hosts: Vec<String>,
        #[graphql(default)] calls: Vec<String>,
    ) -> async_graphql::Result<TenantPlugin> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Write).await?;
        let grants = match capabilities {
            Some(c) => Some(Grants {
                capabilities: parse_capabilities(&c)?,
                http_hosts,
                calls: parse_calls(&calls)?,
            }),
            None if !http_hosts.is_empty() || !calls.is_empty() => {
                let mut e = gql_error(
                    "BAD_USER_INPUT",
                    "httpHosts and calls replace the grants only with capabilities",
                );
                if let Some(x) = e.extensions.as_mut() {
                    x.set("field", "capabilities");
                }
                return Err(e);
            }
            None => None,
        };
        let enabled = services(ctx)
            .plugins
            .upgrade(&tenant, &name, &version, grants, &check)
            .await
            .map_err(plugin_error)?;
        Ok(enabled.into())
    }

    /// Disables a plugin; its data stays for when it is enabled again.
    async fn disable_plugin(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<TenantPlugin> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Write).await?;
        let enabled = services(ctx)
            .plugins
            .disable(&tenant, &name)
            .await
            .map_err(plugin_error)?;
        Ok(enabled.into())
    }

    /// Puts a dead letter back in line for delivery, with fresh attempts.
    async fn replay_dead_letter(
        &self,
        ctx: &Context<'_>,
        id: async_graphql::ID,
    ) -> async_graphql::Result<bool> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Write).await?;
        keel_host::outbox::replay(&services(ctx).db, &tenant, &id)
            .await
            .map_err(plugin_error)?;
        Ok(true)
    }

    /// Stores a secret a plugin reads with the `secrets` grant (write-only).
    async fn set_plugin_secret(
        &self,
        ctx: &Context<'_>,
        plugin: String,
        name: String,
        value: String,
    ) -> async_graphql::Result<bool> {
        let tenant = authorize(ctx, objects::PLUGINS, Action::Write).await?;
        services(ctx)
            .plugins
            .set_secret(&tenant, &plugin, &name, &value)
            .await
            .map_err(plugin_error)?;
        Ok(true)
    }
}
