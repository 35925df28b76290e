//! A kernel on a loopback port with the bundled plugins installed, over a
//! throwaway database; brands (tenants) with `codes` enabled; helpers to
//! call it as a brand, an ERP, a consumer or a browser would.

use std::net::SocketAddr;

use keel_core::Backend;
use keel_core::identity::api_keys;
use keel_gateway::{GatewayConfig, KernelConfig, RunningKernel};
use keel_host::outbox::DispatcherConfig;
use keel_testkit::TestDb;
use serde_json::{Value, json};
use std::time::Duration;

pub const ADMIN: &str = "platform-admin-token-for-plugin-tests";

pub struct Kernel {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// This process's database pools and plugin registry (for the benches).
    #[allow(dead_code, reason = "the benches call the host and keel-core directly")]
    pub db: keel_core::Db,
    #[allow(dead_code, reason = "the benches call the host and keel-core directly")]
    pub registry: keel_host::Registry,
    /// Stopped (as `keel serve` stops) when this drops.
    _running: RunningKernel,
    test_db: std::sync::Arc<TestDb>,
    _cache: tempfile::TempDir,
    /// The wall clock plugins read: the system's until a test sets it.
    #[allow(dead_code, reason = "the benches leave the clock alone")]
    pub clock: keel_host::clock::SetClock,
}

/// Everything `codes` asks for: it reads products from the kernel's
/// catalogue and regions from its org tree, and its deprecated
/// `createCodeProduct` and `defineRegion` write them.
pub const CODES_GRANTS: &[&str] = &[
    "records",
    "events",
    "counters",
    "persons-read",
    "catalog-read",
    "catalog-write",
    "org-read",
    "org-write",
];

/// Every capability `rewards` asks for.
pub const REWARDS_GRANTS: &[&str] = &[
    "records",
    "events",
    "counters",
    "persons-read",
    "http",
    "org-read",
];

/// A tenant and its owner's key.
pub struct Brand {
    pub slug: String,
    pub owner: String,
}

/// `keel serve`'s kernel, tuned for tests.
fn kernel_config(
    cache: &std::path::Path,
    gateway: GatewayConfig,
    clock: &keel_host::clock::SetClock,
) -> KernelConfig {
    let mut config = KernelConfig::new(cache);
    config.host.wall_clock = Some(clock.clone());
    // Tests run a debug kernel and race thousands of calls on two cores: a
    // plugin call waiting its turn for SQLite's writer must not count as a
    // runaway plugin. The host's own tests check the 2 s default.
    config.host.deadline = Duration::from_secs(20);
    config.gateway = gateway;
    // Outbox delivery as fast as a test wants it.
    config.dispatcher = DispatcherConfig {
        poll: Duration::from_millis(20),
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        ..DispatcherConfig::default()
    };
    config
}

impl Kernel {
    pub async fn start(kind: Backend) -> Kernel {
        Self::start_with(kind, GatewayConfig::default()).await
    }

    pub async fn start_with(kind: Backend, config: GatewayConfig) -> Kernel {
        let test_db = TestDb::of(kind).await.expect("a database for the test");
        api_keys::set_bootstrap_platform_key(&test_db.db, ADMIN)
            .await
            .unwrap();
        let db = test_db.db.clone();
        Self::serve(std::sync::Arc::new(test_db), db, config).await
    }

    /// Another kernel process on the same database (its own pools, host,
    /// caches and outbox dispatcher), as a second replica would be.
    pub async fn replica(&self, config: GatewayConfig) -> Kernel {
        let db = self.test_db.another_process().await;
        Self::serve(self.test_db.clone(), db, config).await
    }

    async fn serve(
        test_db: std::sync::Arc<TestDb>,
        db: keel_core::Db,
        config: GatewayConfig,
    ) -> Kernel {
        let cache = tempfile::tempdir().unwrap();
        let clock = keel_host::clock::SetClock::default();
        let kernel =
            keel_gateway::Kernel::assemble(db.clone(), kernel_config(cache.path(), config, &clock))
                .await
                .unwrap();
        keel_plugins::install_all(kernel.registry()).await.unwrap();
        let registry = kernel.registry().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = kernel.spawn(listener).unwrap();
        running.warmed_up().await;
        Kernel {
            addr: running.addr(),
            http: reqwest::Client::new(),
            db,
            registry,
            _running: running,
            test_db,
            _cache: cache,
            clock,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A GraphQL request with a credential; the response body.
    pub async fn gql(&self, key: &str, query: &str, variables: Value) -> Value {
        self.http
            .post(self.url("/graphql"))
            .bearer_auth(key)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A GraphQL request to a tenant's public endpoint, as an anonymous
    /// consumer.
    pub async fn public(&self, slug: &str, query: &str, variables: Value) -> Value {
        self.public_as(slug, None, query, variables).await
    }

    /// A GraphQL request to a tenant's public endpoint, as the consumer
    /// signed in with WeChat as `openid` (their session cookie, signed with
    /// the kernel's key as the sign-in would; the sign-in itself is tested
    /// in keel-gateway), or anonymously.
    pub async fn public_as(
        &self,
        slug: &str,
        openid: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut req = self
            .http
            .post(self.url(&format!("/t/{slug}/graphql")))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(openid) = openid {
            req = req.header("cookie", self.consumer_cookie(slug, openid).await);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// The session cookie of a consumer signed in with WeChat as `openid`.
    pub async fn consumer_cookie(&self, slug: &str, openid: &str) -> String {
        use keel_core::consumers::{Session, SigningKey, WECHAT_OPENID};
        let tenant = keel_core::tenants::get_by_slug(&self.db, slug)
            .await
            .unwrap()
            .id;
        let key = SigningKey::load(&self.db).await.unwrap();
        let session = Session::new(&tenant, WECHAT_OPENID, openid, "", keel_core::now(), 3600);
        format!("keel_consumer={}", key.sign_session(&session))
    }

    /// A new tenant with `codes` enabled (and `extra` config).
    pub async fn brand(&self, slug: &str, extra: Value) -> Brand {
        let r = self
            .gql(
                ADMIN,
                "mutation($i: CreateTenantInput!) { createTenant(input: $i) { adminKey } }",
                json!({"i": {"slug": slug, "name": format!("Brand {slug}")}}),
            )
            .await;
        let owner = ok(&r)["createTenant"]["adminKey"]
            .as_str()
            .unwrap()
            .to_owned();
        let brand = Brand {
            slug: slug.to_owned(),
            owner,
        };
        // Consumers sign in with WeChat: claims can be for a person.
        let r = self
            .gql(
                &brand.owner,
                "mutation($i: SetWechatAppInput!) { setWechatApp(input: $i) { appId } }",
                json!({"i": {"appId": keel_testkit::wechat::APP_ID, "appSecret": keel_testkit::wechat::SECRET}}),
            )
            .await;
        ok(&r);
        let mut config = json!({"scan_base_url": self.url(&format!("/t/{slug}/p/codes/"))});
        if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
            c.extend(e);
        }
        self.enable(&brand, "codes", CODES_GRANTS, config, &[])
            .await;
        brand
    }

    /// Enables `plugin` for `brand` with these grants and config.
    pub async fn enable(
        &self,
        brand: &Brand,
        plugin: &str,
        caps: &[&str],
        config: Value,
        hosts: &[String],
    ) {
        let r = self
            .gql(
                &brand.owner,
                "mutation($i: EnablePluginInput!) { enablePlugin(input: $i) { enabled } }",
                json!({"i": {"name": plugin, "capabilities": caps, "config": config, "httpHosts": hosts}}),
            )
            .await;
        assert_eq!(ok(&r)["enablePlugin"]["enabled"], true, "{r}");
    }

    /// Enables `rewards` with every grant it asks for.
    pub async fn enable_rewards(&self, brand: &Brand, config: Value, hosts: &[String]) {
        self.enable(brand, "rewards", REWARDS_GRANTS, config, hosts)
            .await;
    }

    /// An API key of `brand` with roles and scopes.
    pub async fn key(&self, brand: &Brand, roles: &[&str], scopes: &[&str]) -> String {
        let r = self
            .gql(
                &brand.owner,
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
                json!({"i": {"name": "test key", "roles": roles, "scopes": scopes}}),
            )
            .await;
        ok(&r)["createApiKey"]["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Appends an event straight to the brand's log, with the outbox rows
    /// of its async subscribers, as if `producer` had emitted it: a forged
    /// event as a subscriber would see it, whatever the gateway would
    /// refuse. The event's id.
    pub async fn inject_event(
        &self,
        brand: &Brand,
        event_type: &str,
        person: Option<&str>,
        payload: Value,
        producer: &str,
    ) -> String {
        let tenant = keel_core::tenants::get_by_slug(&self.db, &brand.slug)
            .await
            .unwrap()
            .id;
        let plugins = self.registry.enabled(&tenant).await.unwrap();
        let mut tx = self.db.begin().await.unwrap();
        let new = keel_core::events::NewEvent {
            event_type: event_type.to_owned(),
            person_id: person.map(str::to_owned),
            payload,
            idempotency_key: None,
            occurred_at: None,
        };
        let e = keel_core::events::append(&mut tx, &tenant, new, producer)
            .await
            .unwrap();
        let rows = keel_host::outbox::enqueue(&mut tx, &tenant, &plugins, &e)
            .await
            .unwrap();
        assert!(rows > 0, "{event_type} has an async subscriber");
        tx.commit().await.unwrap();
        e.id
    }

    /// Waits until every outbox row of the event is delivered (the
    /// subscriber returned `Ok`); panics after `secs` seconds.
    pub async fn wait_delivered(&self, event_id: &str, secs: u64) {
        let done = eventually(secs, || async {
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox WHERE event_id = $1 AND delivered_at IS NULL",
            )
            .bind(event_id)
            .fetch_one(self.db.reader())
            .await
            .unwrap();
            (pending == 0).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "event {event_id} was not delivered in {secs} s"
        );
    }

    /// GETs `/files/{plugin}/{name}` with `input`; status and body text.
    pub async fn download(&self, key: &str, path: &str, input: Value) -> (u16, String) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .query(&[("input", input.to_string())])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The `data` of a response without errors.
pub fn ok(r: &Value) -> &Value {
    assert!(r.get("errors").is_none(), "unexpected errors: {r:#}");
    &r["data"]
}

/// The `extensions.code` of the first error.
pub fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {r:#}"))
}

/// What the provider saw: idempotency key → (attempts, amount paid).
type Calls =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u32, Option<i64>)>>>;

/// Every request the provider received: (idempotency key, body).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A payment provider on loopback: a real HTTP server that fails the
/// first `fail_first` attempts of every payout (503), then pays it once
/// per idempotency key; `/always-fail` never pays.
pub struct Provider {
    pub addr: SocketAddr,
    pub calls: Calls,
    pub seen: Seen,
}

impl Provider {
    pub async fn start(fail_first: u32) -> Provider {
        use axum::Json;
        use axum::http::{HeaderMap, StatusCode};
        let calls: Calls = Default::default();
        let seen: Seen = Default::default();
        let pay = {
            let (calls, seen) = (calls.clone(), seen.clone());
            move |headers: HeaderMap, Json(body): Json<Value>| {
                let (calls, seen) = (calls.clone(), seen.clone());
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push((key.clone(), body.clone()));
                    let mut calls = calls.lock().unwrap();
                    let entry = calls.entry(key.clone()).or_insert((0, None));
                    entry.0 += 1;
                    if entry.1.is_none() && entry.0 <= fail_first {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({"error": "try again"})),
                        );
                    }
                    entry.1 = body["amountCents"].as_i64();
                    (
                        StatusCode::OK,
                        Json(json!({"reference": format!("PAY-{key}")})),
                    )
                }
            }
        };
        let app = axum::Router::new()
            .route("/pay", axum::routing::post(pay))
            .route(
                "/always-fail",
                axum::routing::post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { addr, calls, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The host the tenant must allow.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }
}

/// Polls `f` every 100 ms for up to `secs` seconds until it returns Some.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
