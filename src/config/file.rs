//! The YAML file as written by operators: serde structs that mirror it, nothing more.
//!
//! Every field is documented here because this is the contract operators and tests rely on.
//! Validation and defaults that depend on other fields live in `build.rs`; no serde type
//! leaves the `config` module.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
pub struct FileConfig {
    /// Pingora `ServerConf` fields, passed through untouched (threads, pid_file, upgrade_sock,
    /// grace_period_seconds, graceful_shutdown_timeout_seconds, ...).
    #[serde(default)]
    pub server: Option<serde_yaml::Value>,
    /// Client-facing listener(s): one `host:port`, or a list whose items are `host:port` or
    /// `{addr, tls: {cert, key}, http2}` for TLS on that port.
    pub listen: OneOrMany<ListenFile>,
    /// Admin listener for /healthz, /readyz, /metrics and /status: `IP:port`, or a bare port
    /// (`9090`, `":9090"`), which means `127.0.0.1:port`. Absent: no admin listener.
    #[serde(default)]
    pub admin_listen: Option<PortOrAddr>,
    /// When set, every admin path but /healthz and /readyz requires
    /// `Authorization: Bearer <token>`. `${VAR}` reads the environment.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Where the JSON access log goes: `stdout` (default), `stderr`, `off`, or a file path.
    #[serde(default)]
    pub access_log: Option<String>,
    /// Read buffer of each client connection, in bytes (Pingora's default is 64 KiB). Smaller
    /// saves memory per open stream; larger saves system calls on big request bodies.
    #[serde(default)]
    pub client_read_buffer_bytes: Option<usize>,
    /// Parse SSE responses on the side for TTFT, TBT and usage (and ask streams for their
    /// usage). Turning it off saves the parsing cost and loses those figures.
    #[serde(default)]
    pub meter_streams: Option<bool>,
    /// After SIGTERM, how long /readyz reports not ready while requests are still served, so
    /// the load balancer stops sending before the listeners close.
    #[serde(default)]
    pub drain_delay_ms: Option<u64>,
    /// Who may call the gateway; each tenant has its own keys.
    #[serde(default)]
    pub tenants: Vec<TenantFile>,
    /// How tenants' Entra ID tokens are validated; absent: tenants present keys only.
    #[serde(default)]
    pub entra_id: Option<EntraIdFile>,
    /// Output-token caps and body limits.
    #[serde(default)]
    pub governance: GovernanceFile,
    /// Groups of upstream deployments, tried in the order a model lists them.
    #[serde(default)]
    pub pools: Vec<PoolFile>,
    /// Priority classes, by name: `interactive`, `standard` (every tenant's default) and
    /// `batch`, highest first. A class not listed keeps today's behaviour.
    #[serde(default)]
    pub classes: BTreeMap<String, ClassFile>,
    /// Model alias (what clients ask for) to the pools it may use, in order of preference:
    /// a list of pool names, or a map with `pools` and per-model settings.
    #[serde(default)]
    pub models: BTreeMap<String, ModelFile>,
    /// When and how often a failed attempt is replayed elsewhere.
    #[serde(default)]
    pub retry: RetryFile,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// How saturation and failures move traffic.
    #[serde(default)]
    pub routing: RoutingFile,
    /// Active health checks.
    #[serde(default)]
    pub health: HealthFile,
    /// Who may reach the client port and how a client's address is read.
    #[serde(default)]
    pub clients: ClientsFile,
    /// Instances that share budgets, saturation, cool-downs and the retry budget through a
    /// Redis. Absent: each instance keeps its own, as a single gateway does.
    #[serde(default)]
    pub fleet: Option<FleetFile>,
}

/// The fleet's shared state in Redis (see README, "Running a fleet").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// `redis://[user:password@]host:port[/db]` or `rediss://...` for TLS (Azure Cache for
    /// Redis). `${VAR}` reads the environment, so the password stays in a Secret.
    pub redis_url: String,
    /// Put before every key, so that several fleets can share one Redis.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// This instance's name among the members; default: host name and process id.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Time between two exchanges with Redis (one round trip each).
    #[serde(default)]
    pub sync_interval_ms: Option<u64>,
    /// An instance not heard from for this long leaves the membership.
    #[serde(default)]
    pub member_timeout_ms: Option<u64>,
    /// Connecting to Redis, and each exchange, fail after this long.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The fleet size assumed until this instance first hears from Redis (a fresh instance
    /// that cannot reach it admits 1/this of each budget).
    #[serde(default)]
    pub expected_members: Option<u32>,
}

/// Who may reach the client port, and how a client's address is read.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ClientsFile {
    /// Azure Front Door profile id: when set, a request whose `X-Azure-FDID` differs or is
    /// missing gets 403 before anything else. `${VAR}` reads the environment.
    pub front_door_id: Option<String>,
    /// Proxies (CIDRs or addresses) whose `X-Azure-ClientIP` or `X-Forwarded-For` name the
    /// client. Anyone else's headers are ignored: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Failed authentications allowed per client address.
    pub auth_failures: AuthFailuresFile,
    /// What one client connection may take: time for a request head and body, idle time,
    /// head size, and how many connections may be open at once.
    pub limits: ClientLimitsFile,
}

/// Failed authentications (missing or unknown key) allowed per client address.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct AuthFailuresFile {
    /// Failures an address may have in one window; past it, 429 until the window ends.
    /// 0 turns the limit off.
    pub limit: u32,
    /// The window, from the address's first failure.
    pub window_ms: u64,
    /// Addresses tracked at most (about 64 bytes each); the oldest are dropped first.
    pub max_addresses: usize,
}

impl Default for AuthFailuresFile {
    fn default() -> Self {
        AuthFailuresFile {
            limit: 20,
            window_ms: 10_000,
            max_addresses: 65_536,
        }
    }
}

/// Saturation, cool-down and passive ejection settings.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RoutingFile {
    /// Longest cool-down a 429's `retry-after(-ms)` may impose (Azure has sent 86400 s).
    pub max_cooldown_ms: u64,
    /// How long an `azure-openai-deployment-utilization` reading is trusted.
    pub utilization_ttl_ms: u64,
    /// A saturated deployment is used again once its utilization is this many points below
    /// its pool's `spill_at_utilization`.
    pub hysteresis_percent: f64,
    /// Consecutive connect errors, 5xx or timeouts that eject a deployment.
    pub eject_after_failures: u32,
    /// Different tenants whose requests must be among those failures before 5xx and
    /// timeouts eject (connect errors need none); capped at the number of tenants.
    pub eject_min_sources: u32,
    /// First ejection's length; it doubles with each ejection in a row (up to 8x).
    pub eject_ms: u64,
}

impl Default for RoutingFile {
    fn default() -> Self {
        RoutingFile {
            max_cooldown_ms: 60_000,
            utilization_ttl_ms: 10_000,
            hysteresis_percent: 10.0,
            eject_after_failures: 3,
            eject_min_sources: 2,
            eject_ms: 10_000,
        }
    }
}

/// Active health checks (a TCP, or TCP+TLS, connect to each deployment's endpoint).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct HealthFile {
    /// Time between checks of one deployment; 0 turns active checks off.
    pub interval_ms: u64,
    /// A check that takes longer fails.
    pub timeout_ms: u64,
    /// Consecutive failed checks that mark a deployment unhealthy.
    pub unhealthy_after: u32,
    /// Consecutive passed checks that mark it healthy again.
    pub healthy_after: u32,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            interval_ms: 5_000,
            timeout_ms: 2_000,
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// A listener address: `IP:port`, or a port alone (a YAML number or string).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PortOrAddr {
    Port(u16),
    Text(String),
}

/// A single value or a list of them (`listen: a` or `listen: [a, b]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// One client listener: a bare `host:port` (plain HTTP) or a map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ListenFile {
    Addr(String),
    Full(ListenerFile),
}

/// A client listener written out in full.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// `host:port` to bind.
    pub addr: String,
    /// Serve TLS on this port with these PEM files (re-read when they or the config change).
    #[serde(default)]
    pub tls: Option<TlsFile>,
    /// Offer HTTP/2 by ALPN (TLS only). Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: String,
    pub key: String,
}

/// Limits on each client connection, with defaults a public edge needs.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientLimitsFile {
    /// The whole request head (request line and headers) must arrive within this time, from
    /// its first byte (or from accepting the connection, for the first request).
    pub head_timeout_ms: u64,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Largest request head in bytes; a larger one closes the connection.
    pub max_head_bytes: usize,
    /// The whole request body must arrive within this time (answered 408 otherwise).
    pub body_timeout_ms: u64,
    /// A client that accepts no response bytes for this long is cut off.
    pub send_timeout_ms: u64,
    /// Open client connections (per process) beyond which new ones are closed at once.
    pub max_connections: usize,
    /// Requests served on one keep-alive connection before it is closed.
    pub max_requests_per_connection: u32,
}

impl Default for ClientLimitsFile {
    fn default() -> Self {
        ClientLimitsFile {
            head_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
            max_head_bytes: 32 * 1024,
            body_timeout_ms: 60_000,
            send_timeout_ms: 60_000,
            max_connections: 10_000,
            max_requests_per_connection: 10_000,
        }
    }
}

/// A calling team.
#[derive(Debug, Deserialize)]
pub struct TenantFile {
    /// Name used in metrics and logs.
    pub name: String,
    /// Keys accepted in `api-key` or `Authorization: Bearer`. `${VAR}` reads the environment.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Entra ID identities whose tokens are this tenant's (needs the top-level `entra_id`).
    #[serde(default)]
    pub entra: Option<TenantEntraFile>,
    /// Token budget per minute (prompt + output, estimated at admission, corrected by usage).
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Request budget per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Caps for this tenant's requests; they take precedence over the model's and the global.
    #[serde(default)]
    pub caps: CapsFile,
    /// Priority class: `interactive`, `standard` (default) or `batch`.
    #[serde(default)]
    pub class: Option<String>,
}

/// What a priority class may do (see README, "Spending the PTU first").
#[derive(Debug, Deserialize)]
pub struct ClassFile {
    /// Utilization (percent) of a provisioned deployment at which this class spills, instead
    /// of the pool's `spill_at_utilization`.
    #[serde(default)]
    pub spill_at_utilization: Option<f64>,
    /// Longest a request may wait for its saturated first pool before it spills (0: never
    /// waits). A client's `x-spillway-max-wait-ms` may lower it, never raise it.
    #[serde(default)]
    pub max_hold_ms: Option<u64>,
    /// When every pool is saturated, refuse this class with 429 once the least loaded
    /// deployment is at this utilization (percent). Absent: never refused for saturation.
    #[serde(default)]
    pub shed_at_utilization: Option<f64>,
}

/// Cap settings that a model or a tenant may override.
#[derive(Debug, Deserialize, Default)]
pub struct CapsFile {
    #[serde(default)]
    pub sync_max_tokens: Option<u32>,
    #[serde(default)]
    pub stream_max_tokens: Option<u32>,
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    #[serde(default)]
    pub on_exceed: Option<OnExceedFile>,
}

/// A model alias: the short form (a list of pools) or the long form with settings.
#[derive(Debug)]
pub enum ModelFile {
    Pools(Vec<String>),
    Spec(ModelSpecFile),
}

/// The long form of a model alias.
#[derive(Debug, Deserialize)]
pub struct ModelSpecFile {
    /// Pools in order of preference.
    pub pools: Vec<String>,
    /// Lower the synchronous cap to what each deployment's measured output rate can finish
    /// within `timeouts.sync_total_ms`.
    #[serde(default)]
    pub adaptive_sync_cap: bool,
    /// Caps for this model; a tenant's caps take precedence.
    #[serde(default)]
    pub caps: CapsFile,
    /// The operations clients may call on this model (`chat.completions`, `completions`,
    /// `responses`, `embeddings`); all four when absent.
    #[serde(default)]
    pub operations: Option<Vec<String>>,
}

// By hand rather than `untagged`, so that errors and unknown fields inside the long form are
// reported with their own path instead of "did not match any variant".
impl<'de> Deserialize<'de> for ModelFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ModelFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of pool names, or a map with `pools`")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<ModelFile, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(a))
                    .map(ModelFile::Pools)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<ModelFile, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                    .map(ModelFile::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

/// What to do with a request whose output limit is above the cap.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnExceedFile {
    /// Rewrite the limit down to the cap.
    #[default]
    Clamp,
    /// Answer 400 naming the cap.
    Reject,
}

/// Output-token governance.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct GovernanceFile {
    /// Cap for non-streaming requests (about 33 tokens/s times a 60 s window gives ~2,000).
    pub sync_max_tokens: u32,
    /// Cap for streaming requests.
    pub stream_max_tokens: u32,
    /// Limit injected when the client sends none.
    pub default_max_tokens: u32,
    /// `clamp` or `reject`.
    pub on_exceed: OnExceedFile,
    /// Largest request body accepted, in bytes; larger ones get 413 without being read.
    pub max_body_bytes: usize,
    /// Share of the synchronous window an adaptive cap lets the output use (0-1].
    pub adaptive_safety: f64,
    /// The adaptive cap never goes below this.
    pub adaptive_min_tokens: u32,
}

impl Default for GovernanceFile {
    fn default() -> Self {
        GovernanceFile {
            sync_max_tokens: 2000,
            stream_max_tokens: 8000,
            default_max_tokens: 1000,
            on_exceed: OnExceedFile::Clamp,
            max_body_bytes: 4 * 1024 * 1024,
            adaptive_safety: 0.8,
            adaptive_min_tokens: 256,
        }
    }
}

/// Billing model of a pool.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolKindFile {
    /// Provisioned Throughput (PTU): a leaky-bucket utilization.
    Provisioned,
    /// Standard pay-as-you-go: TPM/RPM quota.
    Standard,
}

/// A group of interchangeable deployments.
#[derive(Debug, Deserialize)]
pub struct PoolFile {
    /// Name referenced by `models`.
    pub name: String,
    /// `provisioned` or `standard`.
    pub kind: PoolKindFile,
    /// Leave a deployment alone once its reported utilization reaches this percentage.
    #[serde(default)]
    pub spill_at_utilization: Option<f64>,
    /// Default in-flight limit for each deployment of the pool (0 or absent: none).
    #[serde(default)]
    pub max_inflight: Option<u32>,
    /// Requests each deployment may hold waiting for room (default 256); a full queue spills.
    #[serde(default)]
    pub hold_queue: Option<usize>,
    /// What the pool's tokens cost, for the cost metrics and the access log.
    #[serde(default)]
    pub price: Option<PriceFile>,
    /// How Spillway authenticates to the pool's deployments that set neither `api_key` nor
    /// `auth` of their own.
    #[serde(default)]
    pub auth: Option<AuthFile>,
    /// The deployments.
    #[serde(default)]
    pub deployments: Vec<DeploymentFile>,
}

/// A pool's prices in US dollars: `per_hour` for each deployment of a provisioned pool, or
/// per million tokens for a Standard pool.
#[derive(Debug, Deserialize)]
pub struct PriceFile {
    #[serde(default)]
    pub per_hour: Option<f64>,
    #[serde(default)]
    pub input_per_million: Option<f64>,
    /// Prompt tokens served from the prompt cache (default: `input_per_million`).
    #[serde(default)]
    pub cached_input_per_million: Option<f64>,
    #[serde(default)]
    pub output_per_million: Option<f64>,
}

/// One Azure OpenAI deployment.
#[derive(Debug, Deserialize)]
pub struct DeploymentFile {
    /// Unique name across all pools, used in metrics, logs and `x-ms-deployment-name`.
    pub name: String,
    /// Azure region, for metrics and health grouping.
    #[serde(default)]
    pub region: Option<String>,
    /// `https://NAME.openai.azure.com` (or `http://` for tests and the simulator).
    pub endpoint: String,
    /// The upstream deployment name that replaces the client's model alias.
    pub deployment: String,
    /// The deployment's key, sent as `api-key`. `${VAR}` reads the environment. Give this
    /// or `auth` (here or on the pool).
    #[serde(default)]
    pub api_key: Option<String>,
    /// How Spillway authenticates to this deployment, when not with `api_key`; overrides the
    /// pool's `auth`.
    #[serde(default)]
    pub auth: Option<AuthFile>,
    /// Relative share of traffic inside its pool.
    #[serde(default)]
    pub weight: Option<u32>,
    /// In-flight limit for this deployment; overrides the pool's.
    #[serde(default)]
    pub max_inflight: Option<u32>,
    /// Tokens per minute the deployment can take (PTU count × per-PTU throughput). When set,
    /// Spillway predicts utilization from the tokens it sent and spills before Azure's 429.
    #[serde(default)]
    pub capacity_tokens_per_minute: Option<u64>,
}

/// How Spillway authenticates to a deployment (see README, "Keyless: Microsoft Entra ID").
/// Every Entra ID source asks for `scope` (default
/// `https://cognitiveservices.azure.com/.default`); deployments whose `auth` is the same
/// share one token.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthFile {
    /// A key sent as `api-key`. `${VAR}` reads the environment.
    ApiKey { key: String },
    /// The host's managed identity: Azure's instance metadata service (VMs, scale sets, AKS
    /// nodes), or the `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` that App Service and
    /// Container Apps set, which are used when present.
    ManagedIdentity {
        /// A user-assigned identity's client id; absent: the system-assigned identity.
        #[serde(default)]
        client_id: Option<String>,
        /// The token endpoint; default: `$IDENTITY_ENDPOINT`, else the metadata service.
        #[serde(default)]
        endpoint: Option<String>,
        /// The App Service / Container Apps secret header; default: `$IDENTITY_HEADER`.
        /// Given (or set in the environment), `endpoint` is spoken to the App Service way.
        #[serde(default)]
        identity_header: Option<String>,
        #[serde(default)]
        scope: Option<String>,
    },
    /// AKS workload identity: a federated token file exchanged for an Entra ID token. Every
    /// field defaults to the variable the workload identity webhook sets.
    WorkloadIdentity {
        /// Default: `$AZURE_TENANT_ID`.
        #[serde(default)]
        tenant_id: Option<String>,
        /// Default: `$AZURE_CLIENT_ID`.
        #[serde(default)]
        client_id: Option<String>,
        /// Default: `$AZURE_FEDERATED_TOKEN_FILE`; read again for every exchange.
        #[serde(default)]
        token_file: Option<String>,
        /// Default: `$AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com/`.
        #[serde(default)]
        authority_host: Option<String>,
        #[serde(default)]
        scope: Option<String>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        /// `${VAR}` reads the environment.
        client_secret: String,
        /// Default: `https://login.microsoftonline.com/`.
        #[serde(default)]
        authority_host: Option<String>,
        #[serde(default)]
        scope: Option<String>,
    },
}

/// Tenants who sign in with Microsoft Entra ID access tokens (`Authorization: Bearer`), as
/// APIM's `validate-jwt` checks them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraIdFile {
    /// The issuer's OpenID configuration, whose `jwks_uri` names the signing keys:
    /// `https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration`.
    #[serde(default)]
    pub openid_config: Option<String>,
    /// The signing keys themselves, instead of `openid_config`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted `iss` values, exactly. Tokens for Azure OpenAI's audience are v1 tokens:
    /// `https://sts.windows.net/{tenant}/`; v2 tokens say
    /// `https://login.microsoftonline.com/{tenant}/v2.0`.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; default: `https://cognitiveservices.azure.com`, the audience
    /// of the tokens Azure OpenAI clients already get.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// How far the token's `exp` and `nbf` may be off this host's clock (default 60).
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// How often the signing keys are fetched again (default 60). A token signed by a key
    /// not yet known triggers one fetch at most every `min_refetch_seconds` (default 300).
    #[serde(default)]
    pub refresh_minutes: Option<u64>,
    #[serde(default)]
    pub min_refetch_seconds: Option<u64>,
}

/// The Entra ID identities that are a tenant: a token whose `oid` is one of `object_ids`,
/// else whose `appid` (`azp` in v2 tokens) is one of `app_ids`, is this tenant's.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantEntraFile {
    #[serde(default)]
    pub app_ids: Vec<String>,
    #[serde(default)]
    pub object_ids: Vec<String>,
}

/// Replay policy.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RetryFile {
    /// Upstream statuses that are replayed on another deployment.
    pub on_status: Vec<u16>,
    /// Upper bound on upstream attempts per request, the first one included.
    pub max_attempts: u32,
    /// Retries may be at most this percentage of the requests of the last 10 seconds...
    pub budget_percent: f64,
    /// ...plus this many per second, so that a quiet gateway can still retry.
    pub budget_min_per_second: u32,
}

impl Default for RetryFile {
    fn default() -> Self {
        RetryFile {
            on_status: vec![408, 429, 500, 502, 503, 504],
            max_attempts: 3,
            budget_percent: 20.0,
            budget_min_per_second: 5,
        }
    }
}

/// Upstream timeouts in milliseconds.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct TimeoutsFile {
    /// TCP (and TLS) connect.
    pub connect_ms: u64,
    /// Longest wait for any read from the upstream: must exceed time-to-first-token.
    pub first_byte_ms: u64,
    /// The synchronous window the caps are sized for (Azure's is 60 s).
    pub sync_total_ms: u64,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        TimeoutsFile {
            connect_ms: 2000,
            first_byte_ms: 30000,
            sync_total_ms: 60000,
        }
    }
}
