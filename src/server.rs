//! Wiring: logging, the encryption key, the store, admin authentication, the HTTP
//! server and its graceful shutdown.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;

use crate::admin_token;
use crate::broker::{Broker, ConfigCache, KeyRing, Lifetimes, TokenCache};
use crate::config::{Cli, Command, DatabaseArgs, LogFormat, RuntimeConfig, ServeArgs};
use crate::core::audit::Actor;
use crate::core::circuit::CircuitPolicy;
use crate::core::claims::ClaimLimits;
use crate::core::clock::{Clock, SystemClock};
use crate::core::network::NetworkPolicy;
use crate::crypto::SecretBox;
use crate::http::rate_limit::RateLimits;
use crate::http::{self, AppState};
use crate::outbound::AppClient;
use crate::store::{Dialect, Directory, SessionFilter, SqlStore, Store};
use crate::upstream::{IdpClient, Providers};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(mut db) => {
            // Building an index on a large table may take longer than a request should.
            db.db_statement_timeout = Duration::ZERO;
            let (store, _) = open_store(&db, true).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::RotateAdminToken(db) => {
            let (store, _) = open_store(&db, false).await?;
            let token = admin_token::rotate(store.as_ref()).await?;
            println!("{token}");
            store.close().await;
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSOGATE_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// The encryption key: configured, or (SQLite only) kept in a 0600 file beside the database.
fn encryption_key(db: &DatabaseArgs) -> anyhow::Result<[u8; 32]> {
    if let Some(text) = &db.encryption_key {
        return SecretBox::parse_key(text).context("SSOGATE_ENCRYPTION_KEY");
    }
    let Some(path) = db.key_file() else {
        bail!("SSOGATE_ENCRYPTION_KEY must be set for this database (every replica needs the same key)");
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading the key file {}", path.display()))?;
        return SecretBox::parse_key(&text).with_context(|| format!("the key file {}", path.display()));
    }
    let key = SecretBox::generate_key()?;
    write_private_file(&path, &base64::engine::general_purpose::STANDARD.encode(key))?;
    tracing::warn!(path = %path.display(), "generated an encryption key for secrets at rest; back this file up with the database, or set SSOGATE_ENCRYPTION_KEY");
    Ok(key)
}

fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

const KEY_CHECK_SETTING: &str = "encryption_key_check";
const KEY_CHECK_CONTEXT: &str = "settings:encryption_key_check";

/// Opens the database, migrates it (unless `migrate` is off: then a pending migration
/// stops the start), and makes sure the encryption key is the one its secrets were
/// sealed with (failing now beats failing at the first login).
async fn open_store(db: &DatabaseArgs, migrate: bool) -> anyhow::Result<(Arc<SqlStore>, Arc<SecretBox>)> {
    let dialect = Dialect::from_url(&db.database_url).context("--database-url must start with sqlite: or postgres://")?;
    let key = encryption_key(db)?;
    let secrets = Arc::new(SecretBox::new(&key));
    let store = SqlStore::connect_with(&db.database_url, secrets.clone(), &db.pool_settings()).await.context("opening the database")?;
    let pending = store.pending_migrations().await.context("reading the database's schema version")?;
    if !pending.is_empty() {
        if !migrate {
            bail!("the database schema is behind this ssogate: migrations {} are pending; run `ssogate migrate` first", pending.join(", "));
        }
        // Replicas starting together take turns (sqlx holds a lock while migrating).
        store
            .migrate()
            .await
            .context("applying database migrations (without DDL rights, run `ssogate migrate` as a role that has them)")?;
        tracing::info!(applied = %pending.join(", "), "database migrated");
    }
    let sealed = secrets.encrypt_str(KEY_CHECK_CONTEXT, "ssogate")?;
    let in_force = store.put_setting_if_absent(KEY_CHECK_SETTING, &sealed).await?;
    if secrets.decrypt_str(KEY_CHECK_CONTEXT, &in_force).is_err() {
        bail!("the encryption key is not the one this database's secrets were encrypted with");
    }
    tracing::info!(database = ?dialect, "database ready");
    Ok((Arc::new(store), secrets))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (store, secrets) = open_store(&args.database, !args.no_migrate).await?;
    let (admin_auth, generated) = admin_token::bootstrap(store.as_ref(), args.admin_token.as_deref()).await?;
    if let Some(token) = generated {
        // Printed, never logged: this is the only time the token exists in clear.
        println!("\n  ssogate admin API token (shown once, only its hash is stored):\n\n    {token}\n");
        std::io::stdout().flush().ok();
    }
    if args.metrics_token.as_ref().is_some_and(|t| t.len() < crate::admin_token::MIN_TOKEN_LEN) {
        bail!("SSOGATE_METRICS_TOKEN must be at least {} characters", crate::admin_token::MIN_TOKEN_LEN);
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&args.header_read_timeout) {
        bail!("--header-read-timeout must be between 1s and 300s");
    }
    let config = Arc::new(RuntimeConfig::new(&args));
    if args.dev {
        tracing::warn!("--dev: http and loopback identity providers are allowed and cookies are not Secure");
    }
    let policy = NetworkPolicy::for_idps(args.dev, args.allow_idp_networks.clone());
    let circuit =
        CircuitPolicy { threshold: args.idp_circuit_threshold, cooldown: args.idp_circuit_cooldown, max_in_flight: args.idp_max_in_flight };
    let idp = IdpClient::new(
        policy,
        Duration::from_secs(args.idp_timeout_secs),
        circuit,
        args.idp_max_response_bytes as usize,
        args.idp_cache_entries,
    )?;
    let store_dyn: Arc<dyn Store> = store.clone();
    let lifetimes = Lifetimes { session: args.session_lifetimes(), ..Lifetimes::default() };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = Arc::new(KeyRing::load(store_dyn.as_ref(), lifetimes.id_token.max(lifetimes.access_token), clock.clone()).await?);
    let broker = Arc::new(Broker {
        store: store_dyn.clone(),
        providers: Providers::new(idp.clone(), args.idp_cache_entries),
        keys,
        tokens: TokenCache::default(),
        config: ConfigCache::new(clock.clone(), args.config_cache_entries),
        sealer: secrets,
        sync_wake: tokio::sync::Notify::new(),
        deliveries_wake: tokio::sync::Notify::new(),
        scim_activity: crate::broker::activity_cache(),
        issuer: config.public_url.clone(),
        lifetimes,
        refresh: args.refresh_policy(),
        app_client: AppClient::new(NetworkPolicy::for_applications(args.dev, args.allow_app_networks.clone()), Duration::from_secs(5))
            .context("building the HTTP client for applications")?,
        client_keys: Default::default(),
        claim_limits: ClaimLimits { max_bytes: args.max_claims_bytes as usize, max_groups: args.max_groups_per_user as usize },
        clock,
    });
    store_dyn.on_change(broker.config.on_own_change());
    tokio::spawn(housekeeping(broker.clone()));
    let worker = broker.clone();
    let (stalled_after, batch) = (args.sync_stall_timeout, args.sync_batch);
    tokio::spawn(async move { worker.run_sync_jobs(stalled_after, batch).await });
    tokio::spawn(broker.clone().run_refresher());
    tokio::spawn(broker.clone().run_webhook_deliveries());
    tokio::spawn(broker.clone().run_change_listener());
    let metrics = crate::telemetry::install(args.metrics_tenant_labels as usize)?;
    let limits =
        Arc::new(RateLimits::new(args.rate_limit_authorize, args.rate_limit_token, args.rate_limit_admin, args.trusted_proxies.clone()));
    tokio::spawn(forget_idle_clients(limits.clone()));
    let state = AppState { store: store_dyn, config: config.clone(), idp, admin_auth: Arc::new(admin_auth), broker, metrics, limits };

    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, public_url = %config.public_url, "ssogate is serving");
    let connection_limits = http::serve::ConnectionLimits {
        header_read_timeout: args.header_read_timeout,
        per_address: args.max_connections_per_address,
        exempt: args.trusted_proxies.clone(),
    };
    http::serve::serve(listener, http::router(state), connection_limits, shutdown_signal()).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How often expired login state, codes, tokens and sessions are purged (by one
/// replica at a time), and signing keys re-read (by each).
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

async fn housekeeping(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tick.tick().await;
        let t = broker.clock.now();
        broker.reload_keys().await;
        // The lease ends before the next round, so a replica that died hands over.
        match broker.store.try_lease("housekeeping", t, t + HOUSEKEEPING_EVERY - Duration::from_secs(5)).await {
            Ok(true) => {
                if let Err(e) = broker.store.purge_expired(t).await {
                    tracing::warn!(error = %e, "purging expired login state failed");
                }
                // A sign-in that completed while its user was being deactivated, or
                // a deactivation whose sessions could not be ended then.
                let actor = Actor("housekeeping".into());
                if let Err(e) = broker.end_sessions(SessionFilter::InactiveUsers, "user_deactivated", &actor).await {
                    tracing::warn!(error = %e, "ending the sessions of deactivated users failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "taking the housekeeping lease failed"),
        }
    }
}

/// Rate-limit buckets of clients back under their limit are dropped once a minute.
async fn forget_idle_clients(limits: Arc<RateLimits>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tick.tick().await;
        limits.forget_idle();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
