//! [`identify_batch`]: resolve-or-create for many people at once (ingest).

use sqlx::Connection as _;

use super::{Identified, Identify, check_attributes_size, identify, parse_all};
use crate::db::Conn;
use crate::{Error, Result, TenantId};

/// The most items one [`identify_batch`] takes.
pub const MAX_BATCH: usize = 1000;

/// [`identify`] for up to [`MAX_BATCH`] people, one result per item, in
/// order, all in `conn`'s transaction.
///
/// Every item is checked first (identifiers, attribute sizes), so a bad
/// one refuses the batch, naming it (`batch[3].identifiers[0]`), before
/// anything is read or written. The items then run in order inside a
/// savepoint: a later item sees what an earlier one created (two items
/// naming one phone number yield one person), and any refusal — a kind
/// over its limit, identifiers of several persons without `merge` —
/// leaves nothing behind. Each result is the person as its item left it.
pub async fn identify_batch(
    conn: &mut Conn,
    tenant: &TenantId,
    batch: Vec<Identify>,
    actor: &str,
) -> Result<Vec<Identified>> {
    if batch.len() > MAX_BATCH {
        return Err(Error::bad_input(
            "batch",
            format!("{} items; at most {MAX_BATCH} per call", batch.len()),
        ));
    }
    let at = |i: usize| move |e: Error| e.at(&format!("batch[{i}]"));
    for (i, item) in batch.iter().enumerate() {
        parse_all(&item.identifiers).map_err(at(i))?;
        if let Some(a) = &item.attributes {
            check_attributes_size(a).map_err(at(i))?;
        }
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for (i, item) in batch.into_iter().enumerate() {
        out.push(
            identify(&mut tx, tenant, item, actor)
                .await
                .map_err(at(i))?,
        );
    }
    tx.commit().await?;
    Ok(out)
}
