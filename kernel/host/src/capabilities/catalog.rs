//! `keel:plugin/catalog` (0.2): the tenant's product catalogue, read with
//! `catalog-read`, written with `catalog-write`. A plugin sees the whole
//! tenant's catalogue (the catalogue is not scoped by org node); its writes
//! append `product.*` events in the call's transaction and reach
//! subscribers like any event.

use keel_core::catalog::{self, ExternalId, ProductKey, SkuKey};

use super::wit;
use crate::bindings::WitError;
use crate::bindings::keel::plugin::catalog::{self as w, Host};
use crate::bindings::keel::plugin::types::ExternalId as WitExternalId;
use crate::manifest::Capability;
use crate::state::State;

fn external(e: WitExternalId) -> ExternalId {
    ExternalId {
        system: e.system,
        id: e.id,
    }
}

fn external_to_wit(e: ExternalId) -> WitExternalId {
    WitExternalId {
        system: e.system,
        id: e.id,
    }
}

fn sku_to_wit(s: catalog::Sku) -> w::Sku {
    w::Sku {
        id: s.id,
        product_id: s.product_id,
        code: s.code,
        gtin: s.gtin,
        name: s.name,
        status: s.status.as_str().to_owned(),
        attributes: serde_json::Value::Object(s.attributes).to_string(),
        external_ids: s.external_ids.into_iter().map(external_to_wit).collect(),
    }
}

fn product_to_wit(p: catalog::Product) -> w::Product {
    w::Product {
        id: p.id,
        code: p.code,
        name: p.name,
        category: p.category,
        unit: p.unit,
        status: p.status.as_str().to_owned(),
        attributes: serde_json::Value::Object(p.attributes).to_string(),
        external_ids: p.external_ids.into_iter().map(external_to_wit).collect(),
        skus: p.skus.into_iter().map(sku_to_wit).collect(),
        updated_at: p.updated_at.to_datetime().to_rfc3339(),
    }
}

impl Host for State {
    async fn get_product(
        &mut self,
        key: w::ProductKey,
    ) -> wasmtime::Result<Result<Option<w::Product>, WitError>> {
        if let Err(e) = self.require(Capability::CatalogRead) {
            return Ok(Err(e));
        }
        let key = match key {
            w::ProductKey::Id(id) => ProductKey::Id(id),
            w::ProductKey::Code(code) => ProductKey::Code(code),
            w::ProductKey::External(e) => ProductKey::External(external(e)),
        };
        let tenant = self.tenant().clone();
        Ok(
            wit(catalog::get_product(&mut *self.read().await?, &tenant, &key).await)?
                .map(|p| p.map(product_to_wit)),
        )
    }

    async fn find_sku(
        &mut self,
        key: w::SkuKey,
    ) -> wasmtime::Result<Result<Option<(w::Product, w::Sku)>, WitError>> {
        if let Err(e) = self.require(Capability::CatalogRead) {
            return Ok(Err(e));
        }
        let key = match key {
            w::SkuKey::Id(id) => SkuKey::Id(id),
            w::SkuKey::Code(code) => SkuKey::Code(code),
            w::SkuKey::Gtin(gtin) => SkuKey::Gtin(gtin),
            w::SkuKey::External(e) => SkuKey::External(external(e)),
        };
        let tenant = self.tenant().clone();
        Ok(
            wit(catalog::find_sku(&mut *self.read().await?, &tenant, &key).await)?
                .map(|found| found.map(|(p, s)| (product_to_wit(p), sku_to_wit(s)))),
        )
    }

    async fn list_products(
        &mut self,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<w::ProductPage, WitError>> {
        if let Err(e) = self.require(Capability::CatalogRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        Ok(wit(
            catalog::list_products(&mut *self.read().await?, &tenant, after.as_deref(), limit)
                .await,
        )?
        .map(|page| w::ProductPage {
            products: page.products.into_iter().map(product_to_wit).collect(),
            next: page.next,
        }))
    }

    async fn upsert_products(
        &mut self,
        products: String,
    ) -> wasmtime::Result<Result<u32, WitError>> {
        if let Err(e) = self.require_write_for_caller(Capability::CatalogWrite) {
            return Ok(Err(e));
        }
        // The catalogue is the tenant's: a caller limited to an org node
        // only reads it (`authz::SCOPED_KERNEL_ACCESS`).
        if self.chain.scope.is_some() {
            return Ok(Err(WitError::Denied(
                "the caller is limited to an org node; the product catalogue is the whole tenant's and is written only by credentials of the whole tenant".into(),
            )));
        }
        let tenant = self.tenant().clone();
        let actor = format!("plugin:{}", self.namespace());
        let savepoint = self.begin_batch().await?;
        let outcome = match wit(catalog::upsert_products_json(
            self.conn().await?,
            &tenant,
            &products,
            &actor,
        )
        .await)?
        {
            Ok(o) => o,
            Err(e) => {
                self.end_batch(&savepoint, false).await?;
                return Ok(Err(e));
            }
        };
        if let Err(e) = self.deliver_and_end(&savepoint, &outcome.events).await? {
            return Ok(Err(e));
        }
        Ok(Ok(outcome.changed()))
    }
}
