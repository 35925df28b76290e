//! Secrets sealed at rest: plugin secrets and secret kernel settings are
//! stored encrypted under the kernel's master key, never in plain text.
//!
//! A sealed value is `keel-sealed:v1:<key id>:<base64url(nonce ‖ ciphertext)>`,
//! XChaCha20-Poly1305 with a random 192-bit nonce. Its associated data is
//! the row it belongs to ([`Binding`]) and its key id, so a value copied to
//! another row, or relabelled with another key id, does not open. The key id
//! (a hash of the key, not the key) says which master key sealed it, so that
//! keys can rotate: a [`Sealer`] holds the current key and any previous ones,
//! seals under the current one and opens under any; [`rotate`] re-seals
//! every value under the current key.
//!
//! At start the kernel calls [`unlock`]: it refuses a master key that does
//! not match the database (a sealed check value in `kernel_settings`), and
//! seals any plain-text value an earlier version wrote.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use crate::{Conn, Db, Error, Result, TenantId};

/// What every sealed value starts with; anything else is plain text.
pub const PREFIX: &str = "keel-sealed:v1:";
/// The `kernel_settings` row whose sealed constant proves, at start, that
/// the master key given is the one the database was sealed with.
pub const CHECK_SETTING: &str = "master-key-check";
const CHECK_PLAINTEXT: &str = "keel master key check";
const NONCE_LEN: usize = 24;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The row a sealed value belongs to: its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding<'a> {
    /// A `plugin_secrets` row.
    PluginSecret {
        tenant: &'a str,
        plugin: &'a str,
        name: &'a str,
    },
    /// A `kernel_settings` row.
    Setting(&'a str),
}

impl Binding<'_> {
    fn aad(&self, key_id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let mut part = |p: &str| {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p.as_bytes());
        };
        part(PREFIX);
        part(key_id);
        match self {
            Binding::PluginSecret {
                tenant,
                plugin,
                name,
            } => {
                part("plugin_secrets");
                part(tenant);
                part(plugin);
                part(name);
            }
            Binding::Setting(name) => {
                part("kernel_settings");
                part(name);
            }
        }
        out
    }

    fn describe(&self) -> String {
        match self {
            Binding::PluginSecret { plugin, name, .. } => {
                format!("the secret {name:?} of plugin {plugin}")
            }
            Binding::Setting(name) => format!("the kernel setting {name:?}"),
        }
    }
}

/// A 256-bit master key. Its `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    /// The key made of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"keel master key id\0");
        h.update(bytes);
        let id = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        MasterKey { bytes, id }
    }

    /// A fresh random key.
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Reads 32 bytes written in base64 (standard or URL-safe, padded or
    /// not) or hex; surrounding white space is ignored. The error never
    /// repeats the text.
    pub fn parse(text: &str) -> Result<MasterKey> {
        let text = text.trim();
        let bad = || {
            Error::bad_input(
                "master_key",
                "expected 32 random bytes in base64 (44 characters) or hex (64 characters)",
            )
        };
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map_err(|_| bad())?
        } else {
            let unpadded = text.trim_end_matches('=');
            let url_safe = unpadded.replace('+', "-").replace('/', "_");
            B64.decode(url_safe).map_err(|_| bad())?
        };
        Ok(Self::from_bytes(bytes.try_into().map_err(|_| bad())?))
    }

    /// Reads a key file (the key in base64 or hex). The error names the
    /// file, never its content.
    pub fn from_file(path: &Path) -> Result<MasterKey> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::bad_input(
                "master_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text)
            .map_err(|e| Error::bad_input("master_key_file", format!("{}: {e}", path.display())))
    }

    /// Creates `path` (which must not exist) holding a fresh key, readable
    /// by its owner only, and returns the key.
    pub fn create_file(path: &Path) -> Result<MasterKey> {
        use std::io::Write as _;
        let key = Self::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(path)
            .and_then(|mut f| {
                f.write_all(format!("{}\n", key.encode()).as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "creating the master key file {}: {e}",
                    path.display()
                ))
            })?;
        Ok(key)
    }

    /// The key in standard base64, as `KEEL_MASTER_KEY` or a key file takes it.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    /// The key's id: a hash of the key, safe to log and stored in each
    /// sealed value.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.bytes))
    }
}

/// Seals under the current master key and opens under it or a previous one.
/// Cheap to clone; its `Debug` shows only key ids.
#[derive(Debug, Clone)]
pub struct Sealer {
    keys: Arc<Keys>,
}

#[derive(Debug)]
struct Keys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

/// True when `value` is a sealed value (and not plain text).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The id of the key that sealed `value`, if it is sealed.
pub fn key_id_of(value: &str) -> Option<&str> {
    value
        .strip_prefix(PREFIX)?
        .split_once(':')
        .map(|(id, _)| id)
}

impl Sealer {
    /// Seals under `current`; also opens values sealed under `previous`.
    pub fn new(current: MasterKey, previous: impl IntoIterator<Item = MasterKey>) -> Sealer {
        let previous = previous
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Sealer {
            keys: Arc::new(Keys { current, previous }),
        }
    }

    /// A sealer with a fresh random key (tests, throwaway databases).
    pub fn random() -> Sealer {
        Self::new(MasterKey::generate(), [])
    }

    /// The key new values are sealed under.
    pub fn current(&self) -> &MasterKey {
        &self.keys.current
    }

    fn key(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.keys.current)
            .chain(&self.keys.previous)
            .find(|k| k.id == id)
    }

    /// Seals `plaintext` for the row `at`.
    pub fn seal(&self, at: Binding<'_>, plaintext: &str) -> String {
        let key = &self.keys.current;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = at.aad(&key.id);
        let sealed = key
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, B64.encode(body))
    }

    /// Opens a value sealed for the row `at`. Fails when the value is plain
    /// text, was sealed under a key this sealer lacks, was altered, or
    /// belongs to another row. The error never contains the value.
    pub fn open(&self, at: Binding<'_>, sealed: &str) -> Result<String> {
        let what = at.describe();
        let fail = |why: &str| Error::Internal(anyhow::anyhow!("{what} does not open: {why}"));
        let rest = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| fail("it is not sealed"))?;
        let (id, body) = rest
            .split_once(':')
            .ok_or_else(|| fail("it is malformed"))?;
        let key = self.key(id).ok_or_else(|| {
            fail(&format!(
                "it is sealed under master key {id}, which was not given"
            ))
        })?;
        let body = B64.decode(body).map_err(|_| fail("it is malformed"))?;
        if body.len() < NONCE_LEN {
            return Err(fail("it is malformed"));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let plain = key
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &at.aad(id),
                },
            )
            .map_err(|_| fail("it was altered or belongs to another row"))?;
        String::from_utf8(plain).map_err(|_| fail("it is not text"))
    }
}

/// Stores (or replaces) the secret `name` of `plugin` for `tenant`, sealed.
pub async fn store_plugin_secret(
    conn: &mut Conn,
    sealer: &Sealer,
    tenant: &TenantId,
    plugin: &str,
    name: &str,
    value: &str,
) -> Result<()> {
    let at = Binding::PluginSecret {
        tenant: tenant.as_str(),
        plugin,
        name,
    };
    sqlx::query(
        "INSERT INTO plugin_secrets (tenant_id, plugin, name, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, plugin, name) DO UPDATE SET value = excluded.value",
    )
    .bind(tenant.as_str())
    .bind(plugin)
    .bind(name)
    .bind(sealer.seal(at, value))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The secret `name` of `plugin` for `tenant`, opened; `None` if unset. A
/// value that does not open in this row is an [`Error::Internal`].
pub async fn plugin_secret(
    conn: &mut Conn,
    sealer: &Sealer,
    tenant: &TenantId,
    plugin: &str,
    name: &str,
) -> Result<Option<String>> {
    let sealed: Option<String> = sqlx::query_scalar(
        "SELECT value FROM plugin_secrets WHERE tenant_id = $1 AND plugin = $2 AND name = $3",
    )
    .bind(tenant.as_str())
    .bind(plugin)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    let at = Binding::PluginSecret {
        tenant: tenant.as_str(),
        plugin,
        name,
    };
    sealed.map(|v| sealer.open(at, &v)).transpose()
}

/// Settings that versions before sealing stored in plain text.
const LEGACY_SECRET_SETTINGS: &[&str] = &["plugin-cache-mac-key"];

/// Every stored value that is or should be sealed, with its row.
struct Stored {
    /// `(tenant, plugin, name, value)` of `plugin_secrets`.
    plugin_secrets: Vec<(String, String, String, String)>,
    /// `(name, value)` of `kernel_settings`.
    settings: Vec<(String, String)>,
}

impl Stored {
    async fn load(conn: &mut Conn) -> Result<Stored> {
        let rows = sqlx::query("SELECT tenant_id, plugin, name, value FROM plugin_secrets")
            .fetch_all(&mut *conn)
            .await?;
        let plugin_secrets = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let rows = sqlx::query("SELECT name, value FROM kernel_settings")
            .fetch_all(&mut *conn)
            .await?;
        let settings = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        Ok(Stored {
            plugin_secrets,
            settings,
        })
    }

    /// Every sealed value with its row.
    fn sealed(&self) -> impl Iterator<Item = (Binding<'_>, &str)> {
        let secrets = self.plugin_secrets.iter().map(|(t, p, n, v)| {
            (
                Binding::PluginSecret {
                    tenant: t,
                    plugin: p,
                    name: n,
                },
                v.as_str(),
            )
        });
        let settings = self
            .settings
            .iter()
            .map(|(n, v)| (Binding::Setting(n), v.as_str()));
        secrets.chain(settings).filter(|(_, v)| is_sealed(v))
    }
}

/// Replaces the value of the row `at`, only if it still is `old`.
async fn replace(conn: &mut Conn, at: Binding<'_>, old: &str, new: &str) -> Result<u64> {
    let done = match at {
        Binding::PluginSecret {
            tenant,
            plugin,
            name,
        } => {
            sqlx::query(
                "UPDATE plugin_secrets SET value = $1 \
                 WHERE tenant_id = $2 AND plugin = $3 AND name = $4 AND value = $5",
            )
            .bind(new)
            .bind(tenant)
            .bind(plugin)
            .bind(name)
            .bind(old)
            .execute(&mut *conn)
            .await?
        }
        Binding::Setting(name) => {
            sqlx::query("UPDATE kernel_settings SET value = $1 WHERE name = $2 AND value = $3")
                .bind(new)
                .bind(name)
                .bind(old)
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(done.rows_affected())
}

/// True when the database holds any sealed value: it was sealed under some
/// master key, and opening it needs that key.
pub async fn holds_sealed_values(db: &Db) -> Result<bool> {
    let pattern = format!("{PREFIX}%");
    let mut n: i64 = 0;
    for table in ["kernel_settings", "plugin_secrets"] {
        let c: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE value LIKE $1"))
                .bind(&pattern)
                .fetch_one(db.reader())
                .await?;
        n += c;
    }
    Ok(n > 0)
}

/// What [`unlock`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlocked {
    /// Plain-text values (written by an earlier version) sealed now.
    pub sealed_plaintext: u64,
    /// Values still sealed under a previous key: run [`rotate`].
    pub under_previous_keys: u64,
}

/// Checks at start that the database's master key ([`Db::with_sealer`]) is
/// the one its values were sealed with, and seals any plain-text value.
///
/// A wrong key, or values sealed under a key that was not given, is a
/// [`Error::BadInput`] on `master_key` that says which key ids are involved.
pub async fn unlock(db: &Db) -> Result<Unlocked> {
    let sealer = db.sealer()?;
    let mut tx = db.begin().await?;
    let stored = Stored::load(&mut tx).await?;

    let unknown: BTreeSet<&str> = stored
        .sealed()
        .filter_map(|(_, v)| key_id_of(v))
        .filter(|id| sealer.key(id).is_none())
        .collect();
    if !unknown.is_empty() {
        let ids = unknown.into_iter().collect::<Vec<_>>().join(", ");
        return Err(Error::bad_input(
            "master_key",
            format!(
                "the master key does not match this database: its secrets are sealed under \
                 master key {ids}, but the key given is {} and no previous key given has that id; \
                 start with the key the database was sealed with (KEEL_MASTER_KEY or \
                 KEEL_MASTER_KEY_FILE)",
                sealer.current().id()
            ),
        ));
    }

    let check = stored
        .settings
        .iter()
        .find(|(n, _)| n == CHECK_SETTING)
        .map(|(_, v)| v.as_str());
    match check {
        Some(v) => {
            let opened = sealer.open(Binding::Setting(CHECK_SETTING), v);
            if !matches!(opened.as_deref(), Ok(CHECK_PLAINTEXT)) {
                return Err(Error::bad_input(
                    "master_key",
                    format!(
                        "the master key does not match this database: its check value \
                         (sealed under key id {}) does not open under the key given",
                        key_id_of(v).unwrap_or("?")
                    ),
                ));
            }
        }
        None => {
            sqlx::query(
                "INSERT INTO kernel_settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(CHECK_SETTING)
            .bind(sealer.seal(Binding::Setting(CHECK_SETTING), CHECK_PLAINTEXT))
            .execute(&mut *tx)
            .await?;
        }
    }

    let mut sealed_plaintext = 0;
    for (t, p, n, v) in &stored.plugin_secrets {
        if !is_sealed(v) {
            let at = Binding::PluginSecret {
                tenant: t,
                plugin: p,
                name: n,
            };
            sealed_plaintext += replace(&mut tx, at, v, &sealer.seal(at, v)).await?;
        }
    }
    for (n, v) in &stored.settings {
        if !is_sealed(v) && LEGACY_SECRET_SETTINGS.contains(&n.as_str()) {
            let at = Binding::Setting(n);
            sealed_plaintext += replace(&mut tx, at, v, &sealer.seal(at, v)).await?;
        }
    }
    tx.commit().await?;

    let under_previous_keys = stored
        .sealed()
        .filter(|(_, v)| key_id_of(v) != Some(sealer.current().id()))
        .count() as u64;
    Ok(Unlocked {
        sealed_plaintext,
        under_previous_keys,
    })
}

/// Re-seals every value sealed under a previous key under the current one,
/// in one transaction, and returns how many it re-sealed. Afterwards the
/// previous keys are no longer needed. Call [`unlock`] first (plain text is
/// sealed there).
pub async fn rotate(db: &Db) -> Result<u64> {
    let sealer = db.sealer()?;
    let mut tx = db.begin().await?;
    let stored = Stored::load(&mut tx).await?;
    let mut n = 0;
    for (at, old) in stored.sealed() {
        if key_id_of(old) == Some(sealer.current().id()) {
            continue;
        }
        let plain = sealer.open(at, old).map_err(|_| {
            Error::bad_input(
                "master_key",
                format!(
                    "{} does not open under the keys given; nothing was re-sealed",
                    at.describe()
                ),
            )
        })?;
        n += replace(&mut tx, at, old, &sealer.seal(at, &plain)).await?;
    }
    tx.commit().await?;
    Ok(n)
}
