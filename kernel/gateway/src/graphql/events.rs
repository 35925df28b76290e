//! One Data over GraphQL: reading and appending events.

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::events::{self, EventFilter, NewEvent};
use keel_core::{Error, Timestamp};
use serde_json::Value;

use super::plugins::plugin_error;
use super::{authorize, commit, principal, services, to_time};
use crate::errors::Gql as _;

/// Page size when `first` is not given.
const DEFAULT_PAGE: i32 = 20;

/// Something that happened, as the append-only log keeps it.
#[derive(SimpleObject)]
pub(crate) struct Event {
    id: ID,
    /// Dotted type, e.g. `code.scanned`.
    #[graphql(name = "type")]
    event_type: String,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    person_id: Option<ID>,
    payload: Json<Value>,
    idempotency_key: Option<String>,
    /// Who appended it: `kernel`, a plugin, or a principal label.
    producer: String,
}

impl From<events::Event> for Event {
    fn from(e: events::Event) -> Self {
        Event {
            id: e.id.into(),
            event_type: e.event_type,
            occurred_at: to_time(e.occurred_at),
            recorded_at: to_time(e.recorded_at),
            person_id: e.person_id.map(Into::into),
            payload: Json(e.payload),
            idempotency_key: e.idempotency_key,
            producer: e.producer,
        }
    }
}

#[derive(SimpleObject)]
pub(crate) struct EventEdge {
    cursor: String,
    node: Event,
}

#[derive(SimpleObject)]
pub(crate) struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

/// A page of events, oldest first (Relay connection).
#[derive(SimpleObject)]
pub(crate) struct EventConnection {
    edges: Vec<EventEdge>,
    page_info: PageInfo,
}

/// Which events to read; all conditions must hold.
#[derive(InputObject, Default)]
#[graphql(name = "EventFilter")]
pub(crate) struct EventFilterInput {
    /// Any of these types.
    pub types: Option<Vec<String>>,
    pub person_id: Option<ID>,
    /// Occurred at or after.
    pub since: Option<DateTime<Utc>>,
    /// Occurred before.
    pub until: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub(crate) struct AppendEventInput {
    #[graphql(name = "type")]
    event_type: String,
    person_id: Option<ID>,
    /// A JSON object.
    payload: Json<Value>,
    /// A retry with the same key returns the first event, not a second one.
    idempotency_key: Option<String>,
    /// When it happened, if not now.
    occurred_at: Option<DateTime<Utc>>,
}

fn parse_cursor(after: Option<String>) -> async_graphql::Result<Option<i64>> {
    after
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::bad_input("after", "not a cursor this API returned"))
        })
        .transpose()
        .gql()
}

pub(crate) async fn events_page(
    ctx: &Context<'_>,
    filter: Option<EventFilterInput>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<EventConnection> {
    let tenant = authorize(ctx, objects::EVENTS, Action::Read).await?;
    let first = first.unwrap_or(DEFAULT_PAGE);
    if first < 1 || first as usize > events::MAX_PAGE {
        return Err(Error::bad_input(
            "first",
            format!("must be 1-{}", events::MAX_PAGE),
        ))
        .gql();
    }
    let f = filter.unwrap_or_default();
    let filter = EventFilter {
        types: f.types.unwrap_or_default(),
        person_id: f.person_id.map(|p| p.0),
        since: f.since.map(Timestamp::from_datetime),
        until: f.until.map(Timestamp::from_datetime),
    };
    let page = events::list(
        &services(ctx).db,
        &tenant,
        &filter,
        first as usize,
        parse_cursor(after)?,
    )
    .await
    .gql()?;
    let end_cursor = page.events.last().map(|e| e.seq.to_string());
    Ok(EventConnection {
        edges: page
            .events
            .into_iter()
            .map(|e| EventEdge {
                cursor: e.seq.to_string(),
                node: e.into(),
            })
            .collect(),
        page_info: PageInfo {
            has_next_page: page.has_next_page,
            end_cursor,
        },
    })
}

#[derive(Default)]
pub(crate) struct EventQuery;

#[Object]
impl EventQuery {
    /// The tenant's events, oldest first, `first` (at most 100) after `after`.
    #[graphql(complexity = "first.unwrap_or(20) as usize * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<EventConnection> {
        events_page(ctx, filter, first, after).await
    }

    /// One event by id.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Event> {
        let tenant = authorize(ctx, objects::EVENTS, Action::Read).await?;
        Ok(events::get(&services(ctx).db, &tenant, &id)
            .await
            .gql()?
            .into())
    }
}

#[derive(Default)]
pub(crate) struct EventMutation;

#[Object]
impl EventMutation {
    /// Appends an event to the tenant's log (idempotent with a key).
    async fn append_event(
        &self,
        ctx: &Context<'_>,
        input: AppendEventInput,
    ) -> async_graphql::Result<Event> {
        let tenant = authorize(ctx, objects::EVENTS, Action::Write).await?;
        let producer = principal(ctx)?.label();
        // Event types are owned: the kernel's and each plugin's own can be
        // emitted only by their producer, so a subscriber of one can trust it.
        if events::kernel_owns(&input.event_type) {
            return Err(Error::Forbidden(format!(
                "{} is an event type of the kernel; only the kernel emits it",
                input.event_type
            )))
            .gql();
        }
        if let Some(owner) = services(ctx)
            .plugins
            .event_owner(&input.event_type)
            .await
            .map_err(plugin_error)?
        {
            return Err(Error::Forbidden(format!(
                "{} is an event type of the plugin {owner}; only it emits it",
                input.event_type
            )))
            .gql();
        }
        let mut tx = services(ctx).db.begin().await.gql()?;
        let e = events::append(
            &mut tx,
            &tenant,
            NewEvent {
                event_type: input.event_type,
                person_id: input.person_id.map(|p| p.0),
                payload: input.payload.0,
                idempotency_key: input.idempotency_key,
                occurred_at: input.occurred_at.map(Timestamp::from_datetime),
            },
            &producer,
        )
        .await
        .gql()?;
        // Async subscribers among the tenant's plugins get it via the outbox,
        // written in this same transaction.
        let plugins = services(ctx)
            .plugins
            .enabled(&tenant)
            .await
            .map_err(plugin_error)?;
        keel_host::outbox::enqueue(&mut tx, &tenant, &plugins, &e)
            .await
            .gql()?;
        commit(tx).await?;
        Ok(e.into())
    }
}
