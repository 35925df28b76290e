//! The harness's requests, one function each.

use keel_core::events::{self, Event, EventFilter, NewEvent};
use keel_core::persons::{self, Identify};
use keel_core::records::{self, Location};
use keel_core::{Timestamp, counters};
use keel_host::manifest::{Capability, Grants};
use keel_host::stubs::StubAnswer;
use keel_host::{CallContext, CallerRights};
use serde_json::{Map, Value, json};

use super::{Harness, Refusal, text};
use crate::project::Project;

type Answer = Result<Value, Refusal>;

/// The label of the operator every call runs as, unless the request says
/// `"as": "public"`.
const OPERATOR: &str = "key:test";

impl Harness {
    pub(super) async fn handle(&self, req: Value) -> Answer {
        let Some(op) = req.get("op").and_then(Value::as_str) else {
            return Err(Refusal::bad("op: a string is required"));
        };
        match op {
            "plugin" => self.plugin(&req).await,
            "call" => self.call(&req).await,
            "events" => self.events(&req).await,
            "counter" => self.counter(&req).await,
            "record" => self.record(&req).await,
            "deliver" => self.deliver().await,
            "dead_letters" => self.dead_letters().await,
            "person" => self.person(&req).await,
            "emit" => self.emit(&req).await,
            "clock" => self.set_clock(&req),
            "stub" => self.stub(&req),
            "stubbed_calls" => Ok(Value::Array(
                self.stubs
                    .calls(req.get("clear").and_then(Value::as_bool).unwrap_or(false)),
            )),
            "respond" => self.endpoint.respond(&req),
            "requests" => Ok(self.endpoint.requests(&req)),
            other => Err(Refusal::bad(format!(
                "op: unknown {other:?}; the harness knows plugin, call, events, counter, \
                 record, deliver, dead_letters, person, emit, clock, stub, stubbed_calls, respond \
                 and requests"
            ))),
        }
    }

    /// Builds the plugin project in `dir`, installs it and enables it for
    /// the tenant with everything its manifest requests (and the harness's
    /// HTTP endpoint, when it asks for hosts the tenant names) and `config`.
    async fn plugin(&self, req: &Value) -> Answer {
        let dir = text(req, "dir")?;
        let config = req.get("config").cloned().unwrap_or_else(|| json!({}));
        let project = Project::find(std::path::Path::new(dir))?;
        let (_, manifest) = project.manifest()?;
        let target_dir = self.target_dir.clone();
        let wasm = tokio::task::spawn_blocking(move || project.component(target_dir.as_deref()))
            .await
            .map_err(|e| Refusal::new("HARNESS", e.to_string()))??;
        let package = self
            .kernel
            .registry()
            .install(manifest.clone(), &wasm)
            .await?;
        let mut grants = Grants::all_requested(&manifest);
        if grants.has(Capability::Http) && manifest.capabilities.http_hosts.iter().any(|h| h == "*")
        {
            grants.http_hosts.push(self.endpoint.host());
        }
        // The same plugin again is enabled anew at the version on disk,
        // with the new config; its data is kept (disabling keeps it).
        let enabled = self
            .kernel
            .registry()
            .enabled(&self.tenant)
            .await?
            .plugins
            .iter()
            .any(|a| a.manifest.name == manifest.name);
        if enabled {
            self.kernel
                .registry()
                .disable(&self.tenant, &manifest.name)
                .await?;
        }
        self.kernel
            .enable(
                &self.tenant,
                &manifest.name,
                Some(&manifest.version),
                grants,
                config,
            )
            .await?;
        Ok(json!({
            "name": manifest.name,
            "version": manifest.version,
            "hash": package.hash,
        }))
    }

    /// Calls an operation as the tenant's operator (an owner key) or, with
    /// `"as": "public"`, as an anonymous client of a public operation.
    async fn call(&self, req: &Value) -> Answer {
        let plugin = text(req, "plugin")?;
        let operation = text(req, "operation")?;
        let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
        let public = match req.get("as").and_then(Value::as_str) {
            None | Some("operator") => false,
            Some("public") => true,
            Some(other) => {
                return Err(Refusal::bad(format!(
                    "as: {other:?}; use \"operator\" or \"public\""
                )));
            }
        };
        if public {
            // As the public endpoint: an anonymous client reaches only the
            // operations the manifest lists in `graphql.public`.
            let plugins = self.kernel.registry().enabled(&self.tenant).await?;
            let listed = plugins
                .plugins
                .iter()
                .find(|a| a.manifest.name == plugin)
                .is_some_and(|a| a.manifest.graphql.public.iter().any(|o| o == operation));
            if !listed {
                return Err(Refusal::new(
                    "FORBIDDEN",
                    format!(
                        "{plugin}.{operation} is not a public operation (graphql.public in \
                         its manifest): an anonymous client cannot call it"
                    ),
                ));
            }
        }
        let ctx = CallContext {
            caller: (!public).then(|| OPERATOR.to_owned()),
            client_address: Some("127.0.0.1".into()),
            request_id: "harness".into(),
            caller_rights: Some(if public {
                CallerRights::default()
            } else {
                CallerRights {
                    catalog_write: true,
                    org_write: true,
                }
            }),
            ..CallContext::default()
        };
        Ok(self
            .kernel
            .call(&self.tenant, plugin, operation, input, ctx)
            .await?)
    }

    /// The tenant's events of `type`, oldest first (`limit`: 100, at most 1,000).
    async fn events(&self, req: &Value) -> Answer {
        let filter = EventFilter {
            types: vec![text(req, "type")?.to_owned()],
            ..Default::default()
        };
        let limit = req
            .get("limit")
            .and_then(Value::as_u64)
            .unwrap_or(100)
            .min(1_000) as usize;
        let page = events::list(self.kernel.db(), &self.tenant, &filter, limit, None).await?;
        Ok(page.events.iter().map(event_json).collect())
    }

    /// A plugin's counter (0 when it was never written).
    async fn counter(&self, req: &Value) -> Answer {
        let n = counters::get(
            self.kernel.db(),
            &self.tenant,
            text(req, "plugin")?,
            text(req, "key")?,
        )
        .await?;
        Ok(json!(n))
    }

    /// A plugin's record, or `null`.
    async fn record(&self, req: &Value) -> Answer {
        let mut conn = self
            .kernel
            .db()
            .reader()
            .acquire()
            .await
            .map_err(keel_core::Error::from)?;
        let loc = Location {
            namespace: text(req, "plugin")?,
            collection: text(req, "collection")?,
            key: text(req, "key")?,
        };
        let record = records::get(&mut conn, &self.tenant, loc).await?;
        Ok(record.map(|r| r.data).unwrap_or(Value::Null))
    }

    /// Delivers the events due to async subscribers, once.
    async fn deliver(&self) -> Answer {
        let handled = self.kernel.dispatcher().deliver_due().await?;
        Ok(json!({ "handled": handled }))
    }

    /// Deliveries that failed (in the harness, a handler has one attempt).
    async fn dead_letters(&self) -> Answer {
        let dead = keel_host::outbox::dead_letters(self.kernel.db(), &self.tenant).await?;
        Ok(dead
            .into_iter()
            .map(|d| {
                json!({
                    "eventId": d.event_id,
                    "eventType": d.event_type,
                    "subscriber": d.subscriber,
                    "error": d.last_error,
                })
            })
            .collect())
    }

    /// Finds or makes the person behind `identifiers` (`[{kind, value}]`)
    /// and merges `attributes` into the profile, as `identify` does.
    async fn person(&self, req: &Value) -> Answer {
        let identifiers = req
            .get("identifiers")
            .and_then(Value::as_array)
            .ok_or_else(|| Refusal::bad("identifiers: a list of {kind, value} is required"))?
            .iter()
            .enumerate()
            .map(|(i, id)| match (id.get("kind"), id.get("value")) {
                (Some(Value::String(k)), Some(Value::String(v))) => Ok((k.clone(), v.clone())),
                _ => Err(Refusal::bad(format!(
                    "identifiers[{i}]: {{\"kind\": …, \"value\": …}}, both strings"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let attributes = match req.get("attributes") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(Refusal::bad("attributes: must be an object")),
        };
        let mut tx = self.kernel.db().begin().await?;
        let out = persons::identify(
            &mut tx,
            &self.tenant,
            Identify {
                identifiers,
                attributes,
                merge: false,
            },
            OPERATOR,
        )
        .await?;
        tx.commit().await.map_err(keel_core::Error::from)?;
        Ok(json!({"id": out.person.id, "created": out.created}))
    }

    /// Appends an event as `producer` (another plugin's name, `kernel`, or
    /// a client's label) would have, and queues it for the tenant's async
    /// subscribers: the next `deliver` runs their handlers.
    async fn emit(&self, req: &Value) -> Answer {
        let producer = text(req, "producer")?;
        let payload = match req.get("payload") {
            None => Value::Object(Map::new()),
            Some(v) => v.clone(),
        };
        let new = NewEvent {
            event_type: text(req, "type")?.to_owned(),
            person_id: opt_text(req, "person")?.map(str::to_owned),
            payload,
            idempotency_key: opt_text(req, "idempotencyKey")?.map(str::to_owned),
            occurred_at: None,
        };
        let plugins = self.kernel.registry().enabled(&self.tenant).await?;
        let mut tx = self.kernel.db().begin().await?;
        let event = events::append(&mut tx, &self.tenant, new, producer).await?;
        keel_host::outbox::enqueue(&mut tx, &self.tenant, &plugins, &event).await?;
        tx.commit().await.map_err(keel_core::Error::from)?;
        Ok(event_json(&event))
    }

    /// Fixes the wall clock plugins read at `at` (RFC 3339), or gives them
    /// the system's clock again with `"at": null`.
    fn set_clock(&self, req: &Value) -> Answer {
        let at = match req.get("at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| Refusal::bad(format!("at: {s:?} is not an RFC 3339 time: {e}")))?,
            ),
            Some(_) => return Err(Refusal::bad("at: an RFC 3339 time or null")),
        };
        self.clock
            .set(at.map(std::time::SystemTime::from))
            .map_err(Refusal::bad)?;
        Ok(Value::Null)
    }
}

impl Harness {
    /// Scripts what calls to another plugin's operation answer: `output`
    /// (any JSON), or `error: {code, message}` with the code a GraphQL
    /// client would see (`NOT_FOUND`, …, or the callee's own).
    fn stub(&self, req: &Value) -> Answer {
        let plugin = text(req, "plugin")?;
        let operation = text(req, "operation")?;
        let answer = match (req.get("output"), req.get("error")) {
            (Some(output), None) => StubAnswer::Output(output.clone()),
            (None, Some(error)) => {
                let code = error.get("code").and_then(Value::as_str).unwrap_or("");
                let upper_snake = (1..=64).contains(&code.len())
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if !upper_snake {
                    return Err(Refusal::bad(
                        "error.code: UPPER_SNAKE_CASE, 1 to 64 characters (e.g. NOT_FOUND or INSUFFICIENT_POINTS)",
                    ));
                }
                let message = error.get("message").and_then(Value::as_str).unwrap_or("");
                StubAnswer::Error {
                    code: code.to_owned(),
                    message: message.to_owned(),
                }
            }
            _ => {
                return Err(Refusal::bad(
                    "stub: give either output or error: {code, message}",
                ));
            }
        };
        self.stubs.set(plugin, operation, answer);
        Ok(Value::Null)
    }
}

fn opt_text<'a>(req: &'a Value, name: &str) -> Result<Option<&'a str>, Refusal> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refusal::bad(format!("{name}: must be a string"))),
    }
}

fn time(t: Timestamp) -> String {
    t.to_datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An event as the GraphQL API shows it.
fn event_json(e: &Event) -> Value {
    json!({
        "id": e.id,
        "seq": e.seq,
        "type": e.event_type,
        "occurredAt": time(e.occurred_at),
        "personId": e.person_id,
        "payload": e.payload,
        "producer": e.producer,
        "idempotencyKey": e.idempotency_key,
    })
}
