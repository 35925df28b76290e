//! Who am I, and the tenant's API keys.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{self, Action, objects};
use keel_core::identity::Credential;
use keel_core::identity::api_keys::{self, NewApiKey};
use keel_core::org::Scope;
use keel_core::tenants;

use super::tenants::Tenant;
use super::{authorize, commit, principal, services, to_time};
use crate::errors::{Gql as _, gql_error};

/// How the caller authenticated.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum PrincipalKind {
    ApiKey,
    PlatformKey,
    Operator,
}

/// The caller of this request.
#[derive(SimpleObject)]
pub(crate) struct Viewer {
    /// The tenant the caller acts in; null for a platform administrator.
    tenant: Option<Tenant>,
    roles: Vec<String>,
    /// When non-empty, the only `object:action` pairs the caller may use.
    scopes: Vec<String>,
    /// The org node the caller is limited to; null for the whole tenant.
    org_scope: Option<ID>,
    kind: PrincipalKind,
    /// A stable label for the caller, as audit trails show it.
    principal: String,
}

/// An API key (its secret is never shown again after creation).
#[derive(SimpleObject)]
pub(crate) struct ApiKey {
    id: ID,
    name: String,
    roles: Vec<String>,
    scopes: Vec<String>,
    /// The org node the key is limited to; null for the whole tenant.
    org_scope: Option<ID>,
    /// The first characters of the secret, to recognise the key.
    secret_prefix: String,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<api_keys::ApiKey> for ApiKey {
    fn from(k: api_keys::ApiKey) -> Self {
        ApiKey {
            id: k.id.into(),
            name: k.name,
            roles: k.roles,
            scopes: k.scopes,
            org_scope: k.org_scope.map(Into::into),
            secret_prefix: k.secret_prefix,
            created_at: to_time(k.created_at),
            created_by: k.created_by,
            last_used_at: k.last_used_at.map(to_time),
            revoked_at: k.revoked_at.map(to_time),
        }
    }
}

#[derive(InputObject)]
pub(crate) struct CreateApiKeyInput {
    name: String,
    /// Built-in roles: owner, admin, marketer, analyst, integration.
    roles: Vec<String>,
    /// `object:action` pairs (e.g. `events:read`) the key is limited to.
    /// Required for the integration role.
    #[graphql(default)]
    scopes: Vec<String>,
    /// The org node the key is limited to: it acts only at or under it
    /// (`docs/org.md`). Null for the whole tenant — which a caller limited
    /// to a node may not give: it hands out only its node or one under it.
    org_scope: Option<ID>,
}

#[derive(SimpleObject)]
pub(crate) struct CreateApiKeyPayload {
    api_key: ApiKey,
    /// The key's secret, to send as `Authorization: Bearer …`. Shown once.
    secret: String,
}

/// Granting or touching the owner role takes the `owners` permission.
pub(crate) async fn guard_owner_role(
    ctx: &Context<'_>,
    roles: &[String],
) -> async_graphql::Result<()> {
    if roles.iter().any(|r| r == "owner") {
        authorize(ctx, objects::OWNERS, Action::Write).await?;
    }
    Ok(())
}

#[derive(Default)]
pub(crate) struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The caller: its tenant, roles and scopes.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let p = principal(ctx)?;
        let tenant = match &p.tenant {
            Some(t) => Some(tenants::get(&services(ctx).db, t).await.gql()?.into()),
            None => None,
        };
        let kind = match p.credential {
            Credential::ApiKey { .. } => PrincipalKind::ApiKey,
            Credential::PlatformKey { .. } => PrincipalKind::PlatformKey,
            Credential::Operator { .. } => PrincipalKind::Operator,
        };
        Ok(Viewer {
            tenant,
            roles: p.roles.clone(),
            scopes: p.scopes.clone(),
            org_scope: p.org_scope.clone().map(Into::into),
            kind,
            principal: p.label(),
        })
    }

    /// The tenant's API keys, newest first, revoked ones included (for a
    /// caller limited to an org node: the keys limited to it or below).
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let tenant = authorize(ctx, objects::API_KEYS, Action::Read).await?;
        let scope = Scope::of(principal(ctx)?.org_scope.as_deref());
        let keys = api_keys::list_within(&services(ctx).db, &tenant, scope)
            .await
            .gql()?;
        Ok(keys.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub(crate) struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates an API key; its secret is in the payload and never shown again.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreateApiKeyPayload> {
        let tenant = authorize(ctx, objects::API_KEYS, Action::Write).await?;
        guard_owner_role(ctx, &input.roles).await?;
        let caller = principal(ctx)?;
        if !authz::scopes_within(&caller.scopes, &input.scopes) {
            return Err(gql_error(
                "FORBIDDEN",
                "a key limited by scopes can only create keys limited to scopes it has",
            ));
        }
        let s = services(ctx);
        let mut tx = s.db.begin().await.gql()?;
        let (key, secret) = api_keys::create_scoped(
            &mut tx,
            &tenant,
            NewApiKey {
                name: input.name,
                roles: input.roles,
                scopes: input.scopes,
            },
            input.org_scope.as_ref().map(|s| s.as_str()),
            caller,
        )
        .await
        .gql()?;
        commit(tx).await?;
        Ok(CreateApiKeyPayload {
            api_key: key.into(),
            secret,
        })
    }

    /// Revokes an API key at once. Revoking a revoked key changes nothing.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let tenant = authorize(ctx, objects::API_KEYS, Action::Write).await?;
        let s = services(ctx);
        let mut tx = s.db.begin().await.gql()?;
        let scope = Scope::of(principal(ctx)?.org_scope.as_deref());
        let key = api_keys::get_within(&mut tx, &tenant, scope, &id)
            .await
            .gql()?;
        guard_owner_role(ctx, &key.roles).await?;
        let key = api_keys::revoke(&mut tx, &tenant, &id).await.gql()?;
        commit(tx).await?;
        Ok(key.into())
    }
}
