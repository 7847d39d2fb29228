//! The command line. Every option can also be given as an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

// Boolean variables take 1/0, true/false, yes/no, on/off, as systemd and compose files write them.
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use url::Url;

use crate::core::session::{RefreshPolicy, SessionLifetimes};
use crate::store::PoolSettings;

#[derive(Debug, Parser)]
#[command(
    name = "ssogate",
    version,
    about = "Self-hosted enterprise single sign-on broker",
    long_about = "ssogate signs your application's users in through each customer organization's own \
OpenID Connect identity provider, and hands your application one normalized profile through a \
standard OpenID Provider."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "SSOGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (applies pending database migrations first).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Replace the admin API token with a new one, print it and exit.
    RotateAdminToken(DatabaseArgs),
}

#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(long, env = "SSOGATE_DATABASE_URL", default_value = "sqlite://ssogate.db")]
    pub database_url: String,

    /// Key that encrypts secrets at rest: 32 bytes as base64 or hex. If unset with
    /// SQLite, a key file is generated beside the database. Prefer the environment
    /// variable to the flag (flags show in process lists).
    #[arg(long, env = "SSOGATE_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,

    /// Most connections this process opens to the database (default: 16 for
    /// PostgreSQL, 4 for SQLite). Mind PostgreSQL's `max_connections` across replicas.
    #[arg(long, env = "SSOGATE_DB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: Option<u32>,

    /// How long a request waits for a database connection, reconnecting included,
    /// before it fails with 503 `database_unavailable`.
    #[arg(long, env = "SSOGATE_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,

    /// PostgreSQL: the longest one statement, or a transaction left idle, may run.
    #[arg(long, env = "SSOGATE_DB_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address to listen on.
    #[arg(long, env = "SSOGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Public base URL; every URL ssogate hands out (issuer, redirect URIs) is built
    /// from it. Default: `http://<listen>`.
    #[arg(long, env = "SSOGATE_PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// Bearer token of the admin API (at least 24 characters). If unset, one is
    /// generated on first start and printed once; only its hash is stored.
    #[arg(long, env = "SSOGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Development mode: allow `http://` identity providers on loopback addresses
    /// and cookies without `Secure`. Never in production.
    #[arg(long, env = "SSOGATE_DEV", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dev: bool,

    /// A non-public network (CIDR) that identity providers may be on, e.g. an
    /// on-premises IdP at 10.20.0.0/16. Repeatable; comma-separated in the env var.
    #[arg(long = "allow-idp-network", env = "SSOGATE_ALLOW_IDP_NETWORK", value_delimiter = ',')]
    pub allow_idp_networks: Vec<IpNet>,

    /// A non-public network (CIDR) that applications' back-channel logout URIs may
    /// be on (application back-ends beside ssogate). Repeatable; comma-separated in
    /// the env var.
    #[arg(long = "allow-app-network", env = "SSOGATE_ALLOW_APP_NETWORK", value_delimiter = ',')]
    pub allow_app_networks: Vec<IpNet>,

    /// Timeout of each request to an identity provider, in seconds.
    #[arg(long = "idp-timeout", env = "SSOGATE_IDP_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub idp_timeout_secs: u64,

    /// After this many failures in a row (no answer, timeout, 5xx), an identity
    /// provider is not contacted for `--idp-circuit-cooldown`; its sign-ins fail fast.
    #[arg(long, env = "SSOGATE_IDP_CIRCUIT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub idp_circuit_threshold: u32,

    /// How long an identity provider whose circuit opened is left alone.
    #[arg(long, env = "SSOGATE_IDP_CIRCUIT_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idp_circuit_cooldown: Duration,

    /// Requests one identity provider may have in flight at once; more fail fast.
    #[arg(long, env = "SSOGATE_IDP_MAX_IN_FLIGHT", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub idp_max_in_flight: u32,

    /// Identity providers whose discovery document, signing keys and circuit state
    /// are kept in memory; past this, the least recently used are forgotten (and
    /// fetched again at their next sign-in). About 10 KiB each.
    #[arg(long, env = "SSOGATE_IDP_CACHE_ENTRIES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(16..))]
    pub idp_cache_entries: u64,

    /// Applications, organizations and connections whose settings are kept in memory
    /// for sign-ins, of each kind; past this, the least used are forgotten
    /// (and read again at their next sign-in). A few KiB per organization.
    #[arg(long, env = "SSOGATE_CONFIG_CACHE_ENTRIES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(16..))]
    pub config_cache_entries: u64,

    /// How long a sign-in lasts at most (e.g. `12h`, `7d`).
    #[arg(long, env = "SSOGATE_SESSION_LIFETIME", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_lifetime: Duration,

    /// A session nobody uses for this long ends (e.g. `2h`, `30m`).
    #[arg(long, env = "SSOGATE_SESSION_IDLE_TIMEOUT", default_value = "2h", value_parser = humantime::parse_duration)]
    pub session_idle_timeout: Duration,

    /// Refresh an identity provider's access token this long before it expires.
    #[arg(long, env = "SSOGATE_REFRESH_MARGIN", default_value = "60s", value_parser = humantime::parse_duration)]
    pub refresh_margin: Duration,

    /// When refreshes fail because the identity provider is down, end the session
    /// after this long (a refusal such as `invalid_grant` ends it at once).
    #[arg(long, env = "SSOGATE_REFRESH_GRACE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub refresh_grace: Duration,

    /// A group re-sync job that has recorded no progress for this long (it records
    /// some after every batch of users) was left by a stopped process: it is taken up
    /// again, on any replica.
    #[arg(long, env = "SSOGATE_SYNC_STALL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub sync_stall_timeout: Duration,

    /// Users a group re-sync job syncs per transaction. Larger batches finish sooner;
    /// on SQLite each holds the one writer (sign-ins wait) for its whole batch.
    #[arg(long, env = "SSOGATE_SYNC_BATCH", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sync_batch: u32,

    /// Do not apply database migrations at start; refuse to start if any is pending.
    /// For a service role without DDL rights: run `ssogate migrate` as one that has
    /// them before deploying a new version.
    #[arg(long, env = "SSOGATE_NO_MIGRATE", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub no_migrate: bool,

    /// Most bytes of one person's claims (ID token and userinfo together, as JSON);
    /// a sign-in over it is refused.
    #[arg(long, env = "SSOGATE_MAX_CLAIMS_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_claims_bytes: u32,

    /// Most groups an identity provider may send for one person; a sign-in over it is refused.
    #[arg(long, env = "SSOGATE_MAX_GROUPS_PER_USER", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_groups_per_user: u32,

    /// Largest request body accepted (admin API JSON, token and logout forms); a
    /// bigger one is refused with 413 before it is read.
    #[arg(long, env = "SSOGATE_MAX_REQUEST_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(4096..=16 * 1024 * 1024))]
    pub max_request_bytes: u32,

    /// Largest answer read from an identity provider (discovery, JWKS, token, userinfo).
    #[arg(long, env = "SSOGATE_IDP_MAX_RESPONSE_BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(4096..))]
    pub idp_max_response_bytes: u32,

    /// Sign-ins started (`authorize`) per minute per client address; 0: no limit.
    #[arg(long, env = "SSOGATE_RATE_LIMIT_AUTHORIZE", default_value_t = 600)]
    pub rate_limit_authorize: u32,

    /// Token, revocation and SSO-userinfo requests per minute per client id (not
    /// introspection, which a resource server makes per API call); 0: no limit.
    #[arg(long, env = "SSOGATE_RATE_LIMIT_TOKEN", default_value_t = 1200)]
    pub rate_limit_token: u32,

    /// Admin API and console sign-in requests per minute per client address; 0: no limit.
    #[arg(long, env = "SSOGATE_RATE_LIMIT_ADMIN", default_value_t = 600)]
    pub rate_limit_admin: u32,

    /// A load balancer or proxy (CIDR) whose `X-Forwarded-For` names the client, for
    /// the per-address limits. Repeatable; comma-separated in the env var.
    #[arg(long = "trusted-proxy", env = "SSOGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    /// How long a client may take to send a request's headers (the first request's
    /// and every next one's on a kept-alive connection); then the connection closes.
    /// Bounds slow-header (slowloris) attacks and idle connections.
    #[arg(long, env = "SSOGATE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Connections one client address may hold open at once (trusted proxies are
    /// exempt); more are closed as they arrive. 0: no limit.
    #[arg(long, env = "SSOGATE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: u32,

    /// Bearer token Prometheus presents to scrape `/metrics` (at least 24
    /// characters). Without it, `/metrics` takes the admin token.
    #[arg(long, env = "SSOGATE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Tenants given labels of their own in `/metrics`: the first this many
    /// (organization, connection) pairs to sign in, and IdP hosts, each; the rest
    /// are counted together as `_other`, so a scrape stays bounded at any number of
    /// tenants. 0: none.
    #[arg(long, env = "SSOGATE_METRICS_TENANT_LABELS", default_value_t = 100)]
    pub metrics_tenant_labels: u32,
}

impl ServeArgs {
    pub fn session_lifetimes(&self) -> SessionLifetimes {
        SessionLifetimes { absolute: self.session_lifetime, idle: self.session_idle_timeout.min(self.session_lifetime) }
    }

    pub fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy { margin: self.refresh_margin, grace: self.refresh_grace }
    }
}

/// Settings handlers need at run time.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Without a trailing slash.
    pub public_url: String,
    pub dev: bool,
    /// Hash of `--metrics-token`, if set.
    pub metrics_token_hash: Option<String>,
    pub max_request_bytes: usize,
}

impl RuntimeConfig {
    pub fn new(args: &ServeArgs) -> Self {
        let public_url = match &args.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{}", args.listen),
        };
        let metrics_token_hash = args.metrics_token.as_deref().map(crate::crypto::hash_secret);
        RuntimeConfig { public_url, dev: args.dev, metrics_token_hash, max_request_bytes: args.max_request_bytes as usize }
    }

    /// Cookies are `Secure` unless a dev deployment serves plain http.
    pub fn secure_cookies(&self) -> bool {
        !(self.dev && self.public_url.starts_with("http://"))
    }
}

impl DatabaseArgs {
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: self.db_statement_timeout,
        }
    }

    /// Where a generated encryption key is kept: beside the SQLite database file.
    pub fn key_file(&self) -> Option<PathBuf> {
        let path = self.database_url.strip_prefix("sqlite://").or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next()?;
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(format!("{path}.key")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["ssogate", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(s) => *s,
            _ => unreachable!(),
        }
    }

    /// The README's configuration table, row by row: (flag, env, default as written).
    fn documented_settings() -> Vec<(String, String, String)> {
        let readme = include_str!("../README.md");
        let table = readme.split("## Configuration").nth(1).expect("the README has a configuration section");
        let ticked = |cell: &str| cell.split('`').nth(1).unwrap_or_default().to_owned();
        table
            .lines()
            .skip_while(|l| !l.starts_with("| flag"))
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .map(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                let flag = ticked(cells[0]).split_whitespace().next().unwrap_or_default().to_owned();
                let env = ticked(cells[1]).split('=').next().unwrap_or_default().to_owned();
                // A default in prose (`off`, a placeholder like `http://<listen>`) is not compared.
                let literal = cells[2].starts_with('`') && cells[2].matches('`').count() == 2 && !cells[2].contains('<');
                let default = if literal { ticked(cells[2]) } else { String::new() };
                (flag, env, default)
            })
            .collect()
    }

    /// Every setting the README documents is one the binary takes, under that flag
    /// and variable, with that default; and every setting the binary takes is in the
    /// README (a deployment written from the README must start as written).
    #[test]
    fn the_readme_configuration_table_is_what_the_binary_takes() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let args: Vec<&clap::Arg> = cli.get_arguments().chain(serve.get_arguments()).collect();
        let documented = documented_settings();
        assert!(documented.len() > 30, "{documented:?}");
        for (flag, env, default) in &documented {
            let arg = args
                .iter()
                .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == *flag))
                .unwrap_or_else(|| panic!("the README documents {flag}, which `ssogate serve` does not take"));
            let actual_env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            assert_eq!(&actual_env, env, "{flag}'s variable");
            if !default.is_empty() {
                let actual: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
                assert_eq!(actual, vec![default.clone()], "{flag}'s default");
            }
        }
        for arg in args.iter().filter(|a| a.get_env().is_some() && !a.is_hide_set()) {
            let flag = format!("--{}", arg.get_long().unwrap_or_default());
            assert!(documented.iter().any(|(f, ..)| *f == flag), "{flag} is not in the README's configuration table");
        }
    }

    #[test]
    fn public_url_defaults_to_the_listen_address() {
        let s = serve(&["--listen", "127.0.0.1:9999"]);
        assert_eq!(RuntimeConfig::new(&s).public_url, "http://127.0.0.1:9999");
        let s = serve(&["--public-url", "https://sso.example.com/"]);
        assert_eq!(RuntimeConfig::new(&s).public_url, "https://sso.example.com");
    }

    #[test]
    fn key_file_sits_beside_the_sqlite_file() {
        let s = serve(&["--database-url", "sqlite:///var/lib/ssogate/db.sqlite?mode=rwc"]);
        assert_eq!(s.database.key_file().unwrap(), PathBuf::from("/var/lib/ssogate/db.sqlite.key"));
        let s = serve(&["--database-url", "postgres://localhost/ssogate"]);
        assert!(s.database.key_file().is_none());
    }

    #[test]
    fn durations_parse_in_human_units() {
        let s = serve(&["--session-lifetime", "8h", "--session-idle-timeout", "30m", "--refresh-margin", "90s"]);
        assert_eq!(s.session_lifetimes(), SessionLifetimes { absolute: Duration::from_secs(8 * 3600), idle: Duration::from_secs(1800) });
        assert_eq!(s.refresh_policy().margin, Duration::from_secs(90));
        // The idle timeout never exceeds the lifetime.
        assert_eq!(serve(&["--session-lifetime", "1h"]).session_lifetimes().idle, Duration::from_secs(3600));
        assert!(Cli::try_parse_from(["ssogate", "serve", "--session-lifetime", "soon"]).is_err());
    }

    #[test]
    fn networks_parse() {
        let s = serve(&["--allow-idp-network", "10.0.0.0/8", "--allow-idp-network", "fd00::/8"]);
        assert_eq!(s.allow_idp_networks.len(), 2);
        assert!(Cli::try_parse_from(["ssogate", "serve", "--allow-idp-network", "nope"]).is_err());
    }
}
