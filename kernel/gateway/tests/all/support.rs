//! `TestApp`: a kernel on an ephemeral loopback port over a throwaway
//! database, with helpers to call it as each kind of client would.

use std::net::SocketAddr;

use keel_core::Backend;
use keel_core::identity::api_keys;
use keel_gateway::{Gateway, GatewayConfig};
use keel_testkit::TestDb;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The platform administrator's secret every test app is started with.
pub const ADMIN_TOKEN: &str = "platform-admin-token-for-tests";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub plugins: keel_host::Registry,
    _cache: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// A kernel on `kind`, with the bootstrap platform key set.
    pub async fn start(kind: Backend) -> TestApp {
        Self::start_with(kind, GatewayConfig::default()).await
    }

    pub async fn start_with(kind: Backend, config: GatewayConfig) -> TestApp {
        let db = TestDb::of(kind).await.expect("database for the test app");
        api_keys::set_bootstrap_platform_key(&db.db, ADMIN_TOKEN)
            .await
            .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut host_config = keel_host::HostConfig::new(cache.path());
        host_config.deadline = std::time::Duration::from_millis(500);
        let host = keel_host::Host::new(db.db.clone(), host_config)
            .await
            .unwrap();
        let plugins = keel_host::Registry::new(host, db.db.clone());
        let gateway = Gateway::new(db.db.clone(), plugins.clone(), config)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(keel_gateway::serve(
            listener,
            gateway.router(),
            async move {
                let _ = rx.await;
            },
        ));
        TestApp {
            addr,
            http: reqwest::Client::new(),
            db,
            plugins,
            _cache: cache,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a GraphQL request and returns the response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Creates a tenant as the platform administrator; returns its id and
    /// its owner key.
    pub async fn tenant(&self, slug: &str) -> (String, String) {
        let r = self
            .gql(
                Some(ADMIN_TOKEN),
                "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } adminKey } }",
                json!({ "i": { "slug": slug, "name": format!("Brand {slug}") } }),
            )
            .await;
        let p = ok(&r)["createTenant"].clone();
        (
            p["tenant"]["id"].as_str().unwrap().to_owned(),
            p["adminKey"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates an API key with `roles` and `scopes` using `owner_key`;
    /// returns its secret.
    pub async fn key(&self, owner_key: &str, roles: &[&str], scopes: &[&str]) -> String {
        let r = self
            .gql(
                Some(owner_key),
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
                json!({ "i": { "name": "test key", "roles": roles, "scopes": scopes } }),
            )
            .await;
        ok(&r)["createApiKey"]["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The id of the tenant `slug`, read from the database.
    pub async fn db_tenant(&self, slug: &str) -> keel_core::TenantId {
        keel_core::tenants::get_by_slug(&self.db.db, slug)
            .await
            .unwrap()
            .id
    }

    /// Creates a person with one identifier; returns its id.
    pub async fn person(&self, key: &str, kind: &str, value: &str) -> String {
        let r = self
            .gql(
                Some(key),
                "mutation($i: IdentifyInput!) { identify(input: $i) { person { id } } }",
                json!({ "i": { "identifiers": [{ "kind": kind, "value": value }] } }),
            )
            .await;
        ok(&r)["identify"]["person"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The `data` of a response that must have no errors.
pub fn ok(r: &Value) -> &Value {
    assert!(r.get("errors").is_none(), "unexpected errors: {r:#}");
    &r["data"]
}

/// The `extensions.code` of the response's first error.
pub fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {r:#}"))
}

/// The `extensions.field` of the response's first error.
pub fn field(r: &Value) -> &str {
    r["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error naming a field, got {r:#}"))
}
