//! The event catalogue over GraphQL: every event type the tenant's log can
//! hold, its producer, its payload's JSON Schema and its subscribers.

use async_graphql::{Context, Enum, Json, Object, SimpleObject};
use keel_core::authz::{Action, objects};
use keel_host::event_catalog::{EventTypeInfo, Producer};
use keel_host::manifest::DeliveryMode;
use serde_json::Value;

use super::{authorize, services};
use crate::errors::plugin_error;

/// How a subscriber gets an event.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum EventDelivery {
    /// Inside the emitting transaction: its failure fails the emitter.
    Sync,
    /// After commit, through the outbox, at least once.
    Async,
}

/// A plugin the tenant enabled that wants events of a type delivered.
#[derive(SimpleObject)]
pub(crate) struct EventSubscriber {
    plugin: String,
    mode: EventDelivery,
}

/// An event type of the tenant's catalogue.
#[derive(SimpleObject)]
pub(crate) struct EventType {
    /// Dotted type, e.g. `code.scanned`.
    #[graphql(name = "type")]
    event_type: String,
    /// `kernel`, or the plugin that emits it (the only one that may); null
    /// when neither the kernel nor a plugin this tenant enabled produces it
    /// (a type only subscribed to).
    producer: Option<String>,
    /// The producing plugin's enabled version.
    producer_version: Option<String>,
    /// What an event of this type means: its schema's `description`.
    description: Option<String>,
    /// The JSON Schema every payload of this type matches (the kernel
    /// refuses a plugin's payload that does not); null when the producer
    /// declares none (a `keel:plugin@0.1.0` plugin).
    schema: Option<Json<Value>>,
    /// The enabled plugins subscribed to it.
    subscribers: Vec<EventSubscriber>,
}

impl From<EventTypeInfo> for EventType {
    fn from(t: EventTypeInfo) -> Self {
        let (producer, producer_version) = match t.producer {
            Producer::Kernel => (Some("kernel".to_owned()), None),
            Producer::Plugin { name, version } => (Some(name), Some(version)),
            Producer::Undeclared => (None, None),
        };
        EventType {
            event_type: t.event_type,
            producer,
            producer_version,
            description: t.description,
            schema: t.schema.map(Json),
            subscribers: t
                .subscribers
                .into_iter()
                .map(|s| EventSubscriber {
                    plugin: s.plugin,
                    mode: match s.mode {
                        DeliveryMode::Sync => EventDelivery::Sync,
                        DeliveryMode::Async => EventDelivery::Async,
                    },
                })
                .collect(),
        }
    }
}

#[derive(Default)]
pub(crate) struct EventTypeQuery;

#[Object]
impl EventTypeQuery {
    /// The event types this tenant's log can hold, by type: the kernel's,
    /// and those its enabled plugins emit or subscribe to.
    async fn event_types(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<EventType>> {
        let tenant = authorize(ctx, objects::EVENTS, Action::Read).await?;
        let list = services(ctx)
            .plugins
            .event_catalog(&tenant)
            .await
            .map_err(plugin_error)?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}
