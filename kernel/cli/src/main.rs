#![doc = include_str!("../README.md")]

mod config;
mod demo;
mod dev;
mod download;
mod harness;
mod import;
mod master_key;
mod project;
mod python;
mod scaffold;

use std::io::Read as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use config::{Config, LogFormat, Overrides};
use keel_core::identity::api_keys::{self, NewApiKey};
use keel_core::identity::operators::{self, NewOperator};
use keel_core::{Db, DbOptions, tenants};
use keel_gateway::{Kernel, KernelConfig};

/// Keel: the open marketing-digitalization platform for consumer brands.
///
/// Settings come from flags, then KEEL_* environment variables, then the
/// TOML file named by --config (keys: listen, database_url, log, log_format,
/// max_query_depth, max_query_complexity, max_body_bytes, max_package_bytes,
/// request_timeout_secs, download_timeout_secs, database_max_connections,
/// master_key_file, previous_master_key_file, max_fragment_spreads,
/// logins_per_ip_per_minute, logins_per_account_address_per_minute,
/// logins_per_account_per_hour, public_calls_per_ip_per_minute,
/// public_operations_per_request, trusted_proxies, public_origins, public_base_url,
/// consumer_session_ttl_secs, secure_cookies, wechat_authorize_base,
/// wechat_api_base; unknown keys are an error),
/// then defaults.
///
/// Secrets are sealed at rest under a master key: KEEL_MASTER_KEY (32 bytes,
/// base64 or hex) or a key file; for SQLite, without one, a key file beside
/// the database (created while it holds no secret). KEEL_MASTER_KEY_PREVIOUS
/// (or a file) opens values sealed under the previous key while rotating.
#[derive(Debug, Parser)]
#[command(name = "keel", version)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, env = "KEEL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// sqlite://path/to/file.db (created if missing) or postgres://… [default: sqlite://keel-data/keel.db]
    #[arg(long, env = "KEEL_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Log filter, e.g. `info` or `keel_gateway=debug,info` [default: info]
    #[arg(long, env = "KEEL_LOG", global = true)]
    log: Option<String>,
    /// Log line format [default: pretty]
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum, global = true)]
    log_format: Option<LogFormat>,
    /// A file holding the master key that seals secrets (or give the key as KEEL_MASTER_KEY) [default for SQLite: keel.master-key beside the database]
    #[arg(long, env = "KEEL_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    /// While rotating, a file holding the previous master key (or KEEL_MASTER_KEY_PREVIOUS)
    #[arg(long, env = "KEEL_MASTER_KEY_PREVIOUS_FILE", global = true)]
    previous_master_key_file: Option<PathBuf>,
    /// Load balancers whose Forwarded / X-Forwarded-For headers name the client: addresses or networks, comma-separated (e.g. 10.0.0.0/8) [default: none]
    #[arg(long, env = "KEEL_TRUSTED_PROXIES", global = true)]
    trusted_proxies: Option<String>,
    /// Origins of the brands' own web pages that may call tenants' public GraphQL from the browser (the CDP's tracker), comma-separated, e.g. https://h5.brand.cn; * for any [default: none]
    #[arg(long, env = "KEEL_PUBLIC_ORIGINS", global = true)]
    public_origins: Option<String>,
    /// The kernel's public base URL as consumers reach it (e.g. https://keel.brand.cn), for WeChat's callback [default: from the Host header]
    #[arg(long, env = "KEEL_PUBLIC_BASE_URL", global = true)]
    public_base_url: Option<String>,
    /// How long a consumer's sign-in session lasts, in seconds [default: 7200]
    #[arg(long, env = "KEEL_CONSUMER_SESSION_TTL_SECS", global = true)]
    consumer_session_ttl_secs: Option<u64>,
    /// Mark consumer cookies Secure (HTTPS only); false only for local HTTP development [default: true]
    #[arg(long, env = "KEEL_SECURE_COOKIES", global = true)]
    secure_cookies: Option<bool>,
    /// WeChat's authorize page origin [default: https://open.weixin.qq.com]
    #[arg(long, env = "KEEL_WECHAT_AUTHORIZE_BASE", global = true)]
    wechat_authorize_base: Option<String>,
    /// WeChat's API origin [default: https://api.weixin.qq.com]
    #[arg(long, env = "KEEL_WECHAT_API_BASE", global = true)]
    wechat_api_base: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// A CSV of members into the cdp plugin (identifiers, attributes, tags),
    /// in resumable batches, with bad rows written beside the file.
    Members(import::ImportArgs),
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations and serve HTTP (GraphQL, health, metrics).
    Serve(ServeArgs),
    /// Apply pending database migrations (and seal any secret an earlier
    /// version stored in plain text) and exit.
    Migrate,
    /// Manage tenants (brands).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Manage operators (people who log in).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Print the kernel's GraphQL schema (SDL).
    Schema,
    /// Install and inspect plugin packages.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Download a plugin's file from a running kernel.
    Download(download::DownloadArgs),
    /// Import data into a running kernel's plugins.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Manage the master key that seals secrets at rest.
    #[command(subcommand)]
    Secrets(master_key::SecretsCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Install a plugin package from a folder holding keel-plugin.toml and
    /// its component.
    Install {
        /// The package folder.
        dir: PathBuf,
    },
    /// List installed plugin packages.
    List,
    /// Create a new plugin project that builds and passes its tests, with
    /// its own copy of the SDK (in keel/).
    New {
        /// The plugin's name (a-z, 0-9, '-').
        name: String,
        /// Where to create it [default: the current folder].
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Use the `sdk/` folder of a Keel checkout instead of a copy.
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// The plugin's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: project::Lang,
    },
    /// Replace a plugin project's copy of the SDK (keel/) with this
    /// binary's, after upgrading keel.
    Sdk {
        /// The plugin project [default: the current folder].
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin project into an installable package
    /// (target/keel-package: keel-plugin.toml + plugin.wasm).
    Build {
        /// The plugin project [default: the current folder].
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin project's tests against this binary's harness.
    Test {
        /// The plugin project [default: the current folder].
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Passed on to `cargo test` or pytest (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The kernel a plugin's tests drive: JSON lines on stdin and stdout
    /// (started by the tests' client, keel-plugin-test).
    Harness,
    /// Build on every change, install into a running kernel and enable or
    /// upgrade the plugin on a tenant; prints the GraphiQL URL.
    Dev(dev::DevArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "KEEL_LISTEN")]
    listen: Option<String>,
    /// When set, a platform-administrator API key with this secret (at least
    /// 16 characters) exists. Prefer the environment variable to the flag.
    #[arg(long, env = "KEEL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Create a `demo` tenant if missing and print a fresh owner key for it.
    #[arg(long)]
    demo: bool,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its first owner API key.
    Create {
        /// 2-63 characters of a-z, 0-9 and '-'.
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create an API key for a tenant and print its secret (shown once).
    Create {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// A role (repeatable): owner, admin, marketer, analyst, integration.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A scope (repeatable), e.g. events:read; required for integration.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List a tenant's API keys.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke an API key of a tenant.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Create a platform-administrator key and print its secret.
    CreatePlatform {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Create an operator. The password is read from KEEL_OPERATOR_PASSWORD,
    /// or else from the first line of standard input.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// A role (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// List a tenant's operators.
    List {
        #[arg(long)]
        tenant: String,
    },
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn open_db(cfg: &Config) -> Result<Db> {
    let db = Db::connect(
        &cfg.database_url,
        &DbOptions {
            max_connections: cfg.database_max_connections,
            ..DbOptions::default()
        },
    )
    .await
    .context("opening the database")?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let listen = match &cli.command {
        Command::Serve(a) => a.listen.clone(),
        _ => None,
    };
    // The harness logs only what a plugin's tests need to see.
    let log = match &cli.command {
        Command::Plugin(PluginCommand::Harness) => cli.log.clone().or_else(|| Some("warn".into())),
        _ => cli.log.clone(),
    };
    let cfg = Config::resolve(&Overrides {
        config: cli.config.clone(),
        listen,
        database_url: cli.database_url.clone(),
        log,
        log_format: cli.log_format,
        master_key_file: cli.master_key_file.clone(),
        previous_master_key_file: cli.previous_master_key_file.clone(),
        trusted_proxies: cli.trusted_proxies.clone(),
        public_origins: cli.public_origins.clone(),
        public_base_url: cli.public_base_url.clone(),
        consumer_session_ttl_secs: cli.consumer_session_ttl_secs,
        secure_cookies: cli.secure_cookies,
        wechat_authorize_base: cli.wechat_authorize_base.clone(),
        wechat_api_base: cli.wechat_api_base.clone(),
    })?;
    init_logging(&cfg);
    match cli.command {
        Command::Serve(args) => serve(&cfg, args).await,
        Command::Migrate => {
            master_key::open(&cfg).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Schema => {
            print!("{}", keel_gateway::sdl());
            Ok(())
        }
        Command::Tenant(cmd) => tenant(&cfg, cmd).await,
        Command::ApiKey(cmd) => api_key(&cfg, cmd).await,
        Command::Operator(cmd) => operator(&cfg, cmd).await,
        Command::Plugin(cmd) => plugin(&cfg, cmd).await,
        Command::Download(args) => download::run(args).await,
        Command::Import(ImportCommand::Members(args)) => import::run(args).await,
        Command::Secrets(cmd) => master_key::run(&cfg, cmd).await,
    }
}

async fn serve(cfg: &Config, args: ServeArgs) -> Result<()> {
    let db = master_key::open(cfg).await?;
    if let Some(token) = &args.admin_token {
        api_keys::set_bootstrap_platform_key(&db, token)
            .await
            .context("KEEL_ADMIN_TOKEN")?;
        tracing::info!("platform administrator key set from KEEL_ADMIN_TOKEN");
    }
    let demo = if args.demo {
        Some(demo_tenant(&db).await?)
    } else {
        None
    };
    let kernel = Kernel::assemble(db, kernel_config(cfg)).await?;
    keel_plugins::install_all(kernel.registry())
        .await
        .context("installing the bundled plugins")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let demo = match demo {
        Some((tenant, key)) => Some((key, demo::prepare(&kernel, &tenant, addr).await?)),
        None => None,
    };
    tracing::info!(%addr, database = %redact(&cfg.database_url), "keel is serving");
    if let Some((key, demo)) = demo {
        let scan = demo
            .scan_url
            .map(|u| {
                format!(
                    "\nOpen a printed code as a consumer would (a phone's browser):\n\n    {u}\n"
                )
            })
            .unwrap_or_default();
        // Ignore a closed stdout: the banner is a courtesy, serving goes on.
        let _ = writeln!(
            std::io::stdout(),
            "\nKeel is running at http://{addr}/graphql with the demo tenant `demo`\n\
             (plugins codes and rewards enabled, a product, 1,000 activated codes and a campaign).\n\
             Its owner API key (shown once):\n\n    {key}\n\n\
             Try:\n    curl -s http://{addr}/graphql -H 'Authorization: Bearer {key}' \\\n      \
             -H 'Content-Type: application/json' -d '{{\"query\":\"{{ viewer {{ tenant {{ slug name }} roles }} }}\"}}'\n{scan}"
        );
    }
    // The warm-up, the scheduler and the outbox dispatcher run beside
    // HTTP; a stop drains requests for at most the request timeout, stops
    // them and closes the database.
    kernel.serve(listener, shutdown_signal()).await?;
    tracing::info!("keel stopped");
    Ok(())
}

/// Hides the password of a database URL for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// The kernel's settings from the configuration.
fn kernel_config(cfg: &Config) -> KernelConfig {
    let mut config = KernelConfig::new(&cfg.plugin_cache_dir);
    if let Some(mib) = cfg.plugin_max_memory_mib {
        config.host.max_memory_bytes = (mib as usize) << 20;
    }
    if let Some(ms) = cfg.plugin_max_deadline_ms {
        config.host.max_deadline = std::time::Duration::from_millis(ms);
    }
    config.gateway = cfg.gateway.clone();
    config
}

/// The kernel `keel serve` would run, not serving: for the commands that
/// install and list plugins with its host and registry.
async fn kernel(cfg: &Config) -> Result<Kernel> {
    let db = master_key::open(cfg).await?;
    Kernel::assemble(db, kernel_config(cfg)).await
}

async fn plugin(cfg: &Config, cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::New {
            name,
            dir,
            sdk,
            lang,
        } => {
            let root = scaffold::new_plugin(&dir, &name, lang, sdk.as_deref())?;
            println!(
                "created {}; try: cd {} && keel plugin test",
                root.display(),
                root.display()
            );
        }
        PluginCommand::Sdk { dir } => {
            let project = project::Project::find(&dir)?;
            let sdk = scaffold::write_sdk(&project.dir)?;
            println!(
                "wrote the SDK of keel {} to {}",
                env!("CARGO_PKG_VERSION"),
                sdk.display()
            );
        }
        PluginCommand::Test { dir, args } => scaffold::test(&dir, &args)?,
        PluginCommand::Harness => harness::run().await?,
        PluginCommand::Dev(args) => dev::run(args).await?,
        PluginCommand::Build { dir } => {
            let out = scaffold::build(&dir)?;
            println!(
                "package ready: {} (install with `keel plugin install {}`)",
                out.display(),
                out.display()
            );
        }
        PluginCommand::Install { dir } => {
            let kernel = kernel(cfg).await?;
            let p = kernel.registry().install_dir(&dir).await?;
            println!(
                "installed {} {} ({})",
                p.manifest.name,
                p.manifest.version,
                &p.hash[..12]
            );
        }
        PluginCommand::List => {
            let kernel = kernel(cfg).await?;
            for p in kernel.registry().packages().await? {
                let m = &p.manifest;
                println!(
                    "{}\t{}\t{}\t{}",
                    m.name, m.version, m.publisher, m.description
                );
            }
        }
    }
    Ok(())
}

/// The demo tenant (created if missing) and a fresh owner key for it.
async fn demo_tenant(db: &Db) -> Result<(keel_core::TenantId, String)> {
    let tenant = match tenants::get_by_slug(db, "demo").await {
        Ok(t) => t,
        Err(keel_core::Error::NotFound(_)) => {
            let mut tx = db.begin().await?;
            let t = tenants::create(&mut tx, "demo", "Demo Brand").await?;
            tx.commit().await?;
            t
        }
        Err(e) => return Err(e.into()),
    };
    let mut tx = db.begin().await?;
    let (_, secret) = api_keys::create_owner_key(
        &mut tx,
        &tenant.id,
        "demo owner key (printed by keel serve --demo)",
        "cli",
    )
    .await?;
    tx.commit().await?;
    Ok((tenant.id, secret))
}

async fn tenant(cfg: &Config, cmd: TenantCommand) -> Result<()> {
    let db = open_db(cfg).await?;
    match cmd {
        TenantCommand::Create { slug, name } => {
            let mut tx = db.begin().await?;
            let t = tenants::create(&mut tx, &slug, &name).await?;
            let (_, secret) = api_keys::create_owner_key(
                &mut tx,
                &t.id,
                "tenant admin (created with the tenant)",
                "cli",
            )
            .await?;
            tx.commit().await?;
            println!("tenant {} ({}) created", t.slug, t.id);
            println!("owner API key (shown once): {secret}");
        }
        TenantCommand::List => {
            for t in tenants::list(&db).await? {
                println!("{}\t{}\t{}", t.id, t.slug, t.name);
            }
        }
    }
    Ok(())
}

async fn api_key(cfg: &Config, cmd: ApiKeyCommand) -> Result<()> {
    let db = open_db(cfg).await?;
    match cmd {
        ApiKeyCommand::Create {
            tenant,
            name,
            roles,
            scopes,
        } => {
            let t = tenants::get_by_slug(&db, &tenant).await?;
            let mut tx = db.begin().await?;
            let (key, secret) = api_keys::create(
                &mut tx,
                &t.id,
                NewApiKey {
                    name,
                    roles,
                    scopes,
                },
                Some("cli"),
            )
            .await?;
            tx.commit().await?;
            println!("API key {} created", key.id);
            println!("secret (shown once): {secret}");
        }
        ApiKeyCommand::List { tenant } => {
            let t = tenants::get_by_slug(&db, &tenant).await?;
            for k in api_keys::list(&db, &t.id).await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.secret_prefix,
                    state,
                    k.roles.join(","),
                    k.name
                );
            }
        }
        ApiKeyCommand::Revoke { tenant, id } => {
            let t = tenants::get_by_slug(&db, &tenant).await?;
            let mut tx = db.begin().await?;
            api_keys::revoke(&mut tx, &t.id, &id).await?;
            tx.commit().await?;
            println!("API key {id} revoked");
        }
        ApiKeyCommand::CreatePlatform { name } => {
            let mut tx = db.begin().await?;
            let (key, secret) = api_keys::create_platform_key(&mut tx, &name).await?;
            tx.commit().await?;
            println!("platform API key {} created", key.id);
            println!("secret (shown once): {secret}");
        }
    }
    Ok(())
}

async fn operator(cfg: &Config, cmd: OperatorCommand) -> Result<()> {
    let db = open_db(cfg).await?;
    match cmd {
        OperatorCommand::Create {
            tenant,
            email,
            roles,
        } => {
            let password = match std::env::var("KEEL_OPERATOR_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_to_string(&mut line)
                        .context("reading the password from standard input")?;
                    line.lines().next().unwrap_or("").to_owned()
                }
            };
            let t = tenants::get_by_slug(&db, &tenant).await?;
            let mut tx = db.begin().await?;
            let op = operators::create(
                &mut tx,
                &t.id,
                NewOperator {
                    email,
                    password,
                    roles,
                },
            )
            .await?;
            tx.commit().await?;
            println!("operator {} <{}> created", op.id, op.email);
        }
        OperatorCommand::List { tenant } => {
            let t = tenants::get_by_slug(&db, &tenant).await?;
            for o in operators::list(&db, &t.id).await? {
                let state = if o.deactivated_at.is_some() {
                    "deactivated"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}\t{}", o.id, o.email, state, o.roles.join(","));
            }
        }
    }
    Ok(())
}
