//! Products that carry codes.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::Deserialize;

use crate::model::{Product, now, page_limit, rfc3339};

#[derive(Deserialize)]
pub(crate) struct CreateInput {
    sku: String,
    name: String,
    gtin: Option<String>,
}

fn check_sku(sku: &str) -> Result<()> {
    let ok = !sku.is_empty()
        && sku.len() <= 64
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "sku: 1-64 characters of letters, digits, '-', '_' and '.', got {sku:?}"
        )))
    }
}

pub(crate) fn create(_ctx: &Context, input: CreateInput) -> Result<Product> {
    check_sku(&input.sku)?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("name: 1-200 characters"));
    }
    if let Some(g) = &input.gtin
        && !keel_codes_core::gtin_valid(g)
    {
        return Err(Error::invalid(format!(
            "gtin: {g:?} is not a GTIN-8/12/13/14 with a valid check digit"
        )));
    }
    let product = Product {
        sku: input.sku.clone(),
        name: name.to_owned(),
        gtin: input.gtin,
        created_at: rfc3339(now()),
    };
    match records::put("products", &input.sku, &product, Expect::Absent) {
        Ok(r) => Ok(r.data),
        Err(Error::Conflict(_)) => Err(Error::Conflict(format!(
            "a product with sku {:?} exists",
            input.sku
        ))),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct GetInput {
    sku: String,
}

pub(crate) fn get(_ctx: &Context, input: GetInput) -> Result<Option<Product>> {
    Ok(records::get::<Product>("products", &input.sku)?.map(|r| r.data))
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    after: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn list(_ctx: &Context, input: ListInput) -> Result<Vec<Product>> {
    let limit = page_limit(input.limit, 100, 1000)?;
    let page = records::scan::<Product>("products", input.after.as_deref(), limit)?;
    Ok(page.records.into_iter().map(|r| r.data).collect())
}
