//! Tenants: created by a platform administrator.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::identity::api_keys;
use keel_core::tenants;

use super::{authorize, commit, principal, services, to_time};
use crate::errors::Gql as _;

/// A brand using Keel.
#[derive(SimpleObject, Clone)]
pub(crate) struct Tenant {
    pub id: async_graphql::ID,
    /// Short unique name, used in logins and URLs.
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The IANA time zone its schedules follow (default `Asia/Shanghai`).
    pub time_zone: String,
}

impl From<tenants::Tenant> for Tenant {
    fn from(t: tenants::Tenant) -> Self {
        Tenant {
            id: t.id.as_str().into(),
            slug: t.slug,
            name: t.name,
            created_at: to_time(t.created_at),
            time_zone: t.time_zone,
        }
    }
}

#[derive(InputObject)]
pub(crate) struct CreateTenantInput {
    /// 2-63 characters of a-z, 0-9 and '-'.
    slug: String,
    name: String,
}

#[derive(SimpleObject)]
pub(crate) struct CreateTenantPayload {
    tenant: Tenant,
    /// The secret of a new `owner` API key of the tenant. Shown once.
    admin_key: String,
}

#[derive(Default)]
pub(crate) struct TenantQuery;

#[Object]
impl TenantQuery {
    /// Every tenant (platform administrators only).
    async fn tenants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tenant>> {
        let s = services(ctx);
        s.authz
            .platform(principal(ctx)?, objects::TENANTS, Action::Read)
            .await
            .gql()?;
        Ok(tenants::list(&s.db)
            .await
            .gql()?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(Default)]
pub(crate) struct TenantMutation;

#[Object]
impl TenantMutation {
    /// Creates a tenant and its first owner key (platform administrators only).
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        input: CreateTenantInput,
    ) -> async_graphql::Result<CreateTenantPayload> {
        let s = services(ctx);
        let p = principal(ctx)?;
        s.authz
            .platform(p, objects::TENANTS, Action::Write)
            .await
            .gql()?;
        let mut tx = s.db.begin().await.gql()?;
        let tenant = tenants::create(&mut tx, &input.slug, &input.name)
            .await
            .gql()?;
        let (_, secret) = api_keys::create_owner_key(
            &mut tx,
            &tenant.id,
            "tenant admin (created with the tenant)",
            &p.label(),
        )
        .await
        .gql()?;
        commit(tx).await?;
        tracing::info!(tenant = %tenant.id, slug = %tenant.slug, "tenant created");
        Ok(CreateTenantPayload {
            tenant: tenant.into(),
            admin_key: secret,
        })
    }

    /// Sets the caller's tenant's IANA time zone (e.g. `Europe/Berlin`),
    /// which its plugins' schedules follow from their next tick on.
    async fn set_tenant_time_zone(
        &self,
        ctx: &Context<'_>,
        time_zone: String,
    ) -> async_graphql::Result<Tenant> {
        let tenant = authorize(ctx, objects::SETTINGS, Action::Write).await?;
        let mut tx = services(ctx).db.begin().await.gql()?;
        let updated = tenants::set_time_zone(&mut tx, &tenant, &time_zone)
            .await
            .gql()?;
        commit(tx).await?;
        tracing::info!(tenant = %updated.id, time_zone = %updated.time_zone, "tenant time zone set");
        Ok(updated.into())
    }
}
