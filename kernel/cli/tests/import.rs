//! `keel import members` against a served kernel with the bundled plugins:
//! the real `keel` binary sends a CSV of members to the cdp plugin in
//! batches; good rows become persons with attributes and tags, bad rows
//! land in `<file>.rejected.csv` with the reason, and a rerun of the same
//! file creates nothing new.

use std::net::SocketAddr;

use keel_core::identity::api_keys;
use keel_core::{Db, DbOptions, tenants};
use keel_gateway::{Kernel, KernelConfig, RunningKernel};
use keel_host::Grants;
use serde_json::{Value, json};

mod support;
use support::{keel, run};

struct Served {
    addr: SocketAddr,
    key: String,
    dir: tempfile::TempDir,
    _kernel: RunningKernel,
    rt: tokio::runtime::Runtime,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = dir.path().to_owned();
    let (kernel, key) = rt.block_on(async move {
        let url = format!("sqlite://{}", root.join("keel.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .unwrap()
            .with_sealer(keel_core::sealing::Sealer::random());
        db.migrate().await.unwrap();
        let kernel = Kernel::assemble(db.clone(), KernelConfig::new(root.join("cache")))
            .await
            .unwrap();
        keel_plugins::install_all(kernel.registry()).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let tenant = tenants::create(&mut tx, "acme", "Acme").await.unwrap();
        let (_, key) = api_keys::create_owner_key(&mut tx, &tenant.id, "owner", "test")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let package = kernel.registry().package("cdp", None).await.unwrap();
        kernel
            .enable(
                &tenant.id,
                "cdp",
                None,
                Grants::all_requested(&package.manifest),
                json!({}),
            )
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (kernel.spawn(listener).unwrap(), key)
    });
    Served {
        addr: kernel.addr(),
        key,
        dir,
        _kernel: kernel,
        rt,
    }
}

impl Served {
    fn import(&self, file: &str, extra: &[&str]) -> (bool, String, String) {
        let mut cmd = keel(self.dir.path());
        cmd.args(["import", "members"])
            .args(extra)
            .arg(file)
            .env("KEEL_URL", format!("http://{}", self.addr))
            .env("KEEL_API_KEY", &self.key);
        run(&mut cmd)
    }

    fn gql(&self, query: &str, variables: Value) -> Value {
        let url = format!("http://{}/graphql", self.addr);
        self.rt.block_on(async {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(&self.key)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    fn person(&self, kind: &str, value: &str) -> Value {
        self.gql(
            "query($k: String!, $v: String!) { personByIdentifier(kind: $k, value: $v) { id attributes } }",
            json!({"k": kind, "v": value}),
        )["data"]["personByIdentifier"]
            .clone()
    }
}

#[test]
fn members_come_in_from_a_csv_with_bad_rows_set_aside_and_reruns_resume() {
    let s = serve();
    // 1,203 members over three batches, a BOM, a Chinese header mapped to
    // an identifier, quoted cells with commas; two bad rows.
    let mut csv = String::from("\u{feff}手机号,member_no,姓名,tags\n");
    for n in 0..1203 {
        match n {
            7 => csv.push_str(",,\"no identifier, at all\",vip\n"),
            600 => csv.push_str("+8613800000600,M600,\"王, 五\",\"a;b\"\n"),
            1000 => csv.push_str("0,M1000,placeholder phone,\n"),
            _ => csv.push_str(&format!("+86139{n:08},M{n},会员{n},vip\n")),
        }
    }
    std::fs::write(s.dir.path().join("members.csv"), &csv).unwrap();
    let (ok, _, err) = s.import("members.csv", &["--map", "手机号=phone"]);
    assert!(ok, "{err}");
    assert!(err.contains("1203 rows: 1201 taken"), "{err}");
    assert!(err.contains("2 rejected"), "{err}");
    let rejected = std::fs::read_to_string(s.dir.path().join("members.csv.rejected.csv")).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines.len(), 3, "{rejected}");
    assert!(lines[0].ends_with(",error"), "{rejected}");
    assert!(lines[1].contains("no identifier, at all"), "{rejected}");
    assert!(lines[2].starts_with("0,M1000"), "{rejected}");

    let p = s.person("phone", "+8613900000042");
    assert_eq!(p["attributes"]["姓名"], "会员42", "{p}");
    let p600 = s.person("member_no", "M600");
    assert_eq!(p600["attributes"]["姓名"], "王, 五");
    let r = s.gql("{ cdpTags { tag persons } }", json!({}));
    let tags = r["data"]["cdpTags"].as_array().unwrap().clone();
    assert!(
        tags.contains(&json!({"tag": "vip", "persons": 1200})),
        "{r}"
    );
    assert!(tags.contains(&json!({"tag": "a", "persons": 1})), "{r}");

    // A rerun of the same file takes nothing twice.
    let (ok, _, err) = s.import("members.csv", &["--map", "手机号=phone"]);
    assert!(ok, "{err}");
    let r = s.gql("{ cdpTags { tag persons } }", json!({}));
    assert!(
        r["data"]["cdpTags"]
            .as_array()
            .unwrap()
            .contains(&json!({"tag": "vip", "persons": 1200})),
        "{r}"
    );

    // Refused before anything is sent: no identifier column; a bad key.
    std::fs::write(s.dir.path().join("bad.csv"), "name,city\nA,B\n").unwrap();
    let (ok, _, err) = s.import("bad.csv", &[]);
    assert!(!ok && err.contains("no identifier column"), "{err}");
    let mut cmd = keel(s.dir.path());
    cmd.args(["import", "members", "members.csv", "--map", "手机号=phone"])
        .env("KEEL_URL", format!("http://{}", s.addr))
        .env("KEEL_API_KEY", "keel_wrong");
    let (ok, _, err) = run(&mut cmd);
    assert!(!ok && err.contains("refused"), "{err}");
}
