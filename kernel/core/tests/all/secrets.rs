//! Secrets sealed at rest: plugin secrets and the compiled-code cache's key
//! are unreadable in the database, open only in their own row and under
//! their master key, and survive a key rotation.

use keel_core::sealing::{self, Binding, MasterKey, Sealer};
use keel_core::{Backend, Db, DbOptions, TenantId, settings, tenants};
use keel_testkit::{TestDb, on_both_backends};

const MAC_KEY: &str = "plugin-cache-mac-key";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn reopen(t: &TestDb, sealer: Sealer) -> Db {
    Db::connect(t.url(), &DbOptions::default())
        .await
        .unwrap()
        .with_sealer(sealer)
}

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn secret_at<'a>(tenant: &'a TenantId, plugin: &'a str, name: &'a str) -> Binding<'a> {
    Binding::PluginSecret {
        tenant: tenant.as_str(),
        plugin,
        name,
    }
}

/// Writes a `plugin_secrets` row as is (sealed or, as an earlier version
/// did, in plain text).
async fn put_raw(db: &Db, tenant: &TenantId, plugin: &str, name: &str, value: &str) {
    sqlx::query(
        "INSERT INTO plugin_secrets (tenant_id, plugin, name, value) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.as_str())
    .bind(plugin)
    .bind(name)
    .bind(value)
    .execute(db.reader())
    .await
    .unwrap();
}

async fn raw_secret(db: &Db, tenant: &TenantId, plugin: &str, name: &str) -> String {
    sqlx::query_scalar(
        "SELECT value FROM plugin_secrets WHERE tenant_id = $1 AND plugin = $2 AND name = $3",
    )
    .bind(tenant.as_str())
    .bind(plugin)
    .bind(name)
    .fetch_one(db.reader())
    .await
    .unwrap()
}

async fn raw_setting(db: &Db, name: &str) -> String {
    sqlx::query_scalar("SELECT value FROM kernel_settings WHERE name = $1")
        .bind(name)
        .fetch_one(db.reader())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sealed_value_opens_only_in_its_row_and_under_its_key() {
    let db = TestDb::sqlite().await;
    let sealer = Sealer::random();
    let t = tenant(&db.db, "acme").await;
    let at = secret_at(&t, "rewards", "api-token");
    let sealed = sealer.seal(at, "pay-provider-token");
    assert!(sealing::is_sealed(&sealed), "{sealed}");
    assert!(!sealed.contains("pay-provider-token"));
    assert_eq!(
        sealing::key_id_of(&sealed),
        Some(sealer.current().id()),
        "the value names its key"
    );
    assert_eq!(sealer.open(at, &sealed).unwrap(), "pay-provider-token");
    assert_ne!(
        sealer.seal(at, "pay-provider-token"),
        sealed,
        "a fresh nonce each time"
    );

    let other = tenant(&db.db, "other").await;
    for moved in [
        secret_at(&other, "rewards", "api-token"),
        secret_at(&t, "codes", "api-token"),
        secret_at(&t, "rewards", "other-token"),
        Binding::Setting(MAC_KEY),
    ] {
        let err = sealer.open(moved, &sealed).unwrap_err();
        assert_eq!(err.code(), "INTERNAL");
        assert!(
            !format!("{err:?}").contains("pay-provider-token"),
            "{err:?}"
        );
    }
    assert!(
        Sealer::random().open(at, &sealed).is_err(),
        "another key does not open it"
    );
    // Relabelling the value with another known key id does not help.
    let other_key = MasterKey::generate();
    let two = Sealer::new(sealer.current().clone(), [other_key.clone()]);
    let relabelled = sealed.replace(sealer.current().id(), other_key.id());
    assert!(two.open(at, &relabelled).is_err());
    let mut tampered = sealed.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert!(
        sealer
            .open(at, &String::from_utf8(tampered).unwrap())
            .is_err()
    );
    assert!(
        sealer.open(at, "pay-provider-token").is_err(),
        "plain text is not a sealed value"
    );
}

#[test]
fn master_keys_are_read_from_base64_or_hex_and_never_echoed() {
    let key = MasterKey::generate();
    let b64 = key.encode();
    assert_eq!(MasterKey::parse(&b64).unwrap().id(), key.id());
    assert_eq!(
        MasterKey::parse(&format!("  {}\n", b64.trim_end_matches('=')))
            .unwrap()
            .id(),
        key.id()
    );
    let url_safe = b64.replace('+', "-").replace('/', "_");
    assert_eq!(MasterKey::parse(&url_safe).unwrap().id(), key.id());
    let bytes = base64_decode(&b64);
    assert_eq!(MasterKey::parse(&hex(&bytes)).unwrap().id(), key.id());
    assert!(
        !format!("{key:?}").contains(&b64[..10]),
        "Debug hides the key"
    );

    for bad in [
        "",
        "short",
        &b64[..20],
        &hex(&bytes)[..62],
        "not-a-key-at-all-but-long-enough-to-look-like-one!!",
    ] {
        let err = MasterKey::parse(bad).unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{bad:?}");
        if !bad.is_empty() {
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = alphabet.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[tokio::test]
async fn a_key_file_is_created_for_its_owner_only_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.master-key");
    let key = MasterKey::create_file(&path).unwrap();
    assert_eq!(MasterKey::from_file(&path).unwrap().id(), key.id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    assert!(
        MasterKey::create_file(&path).is_err(),
        "an existing key file is never overwritten"
    );
    let err = MasterKey::from_file(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

on_both_backends! {
    async fn the_cache_key_is_sealed_at_rest_and_the_same_for_every_process(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let key = settings::secret(&t.db, MAC_KEY).await.unwrap();
        assert_eq!(key.len(), 32);
        let raw = raw_setting(&t.db, MAC_KEY).await;
        assert!(sealing::is_sealed(&raw), "{raw}");
        assert!(!raw.contains(&hex(&key)), "the key is readable in the database: {raw}");
        assert_eq!(settings::secret(&t.db, MAC_KEY).await.unwrap(), key);
        let other = t.another_process().await;
        assert_eq!(settings::secret(&other, MAC_KEY).await.unwrap(), key);
        other.close().await;
    }

    async fn a_wrong_or_missing_key_is_refused_at_start(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        settings::secret(&t.db, MAC_KEY).await.unwrap();
        put_raw(&t.db, &tenant, "rewards", "token", &t.sealer().seal(secret_at(&tenant, "rewards", "token"), "v")).await;

        let plain = Db::connect(t.url(), &DbOptions::default()).await.unwrap();
        assert!(sealing::holds_sealed_values(&plain).await.unwrap());
        let err = sealing::unlock(&plain).await.unwrap_err();
        assert_eq!(err.code(), "INTERNAL", "a handle without a key cannot unlock");
        plain.close().await;

        let wrong = Sealer::random();
        let db = reopen(&t, wrong.clone()).await;
        let err = sealing::unlock(&db).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");
        let msg = err.to_string();
        assert!(msg.contains("master key does not match"), "{msg}");
        assert!(msg.contains(t.sealer().current().id()), "names the key id it needs: {msg}");
        assert!(msg.contains(wrong.current().id()), "names the key id given: {msg}");
        assert!(!msg.contains(&t.sealer().current().encode()) && !msg.contains(&wrong.current().encode()));
        db.close().await;

        // A key whose id matches but whose bytes differ (a forged id, a
        // collision) is caught by the check value.
        let check = raw_setting(&t.db, sealing::CHECK_SETTING).await;
        let forged = check.replace(t.sealer().current().id(), wrong.current().id());
        sqlx::query("UPDATE kernel_settings SET value = $1 WHERE name = $2")
            .bind(&forged)
            .bind(sealing::CHECK_SETTING)
            .execute(t.db.reader())
            .await
            .unwrap();
        sqlx::query("DELETE FROM kernel_settings WHERE name = $1")
            .bind(MAC_KEY)
            .execute(t.db.reader())
            .await
            .unwrap();
        sqlx::query("DELETE FROM plugin_secrets").execute(t.db.reader()).await.unwrap();
        let db = reopen(&t, wrong).await;
        let err = sealing::unlock(&db).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(err.to_string().contains("check value"), "{err}");
        db.close().await;
    }

    async fn an_empty_database_holds_no_sealed_value_until_unlocked(kind) {
        let t = TestDb::of(kind).await.unwrap();
        sqlx::query("DELETE FROM kernel_settings").execute(t.db.reader()).await.unwrap();
        assert!(!sealing::holds_sealed_values(&t.db).await.unwrap());
        let found = sealing::unlock(&t.db).await.unwrap();
        assert_eq!(found, sealing::Unlocked { sealed_plaintext: 0, under_previous_keys: 0 });
        assert!(sealing::holds_sealed_values(&t.db).await.unwrap(), "the check value is sealed");
        let again = reopen(&t, t.sealer().clone()).await;
        sealing::unlock(&again).await.unwrap();
        again.close().await;
    }

    async fn plain_text_from_an_earlier_version_is_sealed_at_start(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        // As the version before sealing wrote them.
        let mac_hex = hex(&[7u8; 32]);
        sqlx::query("INSERT INTO kernel_settings (name, value) VALUES ($1, $2)")
            .bind(MAC_KEY)
            .bind(&mac_hex)
            .execute(t.db.reader())
            .await
            .unwrap();
        put_raw(&t.db, &tenant, "rewards", "token", "legacy-plain-token").await;
        put_raw(&t.db, &tenant, "codes", "tag-key", "another-plain-value").await;

        let db = reopen(&t, t.sealer().clone()).await;
        let found = sealing::unlock(&db).await.unwrap();
        assert_eq!(found.sealed_plaintext, 3);
        assert_eq!(found.under_previous_keys, 0);

        let raw = raw_secret(&db, &tenant, "rewards", "token").await;
        assert!(sealing::is_sealed(&raw) && !raw.contains("legacy-plain-token"), "{raw}");
        assert_eq!(t.sealer().open(secret_at(&tenant, "rewards", "token"), &raw).unwrap(), "legacy-plain-token");
        let raw = raw_secret(&db, &tenant, "codes", "tag-key").await;
        assert!(sealing::is_sealed(&raw) && !raw.contains("another-plain-value"), "{raw}");
        let raw = raw_setting(&db, MAC_KEY).await;
        assert!(sealing::is_sealed(&raw) && !raw.contains(&mac_hex), "{raw}");
        assert_eq!(settings::secret(&db, MAC_KEY).await.unwrap(), vec![7u8; 32], "the same key, now sealed");

        // A second start finds nothing left to seal.
        assert_eq!(sealing::unlock(&db).await.unwrap().sealed_plaintext, 0);
        db.close().await;
    }

    async fn a_plain_cache_key_read_before_start_is_sealed_on_read(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let mac_hex = hex(&[9u8; 32]);
        sqlx::query("INSERT INTO kernel_settings (name, value) VALUES ($1, $2)")
            .bind(MAC_KEY)
            .bind(&mac_hex)
            .execute(t.db.reader())
            .await
            .unwrap();
        assert_eq!(settings::secret(&t.db, MAC_KEY).await.unwrap(), vec![9u8; 32]);
        let raw = raw_setting(&t.db, MAC_KEY).await;
        assert!(sealing::is_sealed(&raw) && !raw.contains(&mac_hex), "{raw}");
    }

    async fn a_value_moved_to_another_row_does_not_open(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let (acme, other) = (tenant(&t.db, "acme").await, tenant(&t.db, "other").await);
        let sealed = t.sealer().seal(secret_at(&acme, "rewards", "token"), "acme-token");
        put_raw(&t.db, &acme, "rewards", "token", &sealed).await;
        // Someone with write access to the database copies it elsewhere.
        put_raw(&t.db, &other, "rewards", "token", &sealed).await;
        put_raw(&t.db, &acme, "codes", "token", &sealed).await;
        put_raw(&t.db, &acme, "rewards", "other", &sealed).await;

        let s = t.sealer();
        let raw = raw_secret(&t.db, &acme, "rewards", "token").await;
        assert_eq!(s.open(secret_at(&acme, "rewards", "token"), &raw).unwrap(), "acme-token");
        for (tenant, plugin, name) in [(&other, "rewards", "token"), (&acme, "codes", "token"), (&acme, "rewards", "other")] {
            let raw = raw_secret(&t.db, tenant, plugin, name).await;
            assert!(s.open(secret_at(tenant, plugin, name), &raw).is_err(), "{plugin}/{name} opened");
        }
        // Nor does the cache key moved into a secret.
        let mac = settings::secret(&t.db, MAC_KEY).await.unwrap();
        let raw_mac = raw_setting(&t.db, MAC_KEY).await;
        put_raw(&t.db, &acme, "rewards", "mac", &raw_mac).await;
        assert!(s.open(secret_at(&acme, "rewards", "mac"), &raw_mac).is_err());
        assert_eq!(mac.len(), 32);
    }

    async fn rotation_keeps_values_readable_and_retires_the_old_key(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let old = t.sealer().clone();
        let tenant = tenant(&t.db, "acme").await;
        let at = secret_at(&tenant, "rewards", "token");
        put_raw(&t.db, &tenant, "rewards", "token", &old.seal(at, "kept-across-rotation")).await;
        let mac = settings::secret(&t.db, MAC_KEY).await.unwrap();

        let new_key = MasterKey::generate();
        let rotating = Sealer::new(new_key.clone(), [old.current().clone()]);
        let db = reopen(&t, rotating).await;
        let found = sealing::unlock(&db).await.unwrap();
        assert_eq!(found.under_previous_keys, 3, "the check value, the cache key and the secret");
        // Until rotation, both keys open (new values are sealed under the new one).
        assert_eq!(settings::secret(&db, MAC_KEY).await.unwrap(), mac);
        assert_eq!(sealing::rotate(&db).await.unwrap(), 3);
        assert_eq!(sealing::rotate(&db).await.unwrap(), 0, "nothing left under the old key");
        db.close().await;

        let only_new = Sealer::new(new_key.clone(), []);
        let db = reopen(&t, only_new.clone()).await;
        let found = sealing::unlock(&db).await.unwrap();
        assert_eq!(found.under_previous_keys, 0);
        let raw = raw_secret(&db, &tenant, "rewards", "token").await;
        assert_eq!(sealing::key_id_of(&raw), Some(new_key.id()));
        assert_eq!(only_new.open(at, &raw).unwrap(), "kept-across-rotation");
        assert_eq!(settings::secret(&db, MAC_KEY).await.unwrap(), mac);
        db.close().await;

        let db = reopen(&t, old.clone()).await;
        let err = sealing::unlock(&db).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "the old key alone no longer opens the database");
        db.close().await;
    }
}

#[tokio::test]
async fn a_handle_without_a_key_cannot_seal() {
    let t = TestDb::sqlite().await;
    let plain = Db::connect(t.url(), &DbOptions::default()).await.unwrap();
    assert_eq!(plain.backend(), Backend::Sqlite);
    let err = settings::secret(&plain, MAC_KEY).await.unwrap_err();
    assert_eq!(err.code(), "INTERNAL");
    assert!(format!("{err:?}").contains("no master key"), "{err:?}");
    plain.close().await;
}
