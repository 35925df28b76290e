//! Plugin secrets: sealed at rest, read back by the plugin they belong to,
//! never opened from another row, refused for a plugin not installed.

use keel_core::sealing;
use keel_host::{Manifest, Registry};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, PROBE_MANIFEST, call, fixture};

async fn registry_with_probe(f: &Fixture) -> Registry {
    let registry = f.registry();
    registry
        .install(
            Manifest::from_toml(PROBE_MANIFEST).unwrap(),
            &fixture("probe"),
        )
        .await
        .unwrap();
    registry
}

async fn raw_values(f: &Fixture, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT value FROM {table}"))
        .fetch_all(f.db.db.reader())
        .await
        .unwrap()
}

on_both_backends! {
    async fn a_plugin_reads_its_secret_which_is_sealed_at_rest(kind) {
        let f = Fixture::new(kind).await;
        let registry = registry_with_probe(&f).await;
        registry.set_secret(&f.tenant, "probe", "token", "probe-plain-token").await.unwrap();
        let probe = f.probe().await;
        let secret = |name: &str| call(&f.host, &probe, "call", json!({"capability": "secret", "arg": name}));
        assert_eq!(secret("token").await.unwrap(), json!("probe-plain-token"));
        assert_eq!(secret("missing").await.unwrap(), json!(null));

        registry.set_secret(&f.tenant, "probe", "token", "replaced-token").await.unwrap();
        assert_eq!(secret("token").await.unwrap(), json!("replaced-token"));

        for raw in raw_values(&f, "plugin_secrets").await {
            assert!(sealing::is_sealed(&raw), "{raw}");
            assert!(!raw.contains("token"), "the secret is readable in the database: {raw}");
        }
        // The compiled-code cache's MAC key (made when the host started) too.
        let mac: String = sqlx::query_scalar("SELECT value FROM kernel_settings WHERE name = 'plugin-cache-mac-key'")
            .fetch_one(f.db.db.reader())
            .await
            .unwrap();
        assert!(sealing::is_sealed(&mac), "{mac}");
        let opened = f.db.sealer().open(sealing::Binding::Setting("plugin-cache-mac-key"), &mac).unwrap();
        assert_eq!(opened.len(), 64);
        assert!(!mac.contains(&opened));
    }

    async fn a_secret_moved_to_another_row_does_not_open_for_the_plugin(kind) {
        let f = Fixture::new(kind).await;
        let registry = registry_with_probe(&f).await;
        registry.set_secret(&f.tenant, "probe", "token", "probe-plain-token").await.unwrap();
        // Someone with write access to the database copies it under another
        // name of the same plugin, and to another tenant's probe.
        let other = Fixture::tenant_in(&f.db, "other").await;
        for (tenant, name) in [(&f.tenant, "copied"), (&other, "token")] {
            sqlx::query(
                "INSERT INTO plugin_secrets (tenant_id, plugin, name, value) \
                 SELECT $1, plugin, $2, value FROM plugin_secrets WHERE tenant_id = $3 AND name = 'token'",
            )
            .bind(tenant.as_str())
            .bind(name)
            .bind(f.tenant.as_str())
            .execute(f.db.db.reader())
            .await
            .unwrap();
        }
        let probe = f.probe().await;
        let err = call(&f.host, &probe, "call", json!({"capability": "secret", "arg": "copied"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "INTERNAL", "{err:?}");
        assert!(!format!("{err:?}").contains("probe-plain-token"), "{err:?}");
        let theirs = f.activation(&other, "probe", None).await;
        let err = call(&f.host, &theirs, "call", json!({"capability": "secret", "arg": "token"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "INTERNAL", "{err:?}");
        // The original still opens.
        let out = call(&f.host, &probe, "call", json!({"capability": "secret", "arg": "token"})).await;
        assert_eq!(out.unwrap(), json!("probe-plain-token"));
    }

    async fn a_secret_for_a_plugin_that_is_not_installed_is_refused(kind) {
        let f = Fixture::new(kind).await;
        let registry = registry_with_probe(&f).await;
        let err = registry
            .set_secret(&f.tenant, "ghost", "token", "ghost-plain-token")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("ghost") && msg.contains("installed"), "{msg}");
        assert!(!msg.contains("ghost-plain-token"), "{msg}");
        assert!(raw_values(&f, "plugin_secrets").await.is_empty(), "nothing was stored");
        // An installed plugin takes it, enabled or not.
        registry.set_secret(&f.tenant, "probe", "token", "v").await.unwrap();
        assert_eq!(raw_values(&f, "plugin_secrets").await.len(), 1);
    }
}
