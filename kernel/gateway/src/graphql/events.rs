//! One Data over GraphQL: reading and appending events.

use std::collections::{HashMap, HashSet};

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::events::{self, EventFilter, NewEvent};
use keel_core::{Error, Timestamp};
use serde_json::Value;

use super::{authorize, commit, enqueue, principal, services, to_time};
use crate::errors::Gql as _;
use crate::errors::plugin_error;

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
    pub(crate) has_next_page: bool,
    pub(crate) end_cursor: Option<String>,
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
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
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

/// Why the caller may not emit `event_type`, if it may not. Event types
/// are owned: the kernel's and each plugin's own can be emitted only by
/// their producer, so a subscriber of one can trust it.
fn refusal(owners: &HashMap<String, String>, event_type: &str) -> Option<String> {
    if events::kernel_owns(event_type) {
        return Some(format!(
            "{event_type} is an event type of the kernel; only the kernel emits it"
        ));
    }
    owners
        .get(event_type)
        .map(|o| format!("{event_type} is an event type of the plugin {o}; only it emits it"))
}

/// Which plugin owns each event type that one does.
async fn event_owners(ctx: &Context<'_>) -> async_graphql::Result<HashMap<String, String>> {
    services(ctx)
        .plugins
        .event_owners()
        .await
        .map_err(plugin_error)
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
        if let Some(why) = refusal(&event_owners(ctx).await?, &input.event_type) {
            return Err(Error::Forbidden(why)).gql();
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
        enqueue(ctx, &mut tx, &tenant, [&e]).await?;
        commit(tx).await?;
        Ok(e.into())
    }

    /// Appends up to 1,000 events in one transaction, in order, and
    /// returns them in the same order. Each is idempotent with its own key:
    /// a retried batch returns the same events and stores nothing twice.
    /// One invalid event (or one of a type the caller may not emit)
    /// refuses the batch, naming its index.
    async fn append_events(
        &self,
        ctx: &Context<'_>,
        events: Vec<AppendEventInput>,
    ) -> async_graphql::Result<Vec<Event>> {
        let tenant = authorize(ctx, objects::EVENTS, Action::Write).await?;
        let producer = principal(ctx)?.label();
        if events.len() > events::MAX_BATCH {
            return Err(Error::bad_input(
                "events",
                format!(
                    "{} events; at most {} per call",
                    events.len(),
                    events::MAX_BATCH
                ),
            ))
            .gql();
        }
        let owners = event_owners(ctx).await?;
        for (i, e) in events.iter().enumerate() {
            if let Some(why) = refusal(&owners, &e.event_type) {
                return Err(Error::Forbidden(format!("events[{i}]: {why}"))).gql();
            }
        }
        let batch = events
            .into_iter()
            .map(|input| NewEvent {
                event_type: input.event_type,
                person_id: input.person_id.map(|p| p.0),
                payload: input.payload.0,
                idempotency_key: input.idempotency_key,
                occurred_at: input.occurred_at.map(Timestamp::from_datetime),
            })
            .collect();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let appended = events::append_batch(&mut tx, &tenant, batch, &producer)
            .await
            .gql()?;
        // An event repeated in the batch (its idempotency key again) is
        // queued once.
        let mut queued: HashSet<&str> = HashSet::new();
        let fresh: Vec<&keel_core::events::Event> = appended
            .iter()
            .filter(|e| queued.insert(e.id.as_str()))
            .collect();
        enqueue(ctx, &mut tx, &tenant, fresh).await?;
        commit(tx).await?;
        Ok(appended.into_iter().map(Into::into).collect())
    }
}
