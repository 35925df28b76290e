//! The master key from the shell: created beside a fresh SQLite database,
//! required once secrets are sealed, refused when wrong, rotated with
//! `keel secrets rotate`.

use std::path::Path;

use keel_core::sealing::{self, MasterKey, Sealer};
use keel_core::{Db, DbOptions, settings, tenants};

mod support;

use support::{keel, run};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// The database files' bytes (the WAL too), as someone who copied them sees them.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["keel.db", "keel.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A library handle on `dir`'s default database with `sealer`.
async fn open(dir: &Path, sealer: Sealer) -> Db {
    let url = format!("sqlite://{}", dir.join("keel-data/keel.db").display());
    Db::connect(&url, &DbOptions::default())
        .await
        .unwrap()
        .with_sealer(sealer)
}

#[test]
fn a_fresh_sqlite_database_gets_a_key_file_that_later_starts_need() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keel-data");
    let key_file = data.join("keel.master-key");
    // `plugin list` starts the plugin host, which makes the cache's key.
    let (ok, _, err) = run(keel(dir.path()).args(["plugin", "list"]));
    assert!(ok, "{err}");
    assert!(
        err.contains("created the master key file") && err.contains("keel.master-key"),
        "the log says so: {err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let key = MasterKey::from_file(&key_file).unwrap();
    let mac = block_on(async {
        let db = open(dir.path(), Sealer::new(key.clone(), [])).await;
        let mac = settings::secret(&db, "plugin-cache-mac-key").await.unwrap();
        db.close().await;
        mac
    });
    assert!(
        !contains(&database_bytes(&data), &hex(&mac)),
        "the cache's key is readable in the database file"
    );

    // Later starts use the file, quietly.
    let (ok, out, err) = run(keel(dir.path()).arg("migrate"));
    assert!(ok && out.contains("migrations applied"), "{err}");
    assert!(!err.contains("created"), "{err}");

    // Without it, the database (which holds sealed values) refuses to start.
    let moved = dir.path().join("kept-elsewhere.key");
    std::fs::rename(&key_file, &moved).unwrap();
    let (ok, _, err) = run(keel(dir.path()).arg("migrate"));
    assert!(!ok);
    assert!(
        err.contains("no master key") && err.contains("holds sealed secrets"),
        "{err}"
    );
    assert!(!key_file.exists(), "no new key replaces the lost one");

    // A wrong key is refused at start, by serve as by migrate.
    let wrong = MasterKey::generate().encode();
    let (ok, _, err) = run(keel(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KEEL_MASTER_KEY", &wrong));
    assert!(!ok);
    assert!(err.contains("master key does not match"), "{err}");
    assert!(
        !err.contains(&wrong) && !err.contains(&key.encode()),
        "{err}"
    );
    let (ok, _, err) = run(keel(dir.path())
        .arg("migrate")
        .env("KEEL_MASTER_KEY", "not-a-key-but-a-typo"));
    assert!(!ok);
    assert!(
        err.contains("KEEL_MASTER_KEY") && err.contains("32"),
        "{err}"
    );
    assert!(!err.contains("not-a-key-but-a-typo"), "{err}");

    // The right key opens it, given as the variable or as a file, not both.
    let (ok, _, err) = run(keel(dir.path())
        .arg("migrate")
        .env("KEEL_MASTER_KEY", key.encode()));
    assert!(ok, "{err}");
    let (ok, _, err) = run(keel(dir.path())
        .args(["migrate", "--master-key-file"])
        .arg(&moved));
    assert!(ok, "{err}");
    let (ok, _, err) = run(keel(dir.path())
        .args(["migrate", "--master-key-file"])
        .arg(&moved)
        .env("KEEL_MASTER_KEY", key.encode()));
    assert!(!ok && err.contains("not both"), "{err}");
}

#[test]
fn postgres_without_a_master_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before connecting: no server needs to listen there.
    let (ok, _, err) = run(keel(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgres://keel@127.0.0.1:1/keel",
    ]));
    assert!(!ok);
    assert!(
        err.contains("no master key") && err.contains("PostgreSQL"),
        "{err}"
    );
}

#[test]
fn rotation_re_seals_every_secret_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let new_key = |dir: &Path| {
        let (ok, out, err) = run(keel(dir).args(["secrets", "new-key"]));
        assert!(ok, "{err}");
        MasterKey::parse(&out).unwrap()
    };
    let old = new_key(dir.path());
    let old_file = dir.path().join("old.key");
    std::fs::write(&old_file, old.encode()).unwrap();
    let (ok, _, err) = run(keel(dir.path())
        .arg("migrate")
        .env("KEEL_MASTER_KEY_FILE", &old_file));
    assert!(ok, "{err}");
    assert!(
        !dir.path().join("keel-data/keel.master-key").exists(),
        "a key was given: no key file is made"
    );
    let tenant = block_on(async {
        let db = open(dir.path(), Sealer::new(old.clone(), [])).await;
        let mut tx = db.begin().await.unwrap();
        let t = tenants::create(&mut tx, "acme", "Acme").await.unwrap().id;
        sealing::store_plugin_secret(
            &mut tx,
            db.sealer().unwrap(),
            &t,
            "rewards",
            "provider-token",
            "rotated-plain-secret",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        settings::secret(&db, "plugin-cache-mac-key").await.unwrap();
        db.close().await;
        t
    });

    let new = new_key(dir.path());
    // Processes that know both keys start, and say what is left to do.
    let (ok, _, err) = run(keel(dir.path())
        .arg("migrate")
        .env("KEEL_MASTER_KEY", new.encode())
        .env("KEEL_MASTER_KEY_PREVIOUS", old.encode()));
    assert!(ok, "{err}");
    assert!(err.contains("keel secrets rotate"), "{err}");
    let (ok, out, err) = run(keel(dir.path())
        .args(["secrets", "rotate", "--previous-master-key-file"])
        .arg(&old_file)
        .env("KEEL_MASTER_KEY", new.encode()));
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 3 values") && out.contains(new.id()),
        "the check value, the cache key and the secret: {out}"
    );

    // The old key is no longer needed, and no longer enough.
    let (ok, _, err) = run(keel(dir.path())
        .arg("migrate")
        .env("KEEL_MASTER_KEY", new.encode()));
    assert!(ok, "{err}");
    assert!(!err.contains("rotate"), "{err}");
    let (ok, _, err) = run(keel(dir.path())
        .arg("migrate")
        .env("KEEL_MASTER_KEY_FILE", &old_file));
    assert!(!ok && err.contains("master key does not match"), "{err}");

    let secret = block_on(async {
        let db = open(dir.path(), Sealer::new(new.clone(), [])).await;
        let mut tx = db.begin().await.unwrap();
        let s = sealing::plugin_secret(
            &mut tx,
            db.sealer().unwrap(),
            &tenant,
            "rewards",
            "provider-token",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        db.close().await;
        s
    });
    assert_eq!(secret.as_deref(), Some("rotated-plain-secret"));
    assert!(!contains(
        &database_bytes(&dir.path().join("keel-data")),
        "rotated-plain-secret"
    ));
}

#[test]
fn help_documents_the_master_key_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(keel(dir.path()).args(["serve", "--help"]));
    assert!(ok);
    for needle in [
        "--master-key-file",
        "KEEL_MASTER_KEY_FILE",
        "KEEL_MASTER_KEY",
        "--previous-master-key-file",
        "KEEL_MASTER_KEY_PREVIOUS",
    ] {
        assert!(
            out.contains(needle),
            "`keel serve --help` lacks {needle}:\n{out}"
        );
    }
    let (ok, out, _) = run(keel(dir.path()).args(["secrets", "--help"]));
    assert!(
        ok && out.contains("rotate") && out.contains("new-key"),
        "{out}"
    );
}
