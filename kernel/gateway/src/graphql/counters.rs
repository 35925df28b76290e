//! Counters with limits over GraphQL (the tenant's own counters; plugins
//! get theirs through the plugin host).

use async_graphql::{Context, InputObject, Object, SimpleObject};
use keel_core::authz::{Action, objects};
use keel_core::counters::{self, Add, Outcome};

use super::{authorize, services};
use crate::errors::Gql as _;

/// The namespace of counters managed over the API, apart from plugins'.
pub(crate) const API_NAMESPACE: &str = "api";

#[derive(SimpleObject)]
pub(crate) struct Counter {
    key: String,
    value: i64,
}

#[derive(InputObject)]
pub(crate) struct AddToCounterInput {
    key: String,
    delta: i64,
    /// The lowest value the counter may reach (default and floor: -2^62).
    min: Option<i64>,
    /// The highest value the counter may reach (default and ceiling: 2^62).
    max: Option<i64>,
    /// A retry with the same key returns the first outcome.
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub(crate) struct AddToCounterPayload {
    /// False when the addition would have left `[min, max]`; nothing changed.
    applied: bool,
    /// The counter's value after the call.
    value: i64,
}

#[derive(Default)]
pub(crate) struct CounterQuery;

#[Object]
impl CounterQuery {
    /// A counter's value (0 if never added to).
    async fn counter(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<Counter> {
        let tenant = authorize(ctx, objects::COUNTERS, Action::Read).await?;
        let value = counters::get(&services(ctx).db, &tenant, API_NAMESPACE, &key)
            .await
            .gql()?;
        Ok(Counter { key, value })
    }
}

#[derive(Default)]
pub(crate) struct CounterMutation;

#[Object]
impl CounterMutation {
    /// Adds `delta` only if the result stays within `[min, max]`; exact
    /// under any concurrency.
    async fn add_to_counter(
        &self,
        ctx: &Context<'_>,
        input: AddToCounterInput,
    ) -> async_graphql::Result<AddToCounterPayload> {
        let tenant = authorize(ctx, objects::COUNTERS, Action::Write).await?;
        let out = counters::add_now(
            &services(ctx).db,
            &tenant,
            Add {
                namespace: API_NAMESPACE,
                key: &input.key,
                delta: input.delta,
                min: input.min.unwrap_or(-counters::BOUND),
                max: input.max.unwrap_or(counters::BOUND),
                idempotency_key: input.idempotency_key.as_deref(),
            },
        )
        .await
        .gql()?;
        Ok(match out {
            Outcome::Applied(value) => AddToCounterPayload {
                applied: true,
                value,
            },
            Outcome::LimitReached(value) => AddToCounterPayload {
                applied: false,
                value,
            },
        })
    }
}
