//! One ID over GraphQL: persons, identifiers, merges and profiles.

use async_graphql::{ComplexObject, Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::persons::{self, Identify};
use serde_json::{Map, Value};

use super::events::{EventConnection, EventFilterInput, events_page};
use super::{authorize, commit, enqueue, principal, services, to_time};
use crate::errors::{Gql as _, gql_error};

/// One human, across every channel the brand meets them in.
#[derive(SimpleObject)]
#[graphql(complex)]
pub(crate) struct Person {
    id: ID,
    identifiers: Vec<Identifier>,
    /// Profile attributes that the brand and its modules keep (JSON object).
    attributes: Json<Map<String, Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<persons::Person> for Person {
    fn from(p: persons::Person) -> Self {
        Person {
            id: p.id.into(),
            identifiers: p.identifiers.into_iter().map(Into::into).collect(),
            attributes: Json(p.attributes),
            created_at: to_time(p.created_at),
            updated_at: to_time(p.updated_at),
        }
    }
}

#[ComplexObject]
impl Person {
    /// Merges this person took part in, oldest first (the audit trail).
    async fn merges(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PersonMerge>> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Read).await?;
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(keel_core::Error::from)
            .gql()?;
        let list = persons::merges(&mut conn, &tenant, &self.id).await.gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// This person's events, including those recorded under persons merged
    /// into it.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        types: Option<Vec<String>>,
    ) -> async_graphql::Result<EventConnection> {
        let filter = EventFilterInput {
            types,
            person_id: Some(self.id.clone()),
            since: None,
            until: None,
        };
        events_page(ctx, Some(filter), first, after).await
    }
}

/// A typed identifier: `phone`, `email`, `wechat_openid`, `wechat_unionid`,
/// `member_no`, `anonymous_id` (a browser's or device's random id) or
/// `external:<system>`.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "IdentifierInput")]
pub(crate) struct Identifier {
    kind: String,
    value: String,
}

impl From<persons::Identifier> for Identifier {
    fn from(i: persons::Identifier) -> Self {
        Identifier {
            kind: i.kind,
            value: i.value,
        }
    }
}

/// One merge in the audit trail.
#[derive(SimpleObject)]
pub(crate) struct PersonMerge {
    id: ID,
    survivor_id: ID,
    merged_id: ID,
    reason: String,
    /// Who merged: `key:…`, `operator:…`, `kernel`.
    actor: String,
    /// Identifiers that moved to the survivor.
    identifiers: Vec<Identifier>,
    created_at: DateTime<Utc>,
}

impl From<persons::MergeRecord> for PersonMerge {
    fn from(m: persons::MergeRecord) -> Self {
        PersonMerge {
            id: m.id.into(),
            survivor_id: m.survivor_id.into(),
            merged_id: m.merged_id.into(),
            reason: m.reason,
            actor: m.actor,
            identifiers: m.identifiers.into_iter().map(Into::into).collect(),
            created_at: to_time(m.created_at),
        }
    }
}

#[derive(InputObject)]
pub(crate) struct IdentifyInput {
    identifiers: Vec<Identifier>,
    /// A JSON merge patch for the profile (`null` removes a key).
    attributes: Option<Json<Value>>,
    /// When the identifiers point at several persons, merge them into the
    /// oldest (true) or refuse with CONFLICT (false).
    #[graphql(default)]
    merge: bool,
}

#[derive(SimpleObject)]
pub(crate) struct IdentifyPayload {
    person: Person,
    /// True when no person had any of the identifiers.
    created: bool,
    /// Persons merged into `person` by this call.
    merged_person_ids: Vec<ID>,
}

#[derive(InputObject)]
pub(crate) struct LinkIdentifierInput {
    person_id: ID,
    identifier: Identifier,
}

#[derive(InputObject)]
pub(crate) struct MergePersonsInput {
    survivor_id: ID,
    merged_id: ID,
    reason: String,
}

#[derive(InputObject)]
pub(crate) struct ErasePersonInput {
    person_id: ID,
    /// Kept in the audit record: the request's ticket number, not personal data.
    reason: String,
}

/// What an erasure removed.
#[derive(SimpleObject)]
pub(crate) struct PersonErasure {
    /// The audit record's id.
    id: ID,
    /// The live person erased.
    person_id: ID,
    /// It and every person merged into it.
    persons: Vec<ID>,
    /// Identifiers deleted.
    identifiers: i64,
    /// Events anonymised.
    events: i64,
}

#[derive(InputObject)]
pub(crate) struct SetPersonAttributesInput {
    person_id: ID,
    /// A JSON merge patch (`null` removes a key).
    attributes: Json<Value>,
}

fn as_object(field: &str, v: Json<Value>) -> async_graphql::Result<Map<String, Value>> {
    match v.0 {
        Value::Object(m) => Ok(m),
        _ => Err(keel_core::Error::bad_input(field, "must be a JSON object")).gql(),
    }
}

#[derive(Default)]
pub(crate) struct PersonQuery;

#[Object]
impl PersonQuery {
    /// A person by id; the id of a merged person leads to its survivor.
    async fn person(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Person> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Read).await?;
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(keel_core::Error::from)
            .gql()?;
        Ok(persons::get(&mut conn, &tenant, &id).await.gql()?.into())
    }

    /// The person an identifier points at.
    async fn person_by_identifier(
        &self,
        ctx: &Context<'_>,
        kind: String,
        value: String,
    ) -> async_graphql::Result<Person> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Read).await?;
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(keel_core::Error::from)
            .gql()?;
        persons::find_by_identifier(&mut conn, &tenant, &kind, &value)
            .await
            .gql()?
            .map(Into::into)
            .ok_or_else(|| gql_error("NOT_FOUND", format!("no person with {kind} {value:?}")))
    }
}

#[derive(Default)]
pub(crate) struct PersonMutation;

#[Object]
impl PersonMutation {
    /// Finds or creates the person behind these identifiers (resolve-or-create).
    async fn identify(
        &self,
        ctx: &Context<'_>,
        input: IdentifyInput,
    ) -> async_graphql::Result<IdentifyPayload> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Write).await?;
        let attributes = input
            .attributes
            .map(|a| as_object("attributes", a))
            .transpose()?;
        let actor = principal(ctx)?.label();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let out = persons::identify(
            &mut tx,
            &tenant,
            Identify {
                identifiers: input
                    .identifiers
                    .into_iter()
                    .map(|i| (i.kind, i.value))
                    .collect(),
                attributes,
                merge: input.merge,
            },
            &actor,
        )
        .await
        .gql()?;
        enqueue(ctx, &mut tx, &tenant, &out.merge_events).await?;
        commit(tx).await?;
        Ok(IdentifyPayload {
            person: out.person.into(),
            created: out.created,
            merged_person_ids: out.merged.into_iter().map(Into::into).collect(),
        })
    }

    /// `identify` for up to 1,000 people in one transaction: one result
    /// per input, in order. A later input sees what an earlier one created;
    /// one refused input refuses the batch, naming its index
    /// (`batch[3].identifiers[0].value`), and nothing is written.
    async fn identify_persons(
        &self,
        ctx: &Context<'_>,
        batch: Vec<IdentifyInput>,
    ) -> async_graphql::Result<Vec<IdentifyPayload>> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Write).await?;
        if batch.len() > persons::MAX_BATCH {
            return Err(keel_core::Error::bad_input(
                "batch",
                format!(
                    "{} items; at most {} per call",
                    batch.len(),
                    persons::MAX_BATCH
                ),
            ))
            .gql();
        }
        let items = batch
            .into_iter()
            .enumerate()
            .map(|(i, input)| {
                let attributes = input
                    .attributes
                    .map(|a| as_object(&format!("batch[{i}].attributes"), a))
                    .transpose()?;
                Ok(Identify {
                    identifiers: input
                        .identifiers
                        .into_iter()
                        .map(|id| (id.kind, id.value))
                        .collect(),
                    attributes,
                    merge: input.merge,
                })
            })
            .collect::<async_graphql::Result<Vec<_>>>()?;
        let actor = principal(ctx)?.label();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let out = persons::identify_batch(&mut tx, &tenant, items, &actor)
            .await
            .gql()?;
        let merge_events: Vec<&keel_core::events::Event> =
            out.iter().flat_map(|o| o.merge_events.iter()).collect();
        enqueue(ctx, &mut tx, &tenant, merge_events).await?;
        commit(tx).await?;
        Ok(out
            .into_iter()
            .map(|o| IdentifyPayload {
                person: o.person.into(),
                created: o.created,
                merged_person_ids: o.merged.into_iter().map(Into::into).collect(),
            })
            .collect())
    }

    /// Adds an identifier to a person.
    async fn link_identifier(
        &self,
        ctx: &Context<'_>,
        input: LinkIdentifierInput,
    ) -> async_graphql::Result<Person> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Write).await?;
        let mut tx = services(ctx).db.begin().await.gql()?;
        let p = persons::link(
            &mut tx,
            &tenant,
            &input.person_id,
            &input.identifier.kind,
            &input.identifier.value,
        )
        .await
        .gql()?;
        commit(tx).await?;
        Ok(p.into())
    }

    /// Merges `mergedId` into `survivorId`, with guardrails and an audit record.
    async fn merge_persons(
        &self,
        ctx: &Context<'_>,
        input: MergePersonsInput,
    ) -> async_graphql::Result<Person> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let merged = persons::merge(
            &mut tx,
            &tenant,
            &input.survivor_id,
            &input.merged_id,
            &input.reason,
            &actor,
        )
        .await
        .gql()?;
        enqueue(ctx, &mut tx, &tenant, [&merged.event]).await?;
        commit(tx).await?;
        Ok(merged.person.into())
    }

    /// Erases a person (personal-information rights) and everyone merged
    /// into them: identifiers deleted, attributes emptied, events
    /// anonymised, an audit record kept, and `person.erased` emitted so
    /// every plugin erases what it holds. Needs the `privacy` right
    /// (admins and owners).
    async fn erase_person(
        &self,
        ctx: &Context<'_>,
        input: ErasePersonInput,
    ) -> async_graphql::Result<PersonErasure> {
        let tenant = authorize(ctx, objects::PRIVACY, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let erased = persons::erase(&mut tx, &tenant, &input.person_id, &input.reason, &actor)
            .await
            .gql()?;
        enqueue(ctx, &mut tx, &tenant, [&erased.event]).await?;
        commit(tx).await?;
        Ok(PersonErasure {
            id: erased.id.into(),
            person_id: erased.person_id.into(),
            persons: erased.persons.into_iter().map(Into::into).collect(),
            identifiers: erased.identifiers as i64,
            events: erased.events as i64,
        })
    }

    /// Applies a JSON merge patch to a person's profile attributes.
    async fn set_person_attributes(
        &self,
        ctx: &Context<'_>,
        input: SetPersonAttributesInput,
    ) -> async_graphql::Result<Person> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Write).await?;
        let patch = as_object("attributes", input.attributes)?;
        let mut tx = services(ctx).db.begin().await.gql()?;
        let p = persons::set_attributes(&mut tx, &tenant, &input.person_id, &patch)
            .await
            .gql()?;
        commit(tx).await?;
        Ok(p.into())
    }
}
