//! `keel:plugin/persons`: One ID, read with `persons-read`, profiles
//! written with `persons-write`.

use keel_core::persons::{self, Identify};

use super::{json_arg, wit};
use crate::bindings::WitError;
use crate::bindings::keel::plugin::persons::{self as w, Host};
use crate::manifest::Capability;
use crate::state::State;

pub(super) fn to_wit(p: persons::Person) -> w::Person {
    w::Person {
        id: p.id,
        identifiers: p
            .identifiers
            .into_iter()
            .map(|i| w::Identifier {
                kind: i.kind,
                value: i.value,
            })
            .collect(),
        attributes: serde_json::Value::Object(p.attributes).to_string(),
    }
}

impl Host for State {
    async fn resolve(
        &mut self,
        identifiers: Vec<w::Identifier>,
    ) -> wasmtime::Result<Result<w::Person, WitError>> {
        if let Err(e) = self.require(Capability::PersonsRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        let actor = format!("plugin:{}", self.namespace());
        let identifiers: Vec<(String, String)> =
            identifiers.into_iter().map(|i| (i.kind, i.value)).collect();
        // A known person is found without taking the write transaction.
        if !self.writing() {
            match persons::lookup(&mut *self.read().await?, &tenant, &identifiers).await {
                Ok(Some(p)) => return Ok(Ok(to_wit(p))),
                Ok(None) => {}
                Err(e) => return wit(Err(e)),
            }
        }
        let input = Identify {
            identifiers,
            attributes: None,
            merge: false,
        };
        Ok(
            wit(persons::identify(self.conn().await?, &tenant, input, &actor).await)?
                .map(|o| to_wit(o.person)),
        )
    }

    async fn resolve_batch(
        &mut self,
        batch: Vec<Vec<w::Identifier>>,
    ) -> wasmtime::Result<Result<Vec<w::Person>, WitError>> {
        // Each item through `resolve`, all or nothing (see `batch.rs`).
        self.batch_resolve(batch).await
    }

    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Option<w::Person>, WitError>> {
        if let Err(e) = self.require(Capability::PersonsRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        match persons::get(&mut *self.read().await?, &tenant, &id).await {
            Ok(p) => Ok(Ok(Some(to_wit(p)))),
            Err(keel_core::Error::NotFound(_)) => Ok(Ok(None)),
            Err(e) => wit(Err(e)),
        }
    }

    async fn set_attributes(
        &mut self,
        id: String,
        patch: String,
    ) -> wasmtime::Result<Result<w::Person, WitError>> {
        if let Err(e) = self.require(Capability::PersonsWrite) {
            return Ok(Err(e));
        }
        let patch = match json_arg("patch", &patch) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return Ok(Err(WitError::InvalidInput(
                    "patch: must be a JSON object".into(),
                )));
            }
            Err(e) => return Ok(Err(e)),
        };
        let tenant = self.tenant().clone();
        Ok(
            wit(persons::set_attributes(self.conn().await?, &tenant, &id, &patch).await)?
                .map(to_wit),
        )
    }
}
