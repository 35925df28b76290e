//! The master key that seals secrets at rest, and `keel secrets`.
//!
//! The key is `KEEL_MASTER_KEY` (32 bytes in base64 or hex) or a key file
//! (`--master-key-file`, `KEEL_MASTER_KEY_FILE`, `master_key_file`). An
//! embedded SQLite database may go without: its key file is kept beside it
//! (`keel-data/keel.db` → `keel-data/keel.master-key`), created while the
//! database holds no sealed value yet. PostgreSQL always needs a key given.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use keel_core::Db;
use keel_core::sealing::{self, MasterKey, Sealer};

use crate::config::Config;

const KEY_VAR: &str = "KEEL_MASTER_KEY";
const PREVIOUS_KEY_VAR: &str = "KEEL_MASTER_KEY_PREVIOUS";

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every secret under the current master key, in one
    /// transaction. Give the old key as KEEL_MASTER_KEY_PREVIOUS or
    /// --previous-master-key-file; afterwards it is no longer needed.
    Rotate,
    /// Print a new random master key (base64) for KEEL_MASTER_KEY or a key file.
    NewKey,
}

pub async fn run(cfg: &Config, cmd: SecretsCommand) -> Result<()> {
    match cmd {
        SecretsCommand::NewKey => println!("{}", MasterKey::generate().encode()),
        SecretsCommand::Rotate => {
            let db = open(cfg).await?;
            // Each step re-seals in one transaction and skips what is sealed
            // under the current key already, so a rotation cut short is
            // finished by running it again.
            let n =
                sealing::rotate(&db).await? + keel_core::consumers::reseal_wechat_apps(&db).await?;
            let id = db.sealer()?.current().id().to_owned();
            db.close().await;
            println!(
                "re-sealed {n} values under master key {id}; the previous key is no longer needed"
            );
        }
    }
    Ok(())
}

fn from_env(var: &'static str) -> Result<Option<MasterKey>> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(MasterKey::parse(&v).context(var)?)),
        _ => Ok(None),
    }
}

/// The key given through the environment or a file, if any.
fn given(cfg: &Config) -> Result<Option<MasterKey>> {
    match (from_env(KEY_VAR)?, &cfg.master_key_file) {
        (Some(_), Some(_)) => bail!(
            "give the master key once: {KEY_VAR} or a key file (--master-key-file, \
             KEEL_MASTER_KEY_FILE), not both"
        ),
        (Some(key), None) => Ok(Some(key)),
        (None, Some(path)) => Ok(Some(MasterKey::from_file(path)?)),
        (None, None) => Ok(None),
    }
}

/// The key file beside an embedded SQLite database.
fn default_key_file(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite:")?
        .trim_start_matches("//");
    let path = rest.split('?').next().filter(|p| !p.is_empty())?;
    Some(PathBuf::from(path).with_extension("master-key"))
}

/// Opens and migrates the database with its master key, refusing a key that
/// does not match it, and seals any secret stored in plain text.
pub async fn open(cfg: &Config) -> Result<Db> {
    let given = given(cfg)?;
    let mut previous: Vec<MasterKey> = from_env(PREVIOUS_KEY_VAR)?.into_iter().collect();
    if let Some(path) = &cfg.previous_master_key_file {
        previous.push(MasterKey::from_file(path)?);
    }
    // The key given, or else the key file beside an SQLite database.
    let key_or_file = match (given, default_key_file(&cfg.database_url)) {
        (Some(key), _) => Ok(key),
        (None, Some(path)) => Err(path),
        (None, None) if !cfg.database_url.starts_with("postgres") => {
            // Not a database URL Keel knows: let opening it say so.
            crate::open_db(cfg).await?;
            bail!("no master key given (KEEL_MASTER_KEY or KEEL_MASTER_KEY_FILE)")
        }
        (None, None) => bail!(
            "no master key: a PostgreSQL database needs one to seal secrets. Set {KEY_VAR} to 32 \
             random bytes in base64 or hex (`keel secrets new-key` prints one), or name a key \
             file with --master-key-file or KEEL_MASTER_KEY_FILE"
        ),
    };
    let db = crate::open_db(cfg).await?;
    let key = match key_or_file {
        Ok(key) => key,
        Err(path) if path.exists() => MasterKey::from_file(&path)?,
        Err(path) => {
            if sealing::holds_sealed_values(&db).await? {
                bail!(
                    "no master key: this database holds sealed secrets, but no key was given \
                     and {} does not exist. Set {KEY_VAR} or KEEL_MASTER_KEY_FILE to the key \
                     it was sealed with",
                    path.display()
                );
            }
            let key = MasterKey::create_file(&path)?;
            tracing::warn!(
                file = %path.display(),
                key_id = key.id(),
                "created the master key file that seals this database's secrets (readable by \
                 its owner only); back it up apart from the database: without it they cannot \
                 be read"
            );
            key
        }
    };
    let db = db.with_sealer(Sealer::new(key, previous));
    let found = sealing::unlock(&db).await?;
    if found.sealed_plaintext > 0 {
        tracing::info!(
            count = found.sealed_plaintext,
            "sealed the secrets an earlier version stored in plain text"
        );
    }
    if found.under_previous_keys > 0 {
        tracing::warn!(
            count = found.under_previous_keys,
            "secrets are still sealed under a previous master key: run `keel secrets rotate`"
        );
    }
    Ok(db)
}
