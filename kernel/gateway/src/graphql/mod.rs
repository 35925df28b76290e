//! The kernel's GraphQL schema: one module per domain, merged into one
//! `Query` and one `Mutation`.
//!
//! Resolvers never take a tenant from their arguments: they ask
//! [`authorize`] for the caller's tenant, which checks the permission first.

mod catalog;
mod consumers;
mod counters;
mod event_types;
mod events;
mod identity;
mod operators;
mod org;
mod persons;
mod plugins;
mod schedules;
mod tenants;

use std::net::IpAddr;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, MergedObject, Schema};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, Authorizer};
use keel_core::identity::Principal;
use keel_core::{Db, TenantId, Timestamp};
use keel_host::Registry;

use crate::errors::{Gql as _, gql_error};
use crate::limits::LoginLimiter;

/// The kernel's schema type.
pub type KernelSchema = Schema<Query, Mutation, EmptySubscription>;

/// Every query of the kernel.
#[derive(MergedObject, Default)]
pub struct Query(
    identity::IdentityQuery,
    tenants::TenantQuery,
    operators::OperatorQuery,
    persons::PersonQuery,
    events::EventQuery,
    catalog::CatalogQuery,
    org::OrgQuery,
    event_types::EventTypeQuery,
    counters::CounterQuery,
    plugins::PluginQuery,
    schedules::ScheduleQuery,
    consumers::ConsumerAuthQuery,
);

/// Every mutation of the kernel.
#[derive(MergedObject, Default)]
pub struct Mutation(
    tenants::TenantMutation,
    identity::IdentityMutation,
    operators::OperatorMutation,
    persons::PersonMutation,
    events::EventMutation,
    catalog::CatalogMutation,
    org::OrgMutation,
    counters::CounterMutation,
    plugins::PluginMutation,
    schedules::ScheduleMutation,
    consumers::ConsumerAuthMutation,
);

/// Limits applied to every GraphQL request before it runs.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            // Room for GraphiQL's introspection query (15 levels).
            max_depth: 16,
            max_complexity: 2000,
        }
    }
}

/// What resolvers share: the database, the authorizer, the login limiter,
/// the plugin registry.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    pub db: Db,
    pub authz: Arc<Authorizer>,
    pub login_limiter: Arc<LoginLimiter>,
    pub plugins: Registry,
}

impl Services {
    /// What the client behind a call of `act` may write in the kernel's
    /// master data, which the plugin's writes for it are held to: a
    /// principal's own `catalog` and `org` write rights (checked only when
    /// the plugin was granted the matching write capability); a consumer,
    /// or no one, has none.
    pub(crate) async fn caller_rights(
        &self,
        principal: Option<&Principal>,
        act: &keel_host::Activation,
    ) -> keel_host::CallerRights {
        use keel_host::Capability;
        let Some(p) = principal else {
            return keel_host::CallerRights::default();
        };
        let may = |object: &'static str, capability: Capability| async move {
            act.grants.has(capability) && self.authz.tenant(p, object, Action::Write).await.is_ok()
        };
        keel_host::CallerRights {
            catalog_write: may(keel_core::authz::objects::CATALOG, Capability::CatalogWrite).await,
            org_write: may(keel_core::authz::objects::ORG, Capability::OrgWrite).await,
        }
    }
}

/// What a resolver knows about its request.
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    pub principal: Option<Principal>,
    /// On a tenant's public endpoint, the consumer its session cookie
    /// names (`consumer:wechat_openid:…`), the caller of public operations.
    pub consumer: Option<String>,
    pub client_ip: IpAddr,
    pub request_id: String,
    /// Set when a non-null root field failed: `data` is then null.
    pub null_data: Arc<std::sync::atomic::AtomicBool>,
}

/// Builds the schema; without services it can still print its SDL.
pub(crate) fn build(limits: QueryLimits, services: Option<Services>) -> KernelSchema {
    let mut b = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16);
    if let Some(s) = services {
        b = b.data(s);
    }
    b.finish()
}

/// The kernel schema's SDL, as committed in `schemas/graphql/kernel.graphql`.
pub fn sdl() -> String {
    build(QueryLimits::default(), None).sdl()
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

pub(crate) fn request<'a>(ctx: &Context<'a>) -> &'a RequestInfo {
    ctx.data_unchecked::<RequestInfo>()
}

/// The caller, or `UNAUTHENTICATED`.
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Principal> {
    request(ctx).principal.as_ref().ok_or_else(|| {
        gql_error(
            "UNAUTHENTICATED",
            "send an API key or session token as `Authorization: Bearer …`",
        )
    })
}

/// The caller's tenant, once the caller is allowed `action` on `object`.
pub(crate) async fn authorize(
    ctx: &Context<'_>,
    object: &str,
    action: Action,
) -> async_graphql::Result<TenantId> {
    let p = principal(ctx)?;
    services(ctx).authz.tenant(p, object, action).await.gql()
}

/// Hands a write's events to the tenant's async subscribers, through
/// outbox rows written in the same transaction (so they are delivered, at
/// least once, exactly when the write commits).
pub(crate) async fn enqueue<'e>(
    ctx: &Context<'_>,
    tx: &mut keel_core::Tx,
    tenant: &TenantId,
    events: impl IntoIterator<Item = &'e keel_core::events::Event>,
) -> async_graphql::Result<()> {
    let mut events = events.into_iter().peekable();
    if events.peek().is_none() {
        return Ok(());
    }
    let plugins = services(ctx)
        .plugins
        .enabled(tenant)
        .await
        .map_err(crate::errors::plugin_error)?;
    for e in events {
        keel_host::outbox::enqueue(tx, tenant, &plugins, e)
            .await
            .gql()?;
    }
    Ok(())
}

/// Commits a write transaction.
pub(crate) async fn commit(tx: keel_core::Tx) -> async_graphql::Result<()> {
    tx.commit().await.map_err(keel_core::Error::from).gql()
}

pub(crate) fn to_time(t: Timestamp) -> DateTime<Utc> {
    t.to_datetime()
}
