//! `TestApp`: a kernel on an ephemeral loopback port over a throwaway
//! database, with helpers to call it as each kind of client would.

use std::net::SocketAddr;

use keel_core::Backend;
use keel_core::identity::api_keys;
use keel_gateway::{GatewayConfig, Kernel, KernelConfig, RunningKernel};
use keel_testkit::TestDb;
use serde_json::{Value, json};

/// The platform administrator's secret every test app is started with.
pub const ADMIN_TOKEN: &str = "platform-admin-token-for-tests";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// Stopped (as `keel serve` stops) when the app drops.
    pub kernel: RunningKernel,
    pub db: TestDb,
    pub plugins: keel_host::Registry,
    _cache: tempfile::TempDir,
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
        let mut kernel_config = KernelConfig::new(cache.path());
        kernel_config.host.deadline = std::time::Duration::from_millis(500);
        kernel_config.gateway = config;
        // The tests deliver events and run schedules' ticks themselves
        // (`kernel.dispatcher()`, `kernel.scheduler()`).
        kernel_config.background_jobs = false;
        let kernel = Kernel::assemble(db.db.clone(), kernel_config)
            .await
            .unwrap();
        let plugins = kernel.registry().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kernel = kernel.spawn(listener).unwrap();
        kernel.warmed_up().await;
        TestApp {
            addr: kernel.addr(),
            http: reqwest::Client::new(),
            kernel,
            db,
            plugins,
            _cache: cache,
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
