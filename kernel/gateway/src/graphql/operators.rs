//! Operators (people with a password) and their sessions.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::identity::Credential;
use keel_core::identity::operators::{self, NewOperator};
use keel_core::org::Scope;

use super::identity::guard_owner_role;
use super::{authorize, commit, principal, request, services, to_time};
use crate::errors::{Gql as _, gql_error};

/// A person who operates the tenant.
#[derive(SimpleObject)]
pub(crate) struct Operator {
    id: ID,
    email: String,
    roles: Vec<String>,
    /// The org node the operator is limited to; null for the whole tenant.
    org_scope: Option<ID>,
    active: bool,
    created_at: DateTime<Utc>,
    deactivated_at: Option<DateTime<Utc>>,
}

impl From<operators::Operator> for Operator {
    fn from(o: operators::Operator) -> Self {
        Operator {
            id: o.id.into(),
            email: o.email,
            roles: o.roles,
            org_scope: o.org_scope.map(Into::into),
            active: o.deactivated_at.is_none(),
            created_at: to_time(o.created_at),
            deactivated_at: o.deactivated_at.map(to_time),
        }
    }
}

#[derive(InputObject)]
pub(crate) struct CreateOperatorInput {
    email: String,
    /// At least 12 characters.
    password: String,
    roles: Vec<String>,
    /// The org node the operator is limited to: they act only at or under
    /// it (`docs/org.md`). Null for the whole tenant — which a caller
    /// limited to a node may not give.
    org_scope: Option<ID>,
}

#[derive(InputObject)]
pub(crate) struct LoginInput {
    /// The tenant's slug.
    tenant: String,
    email: String,
    password: String,
}

#[derive(SimpleObject)]
pub(crate) struct LoginPayload {
    /// Send as `Authorization: Bearer …`. Shown once.
    token: String,
    expires_at: DateTime<Utc>,
    operator: Operator,
}

#[derive(InputObject)]
pub(crate) struct ChangePasswordInput {
    current_password: String,
    /// At least 12 characters.
    new_password: String,
}

#[derive(Default)]
pub(crate) struct OperatorQuery;

#[Object]
impl OperatorQuery {
    /// The tenant's operators, oldest first (for a caller limited to an
    /// org node: the operators limited to it or below).
    async fn operators(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Operator>> {
        let tenant = authorize(ctx, objects::OPERATORS, Action::Read).await?;
        let scope = Scope::of(principal(ctx)?.org_scope.as_deref());
        let list = operators::list_within(&services(ctx).db, &tenant, scope)
            .await
            .gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub(crate) struct OperatorMutation;

#[Object]
impl OperatorMutation {
    /// Creates an operator who can then log in.
    async fn create_operator(
        &self,
        ctx: &Context<'_>,
        input: CreateOperatorInput,
    ) -> async_graphql::Result<Operator> {
        let tenant = authorize(ctx, objects::OPERATORS, Action::Write).await?;
        guard_owner_role(ctx, &input.roles).await?;
        if !principal(ctx)?.scopes.is_empty() {
            return Err(gql_error(
                "FORBIDDEN",
                "a key limited by scopes cannot create operators, who have no scopes",
            ));
        }
        let mut tx = services(ctx).db.begin().await.gql()?;
        let op = operators::create_scoped(
            &mut tx,
            &tenant,
            NewOperator {
                email: input.email,
                password: input.password,
                roles: input.roles,
            },
            input.org_scope.as_ref().map(|s| s.as_str()),
            principal(ctx)?,
        )
        .await
        .gql()?;
        commit(tx).await?;
        Ok(op.into())
    }

    /// Logs an operator in; needs no credential. Failed attempts are
    /// rate-limited per client address and per account.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<LoginPayload> {
        let s = services(ctx);
        let account = format!("{}/{}", input.tenant, input.email.trim().to_lowercase());
        s.login_limiter.check(request(ctx).client_ip, &account)?;
        match operators::login(&s.db, &input.tenant, &input.email, &input.password).await {
            Ok(session) => {
                s.login_limiter.succeeded(request(ctx).client_ip, &account);
                Ok(LoginPayload {
                    token: session.token,
                    expires_at: to_time(session.expires_at),
                    operator: session.operator.into(),
                })
            }
            Err(e) => Err(e).gql(),
        }
    }

    /// Ends the caller's session (operators only).
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let Credential::Operator { session_id, .. } = &principal(ctx)?.credential else {
            return Err(gql_error(
                "BAD_USER_INPUT",
                "only an operator session can log out",
            ));
        };
        let mut tx = services(ctx).db.begin().await.gql()?;
        operators::logout(&mut tx, session_id).await.gql()?;
        commit(tx).await?;
        Ok(true)
    }

    /// Changes the caller's own password (operators only) and ends their
    /// other sessions.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> async_graphql::Result<bool> {
        let p = principal(ctx)?;
        let (
            Credential::Operator {
                operator_id,
                session_id,
            },
            Some(tenant),
        ) = (&p.credential, &p.tenant)
        else {
            return Err(gql_error(
                "BAD_USER_INPUT",
                "only an operator can change a password",
            ));
        };
        let mut tx = services(ctx).db.begin().await.gql()?;
        operators::change_password(
            &mut tx,
            tenant,
            operator_id,
            session_id,
            &input.current_password,
            &input.new_password,
        )
        .await
        .gql()?;
        commit(tx).await?;
        Ok(true)
    }

    /// Deactivates an operator and ends their sessions.
    async fn deactivate_operator(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Operator> {
        let tenant = authorize(ctx, objects::OPERATORS, Action::Write).await?;
        let mut tx = services(ctx).db.begin().await.gql()?;
        let scope = Scope::of(principal(ctx)?.org_scope.as_deref());
        let op = operators::get_within(&mut tx, &tenant, scope, &id)
            .await
            .gql()?;
        guard_owner_role(ctx, &op.roles).await?;
        let op = operators::deactivate(&mut tx, &tenant, &id).await.gql()?;
        commit(tx).await?;
        Ok(op.into())
    }
}
