//! Kernel-wide settings kept in the database, shared by every process.

use rand::RngCore as _;

use crate::{Db, Error, Result};

/// A random 256-bit secret named `name`, created on first use. Every kernel
/// process on the same database gets the same bytes.
pub async fn secret(db: &Db, name: &str) -> Result<Vec<u8>> {
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO kernel_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(&hex)
    .execute(&mut *tx)
    .await?;
    let stored: String = sqlx::query_scalar("SELECT value FROM kernel_settings WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    (0..stored.len() / 2)
        .map(|i| u8::from_str_radix(&stored[2 * i..2 * i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|e| Error::Internal(anyhow::anyhow!("setting {name} is not hex: {e}")))
}
