//! Consumer sign-in configuration over GraphQL: a tenant's WeChat
//! official-account app (web authorization). The app secret is write-only:
//! stored sealed, never returned.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::Action;
use keel_core::consumers;

use super::{authorize, commit, principal, services, to_time};
use crate::errors::Gql as _;

/// A tenant's WeChat official-account app (the secret is never shown).
#[derive(SimpleObject)]
pub(crate) struct WechatApp {
    /// The app id (`wx…`).
    app_id: String,
    /// When it was last set.
    updated_at: DateTime<Utc>,
    /// Who last set it.
    updated_by: String,
}

impl From<consumers::WechatApp> for WechatApp {
    fn from(a: consumers::WechatApp) -> Self {
        WechatApp {
            app_id: a.app_id,
            updated_at: to_time(a.updated_at),
            updated_by: a.updated_by,
        }
    }
}

#[derive(InputObject)]
pub(crate) struct SetWechatAppInput {
    /// The official account's AppID: `wx` and 16 letters or digits.
    app_id: String,
    /// The official account's AppSecret (stored sealed; write-only).
    app_secret: String,
}

#[derive(Default)]
pub(crate) struct ConsumerAuthQuery;

#[Object]
impl ConsumerAuthQuery {
    /// The WeChat official-account app consumers sign in with, or null
    /// when none is configured.
    async fn wechat_app(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<WechatApp>> {
        let tenant = authorize(ctx, consumers::OBJECT, Action::Read).await?;
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(keel_core::Error::from)
            .gql()?;
        let app = consumers::wechat_app(&mut conn, &tenant).await.gql()?;
        Ok(app.map(WechatApp::from))
    }
}

#[derive(Default)]
pub(crate) struct ConsumerAuthMutation;

#[Object]
impl ConsumerAuthMutation {
    /// Sets (or replaces) the WeChat official-account app consumers sign in
    /// with (web authorization, `snsapi_base`).
    async fn set_wechat_app(
        &self,
        ctx: &Context<'_>,
        input: SetWechatAppInput,
    ) -> async_graphql::Result<WechatApp> {
        let tenant = authorize(ctx, consumers::OBJECT, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let db = &services(ctx).db;
        let sealer = db.sealer().gql()?;
        let mut tx = db.begin().await.gql()?;
        let app = consumers::set_wechat_app(
            &mut tx,
            sealer,
            &tenant,
            &input.app_id,
            &input.app_secret,
            &actor,
        )
        .await
        .gql()?;
        commit(tx).await?;
        Ok(app.into())
    }

    /// Removes the WeChat app: consumers can no longer sign in with WeChat
    /// (sessions already issued last until they expire). False when none
    /// was configured.
    async fn remove_wechat_app(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let tenant = authorize(ctx, consumers::OBJECT, Action::Write).await?;
        let mut tx = services(ctx).db.begin().await.gql()?;
        let removed = consumers::remove_wechat_app(&mut tx, &tenant).await.gql()?;
        commit(tx).await?;
        Ok(removed)
    }
}
