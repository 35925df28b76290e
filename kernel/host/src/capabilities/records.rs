//! `keel:plugin/records`: the plugin's own collections only.

use keel_core::records::{self, Expect, Location};

use super::{json_arg, wit};
use crate::bindings::WitError;
use crate::bindings::keel::plugin::records::{self as w, Host};
use crate::manifest::Capability;
use crate::state::State;

const MAX_BATCH: usize = 1000;

impl State {
    /// The collection's declared indexed fields, or `denied` if the plugin
    /// did not declare the collection (or lacks the grant).
    fn collection(&self, name: &str) -> Result<Vec<String>, WitError> {
        self.require(Capability::Records)?;
        match self.activation.manifest.collection(name) {
            Some(c) => Ok(c.indexed.clone()),
            None => Err(WitError::Denied(format!(
                "the plugin {} declares no collection {name:?}",
                self.namespace()
            ))),
        }
    }
}

fn to_wit(r: records::Record) -> w::Record {
    w::Record {
        collection: r.collection,
        key: r.key,
        version: r.version.max(0) as u64,
        data: r.data.to_string(),
    }
}

fn page(records: Vec<records::Record>, more: bool) -> w::Page {
    let next = if more {
        records.last().map(|r| r.key.clone())
    } else {
        None
    };
    w::Page {
        records: records.into_iter().map(to_wit).collect(),
        next,
    }
}

impl Host for State {
    async fn get(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<w::Record>, WitError>> {
        if let Err(e) = self.collection(&collection) {
            return Ok(Err(e));
        }
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        let loc = Location {
            namespace: &ns,
            collection: &collection,
            key: &key,
        };
        Ok(wit(records::get(&mut *self.read().await?, &tenant, loc).await)?.map(|r| r.map(to_wit)))
    }

    async fn put(
        &mut self,
        collection: String,
        key: String,
        data: String,
        expect: w::Expect,
    ) -> wasmtime::Result<Result<w::Record, WitError>> {
        let indexed = match self.collection(&collection) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let data = match json_arg("data", &data) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let expect = match expect {
            w::Expect::Any => Expect::Any,
            w::Expect::Absent => Expect::Absent,
            w::Expect::Version(v) => Expect::Version(v.min(i64::MAX as u64) as i64),
        };
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        let loc = Location {
            namespace: &ns,
            collection: &collection,
            key: &key,
        };
        Ok(wit(
            records::put_indexed(self.conn().await?, &tenant, loc, &data, expect, &indexed).await,
        )?
        .map(to_wit))
    }

    async fn insert_batch(
        &mut self,
        collection: String,
        items: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<u32, WitError>> {
        let indexed = match self.collection(&collection) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        if items.len() > MAX_BATCH {
            return Ok(Err(WitError::InvalidInput(format!(
                "at most {MAX_BATCH} items per batch"
            ))));
        }
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        let mut parsed = Vec::with_capacity(items.len());
        for (key, data) in items {
            match json_arg("data", &data) {
                Ok(d) => parsed.push((key, d)),
                Err(e) => return Ok(Err(e)),
            }
        }
        if parsed.is_empty() {
            return Ok(Ok(0));
        }
        // Checked before the call takes the write transaction.
        let batch = match wit(records::check_many(&ns, &collection, parsed))? {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        // All or nothing: a taken key undoes the rows the call wrote before
        // it, so a plugin that handles the error (e.g. by going item by
        // item) starts from a clean slate.
        let savepoint = self.begin_batch().await?;
        let r = records::insert_many(self.conn().await?, &tenant, &batch, &indexed).await;
        self.end_batch(&savepoint, r.is_ok()).await?;
        wit(r)
    }

    async fn delete(
        &mut self,
        collection: String,
        key: String,
        expect_version: Option<u64>,
    ) -> wasmtime::Result<Result<bool, WitError>> {
        if let Err(e) = self.collection(&collection) {
            return Ok(Err(e));
        }
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        let loc = Location {
            namespace: &ns,
            collection: &collection,
            key: &key,
        };
        let v = expect_version.map(|v| v.min(i64::MAX as u64) as i64);
        wit(records::delete(self.conn().await?, &tenant, loc, v).await)
    }

    async fn query(
        &mut self,
        collection: String,
        field: String,
        value: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<w::Page, WitError>> {
        let indexed = match self.collection(&collection) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        if !indexed.contains(&field) {
            return Ok(Err(WitError::InvalidInput(format!(
                "field: {field:?} is not an indexed field of {collection} (declare it in the manifest)"
            ))));
        }
        let Some(text) = json_arg("value", &value)
            .ok()
            .as_ref()
            .and_then(records::index_text)
        else {
            return Ok(Err(WitError::InvalidInput(
                "value: must be a JSON string, number or boolean".into(),
            )));
        };
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        let r = records::query_indexed(
            &mut *self.read().await?,
            &tenant,
            &ns,
            &collection,
            &field,
            &text,
            after.as_deref(),
            limit as usize,
        )
        .await;
        Ok(wit(r)?.map(|(rs, more)| page(rs, more)))
    }

    async fn scan(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<w::Page, WitError>> {
        if let Err(e) = self.collection(&collection) {
            return Ok(Err(e));
        }
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        let r = records::list(
            &mut *self.read().await?,
            &tenant,
            &ns,
            &collection,
            after.as_deref(),
            limit as usize,
        )
        .await;
        Ok(wit(r)?.map(|(rs, more)| page(rs, more)))
    }
}
