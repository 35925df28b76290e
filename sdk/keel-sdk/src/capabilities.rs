//! The kernel's capabilities, one module each. A call to a capability the
//! tenant did not grant returns [`Error::Denied`](crate::Error::Denied).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// Records of the plugin's own collections, with optimistic versions.
///
/// ```no_run
/// use keel_sdk::records::{self, Expect};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Member { name: String }
/// # fn f(member: Member) -> keel_sdk::Result<()> {
/// let saved = records::put("members", "m-1", &member, Expect::Absent)?;
/// let again = records::get::<Member>("members", "m-1")?.unwrap();
/// records::put("members", "m-1", &again.data, Expect::Version(again.version))?;
/// # let _ = saved;
/// # Ok(())
/// # }
/// ```
pub mod records {
    use super::*;
    use crate::bindings::keel::plugin::records as wit;

    /// A stored record with its data decoded as `T`.
    #[derive(Debug, Clone)]
    pub struct Record<T> {
        pub collection: String,
        pub key: String,
        /// 1 on creation, +1 on every write.
        pub version: u64,
        pub data: T,
    }

    /// What a write expects to find.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Expect {
        /// Create or overwrite.
        Any,
        /// Create only.
        Absent,
        /// Update only, at this version.
        Version(u64),
    }

    /// A page of records; pass `next` as `after` to continue.
    #[derive(Debug, Clone)]
    pub struct Page<T> {
        pub records: Vec<Record<T>>,
        pub next: Option<String>,
    }

    fn decode<T: DeserializeOwned>(r: wit::Record) -> Result<Record<T>> {
        Ok(Record {
            data: serde_json::from_str(&r.data)
                .map_err(|e| Error::Internal(format!("record {}: {e}", r.key)))?,
            collection: r.collection,
            key: r.key,
            version: r.version,
        })
    }

    fn page<T: DeserializeOwned>(p: wit::Page) -> Result<Page<T>> {
        Ok(Page {
            records: p.records.into_iter().map(decode).collect::<Result<_>>()?,
            next: p.next,
        })
    }

    /// The record at `key`, if any.
    pub fn get<T: DeserializeOwned>(collection: &str, key: &str) -> Result<Option<Record<T>>> {
        wit::get(collection, key)?.map(decode).transpose()
    }

    /// Writes `data` (a struct or map, stored as a JSON object) if the stored
    /// state matches `expect`; otherwise [`Error::Conflict`].
    pub fn put<T: Serialize + DeserializeOwned>(
        collection: &str,
        key: &str,
        data: &T,
        expect: Expect,
    ) -> Result<Record<T>> {
        let expect = match expect {
            Expect::Any => wit::Expect::Any,
            Expect::Absent => wit::Expect::Absent,
            Expect::Version(v) => wit::Expect::Version(v),
        };
        decode(wit::put(collection, key, &to_json(data)?, expect)?)
    }

    /// Creates many records at once; if any key exists, nothing is written.
    pub fn insert_batch<T: Serialize>(collection: &str, items: &[(String, T)]) -> Result<u32> {
        let items = items
            .iter()
            .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(wit::insert_batch(collection, &items)?)
    }

    /// Deletes the record at `key` (only at `expect_version` if given);
    /// returns whether one was deleted.
    pub fn delete(collection: &str, key: &str, expect_version: Option<u64>) -> Result<bool> {
        Ok(wit::delete(collection, key, expect_version)?)
    }

    /// Records whose indexed `field` equals `value`, in key order.
    pub fn query<T: DeserializeOwned>(
        collection: &str,
        field: &str,
        value: &serde_json::Value,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<T>> {
        page(wit::query(
            collection,
            field,
            &to_json(value)?,
            after,
            limit,
        )?)
    }

    /// Every record of a collection, in key order.
    pub fn scan<T: DeserializeOwned>(
        collection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<T>> {
        page(wit::scan(collection, after, limit)?)
    }
}

/// The tenant's event stream.
pub mod events {
    use super::*;
    use crate::bindings::keel::plugin::events as wit;

    /// Emits an event of a type the manifest declares; returns its id.
    ///
    /// ```no_run
    /// # use keel_sdk::json;
    /// # fn f(person: String) -> keel_sdk::Result<()> {
    /// keel_sdk::events::emit("loyalty.points_awarded", Some(&person), &json!({"points": 5}), Some("scan-42"))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn emit<T: Serialize>(
        event_type: &str,
        person_id: Option<&str>,
        payload: &T,
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        Ok(wit::emit(
            event_type,
            person_id,
            &to_json(payload)?,
            idempotency_key,
        )?)
    }

    /// One event of [`emit_batch`].
    #[derive(Debug, Clone, PartialEq)]
    pub struct NewEvent {
        pub event_type: String,
        pub person_id: Option<String>,
        pub payload: serde_json::Value,
        pub idempotency_key: Option<String>,
    }

    impl NewEvent {
        /// An event of `event_type` with `payload`, for no person and
        /// without an idempotency key.
        pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> NewEvent {
            NewEvent {
                event_type: event_type.into(),
                person_id: None,
                payload,
                idempotency_key: None,
            }
        }
    }

    /// The most events one [`emit_batch`] takes.
    pub const MAX_BATCH: usize = 1000;

    /// Emits many events at once (at most [`MAX_BATCH`]), in order, each
    /// checked as [`emit`] checks one; returns their ids. All or nothing:
    /// one invalid event fails the batch with its error, the message
    /// prefixed by its index (`events[3]: …`), and emits none of them.
    pub fn emit_batch(events: &[NewEvent]) -> Result<Vec<String>> {
        let events = events
            .iter()
            .map(|e| {
                Ok(wit::NewEvent {
                    event_type: e.event_type.clone(),
                    person_id: e.person_id.clone(),
                    payload: to_json(&e.payload)?,
                    idempotency_key: e.idempotency_key.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(wit::emit_batch(&events)?)
    }
}

/// One ID: persons and profiles.
pub mod persons {
    use super::*;
    use crate::bindings::keel::plugin::persons as wit;

    /// A person as a plugin sees it.
    #[derive(Debug, Clone)]
    pub struct Person {
        pub id: String,
        /// (kind, value) pairs.
        pub identifiers: Vec<(String, String)>,
        pub attributes: serde_json::Map<String, serde_json::Value>,
    }

    fn decode(p: wit::Person) -> Result<Person> {
        Ok(Person {
            id: p.id,
            identifiers: p
                .identifiers
                .into_iter()
                .map(|i| (i.kind, i.value))
                .collect(),
            attributes: serde_json::from_str(&p.attributes)
                .map_err(|e| Error::Internal(e.to_string()))?,
        })
    }

    /// The person a call acts for: the signed-in consumer of a public call
    /// (resolved, or created, through One ID), or the person the
    /// `identifiers` name when an API key or an operator calls. A public
    /// call never names its person: `identifiers` there is refused, so that
    /// nobody can act as somebody else. `None` for an anonymous public call
    /// and for a trusted caller that names nobody.
    pub fn acting_for(
        ctx: &crate::Context,
        identifiers: &[(&str, &str)],
    ) -> Result<Option<Person>> {
        if let Some((kind, value)) = ctx.consumer() {
            if !identifiers.is_empty() {
                return Err(Error::invalid(
                    "identifiers: a public call acts for the signed-in consumer; leave identifiers out",
                ));
            }
            return resolve(&[(kind, value)]).map(Some);
        }
        if identifiers.is_empty() {
            return Ok(None);
        }
        if ctx.caller.is_none() {
            return Err(Error::invalid(
                "identifiers: a public call cannot name its person; the consumer signs in (e.g. with WeChat) and the kernel says who they are",
            ));
        }
        resolve(identifiers).map(Some)
    }

    /// Finds or creates the person behind these `(kind, value)` identifiers.
    ///
    /// ```no_run
    /// # fn f() -> keel_sdk::Result<()> {
    /// let p = keel_sdk::persons::resolve(&[("wechat_openid", "o-123")])?;
    /// # let _ = p;
    /// # Ok(())
    /// # }
    /// ```
    pub fn resolve(identifiers: &[(&str, &str)]) -> Result<Person> {
        let ids: Vec<wit::Identifier> = identifiers
            .iter()
            .map(|(k, v)| wit::Identifier {
                kind: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect();
        decode(wit::resolve(&ids)?)
    }

    /// The most items one [`resolve_batch`] takes.
    pub const MAX_BATCH: usize = 1000;

    /// [`resolve`] for many people at once (at most [`MAX_BATCH`]): one
    /// person per list of `(kind, value)` identifiers, in order. All or
    /// nothing: one invalid item fails the batch with its error, the
    /// message prefixed by its index (`batch[3]: …`), and creates nobody.
    ///
    /// ```no_run
    /// # fn f() -> keel_sdk::Result<()> {
    /// let people = keel_sdk::persons::resolve_batch(&[
    ///     vec![("phone", "+8613800000001")],
    ///     vec![("member_no", "M-7"), ("phone", "+8613800000002")],
    /// ])?;
    /// # let _ = people;
    /// # Ok(())
    /// # }
    /// ```
    pub fn resolve_batch(batch: &[Vec<(&str, &str)>]) -> Result<Vec<Person>> {
        let batch: Vec<Vec<wit::Identifier>> = batch
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|(k, v)| wit::Identifier {
                        kind: (*k).to_owned(),
                        value: (*v).to_owned(),
                    })
                    .collect()
            })
            .collect();
        wit::resolve_batch(&batch)?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// The person `id` (a merged id leads to its survivor).
    pub fn get(id: &str) -> Result<Option<Person>> {
        wit::get(id)?.map(decode).transpose()
    }

    /// Applies a JSON merge patch to the person's profile.
    pub fn set_attributes(id: &str, patch: &serde_json::Value) -> Result<Person> {
        decode(wit::set_attributes(id, &to_json(patch)?)?)
    }
}

/// Counters with limits, exact under any concurrency.
pub mod counters {
    use super::*;
    use crate::bindings::keel::plugin::counters as wit;

    /// The result of [`add`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        /// Added; the new value.
        Applied(i64),
        /// Not added (the result would leave `[min, max]`); the unchanged value.
        LimitReached(i64),
    }

    /// Adds `delta` if the result stays within `[min, max]`.
    ///
    /// ```no_run
    /// # use keel_sdk::{Error, Result, counters::Outcome};
    /// # fn f(claim_id: String) -> Result<()> {
    /// match keel_sdk::counters::add("stock:prize-1", -1, 0, i64::MAX, Some(&claim_id))? {
    ///     Outcome::Applied(left) => { /* reserved one */ }
    ///     Outcome::LimitReached(_) => return Err(Error::refused("SOLD_OUT", "no stock left")),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn add(
        key: &str,
        delta: i64,
        min: i64,
        max: i64,
        idempotency_key: Option<&str>,
    ) -> Result<Outcome> {
        Ok(match wit::add(key, delta, min, max, idempotency_key)? {
            wit::Outcome::Applied(v) => Outcome::Applied(v),
            wit::Outcome::LimitReached(v) => Outcome::LimitReached(v),
        })
    }

    /// A counter's value (0 if never added to).
    pub fn get(key: &str) -> Result<i64> {
        Ok(wit::get(key)?)
    }
}

/// The tenant's configuration of this plugin, and its secrets.
pub mod config {
    use super::*;
    use crate::bindings::keel::plugin::config as wit;

    /// The configuration, decoded as `T`.
    pub fn get<T: DeserializeOwned>() -> Result<T> {
        serde_json::from_str(&wit::get()).map_err(|e| Error::Internal(format!("config: {e}")))
    }

    /// A secret the tenant stored for this plugin.
    pub fn secret(name: &str) -> Result<Option<String>> {
        Ok(wit::secret(name)?)
    }

    /// How the tenant's consumers sign in: the identifier kind of its
    /// consumer sessions (`wechat_openid`), or `None` when it has no
    /// sign-in and every public call is anonymous. Needs no grant.
    pub fn consumer_sign_in() -> Result<Option<String>> {
        Ok(wit::consumer_sign_in()?)
    }

    /// The tenant's IANA time zone, e.g. `Asia/Shanghai` (schedules run in it).
    pub fn time_zone() -> String {
        wit::time_zone()
    }
}

/// Outbound HTTP to hosts the tenant allowed.
pub mod http {
    use super::*;
    use crate::bindings::keel::plugin::http as wit;

    pub use wit::{Request, Response};

    /// Sends a request; a host the tenant did not allow is [`Error::Denied`].
    pub fn fetch(request: &Request) -> Result<Response> {
        Ok(wit::fetch(request)?)
    }

    /// A POST of a JSON body.
    pub fn post_json<T: Serialize>(
        url: &str,
        body: &T,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        h.push(("content-type".into(), "application/json".into()));
        fetch(&Request {
            method: "POST".into(),
            url: url.into(),
            headers: h,
            body: Some(to_json(body)?.into_bytes()),
        })
    }
}

/// Log lines, tagged by the kernel with tenant, plugin and request.
pub mod log {
    use crate::bindings::keel::plugin::log as wit;

    pub fn debug(message: &str) {
        wit::log(wit::Level::Debug, message)
    }
    pub fn info(message: &str) {
        wit::log(wit::Level::Info, message)
    }
    pub fn warn(message: &str) {
        wit::log(wit::Level::Warn, message)
    }
    pub fn error(message: &str) {
        wit::log(wit::Level::Error, message)
    }
}
