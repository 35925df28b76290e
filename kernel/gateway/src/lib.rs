#![doc = include_str!("../README.md")]

mod admission;
mod client;
mod consumers;
mod direct_call;
mod errors;
mod files;
mod graphiql;
mod graphql;
mod http;
pub mod kernel;
mod limits;
mod metrics;
mod packages;
mod pages;
mod tenant_schema;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::get;
use keel_core::Db;
use keel_core::authz::Authorizer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use client::TrustedProxies;
pub use consumers::ConsumerAuthConfig;
pub use graphql::{QueryLimits, sdl};
pub use kernel::{Kernel, KernelConfig, RunningKernel};
pub use metrics::Metrics;

use graphql::{KernelSchema, Services};
use limits::LoginLimiter;

/// Tunables of the HTTP front.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub limits: QueryLimits,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest plugin package `POST /packages` accepts (manifest and
    /// component; a Python component is about 18 MB).
    pub max_package_bytes: usize,
    /// Longest a request may run before it is answered 408. Downloads
    /// (`GET /files/…`) are exempt: they have `download_timeout`.
    pub request_timeout: Duration,
    /// Longest a download (`GET /files/…`) may take, from the request to
    /// the last chunk; a download still running then is aborted.
    pub download_timeout: Duration,
    /// Login attempts allowed per client address per minute.
    pub logins_per_ip_per_minute: u32,
    /// Login attempts allowed per account from one address per minute.
    pub logins_per_account_address_per_minute: u32,
    /// Login attempts allowed per account per hour from addresses where it
    /// never logged in (an address where it did is not held back by this).
    pub logins_per_account_per_hour: u32,
    /// Calls of public plugin operations allowed per client address per
    /// minute, per tenant. Every operation a request runs counts (aliases
    /// included), as do public page views.
    pub public_calls_per_ip_per_minute: u32,
    /// Public operations one request may run.
    pub public_operations_per_request: u32,
    /// Fragment spreads one GraphQL document may hold.
    pub max_fragment_spreads: usize,
    /// Proxies (load balancers) whose `Forwarded` / `X-Forwarded-For`
    /// headers name the client; from anyone else those headers are ignored.
    pub trusted_proxies: TrustedProxies,
    /// Consumer sign-in (WeChat web authorization).
    pub consumer_auth: ConsumerAuthConfig,
    /// Origins of the brands' own web pages (e.g. `https://h5.brand.cn`)
    /// that may call tenants' public GraphQL from the browser (the CDP's
    /// tracker), without credentials; `*` for any. None by default.
    pub public_origins: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            limits: QueryLimits::default(),
            max_body_bytes: 1024 * 1024,
            max_package_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(15 * 60),
            logins_per_ip_per_minute: 30,
            logins_per_account_address_per_minute: 10,
            logins_per_account_per_hour: 100,
            public_calls_per_ip_per_minute: 600,
            public_operations_per_request: 10,
            max_fragment_spreads: 64,
            trusted_proxies: TrustedProxies::default(),
            consumer_auth: ConsumerAuthConfig::default(),
            public_origins: Vec::new(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    schema: KernelSchema,
    services: Services,
    metrics: Metrics,
    tenant_schemas: Arc<tenant_schema::TenantSchemas>,
    public_limiter: Arc<limits::PublicLimiter>,
    public_operations_per_request: u32,
    admission: admission::Admission,
    trusted_proxies: TrustedProxies,
    download_timeout: Duration,
    consumer_auth: consumers::ConsumerAuth,
}

/// The HTTP application of one kernel process.
#[derive(Clone)]
pub struct Gateway {
    state: AppState,
    config: GatewayConfig,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway over a migrated database and the plugin registry.
    pub async fn new(
        db: Db,
        plugins: keel_host::Registry,
        config: GatewayConfig,
    ) -> keel_core::Result<Gateway> {
        let authz = Arc::new(Authorizer::load(&db).await?);
        let services = Services {
            db,
            authz,
            login_limiter: Arc::new(LoginLimiter::new(limits::LoginQuotas {
                per_ip_per_minute: config.logins_per_ip_per_minute,
                per_account_ip_per_minute: config.logins_per_account_address_per_minute,
                per_account_per_hour: config.logins_per_account_per_hour,
            })),
            plugins,
        };
        let schema = graphql::build(config.limits, Some(services.clone()));
        let tenant_schemas = Arc::new(tenant_schema::TenantSchemas::new(
            schema.clone(),
            services.clone(),
            config.limits,
        ));
        Ok(Gateway {
            state: AppState {
                schema,
                services,
                metrics: Metrics::new(),
                tenant_schemas,
                public_limiter: Arc::new(limits::PublicLimiter::new(
                    config.public_calls_per_ip_per_minute,
                )),
                public_operations_per_request: config.public_operations_per_request.max(1),
                admission: admission::Admission {
                    max_fields: config.limits.max_complexity,
                    max_fragment_spreads: config.max_fragment_spreads,
                },
                trusted_proxies: config.trusted_proxies.clone(),
                download_timeout: config.download_timeout,
                consumer_auth: consumers::ConsumerAuth::new(&config.consumer_auth),
            },
            config,
        })
    }

    /// The routes, with request ids, tracing, metrics, body and time limits.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        Router::new()
            .route("/graphql", get(http::graphql_get).post(http::graphql_post))
            .route("/graphiql/{version}/{file}", get(graphiql::asset))
            .route(
                "/t/{tenant}/graphql",
                axum::routing::post(http::public_post)
                    .layer(http::public_cors(&self.config.public_origins)),
            )
            .route("/t/{tenant}/p/{plugin}", get(pages::page))
            .route("/t/{tenant}/p/{plugin}/", get(pages::page))
            .route("/t/{tenant}/p/{plugin}/{*path}", get(pages::page))
            .merge(consumers::routes())
            .route("/healthz", get(http::healthz))
            .route("/readyz", get(http::readyz))
            .route("/metrics", get(http::metrics))
            .layer(axum::middleware::from_fn_with_state(
                self.config.request_timeout,
                http::time_limit,
            ))
            // Added after the timeout layer, so exempt from it: a download
            // enforces its own `download_timeout` while it streams.
            .route("/files/{plugin}/{name}", get(files::download))
            // Exempt too: installing compiles the component, which takes
            // longer than a request for a large one; only a platform
            // administrator may.
            .route(
                "/packages",
                axum::routing::post(packages::upload)
                    .layer(DefaultBodyLimit::max(self.config.max_package_bytes)),
            )
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(
                state.metrics.clone(),
                metrics::track,
            ))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id = %request_id,
                        tenant = tracing::field::Empty,
                        principal = tracing::field::Empty,
                    )
                }),
            )
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
    }
}

impl Gateway {
    /// Runs a plugin operation for `tenant` with the output checks of the
    /// tenant's GraphQL schema: the answer must be JSON and, when the
    /// plugin's SDL declares the operation as a Query or Mutation field,
    /// a value of its type (`PLUGIN_INVALID_OUTPUT` otherwise), and the
    /// input coerced as the field's arguments (`BAD_USER_INPUT` for an
    /// unknown, missing or mistyped one). It skips authorization (the call
    /// runs for the caller in `ctx`): the path of `keel plugin harness`,
    /// which plugins' tests drive, checked as a served kernel checks.
    pub async fn call_operation(
        &self,
        tenant: &keel_core::TenantId,
        plugin: &str,
        operation: &str,
        input: serde_json::Value,
        ctx: keel_host::CallContext,
    ) -> keel_host::Result<serde_json::Value> {
        direct_call::call_operation(&self.state.services, tenant, plugin, operation, input, ctx)
            .await
    }

    /// Serves the gateway on `listener` until `shutdown` completes, then
    /// drains the requests in flight for at most the request timeout (and
    /// a few seconds more); what still runs then is dropped, so a stop is
    /// never held up by a request.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stopping = Arc::new(tokio::sync::Notify::new());
        let notify = stopping.clone();
        let server = serve(listener, self.router(), async move {
            shutdown.await;
            notify.notify_one();
        });
        let grace = self.config.request_timeout + Duration::from_secs(5);
        tokio::select! {
            r = server => r,
            () = async {
                stopping.notified().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(?grace, "requests still running after the grace period were dropped");
                Ok(())
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
