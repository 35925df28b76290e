//! Kernel-wide settings kept in the database, shared by every process.

use rand::RngCore as _;

use crate::sealing::{self, Binding};
use crate::{Db, Error, Result};

/// A random 256-bit secret named `name`, created on first use and stored
/// sealed under the master key ([`crate::sealing`]). Every kernel process on
/// the same database gets the same bytes.
pub async fn secret(db: &Db, name: &str) -> Result<Vec<u8>> {
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    secret_or(db, name, &fresh).await
}

/// The secret `name`, created as `value` if missing: for a database that
/// must share a secret with others made before it (the plugin harness's
/// throwaway databases share its compiled-plugin cache).
pub async fn secret_or(db: &Db, name: &str, value: &[u8]) -> Result<Vec<u8>> {
    let sealer = db.sealer()?;
    let at = Binding::Setting(name);
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO kernel_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(sealer.seal(at, &hex))
    .execute(&mut *tx)
    .await?;
    let stored: String = sqlx::query_scalar("SELECT value FROM kernel_settings WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    let hex = if sealing::is_sealed(&stored) {
        sealer.open(at, &stored)?
    } else {
        // Written in plain text by a version before sealing: seal it now.
        sqlx::query("UPDATE kernel_settings SET value = $1 WHERE name = $2")
            .bind(sealer.seal(at, &stored))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        stored
    };
    tx.commit().await?;
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("-"), 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| Error::Internal(anyhow::anyhow!("setting {name} is not hex")))
}
